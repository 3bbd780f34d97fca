# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Registry records packed and encoded in bulk: the loop of ``subscribers load`` and of the follower.

Packing one record in Python (``registry_codec.pack``) costs a few microseconds of function
calls; at 100k records/s the whole client budget is a few microseconds per record, so the
per-record work (the checks msgspec's patterns would make, epoch milliseconds, the packed
bytes, and the Redis wire format of the script calls) is one C loop here. The packed layout
is ``registry_codec``'s, byte for byte (tested against ``pack``).
"""

import numpy as np

cimport numpy as cnp
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
from cpython.unicode cimport PyUnicode_GET_LENGTH, PyUnicode_READ, PyUnicode_KIND, PyUnicode_DATA
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int64_t, uint8_t, uint64_t
from libc.string cimport memcpy, memset

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object unicode, Py_ssize_t* size) except NULL

import datetime as _dt

from features.errors import StoreRecordError

cnp.import_array()
import_datetime()

RECORD_MAX = 24  # flags 1 + operator 1 + two times of 6 + country 2 + owner digest 8
_UTC = _dt.timezone.utc
cdef int64_t MAX_U32 = 1LL << 32
cdef int64_t MAX_U48 = 1LL << 48


class RecordCheckError(ValueError):
    """Record ``index`` fails a check of the subscriber/1 contract; the caller asks the contract why."""

    def __init__(self, index):
        super().__init__(f"record {index} fails the subscriber/1 contract")
        self.index = index


cdef inline int64_t floordiv(int64_t a, int64_t b):
    cdef int64_t q = a // b
    if (a % b != 0) and ((a < 0) != (b < 0)):
        q -= 1
    return q


cdef inline int64_t days_from_civil(int64_t y, int64_t m, int64_t d):
    # Howard Hinnant's days_from_civil: proleptic Gregorian date -> days since 1970-01-01
    y -= 1 if m <= 2 else 0
    cdef int64_t era = (y if y >= 0 else y - 399) // 400
    cdef int64_t yoe = y - era * 400
    cdef int64_t doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    cdef int64_t doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


cdef int64_t epoch_ms(object t) except? -1:
    """Exact epoch milliseconds of an aware datetime, floored (as ``registry_codec.epoch_ms``)."""
    cdef int64_t secs = (days_from_civil(datetime_year(t), datetime_month(t), datetime_day(t)) * 86400
                         + datetime_hour(t) * 3600 + datetime_minute(t) * 60 + datetime_second(t))
    cdef int64_t us = datetime_microsecond(t)
    tz = datetime_tzinfo(t)
    if tz is not _UTC:
        off = t.utcoffset()
        if off is None:
            raise ValueError("naive datetime in a subscriber/1 record")
        secs -= timedelta_days(off) * 86400 + timedelta_seconds(off)
        us -= timedelta_microseconds(off)
    return floordiv(secs * 1000000 + us, 1000)


cdef bint e164_ok(str s):
    """``\\+[1-9][0-9]{6,14}``, whole string (E164_PATTERN)."""
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(s), i
    cdef int kind = PyUnicode_KIND(s)
    cdef void* data = PyUnicode_DATA(s)
    cdef Py_UCS4 c
    if n < 8 or n > 16 or PyUnicode_READ(kind, data, 0) != u'+':
        return False
    c = PyUnicode_READ(kind, data, 1)
    if c < u'1' or c > u'9':
        return False
    for i in range(2, n):
        c = PyUnicode_READ(kind, data, i)
        if c < u'0' or c > u'9':
            return False
    return True


cdef bint operator_ok(str s):
    """``[^\\x00-\\x1f\\x7f]{1,64}``, whole string."""
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(s), i
    cdef int kind = PyUnicode_KIND(s)
    cdef void* data = PyUnicode_DATA(s)
    cdef Py_UCS4 c
    if n < 1 or n > 64:
        return False
    for i in range(n):
        c = PyUnicode_READ(kind, data, i)
        if c < 0x20 or c == 0x7f:
            return False
    return True


cdef bint country_ok(str s):
    """``[A-Z]{2}``, whole string."""
    cdef int kind = PyUnicode_KIND(s)
    cdef void* data = PyUnicode_DATA(s)
    cdef Py_UCS4 c0, c1
    if PyUnicode_GET_LENGTH(s) != 2:
        return False
    c0 = PyUnicode_READ(kind, data, 0)
    c1 = PyUnicode_READ(kind, data, 1)
    return u'A' <= c0 <= u'Z' and u'A' <= c1 <= u'Z'



# --- keyed BLAKE2b-64 of owner references --------------------------------------------------
# hashlib costs ~1-2 us per call in object creation alone, more than all the rest of a
# record; the keyed state after the key block is fixed, so one compression per owner_ref of
# up to 128 bytes is all that is left. RFC 7693; checked against hashlib.blake2b in the tests.

cdef extern from "_blake2b.h" nogil:  # BLAKE2b compression, shared with features/_online.pyx
    const uint64_t cs_blake2b_iv[8]
    void cs_blake2b_compress(uint64_t* h, const uint8_t* block, uint64_t t, int last)

cdef class OwnerDigest:
    """Keyed BLAKE2b with an 8-byte digest (``hashlib.blake2b(x, digest_size=8, key=key)``)."""

    cdef uint64_t keyed[8]  # the state after the key block
    cdef uint64_t plain[8]  # the initial state, for an empty message (the key block is then last)
    cdef uint8_t keyblock[128]

    def __init__(self, bytes key):
        cdef Py_ssize_t n = len(key), i
        if not 1 <= n <= 64:
            raise ValueError(f"BLAKE2b key of {n} bytes; fix: 1-64 bytes")
        for i in range(8):
            self.plain[i] = cs_blake2b_iv[i]
        self.plain[0] ^= 0x01010000ULL ^ (<uint64_t>n << 8) ^ 8ULL
        memset(self.keyblock, 0, 128)
        memcpy(self.keyblock, <const char*>key, n)
        memcpy(self.keyed, self.plain, sizeof(self.keyed))
        cs_blake2b_compress(self.keyed, self.keyblock, 128, False)

    cdef void digest(self, const uint8_t* msg, Py_ssize_t n, uint8_t* out) noexcept nogil:
        cdef uint64_t h[8]
        cdef uint8_t block[128]
        cdef uint64_t t = 128
        cdef Py_ssize_t take
        cdef int k
        if n == 0:
            memcpy(h, self.plain, sizeof(h))
            cs_blake2b_compress(h, self.keyblock, 128, True)
        else:
            memcpy(h, self.keyed, sizeof(h))
            while n > 128:
                t += 128
                cs_blake2b_compress(h, msg, t, False)
                msg += 128
                n -= 128
            memset(block, 0, 128)
            memcpy(block, msg, n)
            t += n
            cs_blake2b_compress(h, block, t, True)
        for k in range(8):
            out[k] = <uint8_t>(h[0] >> (8 * k))

    def __call__(self, str value):
        """The digest of ``value`` encoded as UTF-8."""
        cdef Py_ssize_t n
        cdef const char* s = PyUnicode_AsUTF8AndSize(value, &n)
        cdef uint8_t out[8]
        self.digest(<const uint8_t*>s, n, out)
        return PyBytes_FromStringAndSize(<const char*>out, 8)


cdef inline Py_ssize_t put_int(uint8_t* out, int64_t v, int width):
    cdef int k
    for k in range(width):
        out[width - 1 - k] = <uint8_t>(v & 0xff)
        v >>= 8
    return width


def pack_records(list records, dict op_codes, object op_code, OwnerDigest owner_digest, dict biometric_codes,
                 bint check):
    """Pack ``subscriber/1`` records (any objects with its attributes: ``Subscriber`` or the
    loader's unchecked struct) for the registry.

    ``op_codes`` caches operator -> code (``op_code(name)`` fills it on a miss);
    ``owner_digest`` hashes owner references. With ``check``, the checks that
    ``Subscriber``'s patterns and lengths make are made here, and the first record failing
    one raises ``RecordCheckError(index)`` (the caller decodes it with the contract to say why).

    Returns ``(bucket int64[n], field uint8[n], packed uint8[n, RECORD_MAX], length uint8[n])``:
    the bucket is the number without ``+`` and its last two digits, as an integer (E.164 has no
    leading zero, so it is the bucket's digits exactly); the field is the last two digits.
    """
    cdef Py_ssize_t n = len(records), i, k, pos, length
    bucket_np = np.empty(n, dtype=np.int64)
    field_np = np.empty(n, dtype=np.uint8)
    packed_np = np.zeros((n, RECORD_MAX), dtype=np.uint8)
    length_np = np.empty(n, dtype=np.uint8)
    cdef int64_t[::1] bucket = bucket_np
    cdef uint8_t[::1] field = field_np
    cdef uint8_t[:, ::1] packed = packed_np
    cdef uint8_t[::1] lengths = length_np
    cdef int64_t sim, ver, b, code
    cdef bint has_ver, ms
    cdef int width, flags
    cdef uint8_t* out
    cdef const char* utf8
    cdef Py_ssize_t olen
    cdef str msisdn, opname, country, owner
    cdef int kind
    cdef void* data
    for i in range(n):
        r = records[i]
        msisdn = r.msisdn
        opname = r.operator
        status = r.biometric_status
        kind_ = r.subscriber_type
        country = r.roaming_country
        owner = r.owner_ref
        if check and (not e164_ok(msisdn) or not operator_ok(opname)
                      or (country is not None and not country_ok(country))
                      or (owner is not None and not 1 <= PyUnicode_GET_LENGTH(owner) <= 128)):
            raise RecordCheckError(i)
        # msisdn "+" d1..dn: bucket d1..d(n-2), field int(d(n-1) dn)
        length = PyUnicode_GET_LENGTH(msisdn)
        kind = PyUnicode_KIND(msisdn)
        data = PyUnicode_DATA(msisdn)
        b = 0
        for k in range(1, length - 2):
            b = b * 10 + (<int64_t>PyUnicode_READ(kind, data, k) - 48)
        bucket[i] = b
        field[i] = <uint8_t>((<int>PyUnicode_READ(kind, data, length - 2) - 48) * 10
                             + (<int>PyUnicode_READ(kind, data, length - 1) - 48))

        c = op_codes.get(opname)
        if c is None:
            c = op_code(opname)
            op_codes[opname] = c
        code = c
        if not 0 < code < 256:
            raise StoreRecordError(f"operator code {code} out of range 1-255; fix: fewer than 255 operators")

        sim = epoch_ms(r.sim_activated_at)
        v = r.verified_at
        has_ver = v is not None
        ver = epoch_ms(v) if has_ver else 0
        ms = sim % 1000 != 0 or (has_ver and ver % 1000 != 0)
        if ms:
            if not 0 <= sim < MAX_U48:
                raise StoreRecordError(f"subscriber/1: sim_activated_at {sim} ms is outside 1970-2106; fix: send a real date")
            if has_ver and not 0 <= ver < MAX_U48:
                raise StoreRecordError(f"subscriber/1: verified_at {ver} ms is outside 1970-2106; fix: send a real date")
            width = 6
        else:
            if not 0 <= floordiv(sim, 1000) < MAX_U32:
                raise StoreRecordError(f"subscriber/1: sim_activated_at {sim} ms is outside 1970-2106; fix: send a real date")
            if has_ver and not 0 <= floordiv(ver, 1000) < MAX_U32:
                raise StoreRecordError(f"subscriber/1: verified_at {ver} ms is outside 1970-2106; fix: send a real date")
            sim = floordiv(sim, 1000)
            ver = floordiv(ver, 1000)
            width = 4

        flags = biometric_codes[status]
        if kind_ == "corporate":
            flags |= 8
        out = &packed[i, 0]
        out[1] = <uint8_t>code
        pos = 2 + put_int(out + 2, sim, width)
        if has_ver:
            flags |= 16
            pos += put_int(out + pos, ver, width)
        if country is not None:
            flags |= 32
            kind = PyUnicode_KIND(country)
            data = PyUnicode_DATA(country)
            out[pos] = <uint8_t><int>PyUnicode_READ(kind, data, 0)
            out[pos + 1] = <uint8_t><int>PyUnicode_READ(kind, data, 1)
            pos += 2
        if owner is not None:
            flags |= 64
            utf8 = PyUnicode_AsUTF8AndSize(owner, &olen)
            owner_digest.digest(<const uint8_t*>utf8, olen, out + pos)
            pos += 8
        if ms:
            flags |= 128
        out[0] = <uint8_t>flags
        lengths[i] = <uint8_t>pos
    return bucket_np, field_np, packed_np, length_np


cdef Py_ssize_t put_decimal(char* out, int64_t v):
    """``v`` >= 0 in ASCII decimal; returns the digits written."""
    cdef char tmp[24]
    cdef Py_ssize_t n = 0, k
    if v == 0:
        out[0] = 48
        return 1
    while v > 0:
        tmp[n] = <char>(48 + v % 10)
        v //= 10
        n += 1
    for k in range(n):
        out[k] = tmp[n - 1 - k]
    return n


cdef Py_ssize_t put_bulk(char* out, const char* s, Py_ssize_t n):
    """One RESP bulk string: ``$n\\r\\n<s>\\r\\n``."""
    cdef Py_ssize_t pos = 1
    out[0] = 36  # '$'
    pos += put_decimal(out + pos, n)
    out[pos] = 13
    out[pos + 1] = 10
    pos += 2
    memcpy(out + pos, s, n)
    pos += n
    out[pos] = 13
    out[pos + 1] = 10
    return pos + 2


def encode_calls(const int64_t[::1] bucket, const uint8_t[::1] field, const uint8_t[:, ::1] packed,
                 const uint8_t[::1] length, const int64_t[::1] order, bytes head, Py_ssize_t head_args,
                 Py_ssize_t per_call):
    """The records in ``order`` as Redis commands in wire format (RESP), ``per_call`` records each.

    Each command is ``head`` (``head_args`` arguments already encoded, e.g. ``EVAL script 0
    prefix u``) followed, per run of one bucket, by ``"+" bucket``, the run length, and
    (field, packed record) pairs: the argument layout of ``registry.lua``. A run longer than
    what is left of a call continues in the next call, in order.
    """
    cdef Py_ssize_t n = order.shape[0], start = 0, j, k, pos, runs, end, size
    cdef Py_ssize_t head_len = len(head)
    cdef int64_t b, idx
    cdef char num[24]
    cdef char fld[1]
    cdef Py_ssize_t numlen
    cdef char* out
    cdef object call
    calls = []
    while start < n:
        end = min(start + per_call, n)
        runs = 1
        for j in range(start + 1, end):
            if bucket[order[j]] != bucket[order[j - 1]]:
                runs += 1
        # a record is at most 7 + 4 + RECORD_MAX + 2 bytes, a run header at most 24 + 10
        size = 32 + head_len + (end - start) * (13 + RECORD_MAX) + runs * 34
        call = PyBytes_FromStringAndSize(NULL, size)
        out = PyBytes_AS_STRING(call)
        out[0] = 42  # '*'
        pos = 1 + put_decimal(out + 1, head_args + 2 * runs + 2 * (end - start))
        out[pos] = 13
        out[pos + 1] = 10
        pos += 2
        memcpy(out + pos, <const char*>head, head_len)
        pos += head_len
        j = start
        while j < end:
            b = bucket[order[j]]
            k = j
            while k < end and bucket[order[k]] == b:
                k += 1
            num[0] = 43  # '+'
            numlen = 1 + put_decimal(num + 1, b)
            pos += put_bulk(out + pos, num, numlen)
            numlen = put_decimal(num, k - j)
            pos += put_bulk(out + pos, num, numlen)
            while j < k:
                idx = order[j]
                fld[0] = <char>field[idx]
                pos += put_bulk(out + pos, fld, 1)
                pos += put_bulk(out + pos, <const char*>&packed[idx, 0], length[idx])
                j += 1
        calls.append(call[:pos])
        start = end
    return calls
