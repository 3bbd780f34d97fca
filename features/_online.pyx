# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The caller's own-call window aggregates of the online store, computed on the client.

``features/batch.lua`` keeps each caller's calls of the last 25 h as ONE string of
fixed-width records sorted by start time and returns it, as read, once per caller and script
(a bulk string: a memcpy for Redis). This kernel computes, for every call of the batch, the
aggregates of ``features.assembly.RAW`` that come from the caller's own earlier calls over
the full 24 h (no cap): calls, distinct callees (10 min, 1 h, 24 h), answered/short counts
and answered duration (1 h, 24 h), distinct IMEIs and cells (24 h, plus the call's own).

A call sees its caller's history as read plus the calls of the same script applied before
it (the script reports which it applied), both restricted to ``[t - day, t)``; they are
walked in start-time order (history first on ties: the order of the stored string), so the
duration sums add up in the order the in-memory reference uses. Distinct values go through
a small open-addressing set per call, sized to the window, so the work per call is linear
in the calls in its window. The offline builder's sweep (``features/_window.pyx``) answers
the same question for a whole table at once from dense integer codes; here the values are
48-bit digests read straight from the packed records, one call at a time.

Record (``RECORD`` = 39 bytes, big-endian): u48 start ms, 6-byte call key, u8 flags
(1 answered, 2 has IMEI, 4 has cell), f64 duration s, 6-byte IMEI, 6-byte cell,
6-byte callee digests.
"""

import numpy as np

cimport numpy as cnp
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.math cimport NAN
from libc.string cimport memcpy, memset

cnp.import_array()

cdef enum:
    NV = 7  # doubles per call from the script
    W = 39  # bytes per record
    OUT = 18  # the COLUMNS

RECORD = W


cdef inline int64_t _u48(const unsigned char* p) noexcept nogil:
    return ((<int64_t>p[0] << 40) | (<int64_t>p[1] << 32) | (<int64_t>p[2] << 24)
            | (<int64_t>p[3] << 16) | (<int64_t>p[4] << 8) | <int64_t>p[5])


cdef inline double _f64(const unsigned char* p) noexcept nogil:
    cdef uint64_t u = 0
    cdef int k
    cdef double d
    for k in range(8):
        u = (u << 8) | p[k]
    memcpy(&d, &u, 8)
    return d


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


COLUMNS = (
    "calls_10m", "calls_1h", "calls_24h",
    "distinct_callees_10m", "distinct_callees_1h", "distinct_callees_24h",
    "answered_1h", "short_1h", "answered_duration_1h",
    "answered_24h", "short_24h", "answered_duration_24h",
    "callee_called_caller_before", "caller_called_callee_before", "inbound_calls_24h",
    "numbers_per_imei_24h", "imeis_per_number_24h", "distinct_cells_24h",
)
"""The columns of the result: ``features.assembly.RAW`` (features/redisstore.py checks)."""
SCRIPT_VALUES = NV
"""Big-endian doubles per call from features/batch.lua: RAW columns 12-15 (-1 for an absent
IMEI), duplicate flag, owner count, applied flag."""


def raw_aggregates(
    const unsigned char[::1] calls,
    const int64_t[::1] group,
    const unsigned char[::1] script,
    const unsigned char[::1] history,
    const int64_t[::1] offsets,
    const int64_t[::1] order,
    int64_t day,
    int64_t hour,
    int64_t minutes10,
    double short_s,
):
    """The ``COLUMNS`` of every call, rows in input order, and its duplicate flag and owner count.

    Calls come in script order (``calls``: records, ``script``: the script's doubles); row
    ``order[i]`` of the result belongs to the i-th. ``group[i]`` indexes the caller's history:
    records ``history[offsets[g]:offsets[g+1]]``; a call the script applied is seen by the
    later calls of its group. Calls of one group must come in start-time order. The own-call
    columns (0-11) and IMEIs/cells per number (16-17, NaN when the call lacks the field) are
    computed here; columns 12-15 are the script's (-1 numbers per IMEI becomes NaN).

    Returns ``(raw float64[n, 18], duplicate bool[n], owners int64[n])``.
    """
    cdef Py_ssize_t n = group.shape[0]
    cdef Py_ssize_t n_groups = offsets.shape[0] - 1
    if script.shape[0] != n * NV * 8 or calls.shape[0] != n * W or order.shape[0] != n:
        raise ValueError("raw_aggregates: calls, script values and order disagree on the number of calls")
    out_np = np.empty((n, OUT), dtype=np.float64)
    dup_np = np.zeros(n, dtype=np.uint8)
    owners_np = np.zeros(n, dtype=np.int64)
    cdef double[:, ::1] out = out_np
    cdef unsigned char[::1] dup = dup_np
    cdef int64_t[::1] owners = owners_np
    cdef const unsigned char* lua
    cdef Py_ssize_t row
    if n == 0:
        return out_np, dup_np.view(np.bool_), owners_np
    # previous applied call of the same group, and the last one per group so far
    link_np = np.full(n, -1, dtype=np.int64)
    last_np = np.full(max(n_groups, 1), -1, dtype=np.int64)
    cdef int64_t[::1] link = link_np
    cdef int64_t[::1] last = last_np
    cdef Py_ssize_t i, g, k, lo, hi, mid, h0, h1, n_chain, most = 0
    for g in range(n_groups):
        if (offsets[g + 1] - offsets[g]) // W > most:
            most = (offsets[g + 1] - offsets[g]) // W
    most += n
    cdef uint64_t cap = 16
    while cap < 2 * <uint64_t>most:
        cap <<= 1
    cdef uint64_t* keys = <uint64_t*>malloc(3 * cap * sizeof(uint64_t))
    cdef unsigned char* marks = <unsigned char*>malloc(3 * cap)
    cdef int64_t* chain = <int64_t*>malloc(n * sizeof(int64_t))
    if keys == NULL or marks == NULL or chain == NULL:
        free(keys)
        free(marks)
        free(chain)
        raise MemoryError()
    cdef uint64_t* callees = keys
    cdef uint64_t* imeis = keys + cap
    cdef uint64_t* cells = keys + 2 * cap
    cdef unsigned char* slot
    cdef const unsigned char* hist = &history[0] if history.shape[0] else NULL
    cdef const unsigned char* rec
    cdef const unsigned char* me
    cdef int64_t t, te, j
    cdef uint64_t size, mask
    cdef int flags
    cdef double dur, c10, c1, c24, nb10, nb1, nb24, a1, s1, d1, a24, s24, d24, ni, nc
    try:
        with nogil:
            for i in range(n):
                me = &calls[i * W]
                t = _u48(me)
                g = group[i]
                h0 = offsets[g] // W
                h1 = offsets[g + 1] // W
                # history records in [t - day, t): two lower bounds
                lo = h0
                hi = h1
                while lo < hi:
                    mid = (lo + hi) // 2
                    if _u48(hist + mid * W) < t - day:
                        lo = mid + 1
                    else:
                        hi = mid
                h0 = lo
                hi = h1
                while lo < hi:
                    mid = (lo + hi) // 2
                    if _u48(hist + mid * W) < t:
                        lo = mid + 1
                    else:
                        hi = mid
                h1 = lo
                # applied calls of this group earlier in the script, newest first
                n_chain = 0
                j = last[g]
                while j >= 0:
                    te = _u48(&calls[j * W])
                    if te < t - day:
                        break
                    if te < t:
                        chain[n_chain] = j
                        n_chain += 1
                    j = link[j]
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
                    if k < 0 or (h0 < h1 and _u48(hist + h0 * W) <= _u48(&calls[chain[k] * W])):
                        rec = hist + h0 * W
                        h0 += 1
                    else:
                        rec = &calls[chain[k] * W]
                        k -= 1
                    te = _u48(rec)
                    flags = rec[12]
                    dur = _f64(rec + 13)
                    c24 += 1
                    if flags & 1:
                        a24 += 1
                        d24 += dur
                    if dur < short_s:
                        s24 += 1
                    if _insert(callees, marks, mask, <uint64_t>_u48(rec + 33), &slot):
                        nb24 += 1
                    if te >= t - hour:
                        c1 += 1
                        if flags & 1:
                            a1 += 1
                            d1 += dur
                        if dur < short_s:
                            s1 += 1
                        if not (slot[0] & 1):
                            slot[0] |= 1
                            nb1 += 1
                        if te >= t - minutes10:
                            c10 += 1
                            if not (slot[0] & 2):
                                slot[0] |= 2
                                nb10 += 1
                    if flags & 2:
                        ni += _insert(imeis, marks + cap, mask, <uint64_t>_u48(rec + 21), &slot)
                    if flags & 4:
                        nc += _insert(cells, marks + 2 * cap, mask, <uint64_t>_u48(rec + 27), &slot)
                row = order[i]
                lua = &script[i * NV * 8]
                out[row, 0] = c10
                out[row, 1] = c1
                out[row, 2] = c24
                out[row, 3] = nb10
                out[row, 4] = nb1
                out[row, 5] = nb24
                out[row, 6] = a1
                out[row, 7] = s1
                out[row, 8] = d1
                out[row, 9] = a24
                out[row, 10] = s24
                out[row, 11] = d24
                for k in range(4):
                    out[row, 12 + k] = _f64(lua + 8 * k)
                if out[row, 15] < 0:
                    out[row, 15] = NAN
                dup[row] = _f64(lua + 32) != 0
                owners[row] = <int64_t>_f64(lua + 40)
                flags = me[12]
                if flags & 2:
                    out[row, 16] = ni + (0 if _has(imeis, mask, <uint64_t>_u48(me + 21)) else 1)
                else:
                    out[row, 16] = NAN
                if flags & 4:
                    out[row, 17] = nc + (0 if _has(cells, mask, <uint64_t>_u48(me + 27)) else 1)
                else:
                    out[row, 17] = NAN
                if _f64(lua + 48) != 0:  # applied
                    link[i] = last[g]
                    last[g] = i
    finally:
        free(keys)
        free(marks)
        free(chain)
    return out_np, dup_np.view(np.bool_), owners_np
