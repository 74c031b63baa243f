"""Settings from defaults, a TOML file, the environment and the command line.

Precedence, lowest first: built-in defaults, ``--config FILE`` (TOML), environment
(``AUDIT_DIR``, ``BOT_ID``), command-line flags. Three parts, each with one job:

* ``keys``: the one table of keys (:data:`KEYS`): name, type, default, rule;
* ``settings``: the typed view code reads (``settings.risk.leverage``) and the secrets;
* ``loading``: parsing and merging the sources, checking every value and the
  combinations with clear errors (:class:`~bot.errors.ConfigError`); the only reader
  of ``os.environ`` in the bot.
"""

from bot.config.keys import KEYS, Key
from bot.config.loading import default_audit_dir, load_settings
from bot.config.settings import Secrets, Settings, key_paths

__all__ = [
    "KEYS",
    "Key",
    "Secrets",
    "Settings",
    "default_audit_dir",
    "key_paths",
    "load_settings",
]
