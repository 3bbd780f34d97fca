"""Replay: the worker's engine over historical CDRs, without Kafka (backtests, independent harnesses).

CDRs (a ``.jsonl`` file of `cdr/1` records, or a Parquet file/dataset folder with the
contract's field names as columns) are validated, sorted by ``start_time`` (stable: ties
keep file order) and fed to :meth:`models.engine.Engine.process` in batches, exactly as the
worker would see a perfectly ordered stream. One `decision/1` per valid CDR is written to
the output, one JSON object per line, in replay order. Invalid records are counted and
skipped (the worker would dead-letter them).
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import msgspec

from features.contracts import Cdr, Subscriber, convert, decode
from features.errors import ContractError

if TYPE_CHECKING:
    from features.store import FeatureStore, ListEntry
    from models.engine import Engine

CDR_FIELDS = ("call_id", "operator", "start_time", "a_number", "b_number", "ingress",
              "a_imei", "a_cell_id", "answered", "duration_s", "ring_s")  # fmt: skip
SUBSCRIBER_FIELDS = ("msisdn", "operator", "biometric_status", "verified_at", "sim_activated_at",
                     "subscriber_type", "roaming_country", "owner_ref")  # fmt: skip


@dataclass
class Loaded:
    """Records read from a file: the valid ones, and how many were rejected (with a first example)."""

    records: list[Any]
    invalid: int = 0
    first_error: str | None = None


@dataclass
class ReplayResult:
    """What a replay did; ``per_second`` counts engine + output time, not file loading."""

    calls: int
    seconds: float
    actions: dict[str, int] = field(default_factory=dict)
    degraded: int = 0
    invalid: int = 0
    load_seconds: float = 0.0

    @property
    def per_second(self) -> float:
        return self.calls / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        acts = ", ".join(f"{a}={self.actions.get(a, 0)}" for a in ("allow", "warn", "block"))
        return (f"replayed {self.calls} CDRs in {self.seconds:.1f} s ({self.per_second:,.0f} CDR/s; "
                f"loading took {self.load_seconds:.1f} s): {acts}, degraded={self.degraded}, "
                f"invalid records skipped={self.invalid}")


def _rows(path: Path, columns: Sequence[str]) -> Iterator[dict[str, Any]]:
    import pyarrow.dataset as ds

    dataset = ds.dataset(path, format="parquet", partitioning="hive")
    names = [c for c in columns if c in dataset.schema.names]
    for batch in dataset.to_batches(columns=names):
        yield from batch.to_pylist()


def _load(path: Path, cls: type[Any], columns: Sequence[str]) -> Loaded:
    out = Loaded([])
    if path.suffix == ".jsonl" or path.suffix == ".json":
        with open(path, "rb") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    out.records.append(decode(cls, line))
                except ContractError as exc:
                    out.invalid += 1
                    out.first_error = out.first_error or str(exc)
        return out
    for row in _rows(path, columns):
        try:
            out.records.append(convert(cls, {k: v for k, v in row.items() if v is not None}))
        except ContractError as exc:
            out.invalid += 1
            out.first_error = out.first_error or str(exc)
    return out


def load_cdrs(path: Path) -> Loaded:
    """Valid CDRs of a .jsonl file or Parquet dataset, sorted by start_time (stable)."""
    loaded = _load(path, Cdr, CDR_FIELDS)
    loaded.records.sort(key=lambda c: c.start_time)
    return loaded


def load_subscribers(path: Path) -> Loaded:
    """Valid subscriber/1 records of a .jsonl file or Parquet file."""
    return _load(path, Subscriber, SUBSCRIBER_FIELDS)


def load_allowlist(path: Path, *, added_at: int = 0) -> list[ListEntry]:
    """Allow-list entries of a CSV file with the header ``msisdn,operator,reason``."""
    from features.listfile import read_list_csv

    return read_list_csv(path, kind="allow", source="allowlist", added_at=added_at)


def prepare(store: FeatureStore, subscribers: Sequence[Subscriber], allowlist: Sequence[ListEntry]) -> None:
    """Load the registry and the allow-list into the store before replaying."""
    for i in range(0, len(subscribers), 5000):
        store.upsert_subscribers(subscribers[i : i + 5000])
    for entry in allowlist:
        store.add_to_list(entry)


def replay(engine: Engine, cdrs: Sequence[Cdr], out: IO[bytes], *, batch: int = 2000) -> ReplayResult:
    """Run the engine over ``cdrs`` (already in start_time order), writing one decision per line."""
    encoder = msgspec.json.Encoder()
    buf = bytearray()
    actions: Counter[str] = Counter()
    degraded = 0
    t0 = time.perf_counter()
    for i in range(0, len(cdrs), batch):
        decisions = engine.process(cdrs[i : i + batch])
        for d in decisions:
            encoder.encode_into(d, buf, -1)
            buf += b"\n"
            actions[d.action] += 1
            degraded += d.degraded
        out.write(buf)
        buf.clear()
    return ReplayResult(len(cdrs), time.perf_counter() - t0, dict(actions), degraded)


def now_ms() -> int:
    return int(dt.datetime.now(dt.UTC).timestamp() * 1000)
