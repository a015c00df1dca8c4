"""Building blocks shared by the event, observation and action schemas."""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic import Strict as StrictMode

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


Int = Annotated[int, BeforeValidator(_as_int)]
# Floats, booleans and strings use pydantic's strict mode (validated in Rust, fast): ints are
# accepted as floats, strings/booleans are refused, NaN/Infinity refused by ``allow_inf_nan``.
Float = Annotated[float, StrictMode()]
Bool = Annotated[bool, StrictMode()]
Str = Annotated[str, StrictMode()]
# Constraints BEFORE the BeforeValidator: pydantic then checks them in Rust on the converted int;
# after it, they would run as an extra Python validator per field (1.5x slower, same behaviour).
NonNegInt = Annotated[int, Field(ge=0), BeforeValidator(_as_int)]
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
    return Annotated[int, Field(ge=lo, le=hi), BeforeValidator(_as_int)]
