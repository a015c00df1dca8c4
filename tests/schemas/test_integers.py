"""Integer fields accept and refuse exactly what :func:`luanti_tune.schemas.common._as_int` defines.

They are validated in pydantic-core (no Python call per value); these cases pin the semantics:
JSON integers and integral floats (Lua's ``write_json`` emits ``42.0``) are integers, strings,
booleans, fractional and non-finite numbers are refused, then the bounds apply, in Python and
JSON input alike.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from luanti_tune.schemas.agent import Nearby, Observation
from luanti_tune.schemas.common import Int, NonNegInt, _as_int, int_in

VALUES: list[Any] = [
    0, 1, 42, -1, 6, 7, 1000, 1001, 65535, 2**63 - 1, 2**63, 2**70, -(2**70),
    0.0, -0.0, 42.0, -1.0, 1000.0, 1001.0, 4.5, 0.5, -0.5, 3.0000000000000004, 1e15, 1e20, -1e20, 1e300,
    9.223372036854776e18, -9.223372036854776e18, 9.2233720368547748e18,
    float("nan"), float("inf"), float("-inf"),
    True, False, "42", "4", "", None, [1], {"x": 1},
]  # fmt: skip
BOUNDS = [(None, None), (0, None), (1, 1000), (0, 6), (0, 65535)]


def reference(value: Any, lo: int | None, hi: int | None) -> int | None:
    """The previous Python validator (``_as_int``) followed by the bounds; ``None`` = refused."""
    try:
        v = _as_int(value)
    except ValueError:
        return None
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        return None
    return int(v)


def _adapter(lo: int | None, hi: int | None) -> TypeAdapter[Any]:
    if lo is None and hi is None:
        return TypeAdapter(Int)
    if hi is None:
        assert lo == 0
        return TypeAdapter(NonNegInt)
    assert lo is not None
    return TypeAdapter(int_in(lo, hi))


@pytest.mark.parametrize(("lo", "hi"), BOUNDS)
def test_integers_accept_and_refuse_like_as_int(lo: int | None, hi: int | None) -> None:
    ta = _adapter(lo, hi)
    for value in VALUES:
        want = reference(value, lo, hi)
        inputs = [("python", value)]
        if not (isinstance(value, float) and not math.isfinite(value)):
            inputs.append(("json", json.dumps(value)))
        for mode, inp in inputs:
            try:
                got = ta.validate_python(inp) if mode == "python" else ta.validate_json(inp)
            except ValidationError:
                got = None
            assert got == want, (mode, value, lo, hi)
            if got is not None:
                assert type(got) is int, (mode, value)


def test_integer_errors_name_the_field() -> None:
    base = {"agent": "a", "kind": "pursuit", "pos": {"x": 0, "y": 0, "z": 0}}
    for bad in ("42", True, 4.5, -1, -1.0, None, float("nan")):
        with pytest.raises(ValidationError) as info:
            Observation.model_validate({**base, "tick": bad})
        assert [e["loc"] for e in info.value.errors()] == [("tick",)], bad
    assert Observation.model_validate_json(json.dumps({**base, "tick": 42.0})).tick == 42
    with pytest.raises(ValidationError) as info:
        Nearby.model_validate({"radius": 1, "codes": [0] * 13 + [7] + [0.0] * 12 + ["1"]})
    assert sorted(e["loc"] for e in info.value.errors()) == [("codes", 13), ("codes", 26)]
    grid = Nearby.model_validate_json(json.dumps({"radius": 1, "codes": [1.0] * 27}))
    assert grid.codes == [1] * 27 and all(type(c) is int for c in grid.codes)
