"""The producer's partitioner: Kafka's default keyed partitioning, with the hash in C.

Same choice as the Java client and kafka-python's ``DefaultPartitioner`` (murmur2 of the key,
masked to 31 bits, modulo the number of partitions, over the sorted partition ids), so
consumers see a key on the partition they expect; only the hash is compiled
(``streaming/_murmur2.pyx``). Records without a key go to a random available partition, as
with the default.
"""

from __future__ import annotations

import random
from typing import Any

from kafka.partitioner.abc import Partitioner

from streaming._murmur2 import murmur2


class KeyHashPartitioner(Partitioner):  # type: ignore[misc]  # kafka-python ships no types
    """``DefaultPartitioner`` with a compiled murmur2."""

    def partition(self, topic: str, key: Any, serialized_key: bytes | None, value: Any,
                  serialized_value: bytes | None, cluster: Any) -> int:
        partitions = cluster.partitions_for_topic(topic)
        if not partitions:
            raise ValueError(f"topic {topic!r} not found in the cluster metadata")
        ordered = sorted(partitions)
        if serialized_key is not None:
            return int(ordered[(murmur2(serialized_key) & 0x7FFFFFFF) % len(ordered)])
        available = list(cluster.available_partitions_for_topic(topic) or ())
        return int(random.choice(available or ordered))
