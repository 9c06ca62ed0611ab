"""Checks of user input at the public boundary.

Every check names the parameter, the rule and the value that came, so that a sweep that passes a numpy scalar or a
typo gets a message it can act on. Integers and reals are accepted through ``numbers.Integral``/``numbers.Real``
and returned as Python ``int``/``float``.

Two checks concern the machine rather than the value: :func:`check_memory` compares an estimate of what a
user-sized allocation needs with the memory this machine has available (:class:`ResourceError`), and
:func:`check_torch_device` finds out whether a torch device string names a device that exists here
(:class:`TorchDeviceError`). Both run before anything is allocated or written.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


class OptodfaWarning(UserWarning):
    """Input that is legal but probably not what was meant."""


class ResourceError(ValueError):
    """A request whose estimated memory exceeds what this machine has available (the message gives both)."""


class TorchDeviceError(ValueError):
    """A torch device string that is malformed, or names a device this torch build or machine does not have."""


def check_int(name: str, value: Any, *, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` as ``int`` if it is an integer in ``[low, high]`` (bounds optional, inclusive)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer{_range_text(low, high)}, got {value!r} ({type(value).__name__})")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be an integer{_range_text(low, high)}, got {value}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` as ``bool`` if it is ``True``/``False`` (numpy booleans included)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return bool(value)


def check_real(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as ``float`` if it is a finite real in the given interval (closed unless ``*_open``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number{_interval_text(low, high, low_open, high_open)}, "
                        f"got {value!r} ({type(value).__name__})")
    value = float(value)
    bad = value != value or value in (float("inf"), float("-inf"))
    if low is not None:
        bad |= value <= low if low_open else value < low
    if high is not None:
        bad |= value >= high if high_open else value > high
    if bad:
        raise ValueError(f"{name} must be a finite real number{_interval_text(low, high, low_open, high_open)}, "
                         f"got {value}")
    return value


def check_choice(name: str, value: Any, choices: Iterable[T]) -> T:
    """Return ``value`` if it is one of ``choices``; otherwise list them."""
    options = list(choices)
    if value not in options:
        listed = ", ".join(repr(c) for c in options)
        raise ValueError(f"{name} must be one of {listed}; got {value!r}")
    return value


def check_keys(name: str, mapping: Mapping[str, Any], allowed: Iterable[str]) -> None:
    """Raise if ``mapping`` holds a key outside ``allowed``, listing the allowed ones."""
    known = sorted(allowed)
    unknown = sorted(set(mapping) - set(known))
    if unknown:
        raise KeyError(f"unknown key(s) {', '.join(map(repr, unknown))} in {name}; allowed: {', '.join(known)}")


def _range_text(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f" in [{low}, {high}]"
    if low is not None:
        return f" >= {low}"
    if high is not None:
        return f" <= {high}"
    return ""


def _interval_text(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is None and high is None:
        return ""
    left = "(" if low_open or low is None else "["
    right = ")" if high_open or high is None else "]"
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    return f" in {left}{lo}, {hi}{right}"


# -- the machine -----------------------------------------------------------------------------------------------
MEMORY_LIMIT_ENV = "OPTODFA_MEMORY_LIMIT"


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation, or ``None`` where it cannot be found out.

    ``$OPTODFA_MEMORY_LIMIT`` (bytes, or with a suffix ``K``, ``M``, ``G``, ``T``: powers of 1024) caps it, e.g.
    to keep a shared machine's jobs small. Otherwise Linux's ``MemAvailable`` (free memory plus what the page
    cache would give back), else ``os.sysconf`` free pages.
    """
    limit = os.environ.get(MEMORY_LIMIT_ENV, "").strip()
    found: int | None = None
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    found = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        found = None
    if found is None:
        try:
            found = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, OSError, ValueError):
            found = None
    if limit:
        capped = _parse_bytes(MEMORY_LIMIT_ENV, limit)
        found = capped if found is None else min(found, capped)
    return found


def format_bytes(size: float) -> str:
    """``80e9`` -> ``"74.5 GiB"`` (powers of 1024, three significant figures)."""
    for unit, power in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 2**power:
            value = size / 2**power
            return f"{value:.3g} {unit}" if value < 1000 else f"{value:.0f} {unit}"
    return f"{int(size)} B"


def check_memory(what: str, needed: float, *, available: int | None = None) -> None:
    """Raise :class:`ResourceError` if ``needed`` bytes (an estimate for ``what``) exceed the available memory.

    ``what`` names the request in the user's terms (e.g. ``"calibration with probes = 1000000000"``); the message
    reads ``"<what> needs 74.5 GiB; this machine has 23 GiB available"``. Where the available memory cannot be
    found out, only requests beyond any machine (``inf``, NaN, over 2**60 bytes) are refused.
    """
    free = available_memory() if available is None else available
    impossible = not math.isfinite(needed) or needed > 2**60
    if impossible or (free is not None and needed > free):
        have = "an unknown amount" if free is None else format_bytes(free)
        shown = "more than any machine has" if impossible else format_bytes(needed)
        raise ResourceError(f"{what} needs {shown}; this machine has {have} available (a smaller setting, or "
                            f"${MEMORY_LIMIT_ENV} if the estimate is wrong for this machine)")


def check_torch_device(text: Any) -> Any:
    """Return ``torch.device(text)`` if that device exists here; otherwise say what is wrong in one line.

    Raises:
        TorchDeviceError: not a device string torch knows (e.g. ``"gpu"``), a CUDA device on a torch built without
            CUDA, CUDA built but not available (no driver or GPU), or an index beyond the devices present.
    """
    import torch

    if isinstance(text, torch.device):
        device = text
    else:
        if not isinstance(text, str) or not text.strip():
            raise TorchDeviceError(f"torch device must be a string such as 'cpu', 'cuda' or 'cuda:1', got {text!r}")
        try:
            device = torch.device(text.strip())
        except (RuntimeError, ValueError):
            raise TorchDeviceError(f"unknown torch device {text!r}; expected 'cpu', 'cuda', 'cuda:N' or 'mps'"
                                   ) from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.backends.cuda.is_built():
            raise TorchDeviceError(f"torch device {str(device)!r} needs CUDA, but this torch ({torch.__version__}) "
                                   f"was built without CUDA; use --torch-device cpu or install a CUDA build")
        if not torch.cuda.is_available():
            raise TorchDeviceError(f"torch device {str(device)!r}: CUDA is not available on this machine (no GPU "
                                   f"or no driver); use --torch-device cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise TorchDeviceError(f"torch device {str(device)!r} does not exist: this machine has {count} CUDA "
                                   f"device(s) (cuda:0 to cuda:{count - 1})")
        return device
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise TorchDeviceError(f"torch device {str(device)!r}: MPS is not available on this machine or build")
        return device
    raise TorchDeviceError(f"torch device {str(device)!r} is not supported; expected 'cpu', 'cuda', 'cuda:N' "
                           f"or 'mps'")


def _parse_bytes(name: str, text: str) -> int:
    factors = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    body = text.upper().removesuffix("IB").removesuffix("B")
    suffix = body[-1:] if body[-1:] in factors and body[-1:] else ""
    try:
        number = float(body[: len(body) - len(suffix)])
    except ValueError:
        raise ResourceError(f"{name} must be a number of bytes (suffix K, M, G or T allowed), got {text!r}"
                            ) from None
    if not math.isfinite(number) or number < 0:
        raise ResourceError(f"{name} must be a non-negative number of bytes, got {text!r}")
    return int(number * factors[suffix])
