"""Logs are JSON lines and carry no raw phone number; the last test of the session greps them all."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from deploy import logs
from features.contracts import Cdr, decode
from features.errors import ContractError
from features.pseudonym import KeyedHasher
from tests.canaries import CANARIES, CANARY_BARE, CANARY_MOBILE, CANARY_NATIONAL, CANARY_RU, raw_forms
from tests.conftest import TEST_LOG_HASH_KEY

log = logging.getLogger("tests.canary")
HASHER = KeyedHasher(TEST_LOG_HASH_KEY, "log")


def leaks(root: Path) -> list[str]:
    """Every (file, canary) where a canary appears raw in any file under ``root``."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        text = path.read_bytes().decode("utf-8", "replace")
        for canary in CANARIES:
            if any(form in text for form in raw_forms(canary)):
                found.append(f"{path}: {canary[:4]}...")
    return found


@pytest.mark.parametrize(
    "text",
    [
        f"call from {CANARY_MOBILE} to {CANARY_RU}",
        f"msisdn={CANARY_BARE};",
        f"national {CANARY_NATIONAL}",
        f'{{"a_number": "{CANARY_MOBILE}"}}',
        f"tel:{CANARY_MOBILE[1:]}",
    ],
)
def test_redact_replaces_every_phone_like_run(text: str) -> None:
    out = logs.redact(text, HASHER)
    assert not any(form in out for c in CANARIES for form in raw_forms(c))
    assert "num:" in out


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-20T08:15:30.250+00:00 took 12.5 ms",
        "offset 123456789 of partition 3",  # 9 digits: not a phone number
        "sha " + HASHER.digest("x"),  # hex digests are left alone
        "short code 112, port 6379",
    ],
)
def test_redact_leaves_ordinary_text_alone(text: str) -> None:
    assert logs.redact(text, HASHER) == text


def test_json_lines_with_redacted_message_args_extras_and_traceback(tmp_path: Path) -> None:
    logger = logging.getLogger("tests.logs.json")
    path = logs.log_file(tmp_path, "unit")
    path.parent.mkdir(parents=True)
    handler = logging.FileHandler(path)
    handler.addFilter(logs.RedactingFilter(HASHER))
    handler.setFormatter(logs.JsonLinesFormatter("unit"))
    logger.addHandler(handler)
    try:
        logger.warning("a=%s", CANARY_MOBILE, extra={"b_number": CANARY_RU, "n": int(CANARY_BARE), "k": 3})
        try:
            raise ValueError(f"bad {CANARY_BARE}")
        except ValueError:
            logger.exception("failed for %s", CANARY_NATIONAL)
    finally:
        logger.removeHandler(handler)
        handler.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [x["level"] for x in lines] == ["WARNING", "ERROR"]
    assert lines[0]["msg"] == f"a=num:{HASHER.short(CANARY_MOBILE)}"
    assert lines[0]["b_number"] == f"num:{HASHER.short(CANARY_RU)}"
    assert lines[0]["n"] == f"num:{HASHER.short(CANARY_BARE)}" and lines[0]["k"] == 3
    assert "ValueError: bad num:" in lines[1]["exc"]
    assert leaks(tmp_path) == []


def test_the_scan_finds_a_leak_when_redaction_is_off(tmp_path: Path) -> None:
    """The canary scan can fail: without the filter, a raw number lands in the file and is found."""
    logger = logging.getLogger("tests.logs.unredacted")
    logger.propagate = False
    handler = logging.FileHandler(tmp_path / "leaky.log")
    handler.setFormatter(logs.JsonLinesFormatter("leaky"))
    logger.addHandler(handler)
    try:
        logger.warning("call from %s", CANARY_MOBILE)
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.propagate = True
    assert leaks(tmp_path) == [f"{tmp_path / 'leaky.log'}: {CANARY_MOBILE[:4]}..."]


def test_seed_canaries_through_the_session_logs() -> None:
    """Careless log calls in every shape; the session's configured handlers must redact them."""
    log.info("screening %s -> %s", CANARY_MOBILE, CANARY_RU)
    log.warning(f"f-string with {CANARY_BARE} and {CANARY_NATIONAL}")  # noqa: G004 - deliberately careless
    log.info("extra", extra={"a_number": CANARY_MOBILE, "numbers": [CANARY_RU], "msisdn": int(CANARY_BARE)})
    try:
        decode(Cdr, json.dumps({"call_id": "c", "a_number": CANARY_NATIONAL}))
    except ContractError as exc:
        log.warning("rejected: %s", exc)
    try:
        raise RuntimeError(f"lookup failed for {CANARY_MOBILE}")
    except RuntimeError:
        log.exception("with traceback")
    for handler in logging.getLogger().handlers:
        handler.flush()


@pytest.mark.runs_last
def test_no_raw_phone_number_in_any_log_written_during_the_session(log_root: Path) -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()
    session_log = logs.log_file(log_root, "tests")
    text = session_log.read_text(encoding="utf-8")
    assert "num:" in text, "the canaries were not seeded through the session's logs"
    for line in text.splitlines():
        json.loads(line)  # every line is one JSON object
    files = [p for p in log_root.rglob("*") if p.is_file()]
    assert leaks(log_root) == [], f"raw phone numbers in {len(files)} log files under {log_root}"
