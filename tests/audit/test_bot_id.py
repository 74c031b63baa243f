"""bot_id (SPEC §4): configured once (config ``bot.id``, env BOT_ID, ``--bot-id``), written in
every record, and read back by the readers, with the trail's directory name for older records."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.audit import AuditEventType
from bot.audit.reader import iter_records
from bot.audit.trails import bot_of, discover
from bot.audit.verify import verify_trail
from bot.config import load_settings
from bot.errors import ConfigError
from tests.audit.conftest import run_cli


def test_bot_id_defaults_to_bot_and_flag_beats_environment_beats_file(tmp_path: Path) -> None:
    config = tmp_path / "bot.toml"
    config.write_text('[bot]\nid = "from-file"\n')
    assert load_settings([], {}).bot.id == "bot"
    assert load_settings(["--config", str(config)], {}).bot.id == "from-file"
    env = {"BOT_ID": "from-env"}
    assert load_settings(["--config", str(config)], env).bot.id == "from-env"
    assert load_settings(["--bot-id", "from-flag"], env).bot.id == "from-flag"


@pytest.mark.parametrize("bad", ["..", "a/b", "", "x" * 65, "bot id"])
def test_a_bot_id_that_cannot_name_a_directory_is_refused_naming_the_key(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"bot\.id"):
        load_settings(["--bot-id", bad], {})


def test_readers_take_bot_id_from_the_record_or_else_the_trail_directory(
    tmp_path: Path, open_logger
) -> None:
    named = tmp_path / "audit" / "alpha"
    logger = open_logger(named, bot_id="alpha-1")
    logger.log_event(AuditEventType.HEARTBEAT, "heartbeat")
    logger.close()
    trails = discover(tmp_path / "audit")
    assert trails == {"alpha": named}
    records = list(iter_records(named))
    assert records and {bot_of(r.get("bot_id"), "alpha") for r in records} == {"alpha-1"}
    assert bot_of(None, "alpha") == "alpha"  # a record written before bot_id existed
    assert verify_trail(named, workers=1).intact
    shown = run_cli("tail", str(named), "-n", "1", "--raw", "--no-follow")
    assert '"bot_id":"alpha-1"' in shown.stdout
