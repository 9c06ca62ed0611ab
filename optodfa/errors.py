"""The errors a user of optodfa can meet, in one place, and what the command line makes of each.

Every error optodfa raises on purpose is one of these (or a plain ``ValueError``/``TypeError``/``KeyError`` from
a shared check in :mod:`optodfa.validation`); its message names what was expected and what came. The command line
prints any failure as one line, ``optodfa COMMAND: error: MESSAGE``, and exits with the code below; ``--debug``
adds the traceback.

Bad input (exit code 2):

* ``ValueError``, ``TypeError``, ``KeyError``: a setting out of range, of the wrong type, or an unknown name (the
  message lists the valid ones). Their named subclasses:

  - :class:`optodfa.profiles.ProfileError`: a device profile file or ``--set`` override off its schema.
  - :class:`optodfa.device.FeedbackError`: an error batch a projector cannot take (shape, dtype).
  - :class:`optodfa.calibration.CalibrationFileError`: a file that is not a readable calibration record.
  - :class:`optodfa.datasets.idx.DataFormatError`: a data file that does not match its format.
  - :class:`optodfa.validation.ResourceError`: a request whose estimated memory exceeds what this machine has
    ("needs 74.5 GiB; this machine has 23 GiB available"), refused before anything is allocated.
  - :class:`optodfa.validation.TorchDeviceError`: ``--torch-device`` malformed, or naming a device this torch
    build or machine lacks (CUDA not built, not available, index out of range), refused before anything runs.

* :class:`optodfa.runlog.RunFileError` (an ``OSError``): a run file that cannot be read (missing, not a run file,
  corrupt) or cannot be written at the path given.
* :class:`optodfa.datasets.locate.DatasetNotFoundError` (a ``FileNotFoundError``): a data set in none of the
  searched folders; the message says what to install or how to download it.
* ``FileNotFoundError``, ``PermissionError``, ``IsADirectoryError``, ``NotADirectoryError``: a path given by the user.
* Command-line usage (an unknown flag, a value argparse cannot convert): one line and exit code 2.

Failure at run time (exit code 1):

* An ``OSError`` from the system while running: disk full (``ENOSPC``), quota, an I/O error, including a
  :class:`~optodfa.runlog.RunFileError` caused by one.
* :class:`optodfa.datasets.download.DownloadError` (and its ``ChecksumError``): a download that failed or did not
  verify.
* :class:`optodfa.device.NonFiniteError`: training produced a NaN or inf error (``--on-nonfinite skip`` counts
  and skips such batches instead).
* ``MemoryError``: the machine ran out of memory despite the estimate.
* Anything else is a bug in optodfa: one line naming the exception, and a request to rerun with ``--debug``.

Interrupted (exit code 128 + signal number: 130 SIGINT, 143 SIGTERM, 129 SIGHUP):

* :class:`optodfa.interrupt.Interrupted` (a ``KeyboardInterrupt``): training stopped at a step boundary after
  writing a checkpoint, and the line says how to resume it; a second signal stops at once.
"""

from __future__ import annotations

import errno

__all__ = ["BAD_INPUT", "FAILURE", "USER_ERRORS", "exit_code", "one_line"]

BAD_INPUT = 2
FAILURE = 1

# What Python code calling optodfa's public functions may see for bad input (the fuzz tests hold every entry point
# to these). The named subclasses above all derive from one of them.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, KeyError, OSError)

_RUNTIME_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG, errno.ENOMEM}


def _system_cause(exc: BaseException) -> OSError | None:
    """The first ``OSError`` with an errno in the chain of ``exc`` (itself, then its causes)."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 10:
        if isinstance(current, OSError) and current.errno is not None:
            return current
        current, seen = current.__cause__ or current.__context__, seen + 1
    return None


def exit_code(exc: BaseException) -> int:
    """The command line's exit code for ``exc`` (see the module docstring)."""
    from optodfa.datasets.download import DownloadError
    from optodfa.device import NonFiniteError
    from optodfa.interrupt import Interrupted

    if isinstance(exc, Interrupted):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return 130
    if isinstance(exc, (NonFiniteError, MemoryError, DownloadError)):
        return FAILURE
    if isinstance(exc, OSError):
        cause = _system_cause(exc)
        if cause is not None and cause.errno in _RUNTIME_ERRNOS:
            return FAILURE
        return BAD_INPUT
    if isinstance(exc, (ValueError, TypeError, KeyError)):
        return BAD_INPUT
    return FAILURE


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (a disk-full cause named as such; unknown exceptions named by type)."""
    from optodfa.interrupt import Interrupted

    if isinstance(exc, Interrupted):
        text = exc.message()
    elif isinstance(exc, KeyError) and exc.args:
        text = str(exc.args[0])
    elif isinstance(exc, MemoryError):
        text = f"out of memory{': ' + str(exc) if str(exc) else ''} (try a smaller batch, network or device)"
    elif isinstance(exc, KeyboardInterrupt):
        text = "interrupted"
    else:
        text = str(exc) or type(exc).__name__
    cause = _system_cause(exc)
    if cause is not None and cause.errno in (errno.ENOSPC, errno.EDQUOT) and "space" not in text.lower():
        text += " (disk full: no space left on device)"
    if exit_code(exc) == FAILURE and not isinstance(exc, (OSError, ValueError, TypeError, KeyError, MemoryError)):
        text = f"internal error: {type(exc).__name__}: {text} (this is a bug; rerun with --debug for the traceback)"
    return " ".join(part.strip() for part in text.splitlines() if part.strip())
