"""A webhook receiver on 127.0.0.1 for tests: records the JSON bodies POSTed to it and
answers 200, 500 (``mode="error"``) or not at all until released (``mode="hang"``)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson


class Webhook:
    """A chat-webhook or Alertmanager-receiver stand-in on a free port."""

    def __init__(self, mode: str = "ok", path: str = "/hooks/secret-token") -> None:
        self.mode = mode
        self.bodies: list[dict[str, Any]] = []
        self.attempts = 0
        self.release = threading.Event()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.attempts += 1
                if hook.mode == "hang":
                    hook.release.wait(30)  # longer than the client's timeout
                status = 500 if hook.mode == "error" else 200
                if status == 200:
                    hook.bodies.append(orjson.loads(body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def texts(self) -> list[str]:
        return [b.get("text", "") for b in list(self.bodies)]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)
