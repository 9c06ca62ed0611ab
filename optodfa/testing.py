"""The conformance kit as pytest tests, for a driver's own test suite.

One line in a driver's tests runs every check of :mod:`optodfa.conformance` as its own test (after
``pip install`` of the driver, so that its entry point registers it)::

    from optodfa.testing import parametrize_with_checks

    @parametrize_with_checks(["my-opu"])
    def test_optodfa_conformance(check):
        check()

Test ids are ``DEVICE-CHECK`` (``my-opu-binary_input``); a check that does not apply to the device is skipped with
its reason, a failing one fails with its message. Settings: ``parametrize_with_checks(["my-opu"],
profile="my-opu.toml", overrides={"camera.bits": 10})``. pytest is imported only when this module is.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pytest

from optodfa.conformance import CHECKS, NotApplicable, Subject, check_name

__all__ = ["parametrize_with_checks"]


def _run(check: Callable[[Subject], None], subject: Subject) -> None:
    try:
        check(subject)
    except NotApplicable as exc:
        pytest.skip(f"{subject.name}: {check_name(check)} does not apply: {exc}")


def parametrize_with_checks(names: Iterable[str], *, profile: str | None = None,
                            overrides: Mapping[str, Any] | None = None) -> Any:
    """A ``pytest.mark.parametrize`` over ``check`` (a no-argument callable) for every device and every check."""
    params = []
    for name in names:
        subject = Subject(name, profile, dict(overrides or {}))
        for check in CHECKS:
            params.append(pytest.param(functools.partial(_run, check, subject), id=f"{name}-{check_name(check)}"))
    return pytest.mark.parametrize("check", params)
