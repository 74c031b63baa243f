"""The control channel's protocol, defined once: where the socket is and what travels on it.

A running bot listens on a Unix domain socket next to its audit trail's lock
file (``<audit_dir>/.control.sock``, mode 0600; the bot also checks the peer's
uid). The client sends one JSON object on one line::

    {"command": "halt", "reason": "...", "source": "operator"}

and reads JSON lines back: zero or more ``{"ack": true, ...}`` (the command
was recorded; ``flatten`` goes on working), then one ``{"final": true, "ok":
bool, ...}``. Commands: :data:`COMMANDS`. Alert breakers send
``source = "alert"`` and ``rule``. The dashboard's alerts process imports this
module (and only this one of the bot's): it must stay standard-library only.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SOCKET_NAME = ".control.sock"
COMMANDS = ("status", "halt", "reduce", "resume", "flatten")
ACK_TIMEOUT = 5.0  # SPEC §11: acknowledged and recorded within 5 s
FINAL_TIMEOUT = 120.0  # flatten: cancels, closes and confirmation at the venue
MAX_LINE = 1 << 20
_MAX_UNIX_PATH = 107  # sun_path is 108 bytes with its terminating NUL


class ControlError(Exception):
    """The command did not complete: the message says why."""


class BotNotRunning(ControlError):
    """No bot listens on that audit directory."""


def socket_path(audit_dir: str | os.PathLike[str]) -> Path:
    return Path(audit_dir) / SOCKET_NAME


@contextlib.contextmanager
def address(path: Path) -> Iterator[str]:
    """A name ``bind``/``connect`` accept for ``path``, however long its directory's name:
    too long for ``sun_path``, it goes through ``/proc/self/fd`` of the opened directory."""
    if len(os.fsencode(path)) <= _MAX_UNIX_PATH:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """One message; raises ControlError for anything but a JSON object."""
    try:
        value = json.loads(line)
    except ValueError:
        raise ControlError(f"not a JSON line: {line[:80]!r}") from None
    if not isinstance(value, dict):
        raise ControlError(f"not a JSON object: {line[:80]!r}")
    return value


def request(
    audit_dir: str | os.PathLike[str],
    command: str,
    *,
    timeout: float = ACK_TIMEOUT,
    final_timeout: float = FINAL_TIMEOUT,
    **fields: Any,
) -> dict[str, Any]:
    """Send ``command`` to the bot of ``audit_dir``; the final reply (with ``acked_after``,
    seconds until the first answer). Raises BotNotRunning or ControlError."""
    if command not in COMMANDS:
        raise ControlError(f"unknown command {command!r} (allowed: {', '.join(COMMANDS)})")
    started = time.monotonic()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            with address(socket_path(audit_dir)) as name:
                sock.connect(name)
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
            raise BotNotRunning(f"no bot is running on {audit_dir}") from None
        except PermissionError:
            raise ControlError(f"not allowed to reach the bot of {audit_dir}") from None
        except OSError as exc:
            raise ControlError(f"cannot reach the bot of {audit_dir}: {exc}") from None
        try:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                # a bot that refuses this peer answers and hangs up without reading: read on
                sock.sendall(encode({"command": command, **fields}))
            reader = sock.makefile("rb")
            acked_after: float | None = None
            while True:
                line = reader.readline(MAX_LINE)
                if not line:
                    raise ControlError("the bot closed the connection without an answer")
                reply = decode(line)
                if acked_after is None:
                    acked_after = time.monotonic() - started
                    sock.settimeout(final_timeout)
                if reply.get("final"):
                    return {**reply, "acked_after": round(acked_after, 3)}
        except TimeoutError:
            raise ControlError(f"no answer from the bot of {audit_dir} in time") from None
        except OSError as exc:
            raise ControlError(f"connection to the bot of {audit_dir} failed: {exc}") from None
