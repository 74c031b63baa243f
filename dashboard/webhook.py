"""Notification delivery to a chat webhook: ``{"text": ...}`` POSTed off the evaluation path.

A background thread sends with a timeout and bounded retries with backoff, so a slow
or failing webhook never delays or stops evaluation. The URL carries its secret in
the path and is logged redacted.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from urllib.parse import urlsplit

import orjson

log = logging.getLogger("dashboard.alerts")  # the alerts process's log, one name for all its parts

Post = Callable[[str, bytes, float], int]
"""post(url, json body, timeout seconds) -> HTTP status; raises OSError on network errors."""


def urllib_post(url: str, body: bytes, timeout: float) -> int:
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "audited-futures-bot-alerts"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


def redacted_url(url: str) -> str:
    """Scheme and host only: chat webhook URLs carry their secret in the path."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}/..."


class WebhookNotifier:
    """POSTs ``{"text": ...}`` from a background thread, with timeout and bounded retries.

    Temporary failures (network errors, timeouts, 429, 5xx) are retried with
    exponential backoff; other 4xx are not (the request itself is wrong). A
    message that still fails is logged and dropped: evaluation never waits on it.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        attempts: int = 3,
        backoff: float = 1.0,
        max_queue: int = 100,
        post: Post = urllib_post,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.sent = 0
        self.failed = 0
        self._post = post
        self._queue: queue.Queue[str | None] = queue.Queue(maxsize=max_queue)
        self._abort = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-webhook", daemon=True)
        self._thread.start()

    def submit(self, text: str) -> None:
        try:
            self._queue.put_nowait(text)
        except queue.Full:
            self.failed += 1
            log.error("webhook queue full; dropped notification: %s", text)

    def close(self, grace: float = 2.0) -> None:
        """Send what is queued for up to ``grace`` seconds, then give up on the rest."""
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=grace)
        self._thread.join(grace)
        if self._thread.is_alive():
            self._abort.set()
            self._thread.join(self.timeout + 0.5)
            log.warning("webhook: gave up on unsent notifications at shutdown")

    def _run(self) -> None:
        while True:
            text = self._queue.get()
            if text is None:
                return
            if self._abort.is_set():
                self.failed += 1
                continue
            if self._deliver(orjson.dumps({"text": text})):
                self.sent += 1
            else:
                self.failed += 1

    def _deliver(self, body: bytes) -> bool:
        target = redacted_url(self.url)
        for attempt in range(1, self.attempts + 1):
            try:
                status = self._post(self.url, body, self.timeout)
            except (OSError, ValueError) as exc:  # URLError, timeouts, refused, bad URL
                problem = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            else:
                if 200 <= status < 300:
                    return True
                problem = f"HTTP {status}"
                if 400 <= status < 500 and status != 429:
                    log.error(
                        "webhook %s refused the notification (%s); not retried", target, problem
                    )
                    return False
            if attempt == self.attempts:
                log.error(
                    "webhook %s failed %d times (%s); notification dropped",
                    target,
                    attempt,
                    problem,
                )
                return False
            delay = self.backoff * 2 ** (attempt - 1)
            log.warning("webhook %s: %s; retry %d in %.1fs", target, problem, attempt, delay)
            if self._abort.wait(delay):
                return False
        return False
