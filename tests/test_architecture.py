"""Dependencies point one way (STYLE.md): these tests keep the folder names honest."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted(p for d in ("bot", "dashboard") for p in (ROOT / d).rglob("*.py"))

VIEWS = sorted((ROOT / "dashboard" / "views").glob("*.py"))  # the dashboard's pages

# third-party package -> the only modules allowed to import it
CONFINED = {
    "binance": {  # parsing.py stays pure: no SDK
        "bot/exchange/binance/adapter.py",
        "bot/exchange/binance/errors.py",
        "bot/exchange/binance/streams.py",
        "bot/market/binance.py",
    },
    "streamlit": {"dashboard/app.py"} | {f"dashboard/views/{p.name}" for p in VIEWS},
    "plotly": {"dashboard/charts.py"},
    "watchdog": {"dashboard/ingest.py"},
    "prometheus_client": {"dashboard/exporter.py"},
    "boto3": {"bot/audit/archive.py"},
    "botocore": {"bot/audit/archive.py"},
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_there_is_source_to_check() -> None:
    assert any(rel(p).startswith("bot/audit/") for p in SOURCES)


@pytest.mark.parametrize("package", sorted(CONFINED))
def test_third_party_packages_stay_in_their_module(package: str) -> None:
    offenders = [
        rel(p)
        for p in SOURCES
        if rel(p) not in CONFINED[package]
        and any(m == package or m.startswith(package + ".") for m in imported_modules(p))
    ]
    assert offenders == [], f"{package} imported outside {sorted(CONFINED[package])}"


def test_audit_package_imports_nothing_else_of_the_bot() -> None:
    offenders = [
        rel(p)
        for p in SOURCES
        if rel(p).startswith("bot/audit/")
        for m in imported_modules(p)
        if ((m == "bot" or m.startswith("bot.")) and not m.startswith("bot.audit"))
        or m.startswith("dashboard")
    ]
    assert offenders == []


# The circuit breakers (SPEC §11) talk to the bot over its control channel's protocol module;
# alert rules write durations as the bot's settings do.
DASHBOARD_MAY_IMPORT = {"bot.control.protocol", "bot.durations"}


def test_dashboard_reads_the_bot_only_through_the_audit_package() -> None:
    offenders = [
        (rel(p), m)
        for p in SOURCES
        if rel(p).startswith("dashboard/")
        for m in imported_modules(p)
        if (m == "bot" or m.startswith("bot."))
        and not m.startswith("bot.audit")
        and m not in DASHBOARD_MAY_IMPORT
        and not any(
            m == pkg and names <= {mod.rpartition(".")[2] for mod in DASHBOARD_MAY_IMPORT}
            for pkg, names in imported_names(p)
        )
    ]
    assert offenders == []


def imported_names(path: Path) -> list[tuple[str, set[str]]]:
    """(module, names) of every ``from module import names``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        (node.module, {alias.name for alias in node.names})
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
    ]


def test_what_the_dashboard_may_import_needs_nothing_but_the_standard_library() -> None:
    for module in DASHBOARD_MAY_IMPORT:
        modules = imported_modules(ROOT / (module.replace(".", "/") + ".py"))
        assert not [m for m in modules if m == "bot" or m.startswith(("bot.", "dashboard"))]
