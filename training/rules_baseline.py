"""What operators run today, as a baseline the model must beat: fixed rules, no learning.

* blocklist: numbers confirmed as fraud before the evaluated period (bank reports,
  earlier investigations), plus the do-not-originate list (bank hotlines that never
  call out);
* spoofed CLI: a Kazakh mobile number over an international or VoIP trunk whose
  registry record does not say it is roaming;
* velocity: many calls or many distinct callees in the last hour.

``score`` returns 1.0 for a block, 0.5 for a warn and 0.0 otherwise, so the baseline has
two operating points; the evaluation compares the model with it at the baseline's own
false-positive rates.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from features.definitions import INDEX
from training.dataset import Dataset


class RulesBaseline:
    """Fixed rules; ``fit`` only learns the blocklist of earlier-confirmed numbers."""

    def __init__(self, *, block_calls_1h: int = 30, block_callees_1h: int = 20, warn_calls_1h: int = 15,
                 warn_callees_1h: int = 10, do_not_originate: Iterable[str] = ()) -> None:
        self.block_calls_1h = block_calls_1h
        self.block_callees_1h = block_callees_1h
        self.warn_calls_1h = warn_calls_1h
        self.warn_callees_1h = warn_callees_1h
        self.do_not_originate = frozenset(do_not_originate)

    def fit(self, history: Dataset) -> RulesBaseline:
        """Blocklist every number seen making a confirmed fraud call in ``history``, except numbers
        that also made legitimate calls there: a real subscriber whose number was spoofed is
        not blocklisted (an analyst would see the owner, and the spoofed-CLI rule covers it)."""
        fraud = set(history.a_number[history.is_fraud].tolist())
        fraud -= set(history.a_number[~history.is_fraud].tolist())
        self.blocklist_ = frozenset(fraud) | self.do_not_originate
        return self

    def rule_hits(self, data: Dataset) -> dict[str, np.ndarray]:
        X = data.X
        blocked_numbers = np.array(sorted(self.blocklist_), dtype=object)
        return {
            "blocklist": np.isin(data.a_number, blocked_numbers),
            "spoofed_cli": (X[:, INDEX["domestic_cli_foreign_trunk"]] == 1) & (X[:, INDEX["roaming"]] != 1),
            "velocity_block": (X[:, INDEX["calls_1h"]] >= self.block_calls_1h)
            | (X[:, INDEX["distinct_callees_1h"]] >= self.block_callees_1h),
            "velocity_warn": (X[:, INDEX["calls_1h"]] >= self.warn_calls_1h)
            | (X[:, INDEX["distinct_callees_1h"]] >= self.warn_callees_1h),
        }

    def score(self, data: Dataset) -> np.ndarray:
        hits = self.rule_hits(data)
        block = hits["blocklist"] | hits["spoofed_cli"] | hits["velocity_block"]
        return np.where(block, 1.0, np.where(hits["velocity_warn"], 0.5, 0.0))
