"""Contract decoding: decode + validate one `cdr/1` JSON record, three ways, side by side.

    python -m benchmarks.contracts [--records 20000] [--repeat 5] [--seed 7]

Candidates, all enforcing the same constraints (patterns, enums, tz-aware timestamps, >= 0):

- ``msgspec``: ``features.contracts.decode`` (what the service uses);
- ``pydantic``: a pydantic v2 model with equivalent constraints, ``model_validate_json``;
- ``stdlib``: ``json.loads`` plus hand-written checks (the plain-Python baseline).

Seeded, network-free. Every run first checks that the three agree on every record (valid
ones decode to the same fields, invalid ones are rejected by all three), then times them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import re
import statistics
import sys
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from features.contracts import Cdr, decode
from features.errors import ContractError

# -- the workload ---------------------------------------------------------------------------


def workload(n: int, seed: int) -> list[bytes]:
    """``n`` realistic CDRs (about 1 in 50 malformed, as a live feed might carry)."""
    rng = random.Random(seed)
    out = []
    t0 = dt.datetime(2026, 11, 20, 8, 0, tzinfo=dt.UTC)
    for i in range(n):
        answered = rng.random() < 0.6
        record: dict[str, Any] = {
            "call_id": f"kcell:{seed}:{i:09d}",
            "operator": rng.choice(["kcell", "beeline-kz", "tele2", "altel"]),
            "start_time": (t0 + dt.timedelta(milliseconds=rng.randrange(86_400_000))).isoformat(
                timespec="milliseconds"
            ).replace("+00:00", "Z"),
            "a_number": f"+77{rng.choice('0157')}{rng.randrange(10**8):08d}",
            "b_number": rng.choice([f"+77{rng.randrange(10**9):09d}", f"+79{rng.randrange(10**9):09d}", "112"]),
            "ingress": rng.choice(["mobile", "fixed", "international", "voip"]),
            "answered": answered,
            "duration_s": round(rng.expovariate(1 / 90), 3) if answered else 0.0,
            "ring_s": round(rng.uniform(0, 30), 3),
        }
        if rng.random() < 0.5:
            record["a_imei"] = f"{rng.randrange(10**14):014d}"
            record["a_cell_id"] = f"401-02-{rng.randrange(65536)}-{rng.randrange(65536)}"
        if rng.random() < 0.02:
            record[rng.choice(["a_number", "ingress", "start_time"])] = rng.choice(
                ["87011234567", "satellite", "2026-11-20T08:00:00"]
            )
        out.append(json.dumps(record, separators=(",", ":")).encode())
    return out


# -- pydantic v2, equivalent constraints ----------------------------------------------------

E164 = r"^\+[1-9][0-9]{6,14}$"
_DATE_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt]")


def _rfc3339_shape(value: Any) -> Any:
    if not isinstance(value, str) or not _DATE_TIME.match(value):
        raise ValueError("expected an RFC 3339 timestamp")
    return value


class PydanticCdr(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    call_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]{1,64}$")]
    operator: Annotated[str, Field(pattern=r"^[a-z0-9_-]{2,32}$")]
    # Even in strict mode pydantic reads a digit string such as "87011234567" as a Unix
    # time; the before-validator rejects it, as msgspec and the contract do.
    start_time: Annotated[AwareDatetime, Field(strict=False), BeforeValidator(_rfc3339_shape)]
    a_number: Annotated[str, Field(pattern=E164)]
    b_number: Annotated[str, Field(pattern=r"^(?:\+[1-9][0-9]{6,14}|[0-9]{2,6})$")]
    ingress: Literal["mobile", "fixed", "international", "voip"]
    a_imei: Annotated[str, Field(pattern=r"^[0-9]{14,16}$")] | None = None
    a_cell_id: Annotated[str, Field(pattern=r"^[^\x00-\x1f\x7f]{1,64}$")] | None = None
    answered: bool | None = None
    duration_s: Annotated[float, Field(ge=0)] | None = None
    ring_s: Annotated[float, Field(ge=0)] | None = None


def decode_pydantic(data: bytes) -> PydanticCdr:
    return PydanticCdr.model_validate_json(data)


# -- stdlib: json.loads + hand-written checks ----------------------------------------------

_CALL_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_OPERATOR = re.compile(r"[a-z0-9_-]{2,32}")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_B = re.compile(r"\+[1-9][0-9]{6,14}|[0-9]{2,6}")
_IMEI = re.compile(r"[0-9]{14,16}")
_CELL = re.compile(r"[^\x00-\x1f\x7f]{1,64}")
_INGRESS = frozenset({"mobile", "fixed", "international", "voip"})


def _str(obj: dict[str, Any], key: str, pattern: re.Pattern[str], optional: bool = False) -> str | None:
    value = obj.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ValueError(key)
    return value


def _num(obj: dict[str, Any], key: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(key)
    return float(value)


def decode_stdlib(data: bytes) -> dict[str, Any]:
    obj = json.loads(data)
    if not isinstance(obj, dict):
        raise ValueError("not an object")
    start = obj.get("start_time")
    if not isinstance(start, str):
        raise ValueError("start_time")
    ts = dt.datetime.fromisoformat(start)
    if ts.tzinfo is None:
        raise ValueError("start_time")
    ingress = obj.get("ingress")
    if ingress not in _INGRESS:
        raise ValueError("ingress")
    answered = obj.get("answered")
    if answered is not None and not isinstance(answered, bool):
        raise ValueError("answered")
    return {
        "call_id": _str(obj, "call_id", _CALL_ID),
        "operator": _str(obj, "operator", _OPERATOR),
        "start_time": ts,
        "a_number": _str(obj, "a_number", _E164),
        "b_number": _str(obj, "b_number", _B),
        "ingress": ingress,
        "a_imei": _str(obj, "a_imei", _IMEI, optional=True),
        "a_cell_id": _str(obj, "a_cell_id", _CELL, optional=True),
        "answered": answered,
        "duration_s": _num(obj, "duration_s"),
        "ring_s": _num(obj, "ring_s"),
    }


def decode_msgspec(data: bytes) -> Cdr:
    return decode(Cdr, data)


CANDIDATES: dict[str, Callable[[bytes], Any]] = {
    "msgspec": decode_msgspec,
    "pydantic": decode_pydantic,
    "stdlib": decode_stdlib,
}


# -- correctness, then timing ---------------------------------------------------------------


def _fields(result: Any) -> dict[str, Any]:
    if isinstance(result, dict):
        return result
    if isinstance(result, BaseModel):
        return result.model_dump()
    return {f: getattr(result, f) for f in result.__struct_fields__}


def check_agreement(records: list[bytes]) -> tuple[int, int]:
    """All candidates accept the same records with the same fields; returns (valid, invalid)."""
    valid = invalid = 0
    for data in records:
        outcomes: dict[str, dict[str, Any] | None] = {}
        for name, fn in CANDIDATES.items():
            try:
                outcomes[name] = _fields(fn(data))
            except (ContractError, ValueError):  # pydantic.ValidationError is a ValueError
                outcomes[name] = None
        first = outcomes["msgspec"]
        if any(o != first for o in outcomes.values()):
            raise SystemExit(f"candidates disagree on a record: {sorted(k for k, v in outcomes.items() if v is None)}")
        valid += first is not None
        invalid += first is None
    return valid, invalid


def _accepted(data: bytes) -> bool:
    try:
        decode_msgspec(data)
        return True
    except ContractError:
        return False


def time_candidate(fn: Callable[[bytes], Any], records: list[bytes], repeat: int) -> float:
    """Best-of-``repeat`` microseconds per record."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for data in records:
            try:
                fn(data)
            except (ContractError, ValueError):
                pass
        best = min(best, time.perf_counter() - t0)
    return best / len(records) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    records = workload(args.records, args.seed)
    valid, invalid = check_agreement(records)
    good = [r for r in records if _accepted(r)]
    bad = [r for r in records if not _accepted(r)]
    results = {
        name: (time_candidate(fn, good, args.repeat), time_candidate(fn, bad, args.repeat))
        for name, fn in CANDIDATES.items()
    }
    base = results["msgspec"][0]
    out = sys.stdout
    out.write(
        f"cdr/1 decode + validate: {len(records)} records ({valid} valid, {invalid} malformed), "
        f"seed {args.seed}, best of {args.repeat}, median record "
        f"{statistics.median(len(r) for r in records):.0f} bytes; all three agree on every record\n\n"
    )
    out.write("| decoder | µs per valid CDR | vs msgspec | µs per malformed CDR |\n|---|---:|---:|---:|\n")
    for name, (us_good, us_bad) in results.items():
        out.write(f"| {name} | {us_good:.2f} | {us_good / base:.1f}x | {us_bad:.2f} |\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
