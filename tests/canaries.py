"""Canary phone numbers: seeded through code paths that log; no log file may contain them raw.

Each is a plausible subscriber number that appears nowhere else in the code base.
"""

CANARY_MOBILE = "+77019462713"  # Kazakh mobile, E.164
CANARY_RU = "+79167350218"  # Russian mobile, E.164
CANARY_NATIONAL = "87058130964"  # national 8-form: invalid at the edge, still personal data
CANARY_BARE = "77772468135"  # digits only, as a careless f-string would print them

CANARIES = (CANARY_MOBILE, CANARY_RU, CANARY_NATIONAL, CANARY_BARE)


def raw_forms(number: str) -> list[str]:
    """Forms in which a leaked canary would show up in a log file (with or without '+')."""
    digits = number.lstrip("+")
    return [number, digits, digits[1:]]
