"""A fake Binance USD-M futures venue (REST + websockets) for integration tests.

``FakeBinance`` serves the endpoints python-binance's ``Client`` and socket
managers call, checks keys, signatures and recvWindow like Binance, keeps an
order book tests can assert on, and takes queued faults (``Fault``) per
endpoint. See ``server.py`` for the controls and ``faults.py`` for the fault API.
"""

from tests.fakebinance.auth import API_KEY, API_SECRET
from tests.fakebinance.faults import Fault
from tests.fakebinance.params import VenueError
from tests.fakebinance.rest import RequestRecord
from tests.fakebinance.server import FakeBinance, running_fake
from tests.fakebinance.symbols import DEFAULT_SYMBOLS, SymbolSpec

__all__ = [
    "API_KEY",
    "API_SECRET",
    "DEFAULT_SYMBOLS",
    "FakeBinance",
    "Fault",
    "RequestRecord",
    "SymbolSpec",
    "VenueError",
    "running_fake",
]
