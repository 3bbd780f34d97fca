"""The records that cross the boundary (../shared/CONTRACTS.md), as typed, strictly validated structs.

msgspec decodes and validates a CDR in one C pass (benchmarks/contracts.py measures it
against pydantic and the standard library), which matters because decoding is paid per
call. Unknown extra fields are accepted and ignored (the contracts let producers add
optional fields); every constraint on a known field is enforced.

A record that fails validation raises :class:`features.errors.ContractError` whose message
names the record, the field, the value (masked for phone numbers and owner references) and
what was expected.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Final, Literal, TypeVar

import msgspec
from msgspec import Meta, Struct

from features.errors import ContractError
from features.numbering import E164_BODY, E164_PATTERN, SHORT_CODE_BODY, anchored, mask

Timestamp = Annotated[
    dt.datetime,
    Meta(tz=True, description="RFC 3339 timestamp with an explicit offset, e.g. 2026-11-20T08:15:30.250Z"),
]
E164 = Annotated[
    str,
    Meta(pattern=E164_PATTERN, description="E.164 number: '+' then 7-15 ASCII digits, e.g. +77011234567"),
]
Operator = Annotated[
    str,
    Meta(pattern=anchored(r"[a-z0-9_-]{2,32}"), description="operator id: 2-32 chars of [a-z0-9_-], e.g. kcell"),
]
CallId = Annotated[
    str,
    Meta(pattern=anchored(r"[A-Za-z0-9._:-]{1,64}"), description="1-64 chars of [A-Za-z0-9._:-]; unique per operator"),
]
NonNegative = Annotated[float, Meta(ge=0, description="a number >= 0")]


class Cdr(Struct, frozen=True, kw_only=True):
    """`cdr/1`: one call. At screening time (HTTP) the outcome fields are absent."""

    call_id: CallId
    operator: Operator
    start_time: Timestamp
    a_number: E164
    b_number: Annotated[
        str,
        Meta(
            pattern=anchored(f"{E164_BODY}|{SHORT_CODE_BODY}"),
            description="E.164 number, or a national short code of 2-6 digits such as 112",
        ),
    ]
    ingress: Annotated[
        Literal["mobile", "fixed", "international", "voip"],
        Meta(description="one of mobile, fixed, international, voip"),
    ]
    a_imei: Annotated[str, Meta(pattern=anchored(r"[0-9]{14,16}"), description="14-16 ASCII digits")] | None = None
    a_cell_id: (
        Annotated[
            str,
            Meta(
                pattern=anchored(r"[^\x00-\x1f\x7f]{1,64}"),
                description="1-64 chars without control characters",
            ),
        ]
        | None
    ) = None
    answered: Annotated[bool, Meta(description="true or false")] | None = None
    duration_s: NonNegative | None = None
    ring_s: NonNegative | None = None

    def __post_init__(self) -> None:
        if self.answered is False and self.duration_s is not None and self.duration_s > 0:
            raise ValueError("duration_s must be 0 when answered is false - at `$.duration_s`")


class Subscriber(Struct, frozen=True, kw_only=True):
    """`subscriber/1`: what an operator knows about one of its own numbers."""

    msisdn: E164
    operator: Annotated[
        str, Meta(pattern=anchored(r"[^\x00-\x1f\x7f]{1,64}"), description="operator id, 1-64 printable chars")
    ]
    biometric_status: Annotated[
        Literal["verified", "pending", "failed", "unverified"],
        Meta(description="one of verified, pending, failed, unverified"),
    ]
    sim_activated_at: Timestamp
    verified_at: Timestamp | None = None
    subscriber_type: Annotated[
        Literal["individual", "corporate"], Meta(description="individual or corporate")
    ] = "individual"
    roaming_country: (
        Annotated[str, Meta(pattern=anchored(r"[A-Z]{2}"), description="ISO 3166-1 alpha-2, e.g. TR")] | None
    ) = None
    owner_ref: (
        Annotated[str, Meta(min_length=1, max_length=128, description="opaque owner reference, 1-128 chars")]
        | None
    ) = None


class Reason(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One reason for a decision, most important first in `Decision.reasons`."""

    code: Annotated[str, Meta(pattern=anchored(r"[A-Z0-9_]{2,64}"), description="stable reason code, e.g. BLOCKLISTED")]
    detail: str | None = None


class Decision(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """`decision/1`: the answer for one call."""

    call_id: CallId
    operator: Operator
    action: Annotated[Literal["allow", "warn", "block"], Meta(description="allow, warn or block")]
    score: Annotated[float, Meta(ge=0.0, le=1.0, description="fraud probability in [0, 1]")]
    reasons: list[Reason]
    model_version: str
    degraded: bool
    decided_at: Timestamp
    decision_id: (
        Annotated[str, Meta(description="deterministic id of this decision, for consumer-side dedup")] | None
    ) = None


class Evidence(Struct, frozen=True, kw_only=True):
    """Counts behind a feed entry; never callee numbers."""

    calls: Annotated[int, Meta(ge=0)]
    distinct_callees: Annotated[int, Meta(ge=0)]
    operators: Annotated[int, Meta(ge=0)]


class FeedEntry(Struct, frozen=True, kw_only=True):
    """`feed/1`: one number-level event in the append-only feed towards the National Bank."""

    seq: Annotated[int, Meta(ge=0, description="strictly increasing cursor position")]
    number: Annotated[
        str,
        Meta(
            pattern=anchored(f"{E164_BODY}|[0-9a-f]{{64}}"),
            description="E.164, or the 64-hex HMAC-SHA256 pseudonym under the bank's key",
        ),
    ]
    status: Literal["suspected", "confirmed", "cleared", "disputed"]
    typology: Literal["spoofing", "vishing", "simbox", "wangiri", "robocall", "irsf", "other"]
    confidence: Annotated[int, Meta(ge=0, le=100)]
    first_seen: Timestamp
    last_seen: Timestamp
    valid_until: Timestamp
    source: Literal["model", "rule", "analyst", "bank"]
    evidence: Evidence

    def __post_init__(self) -> None:
        if self.last_seen < self.first_seen:
            raise ValueError("last_seen must not be before first_seen - at `$.last_seen`")


class BankReport(Struct, frozen=True, kw_only=True):
    """`bank-report/1`: a fraud incident reported by a bank."""

    report_id: Annotated[
        str, Meta(pattern=anchored(r"[^\x00-\x1f\x7f]{1,128}"), description="unique id, 1-128 printable chars")
    ]
    number: E164
    reported_at: Timestamp
    incident_at: Timestamp
    outcome: Annotated[
        Literal["confirmed_fraud", "not_fraud"], Meta(description="confirmed_fraud or not_fraud")
    ]
    amount_kzt: NonNegative | None = None
    victim_number: E164 | None = None


RECORDS: Final[dict[str, type[Struct]]] = {
    "cdr/1": Cdr,
    "subscriber/1": Subscriber,
    "decision/1": Decision,
    "feed/1": FeedEntry,
    "bank-report/1": BankReport,
}
_NAMES: Final = {cls: name for name, cls in RECORDS.items()}
# Fields whose values are personal data: masked in every error message.
PERSONAL_FIELDS: Final = frozenset({"a_number", "b_number", "msisdn", "number", "victim_number", "owner_ref"})

T = TypeVar("T", bound=Struct)

_DECODERS: dict[type[Any], msgspec.json.Decoder[Any]] = {}
_ENCODER = msgspec.json.Encoder()
_PATH = re.compile(r" - at `\$((?:\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\])*)`$")
_REGEX_PROBLEM = re.compile(r"^Expected `str` matching regex ")
_MISSING = re.compile(r"^Object missing required field `([^`]+)`")


def _decoder(cls: type[T]) -> msgspec.json.Decoder[T]:
    decoder = _DECODERS.get(cls)
    if decoder is None:
        decoder = _DECODERS[cls] = msgspec.json.Decoder(cls)
    return decoder


def decode(cls: type[T], data: bytes | str) -> T:
    """Decode and validate one JSON record, raising ContractError on any problem.

    >>> cdr = decode(Cdr, b'{"call_id":"c1","operator":"kcell","start_time":"2026-11-20T08:15:30Z",'
    ...                   b'"a_number":"+77011234567","b_number":"112","ingress":"mobile"}')
    >>> cdr.b_number, cdr.start_time.isoformat()
    ('112', '2026-11-20T08:15:30+00:00')
    """
    try:
        return _decoder(cls).decode(data)
    except msgspec.ValidationError as exc:
        raise _explain(cls, data, str(exc)) from None
    except msgspec.DecodeError as exc:
        raise ContractError(
            f"{_NAMES.get(cls, cls.__name__)}: body is not a JSON object ({exc}); "
            "fix: send one UTF-8 JSON object per record",
            record=_NAMES.get(cls, cls.__name__),
            field=None,
        ) from None


def convert(cls: type[T], obj: Any) -> T:
    """Validate an already-parsed object (for example one row of a JSON array)."""
    try:
        return msgspec.convert(obj, cls)
    except msgspec.ValidationError as exc:
        raise _explain(cls, obj, str(exc)) from None


def encode(record: Struct) -> bytes:
    """JSON bytes of a record, timestamps in RFC 3339."""
    return _ENCODER.encode(record)


def to_builtins(record: Struct) -> Any:
    """Plain dicts/lists/strings, as the JSON encoding would give."""
    return msgspec.to_builtins(record)


@functools.cache  # type_info is slow (~0.4 ms); a stream of bad records must stay cheap
def _field_doc(cls: type[Struct], field: str) -> str:
    info = msgspec.inspect.type_info(cls)
    if isinstance(info, msgspec.inspect.StructType):
        for f in info.fields:
            if f.name == field:
                return _describe(f.type)
    return "a value as defined in the contract"


def _describe(t: msgspec.inspect.Type) -> str:
    if isinstance(t, msgspec.inspect.UnionType):
        parts = [_describe(x) for x in t.types if not isinstance(x, msgspec.inspect.NoneType)]
        return parts[0] if len(parts) == 1 else " or ".join(parts)
    if isinstance(t, msgspec.inspect.Metadata):
        desc = (t.extra_json_schema or {}).get("description")
        return str(desc) if desc else _describe(t.type)
    if isinstance(t, msgspec.inspect.LiteralType):
        return "one of " + ", ".join(map(str, t.values))
    return type(t).__name__.removesuffix("Type").lower()


def _explain(cls: type[Struct], data: Any, message: str) -> ContractError:
    record = _NAMES.get(cls, cls.__name__)
    match = _PATH.search(message)
    path = match.group(1) if match else ""
    missing = _MISSING.match(message)
    if missing:
        # A nested field (``reasons[0].code``) is reported under its top-level field.
        name = missing.group(1)
        full = f"{path.lstrip('.')}.{name}" if path else name
        field = full.split(".")[0].split("[")[0]
        expected = _field_doc(cls, field) if field == name else "the fields listed in the record's schema"
        return ContractError(
            f"{record}: field '{full}' is required but missing; expected {expected}; "
            f"fix: add '{full}' to the record",
            record=record,
            field=field,
        )
    problem = message[: match.start()] if match else message
    field = path.lstrip(".").split(".")[0].split("[")[0] or None
    if field is None:
        return ContractError(f"{record}: {problem}; fix: send a JSON object", record=record, field=None)
    value = _lookup(data, path)
    shown = mask(value) if field in PERSONAL_FIELDS else _show(value)
    # A pattern mismatch says nothing the field's description does not say better, and the
    # raw regex only confuses an operator's engineer reading the error.
    detail = "" if _REGEX_PROBLEM.match(problem) else f" ({problem[0].lower()}{problem[1:]})"
    return ContractError(
        f"{record}: field '{path.lstrip('.')}' has value {shown}, which is invalid{detail}; "
        f"expected {_field_doc(cls, field)}",
        record=record,
        field=field,
    )


def _lookup(data: Any, path: str) -> Any:
    obj = data
    if isinstance(obj, (bytes, str)):
        try:
            obj = json.loads(obj)
        except ValueError:
            return "<unparsed>"
    for part in re.findall(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]", path):
        key, index = part
        try:
            obj = obj[key] if key else obj[int(index)]
        except (KeyError, IndexError, TypeError):
            return "<absent>"
    return obj


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema (draft 2020-12) of every contract, keyed by file name."""
    out: dict[str, dict[str, Any]] = {}
    for name, cls in RECORDS.items():
        (schema,), components = msgspec.json.schema_components([cls], ref_template="#/$defs/{name}")
        root = components.pop(cls.__name__)
        doc = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://callscreen.example/schemas/{name.replace('/', '-')}.schema.json",
            "title": name,
            **root,
        }
        if components:
            doc["$defs"] = components
        out[f"{name.replace('/', '-')}.schema.json"] = doc
    return out


SCHEMA_DIR: Final = Path(__file__).with_name("schemas")


def write_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Regenerate the shipped schema files (``python -m features.contracts``)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, schema in json_schemas().items():
        path = directory / filename
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for p in write_schemas():
        sys.stdout.write(f"wrote {p}\n")
