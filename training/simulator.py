"""Simulated Kazakh telecom world written to disk (interface B of the project).

``simulate(out, seed=..., subscribers=..., days=...)`` writes::

    out/subscribers.parquet                    subscriber/1 columns (the registry at the end of the run)
    out/cdrs/day=YYYY-MM-DD/part-0.parquet     cdr/1 columns, one partition per Asia/Almaty calendar day
    out/labels/calls.parquet                   operator, call_id, is_fraud, typology, group
    out/labels/numbers.parquet                 number, is_fraud, typology, group
    out/allowlist.csv                          msisdn,operator,reason (operator one-ring service numbers)
    out/manifest.json                          seed, parameters, counts, date range, bank hotlines
    (with jsonl=True also out/subscribers.jsonl and out/cdrs.jsonl)

Deterministic per seed (numpy PCG64 with one spawned child seed per purpose and per day)
and memory bounded: one day of calls is held at a time and streamed to its partition.
A number's ``is_fraud`` in labels/numbers.parquet means it was presented as the caller
of at least one fraud call (a spoofed real subscriber included); call labels are the
authoritative ground truth.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from training import population, typologies
from training.calls import Calls
from training.world import BIOMETRIC, DAY_MS, GROUPS, INGRESS, OPERATORS, ROAMING_COUNTRIES, TYPOLOGIES, World, WorldParams

FORMAT = "callscreen-world/1"

CDR_SCHEMA = pa.schema([
    ("call_id", pa.string()), ("operator", pa.string()), ("start_time", pa.timestamp("ms", tz="UTC")),
    ("a_number", pa.string()), ("b_number", pa.string()), ("ingress", pa.string()),
    ("a_imei", pa.string()), ("a_cell_id", pa.string()), ("answered", pa.bool_()),
    ("duration_s", pa.float64()), ("ring_s", pa.float64()),
])
SUBSCRIBER_SCHEMA = pa.schema([
    ("msisdn", pa.string()), ("operator", pa.string()), ("biometric_status", pa.string()),
    ("verified_at", pa.timestamp("ms", tz="UTC")), ("sim_activated_at", pa.timestamp("ms", tz="UTC")),
    ("subscriber_type", pa.string()), ("roaming_country", pa.string()), ("owner_ref", pa.string()),
])
CALL_LABEL_SCHEMA = pa.schema([
    ("operator", pa.string()), ("call_id", pa.string()), ("is_fraud", pa.bool_()),
    ("typology", pa.string()), ("group", pa.string()),
])

_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)


def _mix64(x: np.ndarray, key: int) -> np.ndarray:
    """splitmix64 finaliser: a bijection on uint64, so distinct counters give distinct ids."""
    z = x.astype(np.uint64) + np.uint64(key)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _hex16(x: np.ndarray) -> pa.Array:
    b = x.astype(">u8").view(np.uint8).reshape(-1, 8)
    out = np.empty((len(x), 16), np.uint8)
    out[:, 0::2] = _HEX[b >> 4]
    out[:, 1::2] = _HEX[b & 15]
    return pa.array(out.view("S16").ravel()).cast(pa.string())


def _take(table: pa.Array, idx: np.ndarray) -> pa.Array:
    missing = idx < 0
    return table.take(pa.array(np.where(missing, 0, idx), mask=missing))


class Simulation:
    """Holds the drawn world; :meth:`run` streams the days to disk."""

    def __init__(self, params: WorldParams, seed: int) -> None:
        self.params = params
        self.seed = seed
        root = np.random.SeedSequence(seed)
        world_seed, fraud_seed, id_seed, day_seed = root.spawn(4)
        self.day_seeds = day_seed.spawn(params.days)
        self.world = World(params, np.random.Generator(np.random.PCG64(world_seed)))
        self.pop = population.build(self.world, self.world.rng)
        self.fraud = typologies.build(self.world, self.pop, np.random.Generator(np.random.PCG64(fraud_seed)))
        self.world.freeze()
        self.id_key = int(np.random.Generator(np.random.PCG64(id_seed)).integers(0, 2**63))
        self.numbers = pa.array(self.world.numbers, pa.string())
        self.imeis = pa.array(self.world.imeis, pa.string())
        self.cells = pa.array(self.world.cells, pa.string())
        self.number_typology = np.zeros(len(self.world.numbers), np.int8)
        self.counts = {t: 0 for t in TYPOLOGIES}
        self._counter = 0

    def day(self, d: int) -> Calls:
        legit_rng, fraud_rng = (np.random.Generator(np.random.PCG64(s)) for s in self.day_seeds[d].spawn(2))
        calls = Calls.concat([
            population.day_calls(self.world, self.pop, d, legit_rng),
            typologies.day_calls(self.world, self.pop, self.fraud, d, fraud_rng),
        ])
        return calls.take(np.lexsort((calls.a, calls.t)))

    def cdr_table(self, c: Calls) -> tuple[pa.Table, pa.Table]:
        n = len(c)
        ids = _hex16(_mix64(np.arange(self._counter, self._counter + n, dtype=np.uint64), self.id_key))
        self._counter += n
        ops = pa.array(OPERATORS).take(pa.array(c.op))
        cdrs = pa.table({
            "call_id": ids, "operator": ops,
            "start_time": pa.array(c.t, pa.timestamp("ms", tz="UTC")),
            "a_number": self.numbers.take(pa.array(c.a)), "b_number": self.numbers.take(pa.array(c.b)),
            "ingress": pa.array(INGRESS).take(pa.array(c.ingress)),
            "a_imei": _take(self.imeis, c.imei), "a_cell_id": _take(self.cells, c.cell),
            "answered": pa.array(c.answered), "duration_s": pa.array(c.duration), "ring_s": pa.array(c.ring),
        }, schema=CDR_SCHEMA)
        labels = pa.table({
            "operator": ops, "call_id": ids, "is_fraud": pa.array(c.typ > 0),
            "typology": pa.array(TYPOLOGIES).take(pa.array(c.typ)),
            "group": pa.array(GROUPS).take(pa.array(c.grp)),
        }, schema=CALL_LABEL_SCHEMA)
        fraud = c.typ > 0
        self.number_typology[c.a[fraud]] = c.typ[fraud]
        for i, name in enumerate(TYPOLOGIES):
            self.counts[name] += int((c.typ == i).sum())
        return cdrs, labels

    def subscriber_table(self) -> pa.Table:
        r = self.world.registry
        ent = np.concatenate(r.entity)
        ver = np.concatenate(r.verified_at)
        roam = np.concatenate(r.roaming)
        owner = np.concatenate(r.owner)
        # Owner refs are keyed per run so that they are opaque and carry no label.
        refs = _hex16(_mix64(owner.astype(np.uint64), self.id_key ^ 0x5A5A5A5A))
        return pa.table({
            "msisdn": self.numbers.take(pa.array(ent)),
            "operator": pa.array(OPERATORS).take(pa.array(self.world.operator_of[ent])),
            "biometric_status": pa.array(BIOMETRIC).take(pa.array(np.concatenate(r.biometric))),
            "verified_at": pa.array(ver, pa.timestamp("ms", tz="UTC"), mask=ver < 0),
            "sim_activated_at": pa.array(np.concatenate(r.activated_at), pa.timestamp("ms", tz="UTC")),
            "subscriber_type": pa.array(np.where(np.concatenate(r.corporate), "corporate", "individual")),
            "roaming_country": _take(pa.array(ROAMING_COUNTRIES), roam.astype(np.int64)),
            "owner_ref": refs.cast(pa.string()),
        }, schema=SUBSCRIBER_SCHEMA)

    def run(self, out: Path, *, jsonl: bool = False, progress: bool = True) -> dict[str, Any]:
        from tqdm import tqdm

        out.mkdir(parents=True, exist_ok=True)
        (out / "labels").mkdir(exist_ok=True)
        # A rewritten world invalidates features built from the previous one.
        shutil.rmtree(out / "features", ignore_errors=True)
        shutil.rmtree(out / "cdrs", ignore_errors=True)
        subs = self.subscriber_table()
        pq.write_table(subs, out / "subscribers.parquet")
        if jsonl:
            _write_jsonl(subs, out / "subscribers.jsonl", "w")
            (out / "cdrs.jsonl").unlink(missing_ok=True)
        label_writer = pq.ParquetWriter(out / "labels" / "calls.parquet", CALL_LABEL_SCHEMA)
        first_day = np.datetime64(self.params.start, "D")
        bar = tqdm(range(self.params.days), desc="simulate", unit="day", file=sys.stderr, disable=not progress)
        total = 0
        for d in bar:
            cdrs, labels = self.cdr_table(self.day(d))
            part = out / "cdrs" / f"day={first_day + d}"
            part.mkdir(parents=True, exist_ok=True)
            pq.write_table(cdrs, part / "part-0.parquet")
            label_writer.write_table(labels)
            if jsonl:
                _write_jsonl(cdrs, out / "cdrs.jsonl", "a")
            total += cdrs.num_rows
            bar.set_postfix(calls=total)
        label_writer.close()

        w = self.world
        pq.write_table(pa.table({
            "number": self.numbers,
            "is_fraud": pa.array(self.number_typology > 0),
            "typology": pa.array(TYPOLOGIES).take(pa.array(self.number_typology)),
            "group": pa.array(GROUPS).take(pa.array(w.group_of)),
        }), out / "labels" / "numbers.parquet")
        with open(out / "allowlist.csv", "w", newline="") as f:
            wr = csv.writer(f)
            wr.writerow(["msisdn", "operator", "reason"])
            for e, op in zip(self.pop.service.tolist(), self.pop.service_op.tolist()):
                wr.writerow([w.numbers[e], OPERATORS[op], "operator one-ring call-back service number"])
        manifest = {
            "format": FORMAT,
            "seed": self.seed,
            "parameters": asdict(self.params),
            "date_range": {
                "first_day": str(first_day), "last_day": str(first_day + self.params.days - 1),
                "timezone": "Asia/Almaty (UTC+05:00); partitions are local calendar days",
                "start_ms": w.start_ms - 5 * 3_600_000, "end_ms": w.start_ms - 5 * 3_600_000 + self.params.days * DAY_MS,
            },
            "counts": {"subscribers": subs.num_rows, "calls": total, "calls_by_typology": self.counts,
                       "fraud_numbers": int((self.number_typology > 0).sum())},
            "operators": list(OPERATORS),
            "bank_hotlines": [w.numbers[e] for e in self.pop.bank_hotlines.tolist()],
            "service_numbers": [w.numbers[e] for e in self.pop.service.tolist()],
        }
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        return manifest


def _write_jsonl(table: pa.Table, path: Path, mode: str) -> None:
    enc = msgspec.json.Encoder()
    with open(path, mode + "b") as f:
        for batch in table.to_batches(50_000):
            rows = batch.to_pylist()
            f.write(b"".join(enc.encode({k: v for k, v in r.items() if v is not None}) + b"\n" for r in rows))


def simulate(out: Path, *, seed: int, subscribers: int = 50_000, days: int = 30, start: str = "2026-10-01",
             fraud_scale: float = 1.0, shift: float = 0.0, jsonl: bool = False, progress: bool = True) -> dict[str, Any]:
    """Draw a world and write it to ``out``; returns the manifest."""
    params = WorldParams(subscribers=subscribers, days=days, start=start, fraud_scale=fraud_scale, shift=shift)
    return Simulation(params, seed).run(out, jsonl=jsonl, progress=progress)
