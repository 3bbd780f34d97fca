"""Phone numbers: one strict canonicaliser and one classification, used everywhere.

The edge accepts only ASCII E.164 (``+`` then 7-15 digits, no leading zero) or, where a
contract allows it, a national short code of 2-6 digits. Nothing is silently repaired:
national ``8 7xx`` forms are rejected unless the caller asks for :func:`normalise_national`.

Classification follows the Kazakh numbering plan. Country code +7 is shared with Russia,
so a ``+7`` number is Kazakh or Russian by its three-digit range (+7 6xx and +7 7xx are
Kazakh; everything else under +7 is Russian).
"""

from __future__ import annotations

import enum
import re

from features.errors import NumberFormatError

E164_BODY = r"\+[1-9][0-9]{6,14}"
SHORT_CODE_BODY = r"[0-9]{2,6}"


def anchored(body: str) -> str:
    """A pattern matching exactly ``body``, valid both in Python ``re`` and in JSON Schema (ECMA-262).

    Python's ``$`` also matches before a trailing newline (so ``re.search("^1$", "1\\n")``
    succeeds, and msgspec checks patterns with ``re.search``); ``(?!\\n)`` closes that gap
    without ``\\Z``, which ECMA-262 lacks.

    >>> import re
    >>> bool(re.search(anchored("[0-9]+"), "12")), bool(re.search(anchored("[0-9]+"), "12\\n"))
    (True, False)
    """
    return f"^(?:{body})$(?!\\n)"


E164_PATTERN = anchored(E164_BODY)
SHORT_CODE_PATTERN = anchored(SHORT_CODE_BODY)
_E164 = re.compile(E164_PATTERN)
_SHORT = re.compile(SHORT_CODE_PATTERN)

EMERGENCY_CODES = frozenset({"101", "102", "103", "104", "112"})

# Three-digit codes after +7. Kazakh mobile: 70x, 77x and 747 (Tele2/Altel); Kazakh
# geographic fixed: 71x and 72x; the rest of 6xx/7xx is Kazakh non-geographic.
_KZ_MOBILE_PREFIXES = ("70", "77")
_KZ_MOBILE_EXTRA = frozenset({"747"})


class NumberClass(enum.IntEnum):
    """What a number is. The integer values are model feature codes: never renumber."""

    INVALID = 0
    KZ_MOBILE = 1
    KZ_FIXED = 2
    KZ_NONGEO = 3
    RU = 4
    SHORT_CODE = 5
    EMERGENCY = 6
    OTHER_COUNTRY = 7


def is_e164(value: str) -> bool:
    """True for strict ASCII E.164.

    >>> is_e164("+77011234567"), is_e164("87011234567"), is_e164("+7701١234567")
    (True, False, False)
    """
    return _E164.fullmatch(value) is not None


def canonical(value: object, *, allow_short_code: bool = False) -> str:
    """Return ``value`` unchanged if it is a strict number, else raise NumberFormatError.

    >>> canonical("+77011234567")
    '+77011234567'
    >>> canonical("112", allow_short_code=True)
    '112'
    """
    if not isinstance(value, str):
        raise NumberFormatError(f"expected a string, got {type(value).__name__}")
    if _E164.fullmatch(value) or (allow_short_code and _SHORT.fullmatch(value)):
        return value
    raise NumberFormatError(
        f"{mask(value)} is not E.164: expected '+' then 7-15 ASCII digits "
        "(for example +77011234567)"
        + (", or a 2-6 digit short code" if allow_short_code else "")
        + "; national forms such as 8 701 ... must be converted by the sender"
    )


def normalise_national(value: str) -> str:
    """Documented normalisation of Kazakh national forms (``8XXXXXXXXXX``) to E.164.

    Opt-in only (for operators whose switches report national format); strict
    :func:`canonical` still runs on the result.

    >>> normalise_national("87011234567")
    '+77011234567'
    """
    if len(value) == 11 and value.startswith("8") and value.isascii() and value.isdigit():
        return canonical("+7" + value[1:])
    return canonical(value)


def classify(value: str) -> NumberClass:
    """Classify a number; anything that is neither E.164 nor a short code is INVALID.

    >>> [classify(n).name for n in ("+77011234567", "+77272501234", "+79161234567", "112")]
    ['KZ_MOBILE', 'KZ_FIXED', 'RU', 'EMERGENCY']
    """
    if _SHORT.fullmatch(value):
        return NumberClass.EMERGENCY if value in EMERGENCY_CODES else NumberClass.SHORT_CODE
    if not _E164.fullmatch(value):
        return NumberClass.INVALID
    if not value.startswith("+7"):
        return NumberClass.OTHER_COUNTRY
    if len(value) != 12:  # +7 and a ten-digit national significant number
        return NumberClass.INVALID
    abc = value[2:5]
    if abc[0] in "67":
        if abc[:2] in _KZ_MOBILE_PREFIXES or abc in _KZ_MOBILE_EXTRA:
            return NumberClass.KZ_MOBILE
        if abc[:2] in ("71", "72"):
            return NumberClass.KZ_FIXED
        return NumberClass.KZ_NONGEO
    return NumberClass.RU


def mask(value: object) -> str:
    """A shape-preserving mask for error messages: keeps the first 4 and last 2 characters.

    Error messages go back to the sender, who knows the number; logs must use
    ``features.pseudonym`` instead.

    >>> mask("+77011234567")
    "'+770******67'"
    """
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= 6:
        return repr("*" * len(text))
    return repr(text[:4] + "*" * (len(text) - 6) + text[-2:])
