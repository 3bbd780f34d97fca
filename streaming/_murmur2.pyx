# cython: language_level=3, boundscheck=False, wraparound=False
"""Kafka's key hash (Java client ``Utils.murmur2``) in C.

kafka-python computes it in pure Python on every keyed ``send`` (about a fifth of its
per-message producer cost here); this is the same function, bit for bit, so a record goes
to the partition a Java producer (or kafka-python's default partitioner) would choose.
The C body is in ``_murmur2.pxd`` so that ``_records.pyx`` partitions whole batches with it.
"""


def murmur2(const unsigned char[::1] data not None) -> int:
    """The 32-bit murmur2 hash of ``data`` with Kafka's seed (0x9747b28c), as an unsigned int."""
    if data.shape[0] == 0:
        return murmur2_c(NULL, 0)
    return murmur2_c(&data[0], data.shape[0])
