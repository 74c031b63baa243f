"""The rules file: shipped defaults load, and every mistake is refused with a message
that names the file, the rule (index and name) and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.durations import format_duration, parse_duration
from dashboard.alert_rules import STALENESS, RulesError, load_rules
from dashboard.metrics import RATE_METRICS

ROOT = Path(__file__).resolve().parents[2]

GOOD = """
[[rules]]
name = "risk-rejection-rate"
metric = "risk_rejection_rate"
window = "15m"
fire_above = 0.5
clear_below = 0.3
min_samples = 10
pending = "2m"
repeat = "1h"
symbol = "BTCUSDT"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(text)
    return path


def refusal(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(RulesError) as info:
        load_rules(path)
    message = str(info.value)
    assert str(path) in message
    return message


def test_the_spec_example_loads_with_durations_in_seconds(tmp_path: Path) -> None:
    (rule,) = load_rules(write(tmp_path, GOOD))
    assert (rule.name, rule.metric, rule.symbol) == (
        "risk-rejection-rate",
        "risk_rejection_rate",
        "BTCUSDT",
    )
    assert (rule.window, rule.pending, rule.repeat) == (900, 120, 3600)
    assert (rule.fire_above, rule.clear_below, rule.min_samples) == (0.5, 0.3, 10)


def test_shipped_defaults_cover_every_rate_and_staleness() -> None:
    rules = load_rules(ROOT / "dashboard" / "alerts.toml")
    assert {r.metric for r in rules} == set(RATE_METRICS) | {STALENESS}
    stale = next(r for r in rules if r.metric == STALENESS)
    assert stale.stale_after == 180


def test_optional_keys_have_documented_defaults(tmp_path: Path) -> None:
    text = '[[rules]]\nname = "x"\nmetric = "capping_rate"\nwindow = "1h"\nfire_above = 0.8\n'
    (rule,) = load_rules(write(tmp_path, text))
    assert (rule.clear_below, rule.min_samples, rule.pending, rule.repeat) == (0.8, 1, 0, 0)
    assert (rule.symbol, rule.stale_after) == (None, 180)


@pytest.mark.parametrize(
    ("text", "duration"), [("30s", 30), ("15m", 900), ("1h", 3600), ("1h30m", 5400), ("0s", 0)]
)
def test_durations(text: str, duration: float) -> None:
    assert parse_duration(text) == duration
    assert parse_duration(format_duration(duration)) == duration


@pytest.mark.parametrize(
    ("replace", "by", "expected"),
    [
        ('symbol = "BTCUSDT"', 'symbol = "BTCUSDT"\nfire_abov = 0.4', "key 'fire_abov' is unknown"),
        (
            'metric = "risk_rejection_rate"',
            'metric = "risk_rejection"',
            "key 'metric' has unknown metric 'risk_rejection'",
        ),
        ('window = "15m"', 'window = "15 minutes"', "key 'window' is a bad duration"),
        ('window = "15m"', 'window = "1.5h"', "key 'window' is a bad duration"),
        ('window = "15m"', "window = 900", "key 'window' must be a duration string"),
        ('window = "15m"', 'window = "0s"', "key 'window' must be longer than 0s"),
        ('pending = "2m"', 'pending = "-2m"', "key 'pending' must not be negative"),
        ('repeat = "1h"', 'repeat = "hourly"', "key 'repeat' is a bad duration"),
        ("clear_below = 0.3", "clear_below = 0.6", "key 'clear_below' (0.6) must not be greater"),
        ("fire_above = 0.5", "fire_above = -0.5", "key 'fire_above' must not be negative"),
        ("fire_above = 0.5", "fire_above = 50", "key 'fire_above' must be at most 1"),
        ("fire_above = 0.5", 'fire_above = "0.5"', "key 'fire_above' must be a number"),
        ("min_samples = 10", "min_samples = -1", "key 'min_samples' must not be negative"),
        ("min_samples = 10", "min_samples = 2.5", "key 'min_samples' must be a whole number"),
        ('symbol = "BTCUSDT"', 'symbol = ""', "key 'symbol' must be a symbol name"),
        ('window = "15m"\n', "", "key 'window' is required"),
        ("fire_above = 0.5\n", "", "key 'fire_above' is required"),
    ],
)
def test_a_bad_value_is_refused_naming_file_rule_and_key(
    tmp_path: Path, replace: str, by: str, expected: str
) -> None:
    assert replace in GOOD
    message = refusal(tmp_path, GOOD.replace(replace, by))
    assert "rules[0] 'risk-rejection-rate'" in message
    assert expected in message


def test_the_failing_rule_is_named_by_index_and_name(tmp_path: Path) -> None:
    second = GOOD.replace("risk-rejection-rate", "second").replace('"2m"', '"2 min"')
    message = refusal(tmp_path, GOOD + second)
    assert "rules[1] 'second': key 'pending' is a bad duration" in message


def test_duplicate_names_are_refused(tmp_path: Path) -> None:
    message = refusal(tmp_path, GOOD + GOOD)
    assert "rules[1] 'risk-rejection-rate': duplicate name (already used by rules[0])" in message


def test_a_rule_without_a_name_is_refused(tmp_path: Path) -> None:
    message = refusal(tmp_path, GOOD.replace('name = "risk-rejection-rate"\n', ""))
    assert "rules[0]: key 'name' is required" in message


def test_staleness_rules_need_stale_after_and_take_no_rate_keys(tmp_path: Path) -> None:
    base = '[[rules]]\nname = "stale"\nmetric = "staleness"\n'
    (rule,) = load_rules(write(tmp_path, base + 'stale_after = "3m"\npending = "30s"\n'))
    assert (rule.stale_after, rule.pending, rule.fire_above) == (180, 30, 180)
    assert "key 'stale_after' is required" in refusal(tmp_path, base)
    message = refusal(tmp_path, base + 'stale_after = "3m"\nwindow = "5m"\n')
    assert "rules[0] 'stale': key 'window' is unknown (not used by staleness rules)" in message


def test_unknown_top_level_keys_and_bad_toml_are_refused(tmp_path: Path) -> None:
    misspelt = GOOD.replace("[[rules]]", "[[rule]]")
    assert "unknown top-level key 'rule'" in refusal(tmp_path, misspelt)
    assert "not valid TOML" in refusal(tmp_path, GOOD + "\nname = \n")
    assert "array of tables" in refusal(tmp_path, 'rules = "none"\n')


def test_a_missing_file_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match=r"nope\.toml: cannot read rules file"):
        load_rules(tmp_path / "nope.toml")


def test_an_empty_file_means_no_rules(tmp_path: Path) -> None:
    assert load_rules(write(tmp_path, "# nothing to watch\n")) == []
