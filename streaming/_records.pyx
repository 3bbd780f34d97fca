# cython: language_level=3, boundscheck=False, wraparound=False
"""Kafka record batches (message format v2) encoded and decoded a whole batch per call, in C.

kafka-python builds and parses every record in Python (varints, a metadata object and a future
per produced record, a record object and a namedtuple per consumed one): about 37 us per
produced and 16 us per consumed message here, the worker's largest cost. This module does the
per-record work of whole batches in C; the batch header fields that the client owns (producer
id, epoch, base sequence, CRC) are written by the Python side (``streaming.producer``) when
kafka-python's sender drains the batch, exactly where its own builder writes them.

Layout (Kafka ``DefaultRecordBatch``, the same as ``kafka.record.default_records``)::

    BaseOffset i64 | Length i32 | PartitionLeaderEpoch i32 | Magic i8 | CRC u32 | Attributes i16
    | LastOffsetDelta i32 | FirstTimestamp i64 | MaxTimestamp i64 | ProducerId i64
    | ProducerEpoch i16 | BaseSequence i32 | RecordCount i32 | Records
    Record: Length varint | Attributes i8 | TimestampDelta varlong | OffsetDelta varint
            | Key (varint length, -1 = null) | Value (same) | HeaderCount varint
            | Headers (varint key length, utf-8 key, varint value length, value)

Varints are zigzag-encoded, as in protobuf.
"""

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_FromStringAndSize
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport PyTypeObject
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_SET_ITEM
from cpython.type cimport PyType_GenericAlloc
from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset

from streaming._murmur2 cimport murmur2_c

HEADER_SIZE = 61
"""Bytes of the batch header before the first record."""

cdef enum:
    _HEADER = 61
    _CRC_AT = 17
    _ATTRIBUTES_AT = 21


cdef inline Py_ssize_t _varint_size(int64_t value) noexcept nogil:
    cdef uint64_t v = (<uint64_t>value << 1) ^ <uint64_t>(value >> 63)
    cdef Py_ssize_t n = 1
    while v >= 0x80:
        v >>= 7
        n += 1
    return n


cdef inline unsigned char* _put_varint(unsigned char* p, int64_t value) noexcept nogil:
    cdef uint64_t v = (<uint64_t>value << 1) ^ <uint64_t>(value >> 63)
    while v >= 0x80:
        p[0] = <unsigned char>((v & 0x7F) | 0x80)
        p += 1
        v >>= 7
    p[0] = <unsigned char>v
    return p + 1


cdef inline void _put_be(unsigned char* p, uint64_t v, int width) noexcept nogil:
    cdef int i
    for i in range(width):
        p[width - 1 - i] = <unsigned char>(v & 0xFF)
        v >>= 8


cdef inline uint64_t _get_be(const unsigned char* p, int width) noexcept nogil:
    cdef uint64_t v = 0
    cdef int i
    for i in range(width):
        v = (v << 8) | p[i]
    return v


def encode_headers(list headers) -> bytes:
    """The header section of one record (count and entries), as ``DefaultRecordBatchBuilder`` writes it."""
    cdef list parts = []
    cdef bytearray out = bytearray()
    cdef unsigned char tmp[10]
    cdef unsigned char* end
    end = _put_varint(tmp, len(headers))
    out += (<char*>tmp)[:end - tmp]
    for key, value in headers:
        if not isinstance(key, str):
            raise TypeError(f"header key {key!r} is {type(key).__name__}; expected str (Kafka header keys are text)")
        kb = (<str>key).encode("utf-8")
        end = _put_varint(tmp, len(kb))
        out += (<char*>tmp)[:end - tmp]
        out += kb
        if value is None:
            end = _put_varint(tmp, -1)
            out += (<char*>tmp)[:end - tmp]
        else:
            end = _put_varint(tmp, len(value))
            out += (<char*>tmp)[:end - tmp]
            out += value
    return bytes(out)


cdef inline Py_ssize_t _record_body(object key, object value, object header_blob, Py_ssize_t delta):
    """Bytes of one record after its length varint."""
    cdef Py_ssize_t n = 2 + _varint_size(delta)  # attributes, timestamp delta 0, offset delta
    cdef Py_ssize_t k
    if key is None:
        n += 1
    else:
        k = PyBytes_GET_SIZE(key)
        n += _varint_size(k) + k
    k = PyBytes_GET_SIZE(value)
    n += _varint_size(k) + k
    if header_blob is None:
        n += 1
    else:
        n += PyBytes_GET_SIZE(header_blob)
    return n


def build_batches(list keys, list values, object header_blobs, int n_partitions, int fallback,
                  int64_t timestamp_ms, Py_ssize_t max_bytes):
    """Partition records by key and encode them as v2 record batches, in input order per partition.

    ``keys[i]`` is bytes or None, ``values[i]`` bytes; ``header_blobs`` is None or a list with,
    per record, None (no headers) or :func:`encode_headers` output. A keyed record goes to
    partition index ``murmur2(key) & 0x7fffffff % n_partitions`` (Kafka's default partitioner,
    over the sorted partition ids); an unkeyed one to ``fallback``. A partition's records are cut
    into batches of at most ``max_bytes`` (a single larger record gets a batch of its own).

    Returns ``[(partition_index, batch, record_count), ...]``: each ``batch`` is a bytearray with
    every header field set except producer id, epoch, base sequence (-1) and the CRC (0).
    """
    cdef Py_ssize_t n = len(values), i, j, start, count, size, rsize, body, total
    if len(keys) != n or (header_blobs is not None and len(header_blobs) != n):
        raise ValueError("keys, values and headers must be aligned")
    if n_partitions <= 0 or not 0 <= fallback < n_partitions:
        raise ValueError("bad partition count or fallback partition")
    cdef int* part = <int*>PyMem_Malloc(max(n, 1) * sizeof(int))
    cdef Py_ssize_t* order = <Py_ssize_t*>PyMem_Malloc(max(n, 1) * sizeof(Py_ssize_t))
    cdef Py_ssize_t* first = <Py_ssize_t*>PyMem_Malloc((n_partitions + 1) * sizeof(Py_ssize_t))
    if part == NULL or order == NULL or first == NULL:
        PyMem_Free(part)
        PyMem_Free(order)
        PyMem_Free(first)
        raise MemoryError()
    cdef list out = []
    cdef object key, value, blob
    cdef int p
    cdef bytearray buf
    cdef unsigned char* w
    cdef unsigned char* base
    try:
        memset(first, 0, (n_partitions + 1) * sizeof(Py_ssize_t))
        for i in range(n):
            key = keys[i]
            value = values[i]
            if type(value) is not bytes:
                raise TypeError(f"record value must be bytes, not {type(value).__name__}")
            if key is None:
                p = fallback
            elif type(key) is bytes:
                p = <int>((murmur2_c(<const unsigned char*>PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key))
                           & 0x7FFFFFFF) % <uint32_t>n_partitions)
            else:
                raise TypeError(f"record key must be bytes or None, not {type(key).__name__}")
            if header_blobs is not None and header_blobs[i] is not None and type(header_blobs[i]) is not bytes:
                raise TypeError("header blobs must be bytes or None")
            part[i] = p
            first[p + 1] += 1
        for p in range(n_partitions):
            first[p + 1] += first[p]
        # counting sort: order[] lists record indexes partition by partition, input order kept
        for i in range(n):
            order[first[part[i]]] = i
            first[part[i]] += 1
        for p in range(n_partitions - 1, -1, -1):
            first[p + 1] = first[p]
        first[0] = 0
        for p in range(n_partitions):
            j = first[p]
            while j < first[p + 1]:
                # one batch: as many of this partition's records as fit in max_bytes
                start = j
                total = _HEADER
                count = 0
                while j < first[p + 1]:
                    i = order[j]
                    blob = header_blobs[i] if header_blobs is not None else None
                    body = _record_body(keys[i], values[i], blob, count)
                    rsize = _varint_size(body) + body
                    if count > 0 and total + rsize > max_bytes:
                        break
                    total += rsize
                    count += 1
                    j += 1
                buf = PyByteArray_FromStringAndSize(NULL, total)
                base = <unsigned char*>PyByteArray_AS_STRING(buf)
                memset(base, 0, _HEADER)
                _put_be(base + 8, <uint64_t>(total - 12), 4)       # Length: bytes after it
                base[16] = 2                                        # Magic
                _put_be(base + 23, <uint64_t>(count - 1), 4)       # LastOffsetDelta
                _put_be(base + 27, <uint64_t>timestamp_ms, 8)      # FirstTimestamp
                _put_be(base + 35, <uint64_t>timestamp_ms, 8)      # MaxTimestamp
                _put_be(base + 43, <uint64_t>(<int64_t>-1), 8)     # ProducerId (set on drain)
                _put_be(base + 51, <uint64_t>(<int64_t>-1), 2)     # ProducerEpoch
                _put_be(base + 53, <uint64_t>(<int64_t>-1), 4)     # BaseSequence
                _put_be(base + 57, <uint64_t>count, 4)             # RecordCount
                w = base + _HEADER
                for j in range(start, start + count):
                    i = order[j]
                    key = keys[i]
                    value = values[i]
                    blob = header_blobs[i] if header_blobs is not None else None
                    body = _record_body(key, value, blob, j - start)
                    w = _put_varint(w, body)
                    w[0] = 0                                        # attributes
                    w[1] = 0                                        # timestamp delta
                    w = _put_varint(w + 2, j - start)               # offset delta
                    if key is None:
                        w = _put_varint(w, -1)
                    else:
                        size = PyBytes_GET_SIZE(key)
                        w = _put_varint(w, size)
                        memcpy(w, PyBytes_AS_STRING(key), size)
                        w += size
                    size = PyBytes_GET_SIZE(value)
                    w = _put_varint(w, size)
                    memcpy(w, PyBytes_AS_STRING(value), size)
                    w += size
                    if blob is None:
                        w[0] = 0
                        w += 1
                    else:
                        size = PyBytes_GET_SIZE(blob)
                        memcpy(w, PyBytes_AS_STRING(blob), size)
                        w += size
                j = start + count
                if w - base != total:
                    raise AssertionError("record batch size mismatch")
                out.append((p, buf, count))
    finally:
        PyMem_Free(part)
        PyMem_Free(order)
        PyMem_Free(first)
    return out


def set_producer_state(bytearray batch not None, int64_t producer_id, int producer_epoch,
                       int32_t base_sequence, bint transactional, crc32c):
    """Write producer id, epoch, base sequence (and the transactional flag) into a batch built by
    :func:`build_batches`, then its CRC-32C (``crc32c(memoryview) -> int``) over attributes..end."""
    if len(batch) < _HEADER or batch[16] != 2:
        raise ValueError("not a v2 record batch")
    cdef unsigned char* base = <unsigned char*>PyByteArray_AS_STRING(batch)
    cdef uint64_t attributes = _get_be(base + 21, 2)
    if transactional:
        attributes |= 0x10
    else:
        attributes &= ~(<uint64_t>0x10)
    _put_be(base + 21, attributes, 2)
    _put_be(base + 43, <uint64_t>producer_id, 8)
    _put_be(base + 51, <uint64_t>(<int64_t>producer_epoch), 2)
    _put_be(base + 53, <uint64_t>(<int64_t>base_sequence), 4)
    cdef uint32_t crc = <uint32_t>crc32c(memoryview(batch)[_ATTRIBUTES_AT:])
    _put_be(base + _CRC_AT, crc, 4)


cdef struct _Reader:
    const unsigned char* p
    const unsigned char* end


cdef inline int64_t _read_varint(_Reader* r) except? -0x7FFFFFFFFFFFFFFF:
    cdef uint64_t v = 0
    cdef int shift = 0
    cdef unsigned char b
    while True:
        if r.p >= r.end:
            raise ValueError("record ends inside a varint")
        b = r.p[0]
        r.p += 1
        v |= <uint64_t>(b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")
    return <int64_t>((v >> 1) ^ (-(v & 1)))


cdef inline object _read_bytes(_Reader* r, int64_t length):
    if length < 0:
        return None
    if length > r.end - r.p:
        raise ValueError("record field runs past the record")
    cdef object out = PyBytes_FromStringAndSize(<const char*>r.p, <Py_ssize_t>length)
    r.p += length
    return out


cdef inline void _set(object tup, Py_ssize_t i, object value):
    Py_INCREF(value)
    PyTuple_SET_ITEM(tup, i, value)


def decode_batch(const unsigned char[::1] batch not None, str topic, int partition, type record_cls,
                 int64_t min_offset):
    """The records of one uncompressed v2 batch with offset >= ``min_offset``, as ``record_cls``
    tuples built exactly as kafka-python's fetcher builds its ``ConsumerRecord``:
    (topic, partition, leader_epoch, offset, timestamp, timestamp_type, key, value, headers,
    checksum=None, key size, value size, header size). Raises ValueError on a malformed batch;
    the CRC is checked by the caller.
    """
    if not issubclass(record_cls, tuple) or (<PyTypeObject*>record_cls).tp_itemsize != sizeof(void*):
        raise TypeError("record_cls must be a namedtuple class")
    cdef Py_ssize_t length = batch.shape[0]
    if length < _HEADER:
        raise ValueError("record batch shorter than its header")
    cdef const unsigned char* base = &batch[0]
    if base[16] != 2:
        raise ValueError("not a v2 record batch")
    cdef int64_t base_offset = <int64_t>_get_be(base, 8)
    cdef int32_t leader_epoch = <int32_t>_get_be(base + 12, 4)
    cdef int attributes = <int16_t>_get_be(base + 21, 2)
    if attributes & 0x07:
        raise ValueError("compressed record batch")
    if attributes & 0x20:
        raise ValueError("control record batch")
    cdef int timestamp_type = 1 if attributes & 0x08 else 0
    cdef int64_t first_ts = <int64_t>_get_be(base + 27, 8)
    cdef int64_t max_ts = <int64_t>_get_be(base + 35, 8)
    cdef int32_t count = <int32_t>_get_be(base + 57, 4)
    if count < 0:
        raise ValueError("negative record count")
    cdef _Reader r
    r.p = base + _HEADER
    r.end = base + length
    cdef list out = []
    cdef int32_t n
    cdef int64_t rec_len, ts_delta, off_delta, klen, vlen, hcount, hklen, hvlen, offset, timestamp, hsize
    cdef const unsigned char* rec_start
    cdef object key, value, hkey, hval, rec
    cdef list headers
    cdef object py_epoch = leader_epoch, py_partition = partition, py_ttype = timestamp_type
    cdef object last_ts = None
    cdef int64_t last_ts_value = 0
    for n in range(count):
        rec_len = _read_varint(&r)
        if rec_len < 0 or rec_len > r.end - r.p:
            raise ValueError("record length runs past the batch")
        rec_start = r.p
        r.p += 1  # attributes
        ts_delta = _read_varint(&r)
        off_delta = _read_varint(&r)
        offset = base_offset + off_delta
        timestamp = max_ts if timestamp_type == 1 else first_ts + ts_delta
        klen = _read_varint(&r)
        key = _read_bytes(&r, klen)
        vlen = _read_varint(&r)
        value = _read_bytes(&r, vlen)
        hcount = _read_varint(&r)
        if hcount < 0:
            raise ValueError("negative header count")
        headers = []
        hsize = 0
        while hcount > 0:
            hklen = _read_varint(&r)
            if hklen < 0:
                raise ValueError("negative header key size")
            hkey = _read_bytes(&r, hklen).decode("utf-8")
            hsize += hklen
            hvlen = _read_varint(&r)
            hval = _read_bytes(&r, hvlen)
            if hvlen > 0:
                hsize += hvlen
            headers.append((hkey, hval))
            hcount -= 1
        if r.p - rec_start != rec_len:
            raise ValueError("record size does not match its length")
        if offset < min_offset:
            continue
        if last_ts is None or timestamp != last_ts_value:
            last_ts = timestamp
            last_ts_value = timestamp
        # A tuple subclass instance filled in place, as tuple.__new__(record_cls, items) makes it.
        rec = PyType_GenericAlloc(record_cls, 13)
        _set(rec, 0, topic)
        _set(rec, 1, py_partition)
        _set(rec, 2, py_epoch)
        _set(rec, 3, offset)
        _set(rec, 4, last_ts)
        _set(rec, 5, py_ttype)
        _set(rec, 6, key)
        _set(rec, 7, value)
        _set(rec, 8, headers)
        _set(rec, 9, None)
        _set(rec, 10, klen if klen >= 0 else -1)
        _set(rec, 11, vlen if vlen >= 0 else -1)
        _set(rec, 12, hsize if headers else -1)
        out.append(rec)
    if r.p != r.end:
        raise ValueError("bytes left after the last record")
    return out
