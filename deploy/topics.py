"""Idempotent topic creation with kafka-python's admin client (explicit timeouts)."""

from __future__ import annotations

from collections.abc import Iterable

DEFAULT_PARTITIONS = 3


def ensure_topics(
    bootstrap: str, names: Iterable[str], *, partitions: int = DEFAULT_PARTITIONS, timeout_s: float = 10.0
) -> list[str]:
    """Create the topics that do not exist yet; return the names created (already present: skipped)."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    timeout_ms = int(timeout_s * 1000)
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms, bootstrap_timeout_ms=timeout_ms
    )
    try:
        existing = set(admin.list_topics())
        created = []
        for name in dict.fromkeys(names):
            if name in existing:
                continue
            try:
                admin.create_topics(
                    [NewTopic(name, num_partitions=partitions, replication_factor=1)], timeout_ms=timeout_ms
                )
                created.append(name)
            except TopicAlreadyExistsError:
                pass  # created concurrently by someone else: that is the idempotent outcome
        return created
    finally:
        admin.close()
