"""A small simulated world shared by the training tests (built once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.dataset import Dataset, load
from training.simulator import simulate

SMALL = {"subscribers": 2000, "days": 6}


@pytest.fixture(scope="session")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world") / "w"
    simulate(out, seed=3, jsonl=True, progress=False, **SMALL)
    return out


@pytest.fixture(scope="session")
def small_dataset(small_world: Path) -> Dataset:
    return load(small_world)
