"""Dead letters: a CDR that cannot be decoded goes to the DLQ topic with where it came from and why.

The record is copied byte for byte (the producer of the bad record may need it) and carries
four headers:

=====================  =====================================================
header                 value
=====================  =====================================================
``x-error``            the validation message; phone numbers in it are masked
``x-origin-topic``     topic the record was read from
``x-origin-partition`` partition, decimal
``x-origin-offset``    offset, decimal
=====================  =====================================================

Values over ``MAX_RECORD_BYTES`` are dead-lettered without being parsed: a CDR is a few
hundred bytes, so a huge one is an error or an attack, and parsing it costs the stream.
"""

from __future__ import annotations

from typing import Final

from features.contracts import Cdr, decode
from features.errors import ContractError

MAX_RECORD_BYTES: Final = 8 * 1024
_MAX_ERROR_BYTES: Final = 1024

Headers = list[tuple[str, bytes]]


def parse(value: bytes | None) -> Cdr:
    """Decode one Kafka value into a CDR, raising ContractError (also for oversized or empty values)."""
    if value is None:
        raise ContractError("cdr/1: record has no value (tombstone); fix: send one JSON object per record",
                            record="cdr/1", field=None)
    if len(value) > MAX_RECORD_BYTES:
        raise ContractError(
            f"cdr/1: record is {len(value)} bytes, over the {MAX_RECORD_BYTES}-byte limit; "
            "fix: send one CDR per record without extra payload",
            record="cdr/1",
            field=None,
        )
    return decode(Cdr, value)


def headers(error: str, topic: str, partition: int, offset: int) -> Headers:
    """The DLQ headers of one dead letter (``error`` must already be masked)."""
    return [
        ("x-error", error.encode("utf-8", "replace")[:_MAX_ERROR_BYTES]),
        ("x-origin-topic", topic.encode()),
        ("x-origin-partition", str(partition).encode()),
        ("x-origin-offset", str(offset).encode()),
    ]
