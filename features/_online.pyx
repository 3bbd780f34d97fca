# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The client side of the online store: the batch script's wire format and every window
aggregate and feature row, in C.

One engine call with one CDR used to cost ~400 us of client CPU, almost none of it work: numpy
calls on 1-row arrays, per-call objects, redis-py's command machinery. So the whole per-call
path is here:

* ``Batch(...)``: start times, the fixed-width event record of each call, its digests
  (BLAKE2b-48, below) and the Redis wire format (RESP) of the ``EVALSHA`` calls of
  ``features/batch.lua``, written straight into one buffer;
* ``Batch.features(replies, ...)``: from the strings the scripts return (each caller's own
  and received calls, each IMEI's numbers, as read) and what they report per call, every
  aggregate of ``features.assembly.RAW`` over the full windows (no cap), then the feature row;
* ``assemble_rows``: raw aggregates -> the 33 features of ``features.definitions``, shared
  with the in-memory reference (``features.assembly.assemble`` calls it), so the two stores
  cannot drift apart.

The script counts nothing (Redis CPU is the worker's bottleneck): it returns each string once
per script and reports per call what it found (relations, duplicate) and what it applied. A
call sees the strings as read plus what the same script applied before it, restricted to
``[t - day, t)``: the caller's own calls are walked in start-time order (history first on
ties: the order of the stored string), so the duration sums add up in the order the in-memory
reference uses; received calls are counted by two lower bounds plus the calls to the caller
added earlier in the script; the numbers on an IMEI are its table as read, changed as the
script reports it changed them (the same rule as ``seen_on`` in the script). Distinct values
go through a small open-addressing set per call, sized to the window, so the work per call is
linear in the calls in its window.

Records (big-endian): cs:out: (``RECORD`` = 39 bytes) u48 start ms, 6-byte call key, u8 flags
(1 answered, 2 has IMEI, 4 has cell), f64 duration s, 6-byte IMEI, 6-byte cell, 6-byte callee
digests; cs:in: (12) u48 start ms, call key; cs:imei: (18) h6(a_number), u48 last ms, u48
latest earlier ms. Digests are ``hashlib.blake2b(utf8, digest_size=6)`` (call key:
``operator NUL call_id``), computed here because hashlib's per-call object costs more than the
hash (checked against hashlib in the tests).
"""

import numpy as np

cimport numpy as cnp
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.datetime cimport (
    datetime_day,
    datetime_hour,
    datetime_microsecond,
    datetime_minute,
    datetime_month,
    datetime_second,
    datetime_tzinfo,
    datetime_year,
    import_datetime,
    timedelta_days,
    timedelta_microseconds,
    timedelta_seconds,
)
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from libc.math cimport NAN
from libc.stdint cimport int64_t, uint8_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memset

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object unicode, Py_ssize_t* size) except NULL

import datetime as _dt

from features.definitions import DAY_MS as _DAY_MS
from features.definitions import HOUR_MS as _HOUR_MS
from features.definitions import INDEX as _INDEX
from features.definitions import LOCAL_UTC_OFFSET_MS as _OFFSET_MS
from features.definitions import Ingress as _Ingress
from features.errors import StoreRecordError
from features.numbering import NumberClass as _NumberClass

cnp.import_array()
import_datetime()

cdef enum:
    ARGS = 5  # script arguments per call
    W = 39  # bytes per cs:out: record
    WI = 12  # bytes per cs:in: record
    WD = 18  # bytes per cs:imei: record
    OUT = 18  # the COLUMNS
    NF = 33  # features

RECORD = W
COLUMNS = (
    "calls_10m", "calls_1h", "calls_24h",
    "distinct_callees_10m", "distinct_callees_1h", "distinct_callees_24h",
    "answered_1h", "short_1h", "answered_duration_1h",
    "answered_24h", "short_24h", "answered_duration_24h",
    "callee_called_caller_before", "caller_called_callee_before", "inbound_calls_24h",
    "numbers_per_imei_24h", "imeis_per_number_24h", "distinct_cells_24h",
)
"""The raw aggregates: ``features.assembly.RAW`` (features/redisstore.py checks)."""
ARGS_PER_CALL = ARGS
"""Script arguments per call: record, a_number, a_imei ("" when absent), b_number,
h6(a_number) ("" without an IMEI)."""

_UTC = _dt.timezone.utc
cdef int64_t DAY = _DAY_MS
cdef int64_t HOUR = _HOUR_MS
cdef int64_t MIN10 = 10 * 60_000
cdef int64_t LOCAL_OFFSET = _OFFSET_MS
cdef double SHORT_S = 10.0
cdef double KZ_MOBILE = <int>_NumberClass.KZ_MOBILE
cdef double INTERNATIONAL = <int>_Ingress.INTERNATIONAL
cdef double VOIP = <int>_Ingress.VOIP
cdef int64_t MAX_T = 1LL << 48
from features.retention import EVENT_RETAIN_MS as _EVENT_RETAIN_MS
cdef int64_t EVENT_RETAIN = _EVENT_RETAIN_MS

if len(_INDEX) != NF:  # pragma: no cover - guards a feature list change without a kernel change
    raise ImportError(f"features/_online.pyx assembles {NF} features, features.definitions has {len(_INDEX)}")
from features.definitions import SHORT_CALL_S as _SHORT
if _SHORT != SHORT_S:  # pragma: no cover
    raise ImportError("features/_online.pyx: SHORT_CALL_S changed; rebuild with the new value")

# feature columns, looked up by name once
cdef int F_BIO = _INDEX["biometric_status"], F_DSV = _INDEX["days_since_verified"]
cdef int F_SIM = _INDEX["sim_age_days"], F_NPO = _INDEX["numbers_per_owner"]
cdef int F_INREG = _INDEX["in_registry"], F_CORP = _INDEX["is_corporate"], F_ROAM = _INDEX["roaming"]
cdef int F_ORIGIN[4]
F_ORIGIN[:] = [_INDEX["ingress"], _INDEX["a_class"], _INDEX["b_class"], _INDEX["has_device"]]
cdef int F_DCFT = _INDEX["domestic_cli_foreign_trunk"], F_FIRST = _INDEX["first_contact"]
cdef int F_IOR = _INDEX["inbound_outbound_ratio_24h"]
cdef int F_HOUR = _INDEX["local_hour"], F_WEEKDAY = _INDEX["weekday"]
_R = {name: i for i, name in enumerate(COLUMNS)}
_COPIED = ("calls_10m", "calls_1h", "calls_24h", "distinct_callees_10m", "distinct_callees_1h",
           "distinct_callees_24h", "callee_called_caller_before", "inbound_calls_24h",
           "numbers_per_imei_24h", "imeis_per_number_24h", "distinct_cells_24h")
cdef int N_COPY = 11
cdef int COPY_TO[11]
cdef int COPY_FROM[11]
COPY_TO[:] = [_INDEX[c] for c in _COPIED]
COPY_FROM[:] = [_R[c] for c in _COPIED]
# feature = numerator / denominator, NaN when the denominator is 0
_RATIOS = [(f"{f}_{w}", f"{num}_{w}", f"{den}_{w}") for w in ("1h", "24h")
           for f, num, den in (("answered_share", "answered", "calls"), ("short_call_share", "short", "calls"),
                               ("mean_answered_duration", "answered_duration", "answered"))]
cdef int RATIO_TO[6]
cdef int RATIO_NUM[6]
cdef int RATIO_DEN[6]
RATIO_TO[:] = [_INDEX[f] for f, _, _ in _RATIOS]
RATIO_NUM[:] = [_R[n] for _, n, _ in _RATIOS]
RATIO_DEN[:] = [_R[d] for _, _, d in _RATIOS]
cdef int R_CALLS24 = _R["calls_24h"], R_FWD = _R["caller_called_callee_before"], R_IN = _R["inbound_calls_24h"]


# --- small helpers ---------------------------------------------------------------------------

cdef inline int64_t _u48(const unsigned char* p) noexcept nogil:
    return ((<int64_t>p[0] << 40) | (<int64_t>p[1] << 32) | (<int64_t>p[2] << 24)
            | (<int64_t>p[3] << 16) | (<int64_t>p[4] << 8) | <int64_t>p[5])


cdef inline int64_t _be(const unsigned char* p, int width) noexcept nogil:
    cdef int64_t v = 0
    cdef int k
    for k in range(width):
        v = (v << 8) | p[k]
    return v


cdef inline double _f64(const unsigned char* p) noexcept nogil:
    cdef uint64_t u = 0
    cdef int k
    cdef double d
    for k in range(8):
        u = (u << 8) | p[k]
    memcpy(&d, &u, 8)
    return d


cdef inline void _put_f64(unsigned char* p, double d) noexcept nogil:
    cdef uint64_t u
    cdef int k
    memcpy(&u, &d, 8)
    for k in range(8):
        p[7 - k] = <unsigned char>(u & 0xff)
        u >>= 8


cdef inline int64_t _floordiv(int64_t a, int64_t b) noexcept nogil:
    cdef int64_t q = a // b
    if (a % b != 0) and ((a < 0) != (b < 0)):
        q -= 1
    return q


cdef inline int64_t _floormod(int64_t a, int64_t b) noexcept nogil:
    return a - _floordiv(a, b) * b


cdef inline int _insert(uint64_t* keys, unsigned char* marks, uint64_t mask, uint64_t key,
                        unsigned char** slot) noexcept nogil:
    """Find or add ``key`` (a 48-bit digest, stored +1 so 0 means empty); 1 when added."""
    cdef uint64_t k = key + 1
    cdef uint64_t h = key & mask
    while keys[h] != 0:
        if keys[h] == k:
            slot[0] = &marks[h]
            return 0
        h = (h + 1) & mask
    keys[h] = k
    marks[h] = 0
    slot[0] = &marks[h]
    return 1


cdef inline bint _has(const uint64_t* keys, uint64_t mask, uint64_t key) noexcept nogil:
    cdef uint64_t k = key + 1
    cdef uint64_t h = key & mask
    while keys[h] != 0:
        if keys[h] == k:
            return True
        h = (h + 1) & mask
    return False


# --- BLAKE2b with a 6-byte digest (RFC 7693) -----------------------------------------------------

cdef extern from "_blake2b.h" nogil:  # BLAKE2b compression, shared with features/_registry_pack.pyx
    const uint64_t cs_blake2b_iv[8]
    void cs_blake2b_compress(uint64_t* h, const uint8_t* block, uint64_t t, int last)

cdef void _h6(const uint8_t* msg, Py_ssize_t n, uint8_t* out) noexcept nogil:
    """``hashlib.blake2b(msg, digest_size=6).digest()``."""
    cdef uint64_t h[8]
    cdef uint8_t block[128]
    cdef uint64_t t = 0
    cdef int k
    for k in range(8):
        h[k] = cs_blake2b_iv[k]
    h[0] ^= 0x01010000ULL ^ 6ULL
    while n > 128:
        t += 128
        cs_blake2b_compress(h, msg, t, False)
        msg += 128
        n -= 128
    memset(block, 0, 128)
    memcpy(block, msg, n)
    t += n
    cs_blake2b_compress(h, block, t, True)
    for k in range(6):
        out[k] = <uint8_t>(h[0] >> (8 * k))


def digest6(bytes value):
    """BLAKE2b-48 of ``value`` (the digest of call keys, IMEIs, cells and callees in the records)."""
    cdef uint8_t out[6]
    _h6(<const uint8_t*>PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value), out)
    return PyBytes_FromStringAndSize(<const char*>out, 6)


# --- epoch milliseconds -----------------------------------------------------------------------

cdef inline int64_t _days_from_civil(int64_t y, int64_t m, int64_t d) noexcept nogil:
    # Howard Hinnant's days_from_civil: proleptic Gregorian date -> days since 1970-01-01
    y -= 1 if m <= 2 else 0
    cdef int64_t era = (y if y >= 0 else y - 399) // 400
    cdef int64_t yoe = y - era * 400
    cdef int64_t doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    cdef int64_t doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


cdef int64_t _epoch_ms(object t, object fallback) except? -1:
    """Exact epoch milliseconds of an aware datetime, floored (``registry_codec.epoch_ms``)."""
    tz = datetime_tzinfo(t)
    if tz is None:  # naive: whatever registry_codec.epoch_ms makes of it
        return fallback(t)
    cdef int64_t secs = (_days_from_civil(datetime_year(t), datetime_month(t), datetime_day(t)) * 86400
                         + datetime_hour(t) * 3600 + datetime_minute(t) * 60 + datetime_second(t))
    cdef int64_t us = datetime_microsecond(t)
    if tz is not _UTC:
        off = t.utcoffset()
        if off is None:
            return fallback(t)
        secs -= timedelta_days(off) * 86400 + timedelta_seconds(off)
        us -= timedelta_microseconds(off)
    return _floordiv(secs * 1000000 + us, 1000)


def start_times(list cdrs, object fallback):
    """``(t, order)``: epoch milliseconds of each call's ``start_time`` (``fallback`` for naive
    times), and the input indices in start-time order (ties in input order)."""
    cdef Py_ssize_t n = len(cdrs), i
    cdef bint ordered = True
    t_np = np.empty(n, dtype=np.int64)
    cdef int64_t[::1] t = t_np
    for i in range(n):
        t[i] = _epoch_ms((<object>PyList_GET_ITEM(cdrs, i)).start_time, fallback)
        if i and t[i] < t[i - 1]:
            ordered = False
    return t_np, (np.arange(n, dtype=np.int64) if ordered else np.argsort(t_np, kind="stable"))


# --- the wire format of the batch script ------------------------------------------------------

cdef struct Buf:
    char* p
    Py_ssize_t n
    Py_ssize_t cap


cdef int _grow(Buf* b, Py_ssize_t more) except -1:
    cdef Py_ssize_t cap
    cdef char* p
    if b.n + more <= b.cap:
        return 0
    cap = b.cap * 2 if b.cap else 4096
    while cap < b.n + more:
        cap *= 2
    p = <char*>realloc(b.p, cap)
    if p == NULL:
        raise MemoryError()
    b.p = p
    b.cap = cap
    return 0


cdef inline Py_ssize_t _itoa(char* out, Py_ssize_t v) noexcept nogil:
    cdef char tmp[24]
    cdef Py_ssize_t k = 0, j
    if v == 0:
        out[0] = 48
        return 1
    while v > 0:
        tmp[k] = <char>(48 + v % 10)
        v //= 10
        k += 1
    for j in range(k):
        out[j] = tmp[k - 1 - j]
    return k


cdef int _bulk(Buf* b, const char* s, Py_ssize_t n) except -1:
    """``$n\\r\\n s \\r\\n``"""
    _grow(b, n + 26)
    b.p[b.n] = 36  # $
    b.n += 1
    b.n += _itoa(b.p + b.n, n)
    b.p[b.n] = 13
    b.p[b.n + 1] = 10
    b.n += 2
    memcpy(b.p + b.n, s, n)
    b.n += n
    b.p[b.n] = 13
    b.p[b.n + 1] = 10
    b.n += 2
    return 0


cdef int _array(Buf* b, Py_ssize_t n) except -1:
    """``*n\\r\\n``"""
    _grow(b, 24)
    b.p[b.n] = 42  # *
    b.n += 1
    b.n += _itoa(b.p + b.n, n)
    b.p[b.n] = 13
    b.p[b.n + 1] = 10
    b.n += 2
    return 0


cdef inline const char* _utf8(object s, Py_ssize_t* n) except NULL:
    return PyUnicode_AsUTF8AndSize(s, n)


# --- feature rows ---------------------------------------------------------------------------

cdef int _identity(double* row, int64_t t, const unsigned char* reg, Py_ssize_t n, int64_t owners) except -1:
    """The registry columns of one row (``registry_codec.unpack``'s layout); ``n < 0``: not held."""
    cdef int flags, width
    cdef int64_t scale, sim, verified = 0
    cdef Py_ssize_t pos, need
    row[F_BIO] = 0.0
    row[F_INREG] = 0.0
    if n < 0:
        return 0
    if n < 6:
        raise StoreRecordError(f"registry record of {n} bytes is too short; fix: reload the registry")
    flags = reg[0]
    width = 6 if flags & 128 else 4
    scale = 1 if flags & 128 else 1000
    need = 2 + width + (width if flags & 16 else 0) + (2 if flags & 32 else 0) + (8 if flags & 64 else 0)
    if n < need:
        raise StoreRecordError(f"registry record of {n} bytes, its flags need {need}; fix: reload the registry")
    sim = _be(reg + 2, width) * scale
    pos = 2 + width
    row[F_INREG] = 1.0
    row[F_BIO] = flags & 7
    if flags & 16:
        verified = _be(reg + pos, width) * scale
        row[F_DSV] = <double>(t - verified) / <double>DAY
    row[F_SIM] = <double>(t - sim) / <double>DAY
    if flags & 64:
        row[F_NPO] = <double>owners
    row[F_CORP] = 1.0 if flags & 8 else 0.0
    row[F_ROAM] = 1.0 if flags & 32 else 0.0
    return 0


cdef void _derived(double* row, int64_t t, const double* raw, const double* origin) noexcept nogil:
    """Every column but the registry's, from the raw aggregates and the call's origin codes."""
    cdef int k
    cdef double den
    cdef int64_t local
    for k in range(4):
        row[F_ORIGIN[k]] = origin[k]
    row[F_DCFT] = 1.0 if origin[1] == KZ_MOBILE and (origin[0] == INTERNATIONAL or origin[0] == VOIP) else 0.0
    for k in range(N_COPY):
        row[COPY_TO[k]] = raw[COPY_FROM[k]]
    for k in range(6):
        den = raw[RATIO_DEN[k]]
        row[RATIO_TO[k]] = raw[RATIO_NUM[k]] / den if den > 0 else NAN
    row[F_FIRST] = 1.0 - raw[R_FWD]
    row[F_IOR] = raw[R_IN] / (raw[R_CALLS24] + 1.0)
    local = t + LOCAL_OFFSET
    row[F_HOUR] = <double>_floormod(_floordiv(local, HOUR), 24)
    row[F_WEEKDAY] = <double>_floormod(_floordiv(local, DAY) + 3, 7)  # 1970-01-01 was a Thursday


def assemble_rows(const int64_t[::1] t, const double[:, ::1] raw, const double[:, ::1] origin,
                  list registry, const int64_t[::1] owners):
    """The feature matrix (n, 33) from start times, raw aggregates (``COLUMNS``), origin codes
    (ingress, a_class, b_class, has_device), packed registry records (None when not held) and
    owner counts."""
    cdef Py_ssize_t n = t.shape[0], i
    if raw.shape[0] != n or origin.shape[0] != n or len(registry) != n or owners.shape[0] != n:
        raise ValueError("assemble_rows: inputs disagree on the number of calls")
    if n and (raw.shape[1] != OUT or origin.shape[1] != 4):
        raise ValueError(f"assemble_rows: raw needs {OUT} columns and origin 4")
    x_np = np.full((n, NF), np.nan)
    cdef double[:, ::1] x = x_np
    for i in range(n):
        packed = <object>PyList_GET_ITEM(registry, i)
        if packed is None:
            _identity(&x[i, 0], t[i], NULL, -1, 0)
        else:
            _identity(&x[i, 0], t[i], <const unsigned char*>PyBytes_AS_STRING(packed), PyBytes_GET_SIZE(packed),
                      owners[i])
        _derived(&x[i, 0], t[i], &raw[i, 0], &origin[i, 0])
    return x_np


def origin_codes(list cdrs, dict ingress_codes, object classify):
    """``float64[n, 4]``: ingress code, a_class, b_class, has_device of each call."""
    cdef Py_ssize_t n = len(cdrs), i
    out_np = np.empty((n, 4), dtype=np.float64)
    cdef double[:, ::1] out = out_np
    for i in range(n):
        c = <object>PyList_GET_ITEM(cdrs, i)
        out[i, 0] = <int>ingress_codes[c.ingress]
        out[i, 1] = <int>classify(c.a_number)
        out[i, 2] = <int>classify(c.b_number)
        out[i, 3] = 0.0 if c.a_imei is None else 1.0
    return out_np


# --- a batch: the script calls out, the features back ----------------------------------------
cdef struct Views:
    # per caller group: cs:out: and cs:in: as read, registry record, owner count
    const unsigned char** hist
    Py_ssize_t* hn
    const unsigned char** inb
    Py_ssize_t* inn
    const unsigned char** regp
    Py_ssize_t* regn
    int64_t* owners
    # per call (script order): the script's bits; calls of the same group applied before, for
    # the caller's own calls (link/last) and its received calls (in_link/in_last)
    int64_t* bits
    int64_t* link
    int64_t* last
    int64_t* in_link
    int64_t* in_last
    int64_t* chain
    # per IMEI: its table (3 integers per number) at dev[3 * dev_at[e]], dev_n[e] numbers in use
    int64_t* dev
    Py_ssize_t* dev_at
    Py_ssize_t* dev_n
    # per call (input order): the context key
    unsigned char* key


cdef void _parse_imei(const unsigned char* s, Py_ssize_t n, int64_t* out) noexcept nogil:
    """cs:imei: records (h6(a_number), u48 last, u48 prev) into 3 integers each."""
    cdef Py_ssize_t k
    for k in range(n):
        out[3 * k] = _u48(s + WD * k)
        out[3 * k + 1] = _u48(s + WD * k + 6)
        out[3 * k + 2] = _u48(s + WD * k + 12)


cdef inline int64_t _before(int64_t last, int64_t prev, int64_t t) noexcept nogil:
    """The latest contact strictly before t from (last, prev) (prev 0: none), or -1."""
    if last < t:
        return last
    if prev > 0 and prev < t:
        return prev
    return -1


cdef void _seen_on(int64_t* d, Py_ssize_t* count, int64_t digest, int64_t t) noexcept nogil:
    """features/batch.lua's seen_on for an entry it reported changed: a contact at t on the
    number's (last, prev), or the number appended (dropping, when that makes the count a
    multiple of 256, numbers last seen before the retention before the newest)."""
    cdef Py_ssize_t k, j, n = count[0]
    cdef int64_t newest = 0
    for k in range(n):
        if d[3 * k] == digest:
            if t > d[3 * k + 1]:
                d[3 * k + 2] = d[3 * k + 1]
                d[3 * k + 1] = t
            elif t < d[3 * k + 1] and t > d[3 * k + 2]:
                d[3 * k + 2] = t
            return
    d[3 * n] = digest
    d[3 * n + 1] = t
    d[3 * n + 2] = 0
    n += 1
    if n % 256 == 0:
        for k in range(n):
            if d[3 * k + 1] > newest:
                newest = d[3 * k + 1]
        j = 0
        for k in range(n):
            if d[3 * k + 1] >= newest - EVENT_RETAIN:
                d[3 * j] = d[3 * k]
                d[3 * j + 1] = d[3 * k + 1]
                d[3 * j + 2] = d[3 * k + 2]
                j += 1
        n = j
    count[0] = n


cdef class Batch:
    """One batch of calls for features/batch.lua: the RESP of its ``EVALSHA`` calls
    (``payload``, ``scripts`` of them) and what reading the replies needs, in C arrays.

    ``Batch(cdrs, fallback, prologue, fixed, per_script, ingress_codes, classify)``:
    ``prologue`` is the RESP of every argument before the calls (command, script digest, key
    count and the script's own ``fixed`` arguments); each script takes up to ``per_script``
    calls, in start-time order (ties in input order). ``fallback`` converts a naive
    ``start_time`` (``registry_codec.epoch_ms``); ``ingress_codes`` and ``classify`` give the
    origin codes (ingress, a_class, b_class, has_device).

    Per script, callers are numbered in order of their first call ("groups", the order of the
    ``callers`` part of the script's reply) and so are IMEIs (the order of its ``imeis`` part);
    ``heads[s]`` is the length of script s's reply before its list entries.
    """

    cdef readonly bytes payload
    cdef readonly Py_ssize_t scripts
    cdef readonly list callers  # callers per script
    cdef readonly list imeis  # IMEIs per script
    cdef readonly list heads  # per script: its reply's length before the list entries
    cdef Py_ssize_t n, per_script, n_groups, n_imeis
    cdef int64_t* t  # input order
    cdef int64_t* order  # script position -> input index
    cdef unsigned char* records  # script order
    cdef int64_t* group  # script order: the caller's index among all scripts' callers
    cdef int64_t* callee  # script order: the callee's group when it calls in the same script, else -1
    cdef int64_t* imei  # script order: the IMEI's index among all scripts' IMEIs, or -1
    cdef int64_t* digest  # script order: h6(a_number) as an integer (calls with an IMEI)
    cdef int64_t* group_in  # input order, filled by features()
    cdef double* origin  # input order, 4 per call

    def __cinit__(self, list cdrs, object fallback, bytes prologue, Py_ssize_t fixed, Py_ssize_t per_script,
                  dict ingress_codes, object classify):
        cdef Py_ssize_t n = len(cdrs), pos, i, k, g, base = 0, ibase = 0, start = 0, la, lb, li, lo, lc, lcell
        cdef bint ordered = True
        cdef Buf buf
        if per_script < 1:
            raise ValueError("Batch: per_script must be >= 1")
        self.n = n
        self.per_script = per_script
        self.scripts = (n + per_script - 1) // per_script
        self.callers = []
        self.imeis = []
        self.heads = []
        m = n if n else 1
        self.t = <int64_t*>malloc(m * sizeof(int64_t))
        self.order = <int64_t*>malloc(m * sizeof(int64_t))
        self.records = <unsigned char*>malloc(m * W)
        self.group = <int64_t*>malloc(m * sizeof(int64_t))
        self.callee = <int64_t*>malloc(m * sizeof(int64_t))
        self.imei = <int64_t*>malloc(m * sizeof(int64_t))
        self.digest = <int64_t*>malloc(m * sizeof(int64_t))
        self.group_in = <int64_t*>malloc(m * sizeof(int64_t))
        self.origin = <double*>malloc(m * 4 * sizeof(double))
        if (self.t == NULL or self.order == NULL or self.records == NULL or self.group == NULL
                or self.callee == NULL or self.imei == NULL or self.digest == NULL or self.group_in == NULL
                or self.origin == NULL):
            raise MemoryError()
        for i in range(n):
            c = <object>PyList_GET_ITEM(cdrs, i)
            self.t[i] = _epoch_ms(c.start_time, fallback)
            if self.t[i] < 0 or self.t[i] >= MAX_T:
                raise StoreRecordError("cdr: start_time must lie between 1970 and the year 10000 (48-bit milliseconds)")
            if i and self.t[i] < self.t[i - 1]:
                ordered = False
            self.origin[4 * i] = <int>ingress_codes[c.ingress]
            self.origin[4 * i + 1] = <int>classify(c.a_number)
            self.origin[4 * i + 2] = <int>classify(c.b_number)
            self.origin[4 * i + 3] = 0.0 if c.a_imei is None else 1.0
        if ordered:
            for i in range(n):
                self.order[i] = i
        else:
            sorted_np = np.argsort(np.asarray(<int64_t[:n]>self.t), kind="stable")
            for i in range(n):
                self.order[i] = sorted_np[i]
        if n == 0:
            self.payload = b""
            return
        cdef const char* pro = PyBytes_AS_STRING(prologue)
        cdef Py_ssize_t npro = PyBytes_GET_SIZE(prologue)
        cdef unsigned char* rec
        cdef const char* a
        cdef const char* b
        cdef const char* imei
        cdef const char* op
        cdef const char* cid
        cdef const char* cell
        cdef uint8_t keybuf[256]
        cdef uint8_t da[6]
        cdef uint8_t* key
        cdef int flags
        cdef int64_t ti
        cdef double dur
        cdef dict seen = {}
        cdef dict devices = {}
        buf.p = NULL
        buf.n = buf.cap = 0
        try:
            for pos in range(n + 1):
                if pos % per_script == 0 or pos == n:
                    if pos:  # the script [start, pos) is complete: callees that call in it too
                        for k in range(start, pos):
                            g = seen.get((<object>PyList_GET_ITEM(cdrs, self.order[k])).b_number, -1)
                            self.callee[k] = base + g if g >= 0 else -1
                        self.callers.append(len(seen))
                        self.imeis.append(len(devices))
                        self.heads.append(pos - start + 4 * len(seen) + len(devices))
                        base += len(seen)
                        ibase += len(devices)
                        seen = {}
                        devices = {}
                    if pos == n:
                        break
                    start = pos
                    _array(&buf, fixed + ARGS * min(per_script, n - pos))
                    _grow(&buf, npro)
                    memcpy(buf.p + buf.n, pro, npro)
                    buf.n += npro
                i = self.order[pos]
                c = <object>PyList_GET_ITEM(cdrs, i)
                an = c.a_number
                g = seen.get(an, -1)
                if g < 0:
                    g = len(seen)
                    seen[an] = g
                self.group[pos] = base + g
                ti = self.t[i]
                rec = &self.records[pos * W]
                for k in range(6):
                    rec[5 - k] = <unsigned char>((ti >> (8 * k)) & 0xff)
                op = _utf8(c.operator, &lo)
                cid = _utf8(c.call_id, &lc)
                key = &keybuf[0]
                if lo + lc + 1 > 256:
                    key = <uint8_t*>malloc(lo + lc + 1)
                    if key == NULL:
                        raise MemoryError()
                memcpy(key, op, lo)
                key[lo] = 0
                memcpy(key + lo + 1, cid, lc)
                _h6(key, lo + lc + 1, rec + 6)
                if key != &keybuf[0]:
                    free(key)
                flags = 1 if c.answered else 0
                d = c.duration_s
                dur = 0.0 if d is None else <double>d
                a = _utf8(an, &la)
                imei_s = c.a_imei
                li = 0
                imei = ""
                if imei_s is not None:
                    flags |= 2
                    imei = _utf8(imei_s, &li)
                    _h6(<const uint8_t*>imei, li, rec + 21)
                    _h6(<const uint8_t*>a, la, da)
                    self.digest[pos] = _u48(da)
                    k = devices.get(imei_s, -1)
                    if k < 0:
                        k = len(devices)
                        devices[imei_s] = k
                    self.imei[pos] = ibase + k
                else:
                    memset(rec + 21, 0, 6)
                    self.digest[pos] = 0
                    self.imei[pos] = -1
                cell_s = c.a_cell_id
                if cell_s is not None:
                    flags |= 4
                    cell = _utf8(cell_s, &lcell)
                    _h6(<const uint8_t*>cell, lcell, rec + 27)
                else:
                    memset(rec + 27, 0, 6)
                rec[12] = flags
                _put_f64(rec + 13, dur)
                b = _utf8(c.b_number, &lb)
                _h6(<const uint8_t*>b, lb, rec + 33)
                _bulk(&buf, <const char*>rec, W)
                _bulk(&buf, a, la)
                _bulk(&buf, imei, li)
                _bulk(&buf, b, lb)
                _bulk(&buf, <const char*>da, 6 if li else 0)
            self.n_groups = base
            self.n_imeis = ibase
            self.payload = PyBytes_FromStringAndSize(buf.p, buf.n)
        finally:
            free(buf.p)

    def __dealloc__(self):
        free(self.t)
        free(self.order)
        free(self.records)
        free(self.group)
        free(self.callee)
        free(self.imei)
        free(self.digest)
        free(self.group_in)
        free(self.origin)

    def start_ms(self, Py_ssize_t i):
        """Start time (epoch ms) of the call at input index ``i``."""
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self.t[i]

    def groups(self):
        """For each call (input order) its caller's index among all scripts' callers (after ``features``)."""
        cdef Py_ssize_t i
        return [self.group_in[i] for i in range(self.n)]

    def calls_of(self, object groups):
        """Input indices of the calls whose caller's group is in ``groups`` (after ``features``)."""
        cdef Py_ssize_t i
        return [i for i in range(self.n) if self.group_in[i] in groups]

    def features(self, list replies, tuple plain):
        """The feature matrix (n, 33) of the batch from the scripts' replies, and each call's
        context ``plain[4 * in_registry + 2 * roaming + duplicate]`` (the caller replaces
        those of callers on a list), in input order.

        Each reply is one flat list, ``bits + callers + imeis + lists`` (features/batch.lua):
        one integer per call (1 callee called caller before, 2 caller called callee before, 4
        duplicate, 8 added to the caller's calls, 16 added to the callee's received calls, 32
        the caller's entry on its IMEI changed), 4 values per caller (cs:out: and cs:in:
        strings as read, packed registry record or "", owner count), the cs:imei: string of
        each IMEI, then 3 values per list entry (read by the caller, from ``heads``).
        """
        cdef Py_ssize_t n = self.n, n_groups = self.n_groups, n_imeis = self.n_imeis
        cdef Py_ssize_t s, k, g, m, in_script, n_callers, n_dev, e, entries, at
        if len(replies) != self.scripts:
            raise ValueError(f"{len(replies)} replies for {self.scripts} scripts")
        if len(plain) != 8:
            raise ValueError("features: plain needs the 8 contexts")
        x_np = np.empty((n, NF), dtype=np.float64)
        cdef double[:, ::1] x = x_np
        cdef list contexts = [None] * n
        if n == 0:
            return x_np, contexts
        cdef Py_ssize_t ng = n_groups if n_groups else 1
        cdef Py_ssize_t ni = n_imeis if n_imeis else 1
        cdef Views v
        memset(&v, 0, sizeof(Views))
        v.key = <unsigned char*>malloc(n)
        v.hist = <const unsigned char**>malloc(ng * sizeof(void*))
        v.hn = <Py_ssize_t*>malloc(ng * sizeof(Py_ssize_t))
        v.inb = <const unsigned char**>malloc(ng * sizeof(void*))
        v.inn = <Py_ssize_t*>malloc(ng * sizeof(Py_ssize_t))
        v.regp = <const unsigned char**>malloc(ng * sizeof(void*))
        v.regn = <Py_ssize_t*>malloc(ng * sizeof(Py_ssize_t))
        v.owners = <int64_t*>malloc(ng * sizeof(int64_t))
        v.bits = <int64_t*>malloc(n * sizeof(int64_t))
        v.link = <int64_t*>malloc(n * sizeof(int64_t))
        v.last = <int64_t*>malloc(ng * sizeof(int64_t))
        v.in_link = <int64_t*>malloc(n * sizeof(int64_t))
        v.in_last = <int64_t*>malloc(ng * sizeof(int64_t))
        v.chain = <int64_t*>malloc(n * sizeof(int64_t))
        v.dev_at = <Py_ssize_t*>malloc(ni * sizeof(Py_ssize_t))
        v.dev_n = <Py_ssize_t*>malloc(ni * sizeof(Py_ssize_t))
        cdef list reply
        cdef object h, r, q
        try:
            if (v.key == NULL or v.hist == NULL or v.hn == NULL or v.inb == NULL or v.inn == NULL
                    or v.regp == NULL or v.regn == NULL or v.owners == NULL or v.bits == NULL or v.link == NULL
                    or v.last == NULL or v.in_link == NULL or v.in_last == NULL or v.chain == NULL
                    or v.dev_at == NULL or v.dev_n == NULL):
                raise MemoryError()
            g = 0
            e = 0
            m = 0
            for s in range(self.scripts):
                reply = replies[s]
                in_script = min(self.per_script, n - s * self.per_script)
                n_callers = self.callers[s]
                n_dev = self.imeis[s]
                at = self.heads[s]  # in_script + 4 * n_callers + n_dev
                if reply is None:
                    raise ValueError("the batch script returned nil, not its reply array")
                if PyList_GET_SIZE(reply) < at or (PyList_GET_SIZE(reply) - at) % 3:
                    raise ValueError(
                        f"the batch script returned {PyList_GET_SIZE(reply)} values for {in_script} calls, "
                        f"{n_callers} callers and {n_dev} IMEIs (want {at}, then 3 per list entry)")
                for k in range(in_script):
                    v.bits[m + k] = <int64_t>(<object>PyList_GET_ITEM(reply, k))
                m += in_script
                for k in range(n_callers):
                    at = in_script + 4 * k
                    h = <object>PyList_GET_ITEM(reply, at)
                    q = <object>PyList_GET_ITEM(reply, at + 1)
                    r = <object>PyList_GET_ITEM(reply, at + 2)
                    if type(h) is not bytes or type(q) is not bytes or type(r) is not bytes:
                        raise ValueError("a caller's strings or registry record from the batch script are not strings")
                    if PyBytes_GET_SIZE(h) % W or PyBytes_GET_SIZE(q) % WI:
                        raise ValueError(f"caller strings of {PyBytes_GET_SIZE(h)} and {PyBytes_GET_SIZE(q)} bytes "
                                         "are not whole records")
                    v.hist[g] = <const unsigned char*>PyBytes_AS_STRING(h)
                    v.hn[g] = PyBytes_GET_SIZE(h) // W
                    v.inb[g] = <const unsigned char*>PyBytes_AS_STRING(q)
                    v.inn[g] = PyBytes_GET_SIZE(q) // WI
                    v.regp[g] = <const unsigned char*>PyBytes_AS_STRING(r)
                    v.regn[g] = PyBytes_GET_SIZE(r) if PyBytes_GET_SIZE(r) else -1
                    v.owners[g] = <int64_t>(<object>PyList_GET_ITEM(reply, at + 3))
                    g += 1
                at = in_script + 4 * n_callers
                for k in range(n_dev):
                    h = <object>PyList_GET_ITEM(reply, at + k)
                    if type(h) is not bytes or PyBytes_GET_SIZE(h) % WD:
                        raise ValueError("an IMEI string from the batch script is not whole records")
                    v.dev_n[e] = PyBytes_GET_SIZE(h) // WD
                    e += 1
            # one table of (number digest, last, prev) per IMEI, as read, with room after it
            # for the numbers its calls add (at most one per call)
            for e in range(n_imeis):
                v.dev_at[e] = 0
            for k in range(n):
                if self.imei[k] >= 0:
                    v.dev_at[self.imei[k]] += 1
            entries = 0
            for e in range(n_imeis):
                k = v.dev_at[e] + v.dev_n[e]
                v.dev_at[e] = entries
                entries += k
            v.dev = <int64_t*>malloc((entries if entries else 1) * 3 * sizeof(int64_t))
            if v.dev == NULL:
                raise MemoryError()
            e = 0
            for s in range(self.scripts):
                reply = replies[s]
                at = <Py_ssize_t>self.heads[s] - <Py_ssize_t>self.imeis[s]
                for k in range(<Py_ssize_t>self.imeis[s]):
                    h = <object>PyList_GET_ITEM(reply, at + k)
                    _parse_imei(<const unsigned char*>PyBytes_AS_STRING(h), v.dev_n[e], &v.dev[3 * v.dev_at[e]])
                    e += 1
            _aggregate_all(x, &v, self.group_in, self.t, self.order, self.records, self.group, self.callee,
                           self.imei, self.digest, self.origin, n, n_groups)
            for k in range(n):
                contexts[k] = plain[v.key[k]]
        finally:
            free(v.key)
            free(v.hist)
            free(v.hn)
            free(v.inb)
            free(v.inn)
            free(v.regp)
            free(v.regn)
            free(v.owners)
            free(v.bits)
            free(v.link)
            free(v.last)
            free(v.in_link)
            free(v.in_last)
            free(v.chain)
            free(v.dev_at)
            free(v.dev_n)
            free(v.dev)
        return x_np, contexts



cdef int _aggregate_all(double[:, ::1] x, Views* v, int64_t* group_in, const int64_t* tin,
                        const int64_t* order, const unsigned char* calls, const int64_t* group,
                        const int64_t* callee, const int64_t* imei, const int64_t* digest,
                        const double* origin, Py_ssize_t n, Py_ssize_t n_groups) except -1:
    cdef Py_ssize_t i, g, k, lo, hi, mid, h0, h1, n_chain, most = 0, row
    cdef int64_t t, te, j, b, inbound, per_imei
    cdef uint64_t size, mask, cap = 16
    cdef int flags
    cdef double dur, c10, c1, c24, nb10, nb1, nb24, a1, s1, d1, a24, s24, d24, ni, nc
    cdef double raw[OUT]
    cdef const unsigned char* hp
    cdef const unsigned char* ip
    cdef const unsigned char* rec
    cdef const unsigned char* me
    cdef unsigned char* slot
    cdef int64_t* d
    for g in range(n_groups):
        v.last[g] = -1
        v.in_last[g] = -1
        if v.hn[g] > most:
            most = v.hn[g]
    most += n
    while cap < 2 * <uint64_t>most:
        cap <<= 1
    cdef uint64_t* keys = <uint64_t*>malloc(3 * cap * sizeof(uint64_t))
    cdef unsigned char* marks = <unsigned char*>malloc(3 * cap)
    if keys == NULL or marks == NULL:
        free(keys)
        free(marks)
        raise MemoryError()
    cdef uint64_t* callees = keys
    cdef uint64_t* imeis = keys + cap
    cdef uint64_t* cells = keys + 2 * cap
    try:
        for i in range(n):
            me = &calls[i * W]
            t = _u48(me)
            g = group[i]
            b = v.bits[i]
            # the caller's own calls in [t - day, t): the string as read (two lower bounds)
            hp = v.hist[g]
            lo = 0
            hi = v.hn[g]
            while lo < hi:
                mid = (lo + hi) // 2
                if _u48(hp + mid * W) < t - DAY:
                    lo = mid + 1
                else:
                    hi = mid
            h0 = lo
            hi = v.hn[g]
            while lo < hi:
                mid = (lo + hi) // 2
                if _u48(hp + mid * W) < t:
                    lo = mid + 1
                else:
                    hi = mid
            h1 = lo
            # ... and its calls this script applied before, newest first
            n_chain = 0
            j = v.last[g]
            while j >= 0:
                te = _u48(&calls[j * W])
                if te < t - DAY:
                    break
                if te < t:
                    v.chain[n_chain] = j
                    n_chain += 1
                j = v.link[j]
            size = 16
            while size < 2 * <uint64_t>(h1 - h0 + n_chain):
                size <<= 1
            mask = size - 1
            memset(callees, 0, size * sizeof(uint64_t))
            memset(imeis, 0, size * sizeof(uint64_t))
            memset(cells, 0, size * sizeof(uint64_t))
            c10 = c1 = c24 = nb10 = nb1 = nb24 = a1 = s1 = d1 = a24 = s24 = d24 = ni = nc = 0.0
            k = n_chain - 1
            while h0 < h1 or k >= 0:
                # merge in time order; the stored history first on ties
                if k < 0 or (h0 < h1 and _u48(hp + h0 * W) <= _u48(&calls[v.chain[k] * W])):
                    rec = hp + h0 * W
                    h0 += 1
                else:
                    rec = &calls[v.chain[k] * W]
                    k -= 1
                te = _u48(rec)
                flags = rec[12]
                dur = _f64(rec + 13)
                c24 += 1
                if flags & 1:
                    a24 += 1
                    d24 += dur
                if dur < SHORT_S:
                    s24 += 1
                if _insert(callees, marks, mask, <uint64_t>_u48(rec + 33), &slot):
                    nb24 += 1
                if te >= t - HOUR:
                    c1 += 1
                    if flags & 1:
                        a1 += 1
                        d1 += dur
                    if dur < SHORT_S:
                        s1 += 1
                    if not (slot[0] & 1):
                        slot[0] |= 1
                        nb1 += 1
                    if te >= t - MIN10:
                        c10 += 1
                        if not (slot[0] & 2):
                            slot[0] |= 2
                            nb10 += 1
                if flags & 2:
                    ni += _insert(imeis, marks + cap, mask, <uint64_t>_u48(rec + 21), &slot)
                if flags & 4:
                    nc += _insert(cells, marks + 2 * cap, mask, <uint64_t>_u48(rec + 27), &slot)
            # calls the caller received in [t - day, t): its cs:in: as read, and the calls to
            # it this script added before
            ip = v.inb[g]
            lo = 0
            hi = v.inn[g]
            while lo < hi:
                mid = (lo + hi) // 2
                if _u48(ip + mid * WI) < t - DAY:
                    lo = mid + 1
                else:
                    hi = mid
            h0 = lo
            hi = v.inn[g]
            while lo < hi:
                mid = (lo + hi) // 2
                if _u48(ip + mid * WI) < t:
                    lo = mid + 1
                else:
                    hi = mid
            inbound = lo - h0
            j = v.in_last[g]
            while j >= 0:
                te = _u48(&calls[j * W])
                if te < t - DAY:
                    break
                if te < t:
                    inbound += 1
                j = v.in_link[j]
            # numbers seen on the call's IMEI in [t - day, t) besides the caller, plus the caller
            per_imei = -1
            if imei[i] >= 0:
                d = &v.dev[3 * v.dev_at[imei[i]]]
                per_imei = 1
                for k in range(v.dev_n[imei[i]]):
                    if d[3 * k] != digest[i] and _before(d[3 * k + 1], d[3 * k + 2], t) >= t - DAY:
                        per_imei += 1
                if b & 32:
                    _seen_on(d, &v.dev_n[imei[i]], digest[i], t)
            raw[0] = c10
            raw[1] = c1
            raw[2] = c24
            raw[3] = nb10
            raw[4] = nb1
            raw[5] = nb24
            raw[6] = a1
            raw[7] = s1
            raw[8] = d1
            raw[9] = a24
            raw[10] = s24
            raw[11] = d24
            raw[12] = 1.0 if b & 1 else 0.0
            raw[13] = 1.0 if b & 2 else 0.0
            raw[14] = <double>inbound
            raw[15] = <double>per_imei if per_imei >= 0 else NAN
            flags = me[12]
            if flags & 2:
                raw[16] = ni + (0 if _has(imeis, mask, <uint64_t>_u48(me + 21)) else 1)
            else:
                raw[16] = NAN
            if flags & 4:
                raw[17] = nc + (0 if _has(cells, mask, <uint64_t>_u48(me + 27)) else 1)
            else:
                raw[17] = NAN
            row = order[i]
            for k in range(NF):
                x[row, k] = NAN
            _identity(&x[row, 0], tin[row], v.regp[g], v.regn[g], v.owners[g])
            _derived(&x[row, 0], tin[row], raw, &origin[4 * row])
            v.key[row] = ((4 + (2 if v.regp[g][0] & 32 else 0)) if v.regn[g] > 0 else 0) + (1 if b & 4 else 0)
            group_in[row] = g
            if b & 8:  # added to the caller's calls
                v.link[i] = v.last[g]
                v.last[g] = i
            if b & 16 and callee[i] >= 0:  # added to the received calls of a caller of this script
                v.in_link[i] = v.in_last[callee[i]]
                v.in_last[callee[i]] = i
    finally:
        free(keys)
        free(marks)
    return 0
