# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Distinct values in a sliding time window, per group: the one kernel the offline builder compiles.

Sort-and-search (numpy) needs several O(n log n) passes per distinct-count feature; one
two-pointer sweep over calls sorted by (group, time) with a count per value is O(n) and
touches each call twice. The sweep is a plain loop, which is why it is Cython.
"""

import numpy as np

cimport numpy as cnp
from libc.stdint cimport int32_t, int64_t

cnp.import_array()


def distinct_in_window(
    const int64_t[::1] group,
    const int64_t[::1] time,
    const int64_t[::1] value,
    const int64_t[::1] probe,
    int64_t width,
    int64_t n_values,
):
    """For calls sorted by (group, time): per call i, the distinct ``value`` among calls j of the
    same group with ``time[i] - width <= time[j] < time[i]`` (value -1 = missing, never counted),
    whether ``value[i]`` is among them, and whether ``probe[i]`` is among them (reciprocity
    probes the opposite direction of a pair).

    Returns ``(distinct int64[n], own bool[n], found bool[n])``.
    """
    cdef Py_ssize_t n = group.shape[0]
    distinct_np = np.zeros(n, dtype=np.int64)
    own_np = np.zeros(n, dtype=np.uint8)
    found_np = np.zeros(n, dtype=np.uint8)
    # One count per value, shared by all groups: a group leaves it all zero when it ends.
    counts_np = np.zeros(max(n_values, 1), dtype=np.int32)
    cdef int64_t[::1] distinct = distinct_np
    cdef unsigned char[::1] own = own_np
    cdef unsigned char[::1] found = found_np
    cdef int32_t[::1] counts = counts_np
    cdef Py_ssize_t i = 0, lo = 0, hi = 0, start = 0, end
    cdef int64_t t, v, g, live
    with nogil:
        while start < n:
            g = group[start]
            end = start
            while end < n and group[end] == g:
                end += 1
            lo = start
            hi = start
            live = 0
            for i in range(start, end):
                t = time[i]
                # Enter every call strictly before t (calls at the same instant do not see each other).
                while hi < end and time[hi] < t:
                    v = value[hi]
                    if v >= 0:
                        counts[v] += 1
                        if counts[v] == 1:
                            live += 1
                    hi += 1
                # Leave every call older than the window's closed lower edge t - width.
                while lo < hi and time[lo] < t - width:
                    v = value[lo]
                    if v >= 0:
                        counts[v] -= 1
                        if counts[v] == 0:
                            live -= 1
                    lo += 1
                distinct[i] = live
                v = value[i]
                own[i] = v >= 0 and counts[v] > 0
                v = probe[i]
                found[i] = v >= 0 and counts[v] > 0
            while lo < hi:
                v = value[lo]
                if v >= 0:
                    counts[v] -= 1
                lo += 1
            start = end
    return distinct_np, own_np.view(np.bool_), found_np.view(np.bool_)
