"""Expected failures of recrl.

Every error a user can cause (bad input files, bad options, unknown names, an unreachable
tracking server) is raised as a subclass of :class:`RecrlError`. The CLI catches this one type,
prints its message as a single line and exits with code 1; anything else is a bug and keeps its
traceback.
"""


class RecrlError(Exception):
    """Base class of every user-facing error; its message is shown as one line."""


class ConfigError(RecrlError):
    """A configuration key, value or file is invalid."""


class DataError(RecrlError):
    """Raw or prepared data are missing, malformed or inconsistent."""


class RegistryError(RecrlError):
    """An unknown algorithm, model or dataset name was requested."""


class TrackingError(RecrlError):
    """The experiment tracker (MLflow) cannot be reached or used."""
