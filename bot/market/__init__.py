"""Candle feeds behind one port (``base.MarketFeed``): ``sim``, ``replay``, ``binance``.

Import the feed you need from its module; this package imports nothing so
that the simulated and replayed markets never load python-binance.
"""
