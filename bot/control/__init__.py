"""Trading controls (SPEC §11): trading states, protections, pre-trade limits, the control channel.

``state`` (who may send which order), ``protections`` (pure rules over fills and
balances), ``guard`` (the risk stage's first checks), ``restore`` (the state read
back from the trail at startup), ``protocol`` / ``server`` / ``desk`` / ``cli``
(``python -m bot control ...`` and the bot's answers).
"""
