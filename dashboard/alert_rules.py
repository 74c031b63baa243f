"""Alert rules: the validated ``Rule`` and the TOML rules file it is read from.

Reading a rules file is all the I/O here. Every mistake is a ``RulesError`` naming
the file, the rule and the key, so a bad file stops the alerts process before it
watches anything. A rule's metric is one of ``dashboard.metrics``' rates (or
staleness); the state machine that evaluates rules lives in ``dashboard.alert_engine``.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.durations import format_duration, parse_duration
from dashboard.metrics import RATE_METRICS

DEFAULT_RULES_FILE = Path(__file__).with_name("alerts.toml")  # the shipped rules
STALENESS = "staleness"
METRICS: tuple[str, ...] = (*RATE_METRICS, STALENESS)
DEFAULT_STALE_AFTER = 180.0  # three missed heartbeats at the bot's default 60 s


class RulesError(ValueError):
    """The rules file is unusable; the message names the file, the rule and the key."""


# ---------------------------------------------------------------------- rules


@dataclass(frozen=True)
class Rule:
    """One validated rule; durations are in seconds.

    For ``metric = "staleness"`` the evaluated value is the age in seconds of
    the newest record, and both thresholds are ``stale_after``.
    """

    name: str
    metric: str
    fire_above: float
    clear_below: float
    window: float = 0.0
    min_samples: int = 1
    pending: float = 0.0
    repeat: float = 0.0  # 0: never re-notify
    symbol: str | None = None
    stale_after: float = DEFAULT_STALE_AFTER
    bot: str | None = None  # None: evaluated for each bot separately
    action: str | None = None  # circuit breaker (SPEC §11): "reduce" or "halt" when it fires
    resume_on_resolve: bool = False  # back to active when it resolves (if nothing else changed)

    @property
    def is_staleness(self) -> bool:
        return self.metric == STALENESS

    def describe(self) -> str:
        """One line for humans: what the rule watches, when it fires, what it does to the bot."""
        if self.is_staleness:
            what = f"no record or heartbeat for more than {format_duration(self.stale_after)}"
        else:
            scope = f" for {self.symbol}" if self.symbol else ""
            what = (
                f"{self.metric}{scope} over {format_duration(self.window)} above "
                f"{self.fire_above:g} (clears below {self.clear_below:g})"
            )
        if self.bot is not None:
            what += f" on bot {self.bot}"
        if self.action is not None:
            what += f"; then {self.action}s the bot"
            what += ", resumed when it resolves" if self.resume_on_resolve else ""
        return what


ACTIONS = ("reduce", "halt")
_COMMON_KEYS = {"name", "metric", "pending", "repeat", "bot", "action", "resume_on_resolve"}
_RATE_KEYS = _COMMON_KEYS | {
    "window",
    "fire_above",
    "clear_below",
    "min_samples",
    "symbol",
    "stale_after",
}
_STALENESS_KEYS = _COMMON_KEYS | {"stale_after"}


def load_rules(path: str | Path) -> list[Rule]:
    """Read and validate a rules file; raise RulesError naming what is wrong."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(f"{path}: cannot read rules file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise RulesError(f"{path}: not UTF-8 text") from None
    return parse_rules(text, source=str(path))


def parse_rules(text: str, source: str = "<rules>") -> list[Rule]:
    """Validate the TOML text of a rules file (see load_rules)."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{source}: not valid TOML: {exc}") from None
    unknown = sorted(set(document) - {"rules"})
    if unknown:
        raise RulesError(
            f"{source}: unknown top-level key {unknown[0]!r} (only [[rules]] tables are allowed)"
        )
    tables = document.get("rules", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise RulesError(f"{source}: 'rules' must be an array of tables, written [[rules]]")
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for index, table in enumerate(tables):
        rule = _parse_rule(table, f"{source}: rules[{index}]")
        if rule.name in seen:
            raise RulesError(
                f"{source}: rules[{index}] {rule.name!r}: duplicate name "
                f"(already used by rules[{seen[rule.name]}])"
            )
        seen[rule.name] = index
        rules.append(rule)
    return rules


def _parse_rule(table: dict[str, Any], where: str) -> Rule:
    name = table.get("name")
    if not isinstance(name, str) or not name.strip():
        raise RulesError(f"{where}: key 'name' is required: a non-empty string")
    where = f"{where} {name!r}"

    def fail(key: str, problem: str) -> RulesError:
        return RulesError(f"{where}: key {key!r} {problem}")

    metric = table.get("metric")
    if metric is None:
        raise fail("metric", f"is required: one of {', '.join(METRICS)}")
    if metric not in METRICS:
        raise fail("metric", f"has unknown metric {metric!r}: use one of {', '.join(METRICS)}")
    allowed = _STALENESS_KEYS if metric == STALENESS else _RATE_KEYS
    for key in table:
        if key not in allowed:
            hint = " (not used by staleness rules)" if key in _RATE_KEYS else ""
            raise fail(key, f"is unknown{hint}; allowed keys: {', '.join(sorted(allowed))}")

    def duration(key: str, default: str | None, positive: bool) -> float:
        raw = table.get(key, default)
        if raw is None:
            raise fail(key, "is required: a duration string like '30s', '15m', '1h'")
        if not isinstance(raw, str):
            raise fail(key, f"must be a duration string like '30s', '15m', '1h', not {raw!r}")
        if raw.startswith("-"):
            raise fail(key, f"must not be negative: {raw!r}")
        try:
            seconds = parse_duration(raw)
        except ValueError as exc:
            raise fail(key, f"is a bad duration: {exc}") from None
        if positive and seconds <= 0:
            raise fail(key, f"must be longer than 0s, not {raw!r}")
        return seconds

    pending = duration("pending", "0s", positive=False)
    repeat = duration("repeat", "0s", positive=False)
    bot = table.get("bot")
    if bot is not None and (not isinstance(bot, str) or not bot.strip()):
        raise fail("bot", f"must be a bot id such as 'bot', not {bot!r}")
    action = table.get("action")
    if action is not None and action not in ACTIONS:
        raise fail("action", f"must be one of {', '.join(ACTIONS)}, not {action!r}")
    resume = table.get("resume_on_resolve", False)
    if not isinstance(resume, bool):
        raise fail("resume_on_resolve", f"must be true or false, not {resume!r}")
    if resume and action is None:
        raise fail("resume_on_resolve", "needs an action to undo (action = 'reduce' or 'halt')")
    breaker: dict[str, Any] = {"bot": bot, "action": action, "resume_on_resolve": resume}
    if metric == STALENESS:
        stale_after = duration("stale_after", None, positive=True)
        return Rule(
            name=name,
            metric=metric,
            fire_above=stale_after,
            clear_below=stale_after,
            pending=pending,
            repeat=repeat,
            stale_after=stale_after,
            **breaker,
        )

    def ratio(key: str, default: float | None) -> float:
        raw = table.get(key, default)
        if raw is None:
            raise fail(key, "is required: a rate between 0 and 1")
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
            raise fail(key, f"must be a number between 0 and 1, not {raw!r}")
        if raw < 0:
            raise fail(key, f"must not be negative: {raw!r}")
        if raw > 1:
            raise fail(key, f"must be at most 1 (a rate is a fraction), not {raw!r}")
        return float(raw)

    window = duration("window", None, positive=True)
    fire_above = ratio("fire_above", None)
    clear_below = ratio("clear_below", fire_above)
    if clear_below > fire_above:
        raise fail(
            "clear_below",
            f"({clear_below:g}) must not be greater than fire_above ({fire_above:g})",
        )
    min_samples = table.get("min_samples", 1)
    if isinstance(min_samples, bool) or not isinstance(min_samples, int):
        raise fail("min_samples", f"must be a whole number, not {min_samples!r}")
    if min_samples < 0:
        raise fail("min_samples", f"must not be negative: {min_samples!r}")
    symbol = table.get("symbol")
    if symbol is not None and (not isinstance(symbol, str) or not symbol.strip()):
        raise fail("symbol", f"must be a symbol name such as 'BTCUSDT', not {symbol!r}")
    return Rule(
        name=name,
        metric=metric,
        fire_above=fire_above,
        clear_below=clear_below,
        window=window,
        min_samples=min_samples,
        pending=pending,
        repeat=repeat,
        symbol=symbol,
        stale_after=duration("stale_after", "3m", positive=True),
        **breaker,
    )
