# cython: language_level=3, boundscheck=False, wraparound=False
"""The six string patterns of `cdr/1` checked in C, for the worker's fast decode (streaming/dlq.py).

Each check accepts only strings that the contract's regular expression (features/contracts.py,
applied by msgspec with ``re.search``) accepts; a False answer sends the record down the
contract decoder itself, which has the last word (and writes the error message). The patterns
these checks implement are pinned in ``streaming.dlq.FAST_PATTERNS``: if the contract's change,
the fast path switches itself off.
"""

from cpython.unicode cimport PyUnicode_GET_LENGTH, PyUnicode_KIND, PyUnicode_DATA, PyUnicode_READ
from libc.stdint cimport uint32_t


cdef inline bint _digit(uint32_t c) noexcept nogil:
    return 48 <= c <= 57  # [0-9]: ASCII digits only, as Python's re reads [0-9]


cdef inline bint _run(str s, Py_ssize_t start, Py_ssize_t n, int what):
    """Characters s[start:start+n] all in the class ``what``."""
    cdef int kind = PyUnicode_KIND(s)
    cdef void* data = PyUnicode_DATA(s)
    cdef Py_ssize_t i
    cdef uint32_t c
    for i in range(start, start + n):
        c = PyUnicode_READ(kind, data, i)
        if what == 0:    # [0-9]
            if not _digit(c):
                return False
        elif what == 1:  # [A-Za-z0-9._:-]
            if not (_digit(c) or 65 <= c <= 90 or 97 <= c <= 122 or c == 46 or c == 95 or c == 58 or c == 45):
                return False
        elif what == 2:  # [a-z0-9_-]
            if not (_digit(c) or 97 <= c <= 122 or c == 95 or c == 45):
                return False
        else:            # [^\x00-\x1f\x7f]
            if c <= 0x1F or c == 0x7F:
                return False
    return True


cdef inline bint _e164(str s):
    """^\\+[1-9][0-9]{6,14}$"""
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(s)
    if n < 8 or n > 16:
        return False
    cdef int kind = PyUnicode_KIND(s)
    cdef void* data = PyUnicode_DATA(s)
    if PyUnicode_READ(kind, data, 0) != 43:  # '+'
        return False
    cdef uint32_t first = PyUnicode_READ(kind, data, 1)
    if not (49 <= first <= 57):
        return False
    return _run(s, 2, n - 2, 0)


def patterns_hold(str call_id not None, str operator not None, str a_number not None, str b_number not None,
                  object a_imei, object a_cell_id) -> bool:
    """True if every pattern of `cdr/1` holds (None optional fields pass, as in the contract)."""
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(call_id)
    if n < 1 or n > 64 or not _run(call_id, 0, n, 1):
        return False
    n = PyUnicode_GET_LENGTH(operator)
    if n < 2 or n > 32 or not _run(operator, 0, n, 2):
        return False
    if not _e164(a_number):
        return False
    if not _e164(b_number):
        n = PyUnicode_GET_LENGTH(b_number)
        if n < 2 or n > 6 or not _run(b_number, 0, n, 0):
            return False
    if a_imei is not None:
        if type(a_imei) is not str:
            return False
        n = PyUnicode_GET_LENGTH(<str>a_imei)
        if n < 14 or n > 16 or not _run(<str>a_imei, 0, n, 0):
            return False
    if a_cell_id is not None:
        if type(a_cell_id) is not str:
            return False
        n = PyUnicode_GET_LENGTH(<str>a_cell_id)
        if n < 1 or n > 64 or not _run(<str>a_cell_id, 0, n, 3):
            return False
    return True
