"""Stop training cleanly on SIGINT, SIGTERM or SIGHUP.

Inside :class:`StopOnSignals` the first of these signals only sets a flag; the training loop looks at it at each
step boundary, writes a checkpoint and raises :class:`Interrupted`, which says where it stopped and how to go on.
A second signal does not wait: it raises :class:`Interrupted` (``immediate=True``) wherever the program is. That
is safe for the run file, which is only ever replaced by an atomic rename (:mod:`optodfa.atomic`): a flush cut
short leaves the previous file whole and its temporary file removed.

A signal is never swallowed: if one arrives after the loop last looked at the flag, leaving the block delivers
it again to the handler that was there before (Python's ``KeyboardInterrupt`` for SIGINT, the default action for
the others). Outside the main thread (a worker's thread pool) signals cannot be handled, and the block does
nothing.

:class:`Interrupted` subclasses ``KeyboardInterrupt``, so code that catches that still does, and
``except Exception`` (e.g. a handler that records a failed run) lets it through. Its ``exit_code`` is
``128 + signal number`` (130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP), as a shell reports a process killed by
that signal.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

__all__ = ["SIGNALS", "Interrupted", "StopOnSignals"]

SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class Interrupted(KeyboardInterrupt):
    """Training stopped by a signal.

    Attributes:
        signum: the signal number.
        step: the training step the checkpoint holds (``None`` when a second signal stopped at once).
        path: the run file (``None`` when not known where the signal landed).
        immediate: ``True`` when a second signal stopped the program without waiting for a step boundary.
    """

    def __init__(self, signum: int, step: int | None = None, path: Any = None, *, immediate: bool = False) -> None:
        self.signum, self.step, self.path, self.immediate = int(signum), step, path, immediate
        super().__init__(self.message())

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def signal_name(self) -> str:
        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"

    def message(self, path: Any = None) -> str:
        """One line: where training stopped and the command that continues it."""
        path = self.path if path is None else path
        resume = f"; continue with `optodfa train --resume {path}`" if path is not None else ""
        if self.immediate:
            return f"stopped at once by {self.signal_name}; the run file keeps its last checkpoint{resume}"
        return f"stopped at step {self.step} ({self.signal_name}){resume}"


class StopOnSignals:
    """Context manager: SIGINT, SIGTERM and SIGHUP set :attr:`requested` instead of stopping the program.

    Attributes:
        signum: the first signal received, or ``None``.
    """

    def __init__(self, signals: tuple[int, ...] = SIGNALS) -> None:
        self._signals = signals
        self._previous: dict[int, Any] = {}
        self._handled = False
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        """Whether a stop was asked for."""
        return self.signum is not None

    def interrupted(self, step: int, path: Any) -> Interrupted:
        """The exception to raise once the checkpoint for ``step`` is written (marks the signal as handled)."""
        assert self.signum is not None
        self._handled = True
        return Interrupted(self.signum, step, path)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
            return
        self._handled = True
        raise Interrupted(signum, immediate=True)

    def __enter__(self) -> StopOnSignals:
        if threading.current_thread() is threading.main_thread():
            for number in self._signals:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)
        self._previous.clear()
        if self.signum is not None and not self._handled and not isinstance(value, Interrupted):
            self._handled = True
            signal.raise_signal(self.signum)  # late signal: hand it to the previous handler
