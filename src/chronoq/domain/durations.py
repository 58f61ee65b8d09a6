"""Go-style durations (``1h30m``, ``2s``, ``1.5s``, ``300ms``), as the seed's Go parsed them."""

from __future__ import annotations

import re
from datetime import timedelta

from chronoq.errors import ValidationError

_UNITS_US = {
    "ns": 0.001,
    "us": 1.0,
    "µs": 1.0,
    "μs": 1.0,
    "ms": 1_000.0,
    "s": 1_000_000.0,
    "m": 60_000_000.0,
    "h": 3_600_000_000.0,
}
# ASCII digits only, as Go's: \d would also take "٥" or "²".
_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration(text: str) -> timedelta:
    """Parse a non-negative Go duration string into a ``timedelta``.

    Raises ``ValidationError`` for anything Go's ``time.ParseDuration`` would
    reject, and for negative durations (a schedule or sleep cannot run backwards).
    """
    s = text.strip()
    if not s:
        raise ValidationError(f"invalid duration {text!r}: empty")
    if s == "0":
        return timedelta(0)
    if s[0] in "+-":
        if s[0] == "-":
            raise ValidationError(f"invalid duration {text!r}: must not be negative")
        s = s[1:]
        if not s:
            raise ValidationError(f"invalid duration {text!r}: a sign needs a number and a unit")
    pos = 0
    total_us = 0.0
    while pos < len(s):
        m = _PART.match(s, pos)
        if m is None:
            raise ValidationError(
                f"invalid duration {text!r}: expected a number and a unit (ns, us, ms, s, m, h)"
            )
        total_us += float(m.group(1)) * _UNITS_US[m.group(2)]
        pos = m.end()
    try:
        return timedelta(microseconds=round(total_us))
    except OverflowError:
        raise ValidationError(f"invalid duration {text!r}: too large") from None


def format_duration(d: timedelta) -> str:
    """Format a timedelta the short way Go prints it (``1h30m0s`` -> ``1h30m``), exactly."""
    total_us = (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds
    if total_us == 0:
        return "0s"
    hours, rest = divmod(total_us, 3_600_000_000)
    minutes, rest = divmod(rest, 60_000_000)
    seconds, micros = divmod(rest, 1_000_000)
    out = f"{hours}h" if hours else ""
    out += f"{minutes}m" if minutes else ""
    if micros:
        out += f"{seconds}.{micros:06d}".rstrip("0") + "s"
    elif seconds:
        out += f"{seconds}s"
    return out
