"""User-facing errors: each one becomes a single clear line and a non-zero exit status."""


class Ai500Error(Exception):
    """A problem the user can fix (bad option, bad file); printed as one line, no traceback.

    `everywhere` is True when every rank raised the same error at the same point (after a
    collective agreement), so each can exit cleanly; otherwise the failing rank must end the job.
    """

    def __init__(self, message: str, everywhere: bool = False):
        super().__init__(message)
        self.everywhere = everywhere


class ConfigError(Ai500Error):
    """An option or combination of options that cannot be run."""


class DataError(Ai500Error):
    """A dataset file that is missing, truncated, wrongly shaped or holds non-finite values."""


class TrainingError(Ai500Error):
    """Training went wrong in a way the user must see (for example a non-finite loss)."""


# What h5py raises when it meets a damaged file: OSError for most damage, but KeyError,
# RuntimeError, ValueError or TypeError where a corrupt object header, link table, heap or
# datatype is read. Readers turn these into a DataError naming the file.
HDF5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's text (a KeyError's unquoted), or its type's name: what a
    one-line error message quotes of a library's error."""
    text = str(exc.args[0]) if exc.args else ""
    return text.splitlines()[0] if text else type(exc).__name__
