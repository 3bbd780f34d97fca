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
_KZ_MOBILE: Final = int(NumberClass.KZ_MOBILE)
_ORIGIN: Final = [INDEX["ingress"], INDEX["a_class"], INDEX["b_class"], INDEX["has_device"]]
_COPIED: Final = (
    "calls_10m", "calls_1h", "calls_24h", "distinct_callees_10m", "distinct_callees_1h", "distinct_callees_24h",
    "callee_called_caller_before", "inbound_calls_24h",
    "numbers_per_imei_24h", "imeis_per_number_24h", "distinct_cells_24h",
)
_COPY_TO: Final = [INDEX[name] for name in _COPIED]
_COPY_FROM: Final = [R[name] for name in _COPIED]
_RATIOS: Final = [  # feature = numerator / denominator, NaN when the denominator is 0
    (f"{feature}_{w}", f"{num}_{w}", f"{den}_{w}")
    for w in ("1h", "24h")
    for feature, num, den in (
        ("answered_share", "answered", "calls"),
        ("short_call_share", "short", "calls"),
        ("mean_answered_duration", "answered_duration", "answered"),
    )
]
_RATIO_TO: Final = [INDEX[f] for f, _, _ in _RATIOS]
_RATIO_NUM: Final = [R[n] for _, n, _ in _RATIOS]
_RATIO_DEN: Final = [R[d] for _, _, d in _RATIOS]


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

    # Few, wide numpy operations: per call the fixed cost of each operation dominates (the API
    # assembles one call at a time), so columns are copied and divided in groups.
    origin = np.array(
        [(INGRESS_CODES[c.ingress], _classify(c.a_number), _classify(c.b_number), c.a_imei is not None)
         for c in cdrs], np.float64,
    ).reshape(n, 4)
    x[:, _ORIGIN] = origin
    ingress, a_class = origin[:, 0], origin[:, 1]
    x[:, INDEX["domestic_cli_foreign_trunk"]] = (a_class == _KZ_MOBILE) & (
        (ingress == _FOREIGN[0]) | (ingress == _FOREIGN[1])
    )
    x[:, _COPY_TO] = raw[:, _COPY_FROM]
    # shares and means: NaN where the denominator is 0 (no calls, no answered calls)
    ratio = np.full((n, len(_RATIO_TO)), np.nan)
    den = raw[:, _RATIO_DEN]
    np.divide(raw[:, _RATIO_NUM], den, out=ratio, where=den > 0)
    x[:, _RATIO_TO] = ratio
    x[:, INDEX["first_contact"]] = 1.0 - raw[:, R["caller_called_callee_before"]]
    x[:, INDEX["inbound_outbound_ratio_24h"]] = raw[:, R["inbound_calls_24h"]] / (raw[:, R["calls_24h"]] + 1.0)
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
