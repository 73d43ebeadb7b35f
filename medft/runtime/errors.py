"""Errors a user can act on.

Anything raised as a ``MedftError`` is printed by the entrypoints as one line
(``medft: error: ...``) without a traceback: the message must name the config key
or file at fault and say how to fix it.
"""


class MedftError(Exception):
    """Base class for errors that are the user's to fix (config, data, environment)."""


class ConfigError(MedftError):
    """A config value is invalid or cannot work on this machine."""


class DataError(MedftError):
    """Input data is missing or malformed."""
