"""Typed exceptions that users see. Every message says what was wrong and what to do."""


class DarkValleyError(Exception):
    """Base class of every error darkvalley raises on purpose."""


class UnknownBenchmarkError(DarkValleyError, KeyError):
    """A benchmark name that is not one of ID-1 ... ID-50, DD-1 ... DD-50."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else "unknown benchmark"


class ConfigError(DarkValleyError, ValueError):
    """Impossible or inconsistent settings (zero events, negative seed, unknown option...)."""


class StorageError(DarkValleyError, OSError):
    """A file that cannot be written (unwritable folder, full disk)."""


class InvalidFileError(DarkValleyError, ValueError):
    """A file that is not a valid darkvalley file: foreign, truncated or of the wrong schema."""


class InsufficientEventsError(DarkValleyError, ValueError):
    """The generated pools hold fewer events than a request needs."""


class JobError(DarkValleyError, RuntimeError):
    """A background job that cannot be found, started or cancelled."""
