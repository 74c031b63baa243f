"""Which bots' trails an audit directory holds (SPEC §4 ``bot_id``, §9 many bots).

An audit directory either holds ``audit_*.jsonl[.gz]`` itself (one bot) or one
subdirectory per bot, each holding its day files. Every reader that must see all
bots (the dashboard, the alerts process, ``summary``) asks ``discover``; nobody
else walks the directory for this.
"""

from __future__ import annotations

import os
from pathlib import Path

from bot.audit import chain

DEFAULT_BOT = "bot"
"""The name of a trail that is not in a bot's subdirectory, and of records without bot_id."""


def holds_trail(directory: Path) -> bool:
    """Whether ``directory`` holds at least one audit day file."""
    try:
        with os.scandir(directory) as entries:
            return any(chain.DAY_FILE_RE.match(entry.name) for entry in entries)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return False


def discover(audit_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Bot name -> the directory of its day files, sorted by name.

    The directory itself is the bot ``"bot"`` when it holds day files; each
    subdirectory holding day files is the bot named like the subdirectory. A
    missing directory holds no bot."""
    root = Path(audit_dir)
    found: dict[str, Path] = {}
    if holds_trail(root):
        found[DEFAULT_BOT] = root
    try:
        with os.scandir(root) as entries:
            subdirectories = sorted(
                entry.name
                for entry in entries
                if entry.is_dir(follow_symlinks=True) and not entry.name.startswith(".")
            )
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return found
    for name in subdirectories:
        if holds_trail(root / name):
            # a flat trail is "bot"; a subdirectory of that name would collide with it
            found[name if name not in found else f"{name}/"] = root / name
    return dict(sorted(found.items()))


def bot_of(record_bot: object, trail_bot: str) -> str:
    """The bot a record belongs to: its ``bot_id``, else the trail's name (SPEC §4)."""
    return record_bot if isinstance(record_bot, str) and record_bot else trail_bot
