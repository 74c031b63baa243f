"""Every test keeps the audit day index cache (bot.audit.dayindex) in its own temporary
directory, never in the user's ~/.cache, and never shares it with another test."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _private_index_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    directory = tmp_path_factory.mktemp("dayindex-cache")
    monkeypatch.setenv("AUDIT_CACHE_DIR", str(directory))
    return directory
