"""The feature oracle: a direct, per-call recomputation of every feature from the raw history.

Deliberately naive (quadratic, plain Python, one feature at a time, read straight off
the definitions' meaning text) so that it is obviously correct. The offline builder and
the online store are both held to it.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

import numpy as np

from features.contracts import Cdr, Subscriber
from features.definitions import (
    BIOMETRIC_CODES,
    DAY_MS,
    FEATURE_NAMES,
    HISTORY_MS,
    INGRESS_CODES,
    LOCAL_UTC_OFFSET_MS,
    SHORT_CALL_S,
    WINDOWS_MS,
    Biometric,
    Ingress,
)
from features.numbering import NumberClass, classify

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
NAN = math.nan


def epoch_ms(when: dt.datetime) -> int:
    """Epoch milliseconds, floored (sub-millisecond digits are dropped)."""
    return (when - _EPOCH) // dt.timedelta(milliseconds=1)


def oracle_features(cdrs: Sequence[Cdr], subscribers: Sequence[Subscriber]) -> np.ndarray:
    """Features of every CDR, rows aligned with ``cdrs``, columns in ``FEATURE_NAMES`` order."""
    canonical: dict[tuple[str, str], Cdr] = {}
    for c in cdrs:
        canonical.setdefault((c.operator, c.call_id), c)  # first delivery is the record
    calls = list(canonical.values())
    registry: dict[str, Subscriber] = {}
    for s in subscribers:
        registry[s.msisdn] = s  # a later record replaces an earlier one
    rows = {key: _features(c, calls, registry) for key, c in canonical.items()}
    out = np.full((len(cdrs), len(FEATURE_NAMES)), NAN)
    for i, c in enumerate(cdrs):
        row = rows[(c.operator, c.call_id)]
        out[i] = [row[name] for name in FEATURE_NAMES]
    return out


def oracle_row(index: int, cdrs: Sequence[Cdr], subscribers: Sequence[Subscriber]) -> np.ndarray:
    """Features of ``cdrs[index]`` alone (same rules as :func:`oracle_features`), for spot checks
    of single calls in long streams."""
    canonical: dict[tuple[str, str], Cdr] = {}
    for c in cdrs:
        canonical.setdefault((c.operator, c.call_id), c)
    registry: dict[str, Subscriber] = {}
    for s in subscribers:
        registry[s.msisdn] = s
    target = canonical[(cdrs[index].operator, cdrs[index].call_id)]
    row = _features(target, list(canonical.values()), registry)
    return np.array([row[name] for name in FEATURE_NAMES])


def _features(c: Cdr, calls: list[Cdr], registry: dict[str, Subscriber]) -> dict[str, float]:
    t = epoch_ms(c.start_time)
    f: dict[str, float] = {}

    def within(w: int) -> list[Cdr]:
        return [h for h in calls if t - w <= epoch_ms(h.start_time) < t]

    # identity
    sub = registry.get(c.a_number)
    f["in_registry"] = float(sub is not None)
    if sub is None:
        f["biometric_status"] = float(Biometric.UNKNOWN)
        for name in ("days_since_verified", "sim_age_days", "numbers_per_owner", "is_corporate", "roaming"):
            f[name] = NAN
    else:
        f["biometric_status"] = float(BIOMETRIC_CODES[sub.biometric_status])
        f["days_since_verified"] = (
            NAN if sub.verified_at is None else (t - epoch_ms(sub.verified_at)) / DAY_MS
        )
        f["sim_age_days"] = (t - epoch_ms(sub.sim_activated_at)) / DAY_MS
        f["numbers_per_owner"] = (
            NAN if sub.owner_ref is None
            else float(sum(1 for s in registry.values() if s.owner_ref == sub.owner_ref))
        )
        f["is_corporate"] = float(sub.subscriber_type == "corporate")
        f["roaming"] = float(sub.roaming_country is not None)

    # origin
    ingress = INGRESS_CODES[c.ingress]
    f["ingress"] = float(ingress)
    f["a_class"] = float(classify(c.a_number))
    f["b_class"] = float(classify(c.b_number))
    f["domestic_cli_foreign_trunk"] = float(
        classify(c.a_number) == NumberClass.KZ_MOBILE and ingress in (Ingress.INTERNATIONAL, Ingress.VOIP)
    )
    f["has_device"] = float(c.a_imei is not None)

    # velocity
    for w, width in WINDOWS_MS.items():
        mine = [h for h in within(width) if h.a_number == c.a_number]
        f[f"calls_{w}"] = float(len(mine))
        f[f"distinct_callees_{w}"] = float(len({h.b_number for h in mine}))
        if w in ("1h", "24h"):
            answered = [h for h in mine if h.answered is True]
            short = [h for h in mine if (h.duration_s or 0.0) < SHORT_CALL_S]
            f[f"answered_share_{w}"] = len(answered) / len(mine) if mine else NAN
            f[f"short_call_share_{w}"] = len(short) / len(mine) if mine else NAN
            f[f"mean_answered_duration_{w}"] = (
                sum(h.duration_s or 0.0 for h in answered) / len(answered) if answered else NAN
            )

    # reciprocity
    history = within(HISTORY_MS)
    f["callee_called_caller_before"] = float(
        any(h.a_number == c.b_number and h.b_number == c.a_number for h in history)
    )
    f["first_contact"] = float(
        not any(h.a_number == c.a_number and h.b_number == c.b_number for h in history)
    )
    day = within(DAY_MS)
    inbound = sum(1 for h in day if h.b_number == c.a_number)
    f["inbound_calls_24h"] = float(inbound)
    f["inbound_outbound_ratio_24h"] = inbound / (f["calls_24h"] + 1)

    # device and mobility
    if c.a_imei is None:
        f["numbers_per_imei_24h"] = NAN
        f["imeis_per_number_24h"] = NAN
    else:
        f["numbers_per_imei_24h"] = float(len({h.a_number for h in day if h.a_imei == c.a_imei} | {c.a_number}))
        f["imeis_per_number_24h"] = float(
            len({h.a_imei for h in day if h.a_number == c.a_number and h.a_imei is not None} | {c.a_imei})
        )
    if c.a_cell_id is None:
        f["distinct_cells_24h"] = NAN
    else:
        f["distinct_cells_24h"] = float(
            len({h.a_cell_id for h in day if h.a_number == c.a_number and h.a_cell_id is not None} | {c.a_cell_id})
        )

    # time
    local = c.start_time.astimezone(dt.timezone(dt.timedelta(milliseconds=LOCAL_UTC_OFFSET_MS)))
    f["local_hour"] = float(local.hour)
    f["weekday"] = float(local.weekday())
    return f
