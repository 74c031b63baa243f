"""Binance's request-parameter rules and its business error, for every endpoint of the fake.

A request's parameters arrive as strings; the readers here refuse what Binance
refuses with the codes it uses (-1102 missing, -1100 malformed), and
:class:`VenueError` is the one way a venue rule says no — the HTTP layer turns
it into ``{"code": ..., "msg": ...}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation

Params = Mapping[str, str]


class VenueError(Exception):
    """A business error answered as ``{"code": code, "msg": msg}`` with HTTP ``status``."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.status = status


def decimal_param(params: Params, name: str, *, required: bool = True) -> Decimal | None:
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise mandatory(name)
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise VenueError(-1100, f"Illegal characters found in parameter '{name}'.") from None
    if not value.is_finite():
        raise VenueError(-1100, f"Illegal characters found in parameter '{name}'.")
    return value


def mandatory(name: str) -> VenueError:
    return VenueError(
        -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


def flag(params: Params, name: str) -> bool:
    return params.get(name, "false").lower() == "true"


def fmt(value: Decimal) -> str:
    """A decimal the way Binance prints amounts: no exponent, no trailing zeros, "0"."""
    return format(value.normalize(), "f") if value else "0"
