"""The Binance integration fixtures (fake venue, real adapter, trail), as tests/integration has them."""

from tests.integration.conftest import audit, audit_dir, exchange, fake  # noqa: F401 - fixtures
