"""A labelled world on disk (interface B) as a feature matrix with aligned labels and days.

Features come from ``features.offline.build``, the same definitions the online store
computes, so what a model learns here is what the engine can score at call setup.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.definitions import DAY_MS, FEATURE_NAMES, FEATURE_VERSION, LOCAL_UTC_OFFSET_MS
from features.offline import build, read_cdrs, read_subscribers
from training.errors import DatasetLabelError


@dataclass
class Dataset:
    """Rows aligned across every field."""

    X: np.ndarray
    is_fraud: np.ndarray
    typology: np.ndarray  # str
    group: np.ndarray  # str
    day: np.ndarray  # local calendar day index from the first day of the world
    a_number: np.ndarray  # str
    start_ms: np.ndarray
    manifest: dict[str, Any]
    build_seconds: float

    def __len__(self) -> int:
        return len(self.is_fraud)

    @property
    def n_days(self) -> int:
        return int(self.day.max()) + 1 if len(self.day) else 0

    def rows(self, mask: np.ndarray) -> Dataset:
        return Dataset(self.X[mask], self.is_fraud[mask], self.typology[mask], self.group[mask], self.day[mask],
                       self.a_number[mask], self.start_ms[mask], self.manifest, self.build_seconds)


def _keys(table: pa.Table) -> pa.Array:
    return pc.binary_join_element_wise(pc.cast(table["operator"], pa.string()),
                                       pc.cast(table["call_id"], pa.string()), "\x1f")


def cache_path(world: Path) -> Path:
    """Where built features are kept: the simulator clears this folder when it rewrites a world."""
    return world / "features" / f"{FEATURE_VERSION}.npy"


def load(world: Path, *, cache: bool = True) -> Dataset:
    """Read ``world`` (cdrs/, subscribers.parquet, labels/calls.parquet) and build its features.

    With ``cache`` the feature matrix is saved to (and reused from) :func:`cache_path`,
    keyed by the feature version, so that train and evaluate on one world build it once.
    """
    cdr_path = world / "cdrs" if (world / "cdrs").is_dir() else world / "cdrs.jsonl"
    sub_path = world / "subscribers.parquet"
    if not sub_path.exists():
        sub_path = world / "subscribers.jsonl"
    cdrs = read_cdrs(cdr_path)
    subs = read_subscribers(sub_path)
    labels_path = world / "labels" / "calls.parquet"
    if not labels_path.exists():
        raise DatasetLabelError(f"{labels_path} is missing; a world needs labels/calls.parquet (interface B)")
    labels = pq.read_table(labels_path)
    idx = pc.index_in(_keys(cdrs), value_set=_keys(labels))
    if idx.null_count:
        raise DatasetLabelError(
            f"{idx.null_count} of {cdrs.num_rows} CDRs have no row in {labels_path} (joined on operator+call_id)"
        )
    idx_np = idx.to_numpy(zero_copy_only=False)
    t0 = time.perf_counter()
    cached = cache_path(world)
    X = None
    if cache and cached.exists():
        X = np.load(cached)
        if X.shape != (cdrs.num_rows, len(FEATURE_NAMES)):
            X = None
    if X is None:
        X = build(cdrs, subs)
        if cache:
            cached.parent.mkdir(exist_ok=True)
            np.save(cached, X)
    seconds = time.perf_counter() - t0
    start = cdrs["start_time"].cast(pa.int64()).to_numpy()
    local_day = (start + LOCAL_UTC_OFFSET_MS) // DAY_MS
    manifest_path = world / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    take = pa.array(idx_np)
    return Dataset(
        X=X,
        is_fraud=labels["is_fraud"].take(take).to_numpy(zero_copy_only=False).astype(bool),
        typology=np.asarray(labels["typology"].take(take).to_numpy(zero_copy_only=False), dtype=object),
        group=np.asarray(labels["group"].take(take).to_numpy(zero_copy_only=False), dtype=object),
        day=(local_day - local_day.min()).astype(np.int64) if len(local_day) else local_day,
        a_number=np.asarray(cdrs["a_number"].to_numpy(zero_copy_only=False), dtype=object),
        start_ms=start,
        manifest=manifest,
        build_seconds=seconds,
    )
