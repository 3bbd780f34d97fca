"""The shipped JSON Schemas are the ones generated from the record types, and they validate."""

from __future__ import annotations

import json

import jsonschema_rs
import pytest

from features.contracts import RECORDS, SCHEMA_DIR, json_schemas
from tests.features.test_contracts import BAD, VALID, _with

REGENERATE = "regenerate them with `python -m features.contracts` and commit the result"


def test_shipped_schema_files_equal_the_generated_ones() -> None:
    generated = json_schemas()
    shipped = {p.name for p in SCHEMA_DIR.glob("*.json")}
    assert shipped == set(generated), f"schema files differ from the records; {REGENERATE}"
    for name, schema in generated.items():
        on_disk = json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))
        assert on_disk == schema, f"features/schemas/{name} is out of date; {REGENERATE}"


def _validator(cls: type) -> jsonschema_rs.Validator:
    record = next(name for name, c in RECORDS.items() if c is cls)
    schema = json.loads((SCHEMA_DIR / f"{record.replace('/', '-')}.schema.json").read_text(encoding="utf-8"))
    return jsonschema_rs.validator_for(schema, validate_formats=True)


@pytest.mark.parametrize("cls", list(VALID), ids=lambda c: c.__name__)
def test_valid_samples_validate_against_the_schema(cls: type) -> None:
    validator = _validator(cls)
    validator.validate(VALID[cls])
    validator.validate({**VALID[cls], "unknown_extra_field": {"any": "thing"}})  # accepted, as by the decoder


@pytest.mark.parametrize("cls", list(VALID), ids=lambda c: c.__name__)
def test_schema_rejects_what_the_decoder_rejects_field_by_field(cls: type) -> None:
    """A producer validating with the schema sees most of what the decoder enforces.

    Cross-field rules (duration_s with answered=false, last_seen before first_seen) are
    decoder-only; everything else a field's schema can express must agree.
    """
    validator = _validator(cls)
    cross_field = {("Cdr", "duration_s"), ("FeedEntry", "last_seen")}
    for field, values in BAD[cls].items():
        for value in values:
            if value is None or (cls.__name__, field) in cross_field and isinstance(value, str):
                continue
            assert not validator.is_valid(_with(cls, field, value)), (cls.__name__, field, value)
