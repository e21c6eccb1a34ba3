"""Configuration shared by every op: how long the per-device calls of one op wait for each
other (``jaxmg.set_timeout``)."""

from __future__ import annotations

import math
import numbers
import os

_DEFAULT_TIMEOUT_S = 300.0
_timeout_s: float | None = None


def set_timeout(seconds: float | None) -> None:
    """Sets how long the per-device calls of one op wait for each other before failing.

    ``None`` restores the default (the ``JAXMG_TIMEOUT`` environment variable if set, else 300
    seconds). The value is read when an op is traced, so it applies to ops traced afterwards.
    """
    global _timeout_s
    if seconds is not None and (
        isinstance(seconds, bool)
        or not isinstance(seconds, numbers.Real)
        or not 0 < seconds < math.inf
    ):
        raise ValueError(
            f"jaxmg.set_timeout: seconds must be a positive finite number, got {seconds!r}"
        )
    _timeout_s = None if seconds is None else float(seconds)


def get_timeout() -> float:
    """The current timeout in seconds (see ``set_timeout``)."""
    if _timeout_s is not None:
        return _timeout_s
    env = os.environ.get("JAXMG_TIMEOUT")
    if env:
        try:
            value = float(env)
            if 0 < value < math.inf:
                return value
        except ValueError:
            pass
    return _DEFAULT_TIMEOUT_S
