"""Evaluation: the report is written with its plots and every target is measured."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from training.dataset import Dataset
from training.evaluate import ModelUnderTest, evaluate, time_to_detect
from training.rules_baseline import RulesBaseline
from training.train import FraudModelTrainer, TrainConfig


def test_evaluate_writes_html_with_plots(small_dataset: Dataset, tmp_path: Path) -> None:
    t = FraudModelTrainer(TrainConfig(seed=2, max_rounds=40, negative_rate=0.3)).fit(small_dataset, progress=False)
    model = ModelUnderTest("candidate", "v-test", t.model_text_, *t.thresholds_)
    results = evaluate(small_dataset, model, tmp_path, from_day=3, champion=model,
                       do_not_originate=tuple(small_dataset.manifest["bank_hotlines"]), contributions_sample=2000)
    page = (tmp_path / "report.html").read_text()
    images = re.findall(r"<img src='([^']+)'", page)
    assert len(images) == 6
    assert all((tmp_path / name).stat().st_size > 1000 for name in images)
    stored = json.loads((tmp_path / "metrics.json").read_text())
    assert set(stored["targets"]) >= {"block_precision >= 99%", "block FPR <= 0.01%", "warn-or-block recall >= 90%"}
    assert stored["candidate"]["recall_by_typology"].keys() == stored["rules"]["recall_by_typology"].keys()
    assert "courier" in stored["candidate"]["fpr_by_group"]
    assert results["champion"]["auc"] == results["candidate"]["auc"]


def test_time_to_detect_counts_calls_up_to_the_first_block(small_dataset: Dataset) -> None:
    d = small_dataset
    fraud = np.flatnonzero(d.is_fraud)
    numbers, counts = np.unique(d.a_number[fraud].astype(str), return_counts=True)
    number = numbers[np.argmax(counts >= 3)]
    rows = fraud[d.a_number[fraud] == number]
    rows = rows[np.argsort(d.start_ms[rows], kind="stable")]
    blocked = np.zeros(len(d), bool)
    blocked[rows[2]] = True  # its third fraud call is the first blocked
    blocked[rows[3:]] = True
    ttd = time_to_detect(d, blocked)
    typ = str(d.typology[rows[0]])
    assert sorted(v for v in ttd[typ]["values"] if v is not None) == [3.0]
    assert ttd[typ]["never_blocked"] == ttd[typ]["numbers"] - 1


def test_rules_baseline_blocks_spoofed_cli_and_earlier_confirmed_numbers(small_dataset: Dataset) -> None:
    d = small_dataset
    history, period = d.rows(d.day < 3), d.rows(d.day >= 3)
    rules = RulesBaseline().fit(history)
    score = rules.score(period)
    hits = rules.rule_hits(period)
    assert (score[hits["spoofed_cli"]] == 1.0).all()
    known = np.isin(period.a_number, np.array(sorted(rules.blocklist_), dtype=object))
    assert (score[known] == 1.0).all()
    assert set(np.unique(score)) <= {0.0, 0.5, 1.0}
