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

:func:`parse` has a fast path (about half the decode cost, most of which is msgspec running the
contract's six regular expressions): msgspec decodes into a twin of ``Cdr`` built from its
own annotations minus the ``pattern`` constraints (every other constraint kept), the patterns
are checked in C (``streaming/_cdrcheck.pyx``) and the ``Cdr`` is built from the twin. Any
doubt (the twin refuses the record, a pattern check fails, ``Cdr.__post_init__`` objects)
hands the record to the contract decoder, which decides and words the error: the fast path
only ever accepts what the contract accepts. If the contract's patterns are not exactly
``FAST_PATTERNS`` (what the C checks implement), the fast path is off.
"""

from __future__ import annotations

import logging
import typing
from collections.abc import Callable
from typing import Any, Final

import msgspec

from features.contracts import Cdr, decode
from features.errors import ContractError
from streaming._cdrcheck import patterns_hold

log = logging.getLogger(__name__)

MAX_RECORD_BYTES: Final = 8 * 1024
_MAX_ERROR_BYTES: Final = 1024

Headers = list[tuple[str, bytes]]


FAST_PATTERNS: Final = {
    "call_id": "^(?:[A-Za-z0-9._:-]{1,64})$(?!\\n)",
    "operator": "^(?:[a-z0-9_-]{2,32})$(?!\\n)",
    "a_number": "^(?:\\+[1-9][0-9]{6,14})$(?!\\n)",
    "b_number": "^(?:\\+[1-9][0-9]{6,14}|[0-9]{2,6})$(?!\\n)",
    "a_imei": "^(?:[0-9]{14,16})$(?!\\n)",
    "a_cell_id": "^(?:[^\\x00-\\x1f\\x7f]{1,64})$(?!\\n)",
}
"""The `cdr/1` patterns that ``_cdrcheck.patterns_hold`` implements, field by field."""


def _strip_patterns(tp: Any, found: dict[str, str], name: str) -> Any:
    """``tp`` with every ``Meta(pattern=...)`` replaced by the same Meta without the pattern."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        base, *metas = typing.get_args(tp)
        kept = []
        for meta in metas:
            if isinstance(meta, msgspec.Meta) and meta.pattern is not None:
                found[name] = meta.pattern
                fields = {f: getattr(meta, f) for f in ("gt", "ge", "lt", "le", "multiple_of", "min_length",
                                                         "max_length", "tz", "title", "description", "examples",
                                                         "extra_json_schema", "extra")
                          if getattr(meta, f) is not None}
                meta = msgspec.Meta(**fields)
            kept.append(meta)
        return typing.Annotated[(_strip_patterns(base, found, name), *kept)]
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = tuple(_strip_patterns(a, found, name) for a in typing.get_args(tp))
        return typing.Union[args]
    return tp


def _fast_decoder() -> tuple[msgspec.json.Decoder[Any], Callable[[Any], Cdr]] | None:
    """The twin decoder and the twin -> Cdr builder, or None if the contract is not the one pinned."""
    config = Cdr.__struct_config__
    hints = typing.get_type_hints(Cdr, include_extras=True)
    found: dict[str, str] = {}
    defaults = dict(zip(Cdr.__struct_fields__[len(Cdr.__struct_fields__) - len(Cdr.__struct_defaults__):],
                        Cdr.__struct_defaults__, strict=True))
    fields: list[Any] = []
    for name in Cdr.__struct_fields__:
        tp = _strip_patterns(hints[name], found, name)
        fields.append((name, tp, defaults[name]) if name in defaults else (name, tp))
    if (found != FAST_PATTERNS or config.forbid_unknown_fields or config.tag is not None or config.array_like
            or Cdr.__struct_encode_fields__ != Cdr.__struct_fields__):
        log.warning("cdr/1 differs from what the fast decode was written for; using the contract decoder only")
        return None
    twin = msgspec.defstruct("CdrShape", fields, kw_only=True, frozen=True)
    args = ", ".join(f"{f}=s.{f}" for f in Cdr.__struct_fields__)
    scope: dict[str, Any] = {"Cdr": Cdr}
    exec(f"def build(s):\n    return Cdr({args})\n", scope)  # noqa: S102 - generated from Cdr's own field names
    return msgspec.json.Decoder(twin), scope["build"]


_FAST = _fast_decoder()


def parse(value: bytes | None) -> Cdr:
    """Decode one Kafka value into a CDR, raising ContractError (also for oversized or empty values)."""
    if _FAST is not None and value is not None and len(value) <= MAX_RECORD_BYTES:
        try:
            s = _FAST[0].decode(value)
            if patterns_hold(s.call_id, s.operator, s.a_number, s.b_number, s.a_imei, s.a_cell_id):
                return _FAST[1](s)
        except (msgspec.ValidationError, msgspec.DecodeError, ValueError, TypeError):
            pass  # the contract decoder decides, and says why
    return _parse_strict(value)


def _parse_strict(value: bytes | None) -> Cdr:
    """The contract decoder alone (the reference of :func:`parse`)."""
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


MAX_DEAD_VALUE: Final = 256 * 1024
"""Dead letters carry at most this many bytes of the original value. A record that barely fit
its own topic would not fit the DLQ with the headers added, and a batch that can never be
acknowledged stalls its partition; anything this big is far over every contract limit (8 KiB),
and the whole original stays on its topic at the origin headers' position."""


def letter(value: bytes | None, error: str, topic: str, partition: int, offset: int) -> tuple[bytes | None, Headers]:
    """The value and headers of one dead letter: the value as it came, or its first
    ``MAX_DEAD_VALUE`` bytes with an ``x-value-truncated`` header giving the original length."""
    hdrs = headers(error, topic, partition, offset)
    if value is not None and len(value) > MAX_DEAD_VALUE:
        hdrs.append(("x-value-truncated", str(len(value)).encode()))
        value = value[:MAX_DEAD_VALUE]
    return value, hdrs
