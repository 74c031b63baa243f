"""The Binance integration fixtures (fake venue, real adapter, trail) of tests/integration."""

from tests.integration.conftest import audit, audit_dir, exchange, fake  # noqa: F401 - fixtures
