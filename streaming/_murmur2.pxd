# cython: language_level=3
"""The C body of Kafka's key hash, shared by ``_murmur2.pyx`` and ``_records.pyx``."""

from libc.stdint cimport uint32_t


cdef inline uint32_t murmur2_c(const unsigned char* data, Py_ssize_t length) noexcept nogil:
    """Java client ``Utils.murmur2`` (seed 0x9747b28c), bit for bit, as an unsigned int."""
    cdef Py_ssize_t i, n4 = length // 4, tail = length & ~3
    cdef uint32_t m = 0x5bd1e995
    cdef uint32_t h = <uint32_t>0x9747b28c ^ <uint32_t>length
    cdef uint32_t k
    for i in range(n4):
        k = (<uint32_t>data[4 * i] | (<uint32_t>data[4 * i + 1] << 8)
             | (<uint32_t>data[4 * i + 2] << 16) | (<uint32_t>data[4 * i + 3] << 24))
        k *= m
        k ^= k >> 24
        k *= m
        h *= m
        h ^= k
    cdef Py_ssize_t extra = length % 4
    if extra >= 3:
        h ^= <uint32_t>data[tail + 2] << 16
    if extra >= 2:
        h ^= <uint32_t>data[tail + 1] << 8
    if extra >= 1:
        h ^= <uint32_t>data[tail]
        h *= m
    h ^= h >> 13
    h *= m
    h ^= h >> 15
    return h
