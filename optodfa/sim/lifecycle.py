"""The lifecycle half of the OpticalDevice protocol for simulators: nothing to acquire or release."""

from __future__ import annotations

from typing import TypeVar

_D = TypeVar("_D", bound="NoHardware")


class NoHardware:
    """``open``/``close`` as no-ops and the context manager, so user code is the same for simulators and drivers."""

    acquire_timeout_s: float | None = None
    """No timeout (:mod:`optodfa.faults`): a computation in this process cannot hang on an instrument."""

    def open(self) -> None:
        """Nothing to acquire for a simulator."""

    def close(self) -> None:
        """Nothing to release for a simulator."""

    def __enter__(self: _D) -> _D:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
