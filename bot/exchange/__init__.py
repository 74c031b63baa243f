"""Futures venues behind one port (``base.Exchange``): ``paper`` in-process, ``binance`` real.

Import the implementation you need from its module; this package imports
nothing so that paper mode never loads python-binance.
"""
