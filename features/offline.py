"""The offline feature builder: every feature of ``features.definitions`` for a whole CDR table at once.

Vectorised with numpy over integer codes; no interpreted loop runs per call. The trick that
makes every windowed count a binary search: each call gets a *composite key*
``group * SPAN + (time - BASE)``, so that sorting the keys orders calls by group and then
by time, and "calls of group g with time in [lo, hi)" is the difference of two
``searchsorted`` results. ``BASE`` lies ``HISTORY_MS`` before the first call, so a
window's lower edge never leaves its group's key range.

Distinct counts over a window (distinct callees, IMEIs and cells per number, numbers per
IMEI) and "was this value seen in the window" (first contact, own IMEI/cell already seen)
come from one compiled kernel, ``features/_window.pyx``: a two-pointer sweep over calls
sorted by (group, time) keeping a count per value, O(n) per window. The sort-and-search
form of the same counts took about 60 % of the build time.

Rows of the result are aligned with the input rows. A call delivered more than once
(same ``operator`` + ``call_id``) counts once in every history; its first delivery in
input order is the record used, and every delivery's row holds that record's features.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from features.contracts import Cdr, Subscriber, decode
from features.definitions import (
    BIOMETRIC_CODES,
    DAY_MS,
    FEATURE_NAMES,
    HISTORY_MS,
    HOUR_MS,
    INGRESS_CODES,
    LOCAL_UTC_OFFSET_MS,
    SHORT_CALL_S,
    WINDOWS_MS,
    Biometric,
    Ingress,
)
from features._window import distinct_in_window
from features.errors import FeatureTableError
from features.numbering import E164_BODY, EMERGENCY_CODES, SHORT_CODE_BODY, NumberClass

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]

_TS = pa.timestamp("ms", tz="UTC")
CDR_SCHEMA: Final = pa.schema([
    ("call_id", pa.string()),
    ("operator", pa.string()),
    ("start_time", _TS),
    ("a_number", pa.string()),
    ("b_number", pa.string()),
    ("ingress", pa.string()),
    ("a_imei", pa.string()),
    ("a_cell_id", pa.string()),
    ("answered", pa.bool_()),
    ("duration_s", pa.float64()),
    ("ring_s", pa.float64()),
])
SUBSCRIBER_SCHEMA: Final = pa.schema([
    ("msisdn", pa.string()),
    ("operator", pa.string()),
    ("biometric_status", pa.string()),
    ("verified_at", _TS),
    ("sim_activated_at", _TS),
    ("subscriber_type", pa.string()),
    ("roaming_country", pa.string()),
    ("owner_ref", pa.string()),
])
_CDR_REQUIRED: Final = ("call_id", "operator", "start_time", "a_number", "b_number", "ingress")
_SUB_REQUIRED: Final = ("msisdn", "biometric_status", "sim_activated_at")
_DAYS_PER_EPOCH_WEEKDAY: Final = 3  # 1970-01-01 was a Thursday (Monday = 0)
_BLOCK_ROWS: Final = 8192


def build(cdrs: pa.Table, subscribers: pa.Table) -> F64:
    """Features of every CDR row, shape ``(cdrs.num_rows, len(FEATURE_NAMES))``, float64.

    Each call sees only earlier calls of ``cdrs`` (``start_time`` strictly before its own)
    and the registry ``subscribers`` as given (a repeated ``msisdn``: the last row wins).
    """
    cdrs = _normalise(cdrs, CDR_SCHEMA, _CDR_REQUIRED, "cdr")
    subscribers = _normalise(subscribers, SUBSCRIBER_SCHEMA, _SUB_REQUIRED, "subscriber")
    n = cdrs.num_rows
    out = np.empty((n, len(FEATURE_NAMES)))
    if n == 0:
        return out
    calls = _Calls.from_table(cdrs)
    cols = _features(calls, subscribers)
    # Gather and transpose in blocks of rows that fit in cache: writing the row-major
    # result column by column would touch a cache line per value.
    ordered = [cols[name] for name in FEATURE_NAMES]
    block = np.empty((len(FEATURE_NAMES), _BLOCK_ROWS))
    for start in range(0, n, _BLOCK_ROWS):
        rows = calls.row_position[start:start + _BLOCK_ROWS]
        k = len(rows)
        for j, values in enumerate(ordered):
            np.take(values, rows, out=block[j, :k])
        out[start:start + k] = block[:, :k].T
    return out


class _Calls:
    """The distinct calls, in time order (ties in any order), as integer-coded arrays."""

    def __init__(self) -> None:
        self.t: I64 = np.empty(0, np.int64)
        self.a: I64 = self.t
        self.b: I64 = self.t
        self.imei: I64 = self.t
        self.cell: I64 = self.t
        self.ingress: I64 = self.t
        self.answered: B = np.empty(0, np.bool_)
        self.duration: F64 = np.empty(0)
        self.numbers: pa.Array = pa.array([], pa.string())
        self.row_position: I64 = self.t

    @classmethod
    def from_table(cls, cdrs: pa.Table) -> _Calls:
        self = cls()
        key = pc.binary_join_element_wise(cdrs["operator"], cdrs["call_id"], "\x1f")
        call_code = _codes(key)
        # Dictionary codes follow first appearance, so a code exceeding every earlier one
        # marks the first delivery of a call.
        seen = np.maximum.accumulate(call_code)
        first = np.ones(len(call_code), np.bool_)
        first[1:] = seen[1:] > seen[:-1]
        rows = np.flatnonzero(first)
        t_all = _epoch_ms(cdrs["start_time"])
        # Ties in time may take any order: calls at one instant do not see each other.
        order = np.argsort(t_all[rows])
        rows = rows[order]
        position_of_code = np.empty(len(rows), np.int64)
        position_of_code[order] = np.arange(len(rows))
        self.row_position = position_of_code[call_code]
        self.t = t_all[rows]
        # Encode whole columns and pick rows from the integer codes: cheaper than taking strings.
        n = cdrs.num_rows
        numbers = pa.concat_arrays([_string_array(cdrs["a_number"]), _string_array(cdrs["b_number"])])
        encoded = numbers.dictionary_encode()
        self.numbers = encoded.dictionary
        codes = encoded.indices.to_numpy().astype(np.int64)
        self.a, self.b = codes[:n][rows], codes[n:][rows]
        self.imei = _codes(cdrs["a_imei"])[rows]
        self.cell = _codes(cdrs["a_cell_id"])[rows]
        self.ingress = _category_codes(_string_array(cdrs["ingress"]), INGRESS_CODES, "ingress")[rows]
        answered = pc.fill_null(_string_free(cdrs["answered"]), False)
        self.answered = answered.to_numpy(zero_copy_only=False).astype(np.bool_)[rows]
        # A missing duration is read as 0 s, as for an unanswered call (definitions: short calls).
        duration = pc.fill_null(_string_free(cdrs["duration_s"]), 0.0)
        self.duration = duration.to_numpy(zero_copy_only=False).astype(np.float64)[rows]
        return self


class _Keys:
    """Composite sort keys ``group * span + (time - base)`` for one batch of calls."""

    def __init__(self, t: I64, n_groups: int) -> None:
        self.base = int(t.min()) - HISTORY_MS - 1
        self.span = int(t.max()) - self.base + 2
        if n_groups * self.span >= 2**62:
            raise FeatureTableError(
                f"cdr: time range of {self.span} ms over {n_groups} numbers overflows the builder's 64-bit keys; "
                "fix: build features in smaller date ranges"
            )

    def key(self, group: I64, time: I64) -> I64:
        out: I64 = group * self.span
        out += time  # in place: these arrays are large, and memory traffic is the builder's cost
        out -= self.base
        return out


def _sweep(sorted_group: I64, sorted_time: I64, sorted_value: I64, back: I64, width: int) -> tuple[I64, B]:
    """Per call (in original order): distinct values of its group in [t - width, t), and whether its own
    value is among them. Inputs are sorted by (group, time); ``back`` maps a call to its sorted position."""
    n_values = int(sorted_value.max()) + 1 if len(sorted_value) else 1
    distinct, own, _ = distinct_in_window(sorted_group, sorted_time, sorted_value, sorted_value, width, n_values)
    return distinct[back], own[back]


def _contact(t: I64, a: I64, b: I64) -> tuple[B, B]:
    """Per call: (a_number called b_number, b_number called a_number) in [t - HISTORY_MS, t).

    One sweep over calls grouped by the unordered pair {a, b}; the value is the direction,
    and the probe is the opposite direction (the same one for a call to oneself).
    """
    m = len(t)
    low, high = np.minimum(a, b), np.maximum(a, b)
    pair = low * (int(high.max()) + 1) + high
    order = _pair_order(pair)
    direction = (a > b).astype(np.int64)
    probe = np.where(a == b, direction, 1 - direction)
    _, forward, reverse = distinct_in_window(
        pair[order], t[order], direction[order], probe[order], HISTORY_MS, 2
    )
    back = np.empty(m, np.int64)
    back[order] = np.arange(m)
    return forward[back], reverse[back]


def _features(calls: _Calls, subscribers: pa.Table) -> dict[str, F64]:
    t, a, b = calls.t, calls.a, calls.b
    m = len(t)
    n_numbers = len(calls.numbers)
    keys = _Keys(t, max(n_numbers, m) + 1)
    cols: dict[str, F64] = {}

    cols.update(_identity(calls, subscribers))

    # origin
    cols["ingress"] = calls.ingress.astype(np.float64)
    number_class = classify_numbers(calls.numbers)
    a_class = number_class[a]
    cols["a_class"] = a_class.astype(np.float64)
    cols["b_class"] = number_class[b].astype(np.float64)
    foreign = (calls.ingress == Ingress.INTERNATIONAL) | (calls.ingress == Ingress.VOIP)
    cols["domestic_cli_foreign_trunk"] = ((a_class == NumberClass.KZ_MOBILE) & foreign).astype(np.float64)
    cols["has_device"] = (calls.imei >= 0).astype(np.float64)

    # velocity: the caller's own earlier calls, in (a_number, time) order
    order = np.argsort(keys.key(a, t))
    ka = keys.key(a[order], t[order])
    ts, as_ = t[order], a[order]
    hi = np.searchsorted(ka, ka, "left")
    answered = calls.answered[order]
    dur = calls.duration[order]
    cum_ans = np.concatenate([[0], np.cumsum(answered)])
    cum_short = np.concatenate([[0], np.cumsum(dur < SHORT_CALL_S)])
    # A window's sum is a difference of two prefix sums, whose rounding error grows with the
    # prefix (all groups before it); 80-bit prefixes keep the difference within 1e-12 s.
    cum_ans_dur = np.concatenate([[0.0], np.cumsum(np.where(answered, dur, 0.0), dtype=np.longdouble)])
    back = np.empty(m, np.int64)
    back[order] = np.arange(m)
    bs = b[order]
    calls_24h = None
    for w, width in WINDOWS_MS.items():
        lo = np.searchsorted(ka, keys.key(as_, ts - width), "left")
        n_calls = (hi - lo)[back]
        cols[f"calls_{w}"] = n_calls.astype(np.float64)
        cols[f"distinct_callees_{w}"] = _sweep(as_, ts, bs, back, width)[0].astype(np.float64)
        if w == "24h":
            calls_24h = n_calls
        if w in ("1h", "24h"):
            with np.errstate(invalid="ignore", divide="ignore"):
                n = n_calls.astype(np.float64)
                n_ans = (cum_ans[hi] - cum_ans[lo])[back].astype(np.float64)
                cols[f"answered_share_{w}"] = np.where(n > 0, n_ans / n, np.nan)
                cols[f"short_call_share_{w}"] = np.where(
                    n > 0, (cum_short[hi] - cum_short[lo])[back] / n, np.nan
                )
                sums = (cum_ans_dur[hi] - cum_ans_dur[lo]).astype(np.float64)[back]
                cols[f"mean_answered_duration_{w}"] = np.where(n_ans > 0, sums / n_ans, np.nan)

    # reciprocity over HISTORY_MS
    called_before, called_back = _contact(t, a, b)
    cols["first_contact"] = (~called_before).astype(np.float64)
    cols["callee_called_caller_before"] = called_back.astype(np.float64)
    received = np.sort(keys.key(b, t))
    inbound = (
        np.searchsorted(received, keys.key(as_, ts)) - np.searchsorted(received, keys.key(as_, ts - DAY_MS))
    )[back]
    cols["inbound_calls_24h"] = inbound.astype(np.float64)
    if calls_24h is None:  # pragma: no cover - WINDOWS_MS always has 24h
        raise FeatureTableError("definitions: WINDOWS_MS lacks the 24h window")
    cols["inbound_outbound_ratio_24h"] = inbound / (calls_24h + 1.0)

    # device and mobility
    has_imei = calls.imei >= 0
    has_cell = calls.cell >= 0
    imei_s, cell_s = calls.imei[order], calls.cell[order]
    per_number, own_imei = _sweep(as_, ts, imei_s, back, DAY_MS)
    cols["imeis_per_number_24h"] = np.where(has_imei, per_number + ~own_imei, np.nan)
    cells, own_cell = _sweep(as_, ts, cell_s, back, DAY_MS)
    cols["distinct_cells_24h"] = np.where(has_cell, cells + ~own_cell, np.nan)
    # Calls without an IMEI form group -1 among themselves; their value is NaN anyway.
    by_imei = np.argsort(keys.key(calls.imei + 1, t))
    back_imei = np.empty(m, np.int64)
    back_imei[by_imei] = np.arange(m)
    per_imei, own_a = _sweep(calls.imei[by_imei], t[by_imei], a[by_imei], back_imei, DAY_MS)
    cols["numbers_per_imei_24h"] = np.where(has_imei, per_imei + ~own_a, np.nan)

    # time
    local = t + LOCAL_UTC_OFFSET_MS
    cols["local_hour"] = ((local // HOUR_MS) % 24).astype(np.float64)
    cols["weekday"] = ((local // DAY_MS + _DAYS_PER_EPOCH_WEEKDAY) % 7).astype(np.float64)
    missing = set(FEATURE_NAMES) - cols.keys()
    if missing:  # pragma: no cover - guards a definitions change without a builder change
        raise FeatureTableError(f"definitions: the offline builder does not compute {sorted(missing)}")
    return cols


def _pair_order(pair: I64) -> I64:
    """Order of time-sorted calls by (pair, time).

    Two unstable (SIMD) sorts beat one stable sort of the raw pair codes: dense pair ids
    times the call count plus the time rank fit in 64 bits, raw codes with time do not.
    """
    m = len(pair)
    if m == 0:
        return np.empty(0, np.int64)
    first = np.argsort(pair)
    sp = pair[first]
    dense = np.empty(m, np.int64)
    dense[first] = np.concatenate([[0], np.cumsum(sp[1:] != sp[:-1])])
    return np.argsort(dense * m + np.arange(m))


def classify_numbers(numbers: pa.Array) -> I64:
    """``features.numbering.classify`` of every string in ``numbers``, vectorised (held equal by a test).

    >>> classify_numbers(pa.array(["+77011234567", "+77272501234", "+79161234567", "112", "x"])).tolist()
    [1, 2, 4, 6, 0]
    """
    def match(pattern: str) -> B:
        out: B = pc.fill_null(pc.match_substring_regex(numbers, pattern), False).to_numpy(zero_copy_only=False)
        return out

    # RE2 (pyarrow) has no look-ahead; its ``$`` already means end of text, as fullmatch does.
    short = match(f"^(?:{SHORT_CODE_BODY})$")
    emergency = pc.fill_null(pc.is_in(numbers, value_set=pa.array(sorted(EMERGENCY_CODES))), False)
    kz = match(r"^\+7[67][0-9]{9}$")
    return np.select(
        [short & emergency.to_numpy(zero_copy_only=False), short, ~match(f"^(?:{E164_BODY})$"),
         ~match(r"^\+7"), ~match(r"^\+7[0-9]{10}$"),
         kz & match(r"^\+7(70|77|747)"), kz & match(r"^\+7(71|72)"), kz],
        [NumberClass.EMERGENCY, NumberClass.SHORT_CODE, NumberClass.INVALID,
         NumberClass.OTHER_COUNTRY, NumberClass.INVALID,
         NumberClass.KZ_MOBILE, NumberClass.KZ_FIXED, NumberClass.KZ_NONGEO],
        NumberClass.RU,
    ).astype(np.int64)


def _identity(calls: _Calls, subscribers: pa.Table) -> dict[str, F64]:
    n_numbers = len(calls.numbers)
    m = len(calls.t)
    cols = {name: np.full(m, np.nan) for name in (
        "days_since_verified", "sim_age_days", "numbers_per_owner", "is_corporate", "roaming"
    )}
    cols["biometric_status"] = np.full(m, float(Biometric.UNKNOWN))
    cols["in_registry"] = np.zeros(m)
    if subscribers.num_rows == 0 or n_numbers == 0:
        return cols
    msisdn_code = _codes(_string_array(subscribers["msisdn"]))
    # A later record replaces an earlier one: keep each msisdn's last row.
    _, last_rev = np.unique(msisdn_code[::-1], return_index=True)
    rows = np.sort(len(msisdn_code) - 1 - last_rev)
    subs = subscribers.take(pa.array(rows))
    msisdn = _string_array(subs["msisdn"])
    sub_of_number = pc.index_in(calls.numbers, value_set=msisdn)
    sub_of_number_np = pc.fill_null(sub_of_number, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    s = sub_of_number_np[calls.a]
    held = s >= 0
    hs = np.where(held, s, 0)
    t = calls.t

    status = _category_codes(_string_array(subs["biometric_status"]), BIOMETRIC_CODES, "biometric_status")
    verified = _nullable_ms(subs["verified_at"])
    activated = _nullable_ms(subs["sim_activated_at"])
    corporate = pc.fill_null(pc.equal(_string_array(subs["subscriber_type"]), "corporate"), False)
    roaming = pc.is_valid(_string_array(subs["roaming_country"]))
    owner = _codes(_string_array(subs["owner_ref"]))
    owner_count = np.bincount(owner[owner >= 0], minlength=int(owner.max()) + 2)
    numbers_per_owner = np.where(owner >= 0, owner_count[np.maximum(owner, 0)], np.nan)

    cols["in_registry"] = held.astype(np.float64)
    cols["biometric_status"] = np.where(held, status[hs], float(Biometric.UNKNOWN))
    v = verified[hs]
    has_v = held & (v != _NULL_MS)
    cols["days_since_verified"] = np.where(has_v, (t - np.where(has_v, v, t)) / DAY_MS, np.nan)
    cols["sim_age_days"] = np.where(held, (t - activated[hs]) / DAY_MS, np.nan)
    cols["numbers_per_owner"] = np.where(held, numbers_per_owner[hs], np.nan)
    cols["is_corporate"] = np.where(held, corporate.to_numpy(zero_copy_only=False)[hs], np.nan)
    cols["roaming"] = np.where(held, roaming.to_numpy(zero_copy_only=False)[hs], np.nan)
    return cols


_NULL_MS: Final = np.iinfo(np.int64).min


def _string_array(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    return arr.cast(pa.string())


def _string_free(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def _codes(col: pa.ChunkedArray | pa.Array) -> I64:
    """Dictionary codes in order of first appearance; null is -1."""
    arr = _string_array(col).dictionary_encode()
    codes: I64 = pc.fill_null(arr.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    return codes


def _category_codes(arr: pa.Array, codes: dict[str, int] | dict[str, Ingress] | dict[str, Biometric],
                    field: str) -> I64:
    encoded = arr.dictionary_encode()
    names = encoded.dictionary.to_pylist()
    unknown = [x for x in names if x not in codes]
    if unknown or encoded.null_count:
        shown = unknown[0] if unknown else None
        raise FeatureTableError(
            f"{field} has value {shown!r}, which is not a known code; expected one of {', '.join(codes)}"
        )
    lookup = np.array([int(codes[x]) for x in names], np.int64)
    return lookup[encoded.indices.to_numpy(zero_copy_only=False)] if len(names) else np.empty(0, np.int64)


def _epoch_ms(col: pa.ChunkedArray | pa.Array) -> I64:
    arr = _string_free(col)
    if arr.null_count:
        raise FeatureTableError("cdr: start_time has a null value; expected an RFC 3339 timestamp in every row")
    return _nullable_ms(arr)


def _nullable_ms(col: pa.ChunkedArray | pa.Array) -> I64:
    """Epoch milliseconds (floored); null is ``_NULL_MS``."""
    arr = _string_free(col)
    us = arr.cast(pa.timestamp("us", tz="UTC"), safe=False).cast(pa.int64())
    values = pc.fill_null(us, _NULL_MS).to_numpy(zero_copy_only=False).astype(np.int64)
    return np.where(values == _NULL_MS, _NULL_MS, values // 1000)


def _normalise(table: pa.Table, schema: pa.Schema, required: tuple[str, ...], record: str) -> pa.Table:
    """Select the contract columns, adding absent optional ones as nulls."""
    missing = [c for c in required if c not in table.column_names]
    if missing:
        raise FeatureTableError(
            f"{record}: table lacks column {missing[0]!r}; expected the contract fields "
            f"{', '.join(schema.names)}"
        )
    columns = []
    for field in schema:
        if field.name in table.column_names:
            col = table[field.name]
            if field.name in required and col.null_count:
                raise FeatureTableError(
                    f"{record}: column {field.name!r} has {col.null_count} null values; it is required in every row"
                )
            if pa.types.is_timestamp(field.type) and not pa.types.is_timestamp(col.type):
                raise FeatureTableError(
                    f"{record}: column {field.name!r} has type {col.type}; expected {field.type}"
                )
            columns.append(col)
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    return pa.table(columns, names=schema.names)


def cdr_table(cdrs: list[Cdr]) -> pa.Table:
    """A CDR table (``CDR_SCHEMA``) from contract records."""
    return pa.Table.from_pylist([_cdr_row(c) for c in cdrs], schema=CDR_SCHEMA)


def subscriber_table(subscribers: list[Subscriber]) -> pa.Table:
    """A subscriber table (``SUBSCRIBER_SCHEMA``) from contract records."""
    rows = [{f: getattr(s, f) for f in SUBSCRIBER_SCHEMA.names} for s in subscribers]
    return pa.Table.from_pylist(rows, schema=SUBSCRIBER_SCHEMA)


def _cdr_row(c: Cdr) -> dict[str, object]:
    return {f: getattr(c, f) for f in CDR_SCHEMA.names}


def read_cdrs(path: Path | str) -> pa.Table:
    """CDRs from a Parquet file or dataset folder (e.g. ``cdrs/day=.../part-*.parquet``) or a .jsonl file."""
    return _read(Path(path), Cdr, CDR_SCHEMA, _CDR_REQUIRED, "cdr")


def read_subscribers(path: Path | str) -> pa.Table:
    """Subscribers from a Parquet file or folder, or a .jsonl file of ``subscriber/1`` records."""
    return _read(Path(path), Subscriber, SUBSCRIBER_SCHEMA, _SUB_REQUIRED, "subscriber")


def _read(path: Path, cls: type[Cdr] | type[Subscriber], schema: pa.Schema, required: tuple[str, ...],
          record: str) -> pa.Table:
    if not path.exists():
        raise FeatureTableError(f"{record}: {path} does not exist; expected a Parquet file/folder or a .jsonl file")
    if path.suffix == ".jsonl":
        rows = []
        with path.open("rb") as fh:
            for line in fh:
                if line.strip():
                    rec = decode(cls, line)
                    rows.append({f: getattr(rec, f, None) for f in schema.names})
        return pa.Table.from_pylist(rows, schema=schema)
    import pyarrow.dataset as ds

    dataset = ds.dataset(path, format="parquet", partitioning="hive")
    present = [c for c in schema.names if c in dataset.schema.names]
    table = _normalise(dataset.to_table(columns=present), schema, required, record)
    return table.cast(schema)
