"""Binance USD-M futures trading bot whose every decision is audited."""
