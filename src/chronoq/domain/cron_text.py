"""The text of cron expressions: the descriptors, the six fields, how an expression is
normalised for cronsim (with robfig's meaning kept), and error messages that name the
problem. ``schedules`` parses with these; the search for fires is there."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Final

from cronsim import CronSimError

from chronoq.domain.durations import parse_go_duration
from chronoq.errors import ScheduleError, ValidationError

MIN_EVERY: Final = timedelta(seconds=1)
FIELD = "cron_schedule"

DESCRIPTORS: Final[dict[str, str]] = {
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}

# (name, lowest, highest, symbolic names) per field of the 6-field form.
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_FIELDS: Final = (
    ("second", 0, 59, ()),
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day-of-month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 7, _DAYS),
)
_MONTH_NAME = re.compile(r"\b(?:" + "|".join(_MONTHS) + r")\b")
_DAY_NAME = re.compile(r"\b(?:" + "|".join(_DAYS) + r")\b")


def every_interval(text: str, duration: str) -> timedelta:
    if not duration.strip():
        raise ScheduleError(
            f"invalid {FIELD} {text!r}: @every needs a duration such as '@every 5m'",
            field=FIELD,
        )
    try:
        interval = parse_go_duration(duration)
    except ValidationError as exc:
        raise ScheduleError(f"invalid {FIELD} {text!r}: {exc.message}", field=FIELD) from None
    if interval < MIN_EVERY:
        raise ScheduleError(
            f"invalid {FIELD} {text!r}: @every interval must be at least 1s", field=FIELD
        )
    return interval


def normalise_cron(text: str) -> list[str]:
    """The six fields (seconds first) of a 5- or 6-field expression, upper case, ``?`` as ``*``."""
    parts = text.upper().replace("?", "*").split()
    if len(parts) == 5:
        parts.insert(0, "0")
    elif len(parts) != 6:
        raise ScheduleError(
            f"invalid {FIELD} {text!r}: expected 5 fields (minute hour day-of-month month "
            f"day-of-week) or 6 with seconds first, got {len(parts)}",
            field=FIELD,
        )
    return parts


def cronsim_spec(parts: list[str]) -> str:
    """What cronsim must be given to mean what robfig means by ``parts``.

    cronsim reads any single-value term with a step (``5-5/2``, ``SAT-6/1``) as "from
    that value to the field's end", and a day-of-week ``a/n`` runs on to 7 (Sunday again).
    Names become numbers so those cases can be seen, then the steps are rewritten.
    """
    fixed = list(parts)
    fixed[4] = _MONTH_NAME.sub(lambda m: str(_MONTHS.index(m[0]) + 1), fixed[4])
    fixed[5] = _DAY_NAME.sub(lambda m: str(_DAYS.index(m[0])), fixed[5])
    for index, part in enumerate(fixed):
        terms = (_fix_step(term, dow=index == 5) for term in part.split(","))
        fixed[index] = ",".join(terms)
    return " ".join(fixed)


def _fix_step(term: str, *, dow: bool) -> str:
    base, slash, step = term.partition("/")
    if not slash:
        return term
    if dow and base.isdigit() and int(base) <= 6:
        base = f"{base}-6"
    low, dash, high = base.partition("-")
    if dash and low.isdigit() and high.isdigit() and int(low) == int(high):
        return low
    return f"{base}/{step}"


def explain_cron_error(text: str, parts: list[str], exc: CronSimError) -> str:
    """Turn cronsim's terse "Bad minute" into a message that names the problem."""
    prefix = f"invalid {FIELD} {text!r}: "
    for (name, low, high, names), value in zip(_FIELDS, parts, strict=True):
        if str(exc) == f"Bad {name}":
            return prefix + _diagnose_field(name, low, high, names, value)
    return prefix + str(exc)


def _diagnose_field(name: str, low: int, high: int, names: tuple[str, ...], value: str) -> str:
    for term in value.split(","):
        base, slash, step = term.partition("/")
        if not term:
            return f"empty item in {name} field {value!r}"
        if slash and (not step.isdigit() or int(step) == 0):
            return f"step {step!r} in {name} field must be a positive integer"
        numbers = []
        for token in base.split("-", 1):
            if name == "day-of-week":
                token = token.split("#", 1)[0].removesuffix("L")
            if token == "*" or (name == "day-of-month" and token in ("L", "LW")):
                continue
            number = names.index(token) + (name == "month") if token in names else None
            if number is None and not token.isdigit():
                return f"unrecognised value {token!r} in {name} field {value!r}"
            number = int(token) if number is None else number
            if not low <= number <= high:
                return f"{name} value {number} out of range {low}-{high}"
            numbers.append(number)
        if len(numbers) == 2 and numbers[0] > numbers[1]:
            return f"range {base} in {name} field is reversed (start after end)"
    if name == "day-of-month":
        return f"day-of-month {value!r} never occurs in the chosen months"
    return f"invalid {name} field {value!r}"
