"""Training: reproducible for a seed, thresholds keep their false-positive promises."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from training.dataset import Dataset
from training.train import FraudModelTrainer, TrainConfig, split_days, threshold_at_fpr

FAST = {"max_rounds": 60, "early_stopping": 15, "negative_rate": 0.3}


def test_training_is_reproducible_for_a_seed(small_dataset: Dataset) -> None:
    a = FraudModelTrainer(TrainConfig(seed=5, **FAST)).fit(small_dataset, progress=False)
    b = FraudModelTrainer(TrainConfig(seed=5, **FAST)).fit(small_dataset, progress=False)
    assert a.model_text_ == b.model_text_
    assert a.thresholds_ == b.thresholds_


def test_thresholds_meet_their_fpr_on_validation(small_dataset: Dataset) -> None:
    t = FraudModelTrainer(TrainConfig(seed=1, block_fpr=0.001, warn_fpr=0.01, **FAST)).fit(small_dataset, progress=False)
    warn, block = t.thresholds_
    assert 0.0 <= warn <= block <= 1.0
    m = t.metrics_
    assert m["block_fpr"] <= 0.001 and m["warn_fpr"] <= 0.01
    assert m["auc"] > 0.9
    first_valid = split_days(small_dataset.n_days, 0.2)
    assert t.data_range_["valid_days"] == [first_valid, small_dataset.n_days - 1]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=300), st.floats(0, 1))
def test_threshold_at_fpr_never_exceeds_the_target(scores: list[float], fpr: float) -> None:
    s = np.array(scores)
    t = threshold_at_fpr(s, fpr)
    assert (s >= t).mean() <= fpr + 1e-12
