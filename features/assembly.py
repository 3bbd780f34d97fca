"""Turning per-call state aggregates into feature rows, shared by both store implementations.

A store reads, for each call, the raw aggregates listed in ``RAW`` (window counts and sums,
relation flags, distinct counts) and the caller's registry record; the arithmetic that
turns them into the 33 features of ``features.definitions`` lives once, in
``features._online.assemble_rows``, so that the in-memory reference and the Redis store
cannot drift apart.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Final

import numpy as np

from features._online import assemble_rows, origin_codes, start_times
from features.contracts import Cdr
from features.definitions import INGRESS_CODES
from features.numbering import classify
from features.registry_codec import epoch_ms

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
classify_cached: Final = functools.lru_cache(maxsize=1 << 16)(classify)


def start_ms(cdrs: Sequence[Cdr]) -> np.ndarray:
    """Epoch milliseconds of each call's ``start_time`` (``registry_codec.epoch_ms``, exact)."""
    return start_times(cdrs if type(cdrs) is list else list(cdrs), epoch_ms)[0]


def assemble(
    cdrs: Sequence[Cdr],
    t: np.ndarray,
    raw: np.ndarray,
    registry: Sequence[bytes | None],
    owners: Sequence[int],
) -> np.ndarray:
    """The feature matrix of ``cdrs`` (input order) from start times, raw aggregates,
    packed registry records (None when not held) and owner counts (0 when no owner).

    The arithmetic is ``features._online.assemble_rows`` (one C loop; numpy's fixed cost per
    operation dominated when the API assembled one call at a time), which the Redis store's
    kernel uses too:

    * registry: ``biometric_status`` (0 when not held), ``in_registry``, ``days_since_verified``
      and ``sim_age_days`` as ``(t - time) / DAY_MS``, ``numbers_per_owner`` (the owner count
      when the record has an owner), ``is_corporate``, ``roaming``; NaN when not held;
    * origin: ingress, a_class, b_class, has_device, and ``domestic_cli_foreign_trunk``;
    * copied raw counts; shares and means as numerator / denominator, NaN when it is 0;
      ``first_contact = 1 - caller_called_callee_before``;
      ``inbound_outbound_ratio_24h = inbound_calls_24h / (calls_24h + 1)``;
    * ``local_hour``, ``weekday`` of ``t + LOCAL_UTC_OFFSET_MS`` (floor division).
    """
    calls = cdrs if type(cdrs) is list else list(cdrs)
    return assemble_rows(
        np.ascontiguousarray(t, dtype=np.int64),
        np.ascontiguousarray(raw, dtype=np.float64).reshape(len(calls), len(RAW)),
        origin_codes(calls, INGRESS_CODES, classify_cached),
        list(registry),
        np.ascontiguousarray(owners, dtype=np.int64),
    )
