"""Every model feature, defined once: name, order, meaning, exact window edges and reason code.

The offline builder (``features/offline.py``, used by training) and the online store
(``features/store.py``, used by the engine) both compute exactly these, and a parity test
holds them to a direct per-call recomputation from the raw history.

Point-in-time rules (the second sentence of "correct" in the house style):

* A call ``c`` is scored from its own setup fields (``call_id``, ``operator``,
  ``start_time``, ``a_number``, ``b_number``, ``ingress``, ``a_imei``, ``a_cell_id``),
  the subscriber registry as it stands, and *earlier calls*.
* An earlier call is one whose ``start_time`` is strictly before ``c.start_time``.
  Calls with the same ``start_time`` do not see each other. The outcome fields of
  earlier calls (``answered``, ``duration_s``, ``ring_s``) are used; the outcome of ``c``
  itself never is.
* A window ``W`` is the half-open interval ``[t - W, t)`` of start times, ``t`` being
  ``c.start_time`` in epoch milliseconds; a call exactly ``W`` old is inside, a call at
  ``t`` is not.
* The same call (same ``operator`` + ``call_id``) counts once however often it is
  delivered; its first delivery is the record used.
* The registry "as it stands" is the subscriber table given; a repeated ``msisdn``
  keeps its last record (a later record replaces an earlier one).
* A missing ``duration_s`` of an earlier call reads as 0 s; ``answered`` counts only
  when it is ``true``.
* "History" beyond the windows (reciprocity, first contact) reaches back
  ``HISTORY_DAYS`` days; older calls are forgotten (the online store's TTL).

Missing values are NaN (LightGBM sends them down its learned default branch).
Categorical features carry small non-negative integer codes listed in ``CATEGORIES``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, Literal

from features.numbering import NumberClass

FEATURE_VERSION: Final = "fdef-1"

MINUTE_MS: Final = 60_000
HOUR_MS: Final = 60 * MINUTE_MS
DAY_MS: Final = 24 * HOUR_MS
HISTORY_DAYS: Final = 30
HISTORY_MS: Final = HISTORY_DAYS * DAY_MS

WINDOWS_MS: Final[dict[str, int]] = {"10m": 10 * MINUTE_MS, "1h": HOUR_MS, "24h": DAY_MS}

SHORT_CALL_S: Final = 10.0
"""A call is *short* when its ``duration_s`` is below this (an unanswered call has 0)."""

LOCAL_UTC_OFFSET_MS: Final = 5 * HOUR_MS
"""Asia/Almaty local time. Kazakhstan has used one zone, UTC+05:00, since 1 March 2024."""


class Biometric(enum.IntEnum):
    """Codes of ``biometric_status``; UNKNOWN means the registry does not hold the number."""

    UNKNOWN = 0
    VERIFIED = 1
    PENDING = 2
    FAILED = 3
    UNVERIFIED = 4


class Ingress(enum.IntEnum):
    """Codes of ``ingress``."""

    MOBILE = 0
    FIXED = 1
    INTERNATIONAL = 2
    VOIP = 3


Kind = Literal["numeric", "categorical", "binary"]


@dataclass(frozen=True, slots=True)
class Feature:
    """One model feature. ``reason`` is the code used when it pushes a score up."""

    name: str
    group: str
    kind: Kind
    meaning: str
    reason: str
    reason_text: str


def _velocity() -> list[Feature]:
    out: list[Feature] = []
    for w in WINDOWS_MS:
        out += [
            Feature(f"calls_{w}", "velocity", "numeric",
                    f"calls made by a_number with start_time in [t-{w}, t)",
                    f"HIGH_CALL_RATE_{w.upper()}", f"many calls in the last {w}"),
            Feature(f"distinct_callees_{w}", "velocity", "numeric",
                    f"distinct b_numbers called by a_number in [t-{w}, t)",
                    f"HIGH_DISTINCT_CALLEES_{w.upper()}", f"many different people called in the last {w}"),
        ]
    for w in ("1h", "24h"):
        out += [
            Feature(f"answered_share_{w}", "velocity", "numeric",
                    f"answered / calls over a_number's calls in [t-{w}, t); NaN when there are none",
                    f"ANSWER_PATTERN_{w.upper()}", f"unusual share of answered calls in the last {w}"),
            Feature(f"short_call_share_{w}", "velocity", "numeric",
                    f"share of a_number's calls in [t-{w}, t) with duration_s < {SHORT_CALL_S:g} s "
                    "(unanswered calls count as 0 s); NaN when there are none",
                    f"SHORT_CALLS_{w.upper()}", f"many very short or unanswered calls in the last {w}"),
            Feature(f"mean_answered_duration_{w}", "velocity", "numeric",
                    f"mean duration_s of a_number's answered calls in [t-{w}, t); NaN when none answered",
                    f"CALL_DURATION_{w.upper()}", f"unusual call durations in the last {w}"),
        ]
    return out


FEATURES: Final[tuple[Feature, ...]] = (
    # identity: the subscriber registry
    Feature("biometric_status", "identity", "categorical",
            "Biometric code of a_number in the registry; UNKNOWN (0) when not held",
            "UNVERIFIED_BIOMETRICS", "caller's SIM owner is not biometrically verified"),
    Feature("days_since_verified", "identity", "numeric",
            "(t - verified_at) in days; NaN when the registry holds no verified_at for a_number (or does not hold it)",
            "RECENTLY_VERIFIED", "biometric verification is very recent"),
    Feature("sim_age_days", "identity", "numeric",
            "(t - sim_activated_at) in days, may be negative for a record activated later; NaN when not held",
            "NEW_SIM", "the SIM card is new"),
    Feature("numbers_per_owner", "identity", "numeric",
            "registry numbers sharing a_number's owner_ref (itself included); NaN without owner_ref",
            "MANY_NUMBERS_PER_OWNER", "the owner holds many numbers"),
    Feature("in_registry", "identity", "binary",
            "1 when the registry holds a_number, else 0",
            "NOT_IN_REGISTRY", "caller is not in any operator registry"),
    Feature("is_corporate", "identity", "binary",
            "1 for subscriber_type corporate, 0 individual, NaN when not held",
            "CORPORATE_LINE", "corporate line"),
    Feature("roaming", "identity", "binary",
            "1 when the registry has a roaming_country for a_number, 0 when held and at home, NaN when not held",
            "ROAMING", "caller is registered abroad"),
    # origin: the call's own setup fields
    Feature("ingress", "origin", "categorical",
            "Ingress code of the call's trunk",
            "SUSPICIOUS_INGRESS", "call entered over an unusual trunk"),
    Feature("a_class", "origin", "categorical",
            "NumberClass code of a_number",
            "CALLER_NUMBER_CLASS", "caller's number range is unusual"),
    Feature("b_class", "origin", "categorical",
            "NumberClass code of b_number",
            "CALLEE_NUMBER_CLASS", "callee's number range"),
    Feature("domestic_cli_foreign_trunk", "origin", "binary",
            "1 when a_number is a Kazakh mobile and ingress is international or voip",
            "DOMESTIC_CLI_FOREIGN_TRUNK", "Kazakh mobile number arriving over an international/VoIP trunk"),
    Feature("has_device", "origin", "binary",
            "1 when a_imei is present (caller on the reporting operator's radio network)",
            "NO_DEVICE_INFO", "caller's device is unknown to the network"),
    *_velocity(),
    # reciprocity
    Feature("callee_called_caller_before", "reciprocity", "binary",
            f"1 when b_number called a_number in [t-{HISTORY_DAYS}d, t), else 0",
            "NO_PRIOR_CONTACT_FROM_CALLEE", "the callee has never called this number"),
    Feature("first_contact", "reciprocity", "binary",
            f"1 when a_number did not call b_number in [t-{HISTORY_DAYS}d, t), else 0",
            "FIRST_CONTACT", "first call from this number to the callee"),
    Feature("inbound_calls_24h", "reciprocity", "numeric",
            "calls received by a_number (as b_number) in [t-24h, t)",
            "NO_INBOUND_CALLS", "the number receives few calls"),
    Feature("inbound_outbound_ratio_24h", "reciprocity", "numeric",
            "inbound_calls_24h / (calls_24h + 1)",
            "OUTBOUND_ONLY", "the number only makes calls"),
    # device and mobility
    Feature("numbers_per_imei_24h", "device", "numeric",
            "distinct a_numbers seen on the call's a_imei in [t-24h, t), plus a_number itself if not among them; "
            "NaN without a_imei",
            "MANY_SIMS_PER_DEVICE", "several SIM cards used in one device"),
    Feature("imeis_per_number_24h", "device", "numeric",
            "distinct a_imei of a_number's calls in [t-24h, t), plus the call's a_imei if new; NaN without a_imei",
            "MANY_DEVICES_PER_NUMBER", "the number moves between devices"),
    Feature("distinct_cells_24h", "device", "numeric",
            "distinct a_cell_id of a_number's calls in [t-24h, t), plus the call's a_cell_id if new; "
            "NaN without a_cell_id",
            "STATIC_OR_MOVING_CELL", "unusual mobility pattern"),
    # time
    Feature("local_hour", "time", "numeric",
            "hour of start_time in Asia/Almaty (UTC+05:00), 0-23",
            "UNUSUAL_HOUR", "call at an unusual hour"),
    Feature("weekday", "time", "categorical",
            "weekday of start_time in Asia/Almaty, Monday = 0",
            "UNUSUAL_DAY", "call on an unusual day"),
)

FEATURE_NAMES: Final[tuple[str, ...]] = tuple(f.name for f in FEATURES)
INDEX: Final[dict[str, int]] = {name: i for i, name in enumerate(FEATURE_NAMES)}
CATEGORICAL: Final[tuple[str, ...]] = tuple(f.name for f in FEATURES if f.kind == "categorical")
CATEGORIES: Final[dict[str, type[enum.IntEnum] | range]] = {
    "biometric_status": Biometric,
    "ingress": Ingress,
    "a_class": NumberClass,
    "b_class": NumberClass,
    "weekday": range(7),
}
REASON_CODES: Final[dict[str, tuple[str, str]]] = {f.name: (f.reason, f.reason_text) for f in FEATURES}

_NOT_HELD = ("NOT_IN_REGISTRY", "caller is not in any operator registry")
MISSING_REASON_CODES: Final[dict[str, tuple[str, str]]] = {
    # A missing value says something other than the feature's usual reason: an unknown SIM age
    # is "not in the registry", not "new SIM". Used when the value is NaN.
    "days_since_verified": ("NOT_VERIFIED", "no biometric verification on record"),
    "sim_age_days": _NOT_HELD,
    "is_corporate": _NOT_HELD,
    "roaming": _NOT_HELD,
    "numbers_per_owner": ("NO_OWNER_REFERENCE", "no registered owner for the number"),
    "numbers_per_imei_24h": ("NO_DEVICE_INFO", "caller's device is unknown to the network"),
    "imeis_per_number_24h": ("NO_DEVICE_INFO", "caller's device is unknown to the network"),
    "distinct_cells_24h": ("NO_CELL_INFO", "caller's cell is unknown to the network"),
    **{
        f"{share}_{w}": (f"NO_RECENT_CALLS_{w.upper()}", f"no earlier calls from this number in the last {w}")
        for share in ("answered_share", "short_call_share")
        for w in ("1h", "24h")
    },
    **{
        f"mean_answered_duration_{w}": (f"NO_ANSWERED_CALLS_{w.upper()}", f"no answered calls in the last {w}")
        for w in ("1h", "24h")
    },
}

BIOMETRIC_CODES: Final[dict[str, Biometric]] = {
    "verified": Biometric.VERIFIED,
    "pending": Biometric.PENDING,
    "failed": Biometric.FAILED,
    "unverified": Biometric.UNVERIFIED,
}
INGRESS_CODES: Final[dict[str, Ingress]] = {
    "mobile": Ingress.MOBILE,
    "fixed": Ingress.FIXED,
    "international": Ingress.INTERNATIONAL,
    "voip": Ingress.VOIP,
}
