"""Building blocks shared by the event, observation and action schemas."""

from __future__ import annotations

import math
from collections.abc import Set as AbstractSet
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic import Strict as StrictMode
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema as cs

#: Luanti's map is limited to +-31000 nodes on each axis; anything beyond is garbage.
MAP_LIMIT = 31_000.0

NAME_PATTERN = r"^[A-Za-z0-9_.:\-]{1,64}$"


class Strict(BaseModel):
    """Base for every wire model: unknown fields are rejected, NaN/Infinity too."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


def _as_int(value: Any) -> Any:
    """Accept JSON integers and integral floats (Lua's ``write_json`` emits ``42.0``).

    Strings, booleans and fractional floats are refused so that a wrong type is
    reported instead of silently coerced.
    """
    if isinstance(value, bool):
        raise ValueError("expected an integer, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return int(value)
        raise ValueError("expected an integer, got a fractional or non-finite number")
    raise ValueError(f"expected an integer, got {type(value).__name__}")


class IntegralNumber:
    """``Annotated`` metadata: an integer with :func:`_as_int`'s semantics, validated in pydantic-core.

    JSON integers, and integral floats (``42.0``, Lua) converted to ``int``; strings, booleans,
    fractional and non-finite numbers refused; then the bounds. No Python call per value except
    for integral floats beyond +-2**63 (converted by ``int``, as ``_as_int`` did). The JSON
    Schema stays ``{"type": "integer", "minimum", "maximum"}``.
    """

    __slots__ = ("ge", "le")

    def __init__(self, ge: int | None = None, le: int | None = None) -> None:
        self.ge = ge
        self.le = le

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> cs.CoreSchema:
        number = cs.union_schema(
            [
                cs.int_schema(strict=True),
                cs.float_schema(strict=True, allow_inf_nan=False, lt=2.0**63, gt=-(2.0**63)),
                cs.no_info_after_validator_function(int, cs.float_schema(strict=True, allow_inf_nan=False)),
            ],
            mode="left_to_right",
            custom_error_type="int_type",
        )
        # lax int on an int or float: integral floats -> int, fractional refused (int_from_float)
        return cs.chain_schema([number, cs.int_schema(strict=False, ge=self.ge, le=self.le)])

    def __get_pydantic_json_schema__(self, schema: cs.CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return handler(cs.int_schema(ge=self.ge, le=self.le))

    def __repr__(self) -> str:
        return f"IntegralNumber(ge={self.ge!r}, le={self.le!r})"


Int = Annotated[int, IntegralNumber()]
# Floats, booleans and strings use pydantic's strict mode (validated in Rust, fast): ints are
# accepted as floats, strings/booleans are refused, NaN/Infinity refused by ``allow_inf_nan``.
Float = Annotated[float, StrictMode()]
Bool = Annotated[bool, StrictMode()]
Str = Annotated[str, StrictMode()]
NonNegInt = Annotated[int, IntegralNumber(ge=0)]
Coord = Annotated[float, StrictMode(), Field(ge=-MAP_LIMIT, le=MAP_LIMIT)]
Name = Annotated[str, StrictMode(), Field(pattern=NAME_PATTERN)]
ItemName = Annotated[str, StrictMode(), Field(max_length=128)]


class Vec3(Strict):
    """A Luanti-style vector ``{"x", "y", "z"}`` in node units."""

    x: Coord
    y: Coord
    z: Coord

    def as_tuple(self) -> tuple[float, float, float]:
        return (self.x, self.y, self.z)


#: Codes of the local voxel grid carried in observations (``nearby.codes``).
NODE_CODES: dict[str, int] = {
    "air": 0,
    "solid": 1,
    "water": 2,
    "lava": 3,
    "slow": 4,
    "climbable": 5,
    "unknown": 6,
}


def float_in(lo: float, hi: float) -> Any:
    """A finite float within ``[lo, hi]`` (strings and booleans refused)."""
    return Annotated[float, StrictMode(), Field(ge=lo, le=hi)]


def int_in(lo: int, hi: int) -> Any:
    """An integer within ``[lo, hi]`` (integral floats accepted, strings refused)."""
    return Annotated[int, IntegralNumber(ge=lo, le=hi)]


M = TypeVar("M", bound=BaseModel)


def trusted(cls: type[M], values: dict[str, Any], fields: AbstractSet[str]) -> M:
    """``cls`` holding ``values`` (already valid, in field order) without validating them again:
    what ``cls.model_construct(**values)`` builds with ``fields`` as its fields set, minus the
    per-call field walk (hot paths build thousands per batch)."""
    m = object.__new__(cls)
    object.__setattr__(m, "__dict__", values)
    object.__setattr__(m, "__pydantic_fields_set__", set(fields))
    object.__setattr__(m, "__pydantic_extra__", None)
    object.__setattr__(m, "__pydantic_private__", None)
    return m
