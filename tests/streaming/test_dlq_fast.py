"""The worker's fast CDR decode (streaming/dlq.py, _cdrcheck.pyx) accepts exactly what the
contract decoder accepts, builds the same Cdr, and leaves every refusal (and its message) to it."""

from __future__ import annotations

import json
import re
import typing
from typing import Any

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from features.contracts import Cdr
from features.errors import ContractError
from streaming import dlq
from streaming._cdrcheck import patterns_hold

VALID: dict[str, Any] = {
    "call_id": "c-1.2:3_x", "operator": "kcell", "start_time": "2026-11-20T08:15:30.250Z",
    "a_number": "+77011234567", "b_number": "+77051234567", "ingress": "mobile",
    "a_imei": "35000000000172", "a_cell_id": "cell 205 é", "answered": True, "duration_s": 9.0, "ring_s": 12.0,
}  # fmt: skip

# Characters around every edge of the six patterns: ASCII classes, non-ASCII digits and letters,
# control characters, DEL, newline (Python's $ matches before a trailing one), astral code points.
_ALPHABET = st.sampled_from(list("09aAzZ+._:-_ é٣１\n\r\t\x00\x1f\x7f\x80\u2028😀/") + ["1", "7", "5"])
_TEXT = st.text(_ALPHABET, max_size=70)


def _same(value: bytes) -> None:
    try:
        expected: Cdr | str = dlq._parse_strict(value)
    except ContractError as exc:
        expected = str(exc)
    try:
        got: Cdr | str = dlq.parse(value)
    except ContractError as exc:
        got = str(exc)
    assert type(got) is type(expected)
    assert got == expected


def test_the_fast_path_is_on_for_the_current_contract() -> None:
    assert dlq._FAST is not None
    hints = typing.get_type_hints(Cdr, include_extras=True)
    patterns = {name: meta.pattern for name, tp in hints.items()
                for arg in [tp, *typing.get_args(tp)] for meta in typing.get_args(arg)[1:]
                if isinstance(meta, msgspec.Meta) and meta.pattern is not None}
    assert patterns == dlq.FAST_PATTERNS


@pytest.mark.parametrize("field", sorted(dlq.FAST_PATTERNS))
@settings(max_examples=400, deadline=None)
@given(value=_TEXT)
@example(value="+7701234567\n")
@example(value="+٣701234567")
@example(value="1" * 64)
@example(value="a" * 65)
def test_a_pattern_check_never_accepts_what_the_regex_refuses(field: str, value: str) -> None:
    fields = {k: VALID[k] for k in ("call_id", "operator", "a_number", "b_number", "a_imei", "a_cell_id")}
    fields[field] = value
    if patterns_hold(**fields):
        assert re.search(dlq.FAST_PATTERNS[field], value), (field, value)


@pytest.mark.parametrize("field", sorted(dlq.FAST_PATTERNS))
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_a_pattern_check_accepts_what_the_regex_accepts(field: str, data: st.DataObject) -> None:
    value = data.draw(st.from_regex(re.compile(dlq.FAST_PATTERNS[field].replace("$(?!\\n)", r"\Z")), fullmatch=True))
    fields = {k: VALID[k] for k in ("call_id", "operator", "a_number", "b_number", "a_imei", "a_cell_id")}
    fields[field] = value
    assert re.search(dlq.FAST_PATTERNS[field], value)
    assert patterns_hold(**fields), (field, value)


_FIELD_VALUES = st.one_of(_TEXT, st.none(), st.booleans(), st.integers(-5, 10**17), st.floats(allow_nan=False),
                          st.sampled_from(["mobile", "voip", "international", "fixed", "Mobile",
                                           "2026-11-20T08:15:30Z", "2026-11-20T08:15:30", "2026-02-30T08:15:30Z"]))


@settings(max_examples=1500, deadline=None)
@given(changes=st.dictionaries(st.sampled_from([*VALID, "extra"]), _FIELD_VALUES, max_size=4),
       drop=st.sets(st.sampled_from(list(VALID)), max_size=2))
def test_records_decode_as_the_contract_decodes_them(changes: dict[str, Any], drop: set[str]) -> None:
    record = {**VALID, **changes}
    for k in drop:
        record.pop(k, None)
    _same(json.dumps(record).encode())


@pytest.mark.parametrize("value", [
    b"", b"{", b"null", b"[]", b'{"call_id": "x"}', json.dumps(VALID).encode() + b"\n",
    json.dumps({**VALID, "answered": False, "duration_s": 3.0}).encode(),
    json.dumps({**VALID, "answered": False, "duration_s": 0.0}).encode(),
    json.dumps({**VALID, "duration_s": -1}).encode(),
    json.dumps({**VALID, "a_cell_id": "x" * 64}).encode(), json.dumps({**VALID, "a_cell_id": "x" * 65}).encode(),
    json.dumps({**VALID, "b_number": "112"}).encode(), json.dumps({**VALID, "b_number": "1"}).encode(),
    json.dumps(VALID).encode().replace(b"kcell", b"kc\\u0000ll"),
    b"\xff\xfe" + json.dumps(VALID).encode(),
    json.dumps({**VALID, "pad": "x" * 9000}).encode(),
])
def test_edge_records(value: bytes) -> None:
    _same(value)


def test_none_is_refused_as_before() -> None:
    with pytest.raises(ContractError, match="tombstone"):
        dlq.parse(None)


def test_a_dead_letter_keeps_small_values_whole_and_truncates_huge_ones_with_their_length() -> None:
    from streaming import dlq

    small, hdrs = dlq.letter(b"{not json", "cdr/1: bad", "cdr", 2, 7)
    assert small == b"{not json" and dict(hdrs)["x-origin-offset"] == b"7"
    assert "x-value-truncated" not in dict(hdrs)
    huge = b"x" * (dlq.MAX_DEAD_VALUE + 5)
    cut, hdrs = dlq.letter(huge, "cdr/1: record over 8192 bytes", "cdr", 0, 1)
    assert cut == huge[: dlq.MAX_DEAD_VALUE]
    assert dict(hdrs)["x-value-truncated"] == str(len(huge)).encode()
    assert dlq.letter(None, "empty", "cdr", 0, 2)[0] is None


def test_the_worker_dead_letters_a_huge_record_truncated() -> None:
    from types import SimpleNamespace

    from streaming import dlq
    from streaming.worker import Worker, WorkerConfig

    worker = Worker(WorkerConfig(bootstrap="127.0.0.1:1", gc_freeze=False))
    rec = SimpleNamespace(topic="cdr", partition=1, offset=9, key=b"k", value=b"{" + b" " * (2 * dlq.MAX_DEAD_VALUE))
    decoded = worker.decode([rec])
    assert decoded.cdrs == [] and len(decoded.dead) == 1
    dead = decoded.dead[0]
    assert dead.value == rec.value[: dlq.MAX_DEAD_VALUE]
    assert dict(dead.headers)["x-value-truncated"] == str(len(rec.value)).encode()
