"""Turning per-call state aggregates into feature rows, shared by both store implementations.

A store reads, for each call, the raw aggregates listed in ``RAW`` (window counts and sums,
relation flags, distinct counts) and the caller's registry record; the arithmetic that
turns them into the 33 features of ``features.definitions`` lives here once, vectorised,
so that the in-memory reference and the Redis store cannot drift apart.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Final

import numpy as np

from features.contracts import Cdr
from features.definitions import (
    DAY_MS,
    FEATURE_NAMES,
    HOUR_MS,
    INDEX,
    INGRESS_CODES,
    LOCAL_UTC_OFFSET_MS,
    Ingress,
)
from features.numbering import NumberClass, classify
from features.registry_codec import epoch_ms, unpack

RAW: Final[tuple[str, ...]] = (
    "calls_10m", "calls_1h", "calls_24h",
    "distinct_callees_10m", "distinct_callees_1h", "distinct_callees_24h",
    "answered_1h", "short_1h", "answered_duration_1h",
    "answered_24h", "short_24h", "answered_duration_24h",
    "callee_called_caller_before", "caller_called_callee_before", "inbound_calls_24h",
    "numbers_per_imei_24h", "imeis_per_number_24h", "distinct_cells_24h",
)
"""Raw aggregates per call, in this column order. The last three already include the
call's own IMEI/number/cell and are NaN when the call lacks the field."""
R: Final[dict[str, int]] = {name: i for i, name in enumerate(RAW)}

# Numbers repeat from call to call (callers, popular callees); classification is a few regexes.
_classify: Final = functools.lru_cache(maxsize=1 << 16)(classify)
_EPOCH_THURSDAY: Final = 3  # 1970-01-01 was a Thursday (Monday = 0)
_FOREIGN: Final = (int(Ingress.INTERNATIONAL), int(Ingress.VOIP))


def start_ms(cdrs: Sequence[Cdr]) -> np.ndarray:
    return np.fromiter((epoch_ms(c.start_time) for c in cdrs), np.int64, len(cdrs))


def assemble(
    cdrs: Sequence[Cdr],
    t: np.ndarray,
    raw: np.ndarray,
    registry: Sequence[bytes | None],
    owners: Sequence[int],
) -> np.ndarray:
    """The feature matrix of ``cdrs`` (input order) from start times, raw aggregates,
    packed registry records (None when not held) and owner counts (0 when no owner)."""
    n = len(cdrs)
    x = np.full((n, len(FEATURE_NAMES)), np.nan)
    _identity(x, t, registry, owners)

    ingress = np.fromiter((INGRESS_CODES[c.ingress] for c in cdrs), np.float64, n)
    a_class = np.fromiter((_classify(c.a_number) for c in cdrs), np.float64, n)
    x[:, INDEX["ingress"]] = ingress
    x[:, INDEX["a_class"]] = a_class
    x[:, INDEX["b_class"]] = np.fromiter((_classify(c.b_number) for c in cdrs), np.float64, n)
    x[:, INDEX["domestic_cli_foreign_trunk"]] = (a_class == NumberClass.KZ_MOBILE) & np.isin(ingress, _FOREIGN)
    x[:, INDEX["has_device"]] = np.fromiter((c.a_imei is not None for c in cdrs), np.float64, n)

    for w in ("10m", "1h", "24h"):
        x[:, INDEX[f"calls_{w}"]] = raw[:, R[f"calls_{w}"]]
        x[:, INDEX[f"distinct_callees_{w}"]] = raw[:, R[f"distinct_callees_{w}"]]
    with np.errstate(invalid="ignore", divide="ignore"):
        for w in ("1h", "24h"):
            calls = raw[:, R[f"calls_{w}"]]
            answered = raw[:, R[f"answered_{w}"]]
            x[:, INDEX[f"answered_share_{w}"]] = np.where(calls > 0, answered / calls, np.nan)
            x[:, INDEX[f"short_call_share_{w}"]] = np.where(calls > 0, raw[:, R[f"short_{w}"]] / calls, np.nan)
            x[:, INDEX[f"mean_answered_duration_{w}"]] = np.where(
                answered > 0, raw[:, R[f"answered_duration_{w}"]] / answered, np.nan
            )
    x[:, INDEX["callee_called_caller_before"]] = raw[:, R["callee_called_caller_before"]]
    x[:, INDEX["first_contact"]] = 1.0 - raw[:, R["caller_called_callee_before"]]
    inbound = raw[:, R["inbound_calls_24h"]]
    x[:, INDEX["inbound_calls_24h"]] = inbound
    x[:, INDEX["inbound_outbound_ratio_24h"]] = inbound / (raw[:, R["calls_24h"]] + 1.0)
    for name in ("numbers_per_imei_24h", "imeis_per_number_24h", "distinct_cells_24h"):
        x[:, INDEX[name]] = raw[:, R[name]]

    local = t + LOCAL_UTC_OFFSET_MS
    x[:, INDEX["local_hour"]] = (local // HOUR_MS) % 24
    x[:, INDEX["weekday"]] = (local // DAY_MS + _EPOCH_THURSDAY) % 7
    return x


def _identity(x: np.ndarray, t: np.ndarray, registry: Sequence[bytes | None], owners: Sequence[int]) -> None:
    x[:, INDEX["biometric_status"]] = 0.0
    x[:, INDEX["in_registry"]] = 0.0
    for i, packed in enumerate(registry):
        if packed is None:
            continue
        u = unpack(packed)
        row = x[i]
        ti = int(t[i])
        row[INDEX["in_registry"]] = 1.0
        row[INDEX["biometric_status"]] = u.biometric
        if u.verified_ms is not None:
            row[INDEX["days_since_verified"]] = (ti - u.verified_ms) / DAY_MS
        row[INDEX["sim_age_days"]] = (ti - u.sim_activated_ms) / DAY_MS
        if u.owner is not None:
            row[INDEX["numbers_per_owner"]] = owners[i]
        row[INDEX["is_corporate"]] = float(u.corporate)
        row[INDEX["roaming"]] = float(u.roaming_country is not None)
