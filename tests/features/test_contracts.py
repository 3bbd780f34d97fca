"""Every field of every contract: a bad value is rejected with a message naming the field."""

from __future__ import annotations

import copy
import json
from typing import Any

import msgspec
import pytest

from features.contracts import (
    PERSONAL_FIELDS,
    RECORDS,
    BankReport,
    Cdr,
    Decision,
    FeedEntry,
    Subscriber,
    convert,
    decode,
    encode,
    to_builtins,
)
from features.errors import ContractError

T0 = "2026-11-20T08:15:30.250Z"
T1 = "2026-11-20T09:15:30+05:00"
HEX64 = "ab" * 32

VALID: dict[type[msgspec.Struct], dict[str, Any]] = {
    Cdr: {
        "call_id": "kcell:0001.a-b_c",
        "operator": "kcell",
        "start_time": T0,
        "a_number": "+77011234567",
        "b_number": "+77272501234",
        "ingress": "mobile",
        "a_imei": "35693803564380",
        "a_cell_id": "401-02-1234-5678",
        "answered": True,
        "duration_s": 42.5,
        "ring_s": 3.0,
    },
    Subscriber: {
        "msisdn": "+77011234567",
        "operator": "kcell",
        "biometric_status": "verified",
        "verified_at": T0,
        "sim_activated_at": T1,
        "subscriber_type": "corporate",
        "roaming_country": "TR",
        "owner_ref": "owner-7f3a",
    },
    Decision: {
        "call_id": "c-1",
        "operator": "kcell",
        "action": "warn",
        "score": 0.73,
        "reasons": [{"code": "SPOOFED_DOMESTIC_CLI", "detail": "international ingress"}, {"code": "F_CALLS_1H"}],
        "model_version": "gbm-2026-11-01",
        "degraded": False,
        "decided_at": T0,
        "decision_id": "d-1",
    },
    FeedEntry: {
        "seq": 17,
        "number": HEX64,
        "status": "suspected",
        "typology": "wangiri",
        "confidence": 80,
        "first_seen": "2026-11-20T08:00:00Z",
        "last_seen": "2026-11-20T09:00:00Z",
        "valid_until": "2026-12-20T09:00:00Z",
        "source": "model",
        "evidence": {"calls": 1200, "distinct_callees": 1100, "operators": 3},
    },
    BankReport: {
        "report_id": "HB-2026-000017",
        "number": "+77011234567",
        "reported_at": T0,
        "incident_at": "2026-11-19T18:00:00+06:00",
        "outcome": "confirmed_fraud",
        "amount_kzt": 250000,
        "victim_number": "+77051234567",
    },
}

REQUIRED: dict[type[msgspec.Struct], set[str]] = {
    Cdr: {"call_id", "operator", "start_time", "a_number", "b_number", "ingress"},
    Subscriber: {"msisdn", "operator", "biometric_status", "sim_activated_at"},
    Decision: {"call_id", "operator", "action", "score", "reasons", "model_version", "degraded", "decided_at"},
    FeedEntry: {
        "seq", "number", "status", "typology", "confidence",
        "first_seen", "last_seen", "valid_until", "source", "evidence",
    },  # fmt: skip
    BankReport: {"report_id", "number", "reported_at", "incident_at", "outcome"},
}

# Bad values per field; each must be rejected with the field's name in the message.
NOT_E164 = ["87011234567", "77011234567", "+7701", "+0701123456", "+7701١234567", "+77011234567\x00",
            "+7 701 123 4567", "+77011234567\n", "＋77011234567", 77011234567, None]  # fmt: skip
NOT_TIME = ["2026-11-20T08:15:30", "yesterday", "2026-13-01T00:00:00Z", 1732090530, None]
CALL_ID_BAD = ["", "x" * 65, "a b", "ü", "c1\n", 5, None]
OPERATOR_BAD = ["k", "x" * 33, "Kcell", "kcell!", "", 5, None]

BAD: dict[type[msgspec.Struct], dict[str, list[Any]]] = {
    Cdr: {
        "call_id": CALL_ID_BAD,
        "operator": OPERATOR_BAD,
        "start_time": NOT_TIME,
        "a_number": [*NOT_E164, "112"],
        "b_number": ["1", "1234567", "+0701123456", "11a", "8 701", "١١٢", 112, None],
        "ingress": ["satellite", "MOBILE", "", 1, None],
        "a_imei": ["123", "1234567890123", "12345678901234567", "1234567890123x", "١٢٣٤٥٦٧٨٩٠١٢٣٤", 35693803564380],
        "a_cell_id": ["", "x" * 65, "cell\x00", "cell\n", 401],
        "answered": ["yes", 1, 0],
        "duration_s": [-1, -0.001, "42", True],
        "ring_s": [-0.5, "3", True],
    },
    Subscriber: {
        "msisdn": NOT_E164,
        "operator": ["", "x" * 65, "k\x00", 5, None],
        "biometric_status": ["ok", "unknown", "VERIFIED", 1, None],
        "verified_at": ["2026-11-20T08:15:30", "never", 5],
        "sim_activated_at": NOT_TIME,
        "subscriber_type": ["company", "", 1],
        "roaming_country": ["tr", "TUR", "T", "1A", 90],
        "owner_ref": ["", "x" * 129, 5],
    },
    Decision: {
        "call_id": CALL_ID_BAD,
        "operator": OPERATOR_BAD,
        "action": ["deny", "BLOCK", "", None],
        "score": [-0.01, 1.01, "0.5", None],
        "reasons": ["BLOCKLISTED", [{"detail": "no code"}], [{"code": "lower"}], [{"code": "X"}], None],
        "model_version": [5, None],
        "degraded": ["no", 0, None],
        "decided_at": NOT_TIME,
        "decision_id": [5, ["d"]],
    },
    FeedEntry: {
        "seq": [-1, "1", 1.5, None],
        "number": [*NOT_E164, "AB" * 32, "ab" * 31, "ab" * 33],
        "status": ["open", "", None],
        "typology": ["scam", "", None],
        "confidence": [-1, 101, 50.5, "50", None],
        "first_seen": NOT_TIME,
        "last_seen": [*NOT_TIME, "2026-11-20T07:00:00Z"],  # before first_seen
        "valid_until": NOT_TIME,
        "source": ["user", "", None],
        "evidence": ["x", {"calls": -1, "distinct_callees": 1, "operators": 1}, {"calls": 1}, None],
    },
    BankReport: {
        "report_id": ["", "x" * 129, "a\nb", 17, None],
        "number": NOT_E164,
        "reported_at": NOT_TIME,
        "incident_at": NOT_TIME,
        "outcome": ["fraud", "", None],
        "amount_kzt": [-1, "100", True],
        "victim_number": [n for n in NOT_E164 if n is not None],
    },
}

OPTIONAL_NULLABLE = {(Cdr, f) for f in ("a_imei", "a_cell_id", "answered", "duration_s", "ring_s")} | {
    (Subscriber, "verified_at"), (Subscriber, "roaming_country"), (Subscriber, "owner_ref"),
    (Decision, "decision_id"), (BankReport, "victim_number"),
}  # fmt: skip


def _bad_cases() -> list[Any]:
    cases = []
    for cls, fields in BAD.items():
        for field, values in fields.items():
            for i, value in enumerate(values):
                if value is None and (cls, field) in OPTIONAL_NULLABLE:
                    continue
                cases.append(pytest.param(cls, field, value, id=f"{cls.__name__}.{field}[{i}]"))
    return cases


def _with(cls: type[msgspec.Struct], field: str, value: Any) -> dict[str, Any]:
    record = copy.deepcopy(VALID[cls])
    record[field] = value
    return record


def test_every_field_of_every_contract_has_bad_values() -> None:
    for cls in RECORDS.values():
        if cls in VALID:
            assert set(BAD[cls]) == set(cls.__struct_fields__), cls.__name__
    assert set(VALID) == set(RECORDS.values())


@pytest.mark.parametrize("cls", list(VALID), ids=lambda c: c.__name__)
def test_valid_sample_decodes_and_round_trips(cls: type[msgspec.Struct]) -> None:
    record = decode(cls, json.dumps(VALID[cls]))
    assert decode(cls, encode(record)) == record
    assert convert(cls, to_builtins(record)) == record


@pytest.mark.parametrize(("cls", "field", "value"), _bad_cases())
def test_bad_value_is_rejected_naming_the_field(cls: type[msgspec.Struct], field: str, value: Any) -> None:
    body = json.dumps(_with(cls, field, value))
    with pytest.raises(ContractError) as caught:
        decode(cls, body)
    err = caught.value
    message = str(err)
    assert err.field == field
    assert f"'{field}" in message, message
    assert "expected" in message, message
    assert message.startswith(next(k for k, v in RECORDS.items() if v is cls) + ":")
    # The already-parsed path gives the same verdict.
    with pytest.raises(ContractError) as caught_obj:
        convert(cls, json.loads(body))
    assert caught_obj.value.field == field


@pytest.mark.parametrize(
    ("cls", "field"),
    [(cls, f) for cls, fields in REQUIRED.items() for f in sorted(fields)],
    ids=lambda x: x if isinstance(x, str) else x.__name__,
)
def test_missing_required_field_is_rejected(cls: type[msgspec.Struct], field: str) -> None:
    record = copy.deepcopy(VALID[cls])
    del record[field]
    with pytest.raises(ContractError, match=rf"field '{field}' is required but missing") as caught:
        decode(cls, json.dumps(record))
    assert caught.value.field == field


@pytest.mark.parametrize("cls", list(VALID), ids=lambda c: c.__name__)
def test_optional_fields_may_be_absent(cls: type[msgspec.Struct]) -> None:
    minimal = {k: v for k, v in VALID[cls].items() if k in REQUIRED[cls]}
    decode(cls, json.dumps(minimal))


def test_screening_request_cdr_has_no_outcome_fields() -> None:
    request = {k: v for k, v in VALID[Cdr].items() if k not in ("answered", "duration_s", "ring_s")}
    cdr = decode(Cdr, json.dumps(request))
    assert cdr.answered is None and cdr.duration_s is None and cdr.ring_s is None


@pytest.mark.parametrize("cls", list(VALID), ids=lambda c: c.__name__)
def test_unknown_fields_are_accepted_and_ignored(cls: type[msgspec.Struct]) -> None:
    extended = {**VALID[cls], "switch_vendor": "x", "zz_extra": {"nested": [1, 2, None]}, "a": None}
    assert decode(cls, json.dumps(extended)) == decode(cls, json.dumps(VALID[cls]))
    assert b"switch_vendor" not in encode(decode(cls, json.dumps(extended)))


@pytest.mark.parametrize(
    "body",
    [b"", b"[", b"[]", b'"cdr"', b"null", b"\xff\xfe", b'{"call_id": "c1",}'],
    ids=["empty", "truncated", "array", "string", "null", "not-utf8", "trailing-comma"],
)
def test_non_object_bodies_are_rejected(body: bytes) -> None:
    with pytest.raises(ContractError, match=r"^cdr/1: "):
        decode(Cdr, body)


@pytest.mark.parametrize(
    ("cls", "field"),
    [(cls, f) for cls in VALID for f in VALID[cls] if f in PERSONAL_FIELDS],
    ids=lambda x: x if isinstance(x, str) else x.__name__,
)
def test_phone_numbers_are_masked_in_messages(cls: type[msgspec.Struct], field: str) -> None:
    raw = "87051239876" if field != "owner_ref" else "x" * 129
    with pytest.raises(ContractError) as caught:
        decode(cls, json.dumps(_with(cls, field, raw)))
    message = str(caught.value)
    assert raw[:-1] not in message and raw[1:] not in message
    assert "7051239" not in message  # no more than the mask's 4 + 2 characters survive
    if field != "owner_ref":
        assert "'8705*****76'" in message


def test_answered_false_with_talk_time_is_rejected() -> None:
    record = {**VALID[Cdr], "answered": False, "duration_s": 3}
    with pytest.raises(ContractError) as caught:
        decode(Cdr, json.dumps(record))
    assert caught.value.field == "duration_s"
    decode(Cdr, json.dumps({**record, "duration_s": 0}))


def test_timestamps_keep_their_offset_and_encode_as_rfc3339() -> None:
    cdr = decode(Cdr, json.dumps({**VALID[Cdr], "start_time": "2026-11-20T13:15:30.250+05:00"}))
    assert cdr.start_time.utcoffset() is not None
    encoded = json.loads(encode(cdr))["start_time"]
    assert encoded.endswith("+05:00")
    assert decode(Cdr, encode(cdr)).start_time == cdr.start_time


def test_feed_number_accepts_e164_or_the_bank_hash() -> None:
    decode(FeedEntry, json.dumps({**VALID[FeedEntry], "number": "+77011234567"}))
    decode(FeedEntry, json.dumps({**VALID[FeedEntry], "number": HEX64}))
