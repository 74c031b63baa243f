"""The validated settings, typed: one frozen dataclass per ``[section]``, and the secrets.

Code reads ``settings.risk.leverage``; :data:`bot.config.keys.KEYS` stays the one
table of names, defaults and rules (tests/bot/test_config.py checks that both name
the same keys). Secrets are kept out of ``repr`` and of :meth:`Settings.summary`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, get_type_hints


@dataclass(frozen=True, slots=True)
class Secrets:
    """Values that must never reach a log or the audit trail."""

    api_key: str = field(default="", repr=False)
    api_secret: str = field(default="", repr=False)
    audit_hmac_key: str = field(default="", repr=False)

    def values(self) -> tuple[str, ...]:
        return tuple(v for v in (self.api_key, self.api_secret, self.audit_hmac_key) if v)


@dataclass(frozen=True, slots=True)
class BotSection:
    id: str


@dataclass(frozen=True, slots=True)
class RiskSection:
    risk_percent: float
    max_position_percent: float
    leverage: int
    margin_type: str


@dataclass(frozen=True, slots=True)
class StrategySection:
    name: str
    fast_period: int
    slow_period: int
    atr_period: int
    take_profit_atr: float
    stop_loss_atr: float


@dataclass(frozen=True, slots=True)
class PaperSection:
    initial_balance: float
    fee_rate: float
    slippage_bps: float
    venue_faults: float


@dataclass(frozen=True, slots=True)
class SimSection:
    volatility: float


@dataclass(frozen=True, slots=True)
class AuditSection:
    fsync_interval_seconds: float
    checkpoint_interval_seconds: float


@dataclass(frozen=True, slots=True)
class ExecutionSection:
    max_attempts: int
    backoff_base_seconds: float
    backoff_max_seconds: float
    protection_check_seconds: float
    unknown_outcome_seconds: float
    deadman_seconds: float


@dataclass(frozen=True, slots=True)
class StoplossGuardSection:
    count: int
    window: str  # a duration; bot.durations.parse_duration reads it
    lock: str


@dataclass(frozen=True, slots=True)
class ProtectionsSection:
    daily_loss_limit_percent: float | None
    max_drawdown_percent: float | None
    stoploss_guard: StoplossGuardSection | None  # None: all three keys unset
    cooldown: str | None


@dataclass(frozen=True, slots=True)
class LimitsSection:
    max_order_notional: float | None
    price_collar_percent: float | None
    max_orders_per_minute: int | None


@dataclass(frozen=True, slots=True)
class Settings:
    """Validated settings, typed. ``values`` holds every key of :data:`KEYS` by dotted
    name, as ``bot_started`` records them."""

    mode: str
    market: str
    data: list[str]
    seed: int
    speed: float
    audit_dir: str
    symbols: list[str]
    intervals: list[str]
    backfill: int
    heartbeat_seconds: float
    log_level: str
    bot: BotSection
    risk: RiskSection
    strategy: StrategySection
    paper: PaperSection
    sim: SimSection
    audit: AuditSection
    execution: ExecutionSection
    protections: ProtectionsSection
    limits: LimitsSection
    values: Mapping[str, Any]
    secrets: Secrets
    futures_url: str | None = None
    ws_url: str | None = None
    config_file: str | None = None
    live_confirmed: bool = False

    def summary(self) -> dict[str, Any]:
        """What ``bot_started`` records: every setting, no secret."""
        return {
            **self.values,
            "config_file": self.config_file,
            "futures_url": self.futures_url,
            "ws_url": self.ws_url,
            "has_binance_credentials": bool(self.secrets.api_key and self.secrets.api_secret),
            "audit_keyed": bool(self.secrets.audit_hmac_key),
        }


_NOT_KEYS = {"values", "secrets", "futures_url", "ws_url", "config_file", "live_confirmed"}


def _section_class(hint: Any) -> type | None:
    """The section dataclass a field holds (``X`` or ``X | None``), else None."""
    for candidate in (hint, *getattr(hint, "__args__", ())):
        if isinstance(candidate, type) and is_dataclass(candidate):
            return candidate
    return None


def key_paths(cls: type = Settings, prefix: str = "") -> list[str]:
    """The dotted key names the typed view of ``cls`` holds (``risk.leverage``, ...)."""
    hints = get_type_hints(cls)
    names: list[str] = []
    for f in fields(cls):
        if not prefix and f.name in _NOT_KEYS:
            continue
        section = _section_class(hints[f.name])
        names += key_paths(section, f"{prefix}{f.name}.") if section else [prefix + f.name]
    return names


def typed_arguments(cls: type, values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Constructor arguments of ``cls`` from the validated values; a nested section whose
    keys are all unset is None."""
    hints = get_type_hints(cls)
    out: dict[str, Any] = {}
    for f in fields(cls):
        if not prefix and f.name in _NOT_KEYS:
            continue
        section = _section_class(hints[f.name])
        if section is None:
            out[f.name] = values[prefix + f.name]
            continue
        inner = typed_arguments(section, values, f"{prefix}{f.name}.")
        optional = type(None) in getattr(hints[f.name], "__args__", ())
        unset = all(v is None for v in inner.values())
        out[f.name] = None if optional and unset else section(**inner)
    return out
