"""The bot's end of the control channel: a Unix socket only its own OS user (or root) may use.

The socket file is created mode 0600 inside the audit directory (which only
one bot may write, so a socket file left by a crash is stale and replaced),
and every connection's peer uid is read with ``SO_PEERCRED``: another user is
refused before a byte of the request is read. Commands are served one at a
time on one thread, so two operators never interleave.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from bot.control import protocol

log = logging.getLogger("bot.control")

_UCRED = struct.Struct("3i")  # pid, uid, gid
_READ_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Peer:
    pid: int
    uid: int

    @property
    def user(self) -> str:
        try:
            return pwd.getpwuid(self.uid).pw_name
        except KeyError:
            return f"uid {self.uid}"


Handler = Callable[[dict[str, Any], Peer], Iterator[dict[str, Any]]]
"""handler(request, peer) yields the replies; the last one is final."""


def allowed(peer: Peer) -> bool:
    """Only the OS user running the bot, or root."""
    return peer.uid in (os.getuid(), 0)


class ControlServer:
    def __init__(self, audit_dir: str | os.PathLike[str], handler: Handler) -> None:
        self.path = protocol.socket_path(audit_dir)
        self._handler = handler
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind and serve on a daemon thread. Raises OSError when the socket cannot be made."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # stale: the audit lock proves no other bot serves here
        old_umask = os.umask(0o177)
        try:
            with protocol.address(self.path) as name:
                sock.bind(name)
        except OSError:
            sock.close()
            raise
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        sock.listen(8)
        sock.settimeout(0.2)  # how late the loop notices close()
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="control", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._sock is not None:
            self._sock.close()
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError as exc:
                log.error("control socket failed: %s", exc)
                return
            with conn:
                try:
                    self._serve_one(conn)
                except OSError as exc:  # the client went away: nothing to answer
                    log.warning("control connection dropped: %s", exc)
                except Exception:
                    log.exception("control command failed")

    def _serve_one(self, conn: socket.socket) -> None:
        pid, uid, _gid = _UCRED.unpack(
            conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
        )
        peer = Peer(pid, uid)
        if not allowed(peer):
            log.warning("control command from %s (pid %d) refused", peer.user, pid)
            conn.sendall(
                protocol.encode(
                    {"final": True, "ok": False, "error": f"{peer.user} may not command this bot"}
                )
            )
            return
        conn.settimeout(_READ_TIMEOUT)
        line = conn.makefile("rb").readline(protocol.MAX_LINE)
        try:
            message = protocol.decode(line)
        except protocol.ControlError as exc:
            conn.sendall(protocol.encode({"final": True, "ok": False, "error": str(exc)}))
            return
        for reply in self._handler(message, peer):
            conn.sendall(protocol.encode(reply))
