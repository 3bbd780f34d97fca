"""The compiled key hash and partitioner choose exactly what Kafka's default partitioner chooses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka.partitioner.default import DefaultPartitioner
from kafka.partitioner.default import murmur2 as reference_murmur2

from streaming._murmur2 import murmur2
from streaming.partitioner import KeyHashPartitioner


@given(st.binary(max_size=200))
def test_murmur2_equals_kafka_python_reference(data: bytes) -> None:
    assert murmur2(data) == reference_murmur2(data)


def test_murmur2_known_java_values() -> None:
    # Values of org.apache.kafka.common.utils.Utils.murmur2 (Kafka's UtilsTest), as unsigned ints.
    assert murmur2(b"21") & 0xFFFFFFFF == (-973932308) & 0xFFFFFFFF
    assert murmur2(b"foobar") & 0xFFFFFFFF == (-790332482) & 0xFFFFFFFF
    assert murmur2(b"a-little-bit-long-string") & 0xFFFFFFFF == (-985981536) & 0xFFFFFFFF


class _Cluster:
    """The three metadata lookups a partitioner makes, for a topic with ``n`` partitions."""

    def __init__(self, n: int) -> None:
        self.ids = set(range(n))

    def topics(self) -> set[str]:
        return {"decisions"}

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return self.ids if topic == "decisions" else None

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self.ids


@given(st.binary(min_size=1, max_size=64), st.integers(min_value=1, max_value=64))
def test_partition_equals_default_partitioner(key: bytes, n: int) -> None:
    cluster = _Cluster(n)
    ours = KeyHashPartitioner().partition("decisions", None, key, None, None, cluster)
    theirs = DefaultPartitioner().partition("decisions", None, key, None, None, cluster)
    assert ours == theirs


def test_unknown_topic_is_refused() -> None:
    with pytest.raises(ValueError, match="nope"):
        KeyHashPartitioner().partition("nope", None, b"k", None, None, _Cluster(3))
