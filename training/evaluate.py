"""Evaluation report a fraud team reads: HTML with PNG plots plus ``metrics.json``.

The evaluated period is the later days of a world (``from_day`` on); the days before it
are the history the rules-only baseline learns its blocklist from (numbers confirmed as
fraud earlier), as an operator's blocklist would have been built. Every scorer (the
candidate, the current champion, the rules) is measured on exactly the same calls.

Number-level time-to-detect counts, for each number presented as the caller of fraud
calls in the period, its fraud calls in time order up to and including the first one
blocked (1 = blocked on its first call); numbers never blocked are reported separately.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from features.definitions import FEATURE_NAMES
from training.dataset import Dataset
from training.errors import EvaluationDataError
from training.rules_baseline import RulesBaseline
from training.train import threshold_at_fpr

TARGETS = {
    "block_precision": 0.99,
    "block_fpr": 0.0001,
    "warn_or_block_recall": 0.90,
    "warn_fpr": 0.001,
    "median_calls_to_block": 3,
}
LEGIT_GROUPS_OF_INTEREST = ("courier", "taxi", "call_centre", "roamer", "service", "new_subscriber", "elderly",
                            "relative_abroad", "business", "normal")


@dataclass(frozen=True)
class ModelUnderTest:
    """A LightGBM text model and the thresholds stored with it."""

    name: str
    version: str
    model_text: str
    warn: float
    block: float

    def booster(self) -> Any:
        import lightgbm as lgb

        return lgb.Booster(model_str=self.model_text)


def operating_point(y: np.ndarray, flagged: np.ndarray) -> dict[str, float]:
    legit = ~y
    return {
        "recall": float(flagged[y].mean()) if y.any() else float("nan"),
        "fpr": float(flagged[legit].mean()) if legit.any() else float("nan"),
        "precision": float(y[flagged].mean()) if flagged.any() else float("nan"),
        "flagged": int(flagged.sum()),
        "false_positives": int((flagged & legit).sum()),
    }


def time_to_detect(data: Dataset, blocked: np.ndarray) -> dict[str, dict[str, Any]]:
    """Per typology: median and distribution of fraud calls up to the first block, per fraud number."""
    fraud = np.flatnonzero(data.is_fraud)
    order = fraud[np.lexsort((data.start_ms[fraud], data.a_number[fraud].astype(str)))]
    nums = data.a_number[order].astype(str)
    starts = np.flatnonzero(np.r_[True, nums[1:] != nums[:-1]])
    ends = np.r_[starts[1:], len(order)]
    per_typ: dict[str, list[float]] = {}
    for s, e in zip(starts.tolist(), ends.tolist()):
        rows = order[s:e]
        hit = np.flatnonzero(blocked[rows])
        typ = str(data.typology[rows[0]])
        per_typ.setdefault(typ, []).append(float(hit[0] + 1) if len(hit) else float("inf"))
    out: dict[str, dict[str, Any]] = {}
    for typ, vals in sorted(per_typ.items()):
        v = np.array(vals)
        caught = v[np.isfinite(v)]
        out[typ] = {
            "numbers": len(v),
            "never_blocked": int((~np.isfinite(v)).sum()),
            "median_calls_to_block": float(np.median(v)) if len(v) else float("nan"),
            "mean_calls_to_block_if_blocked": float(caught.mean()) if len(caught) else float("nan"),
            "values": [x if np.isfinite(x) else None for x in v.tolist()],
        }
    return out


def scorecard(data: Dataset, scores: np.ndarray, warn: float, block: float) -> dict[str, Any]:
    """Call-level and number-level metrics of one scorer at its two thresholds."""
    y = data.is_fraud
    blocked = scores >= block
    flagged = scores >= warn
    by_typ = {}
    for typ in sorted(set(data.typology[y].tolist())):
        m = data.typology == typ
        by_typ[typ] = {"calls": int(m.sum()), "block": float(blocked[m].mean()), "warn_or_block": float(flagged[m].mean())}
    by_group = {}
    legit = ~y
    for grp in sorted(set(data.group[legit].tolist())):
        m = legit & (data.group == grp)
        by_group[grp] = {"calls": int(m.sum()), "block_fpr": float(blocked[m].mean()),
                         "warn_or_block_fpr": float(flagged[m].mean())}
    ttd = time_to_detect(data, blocked)
    return {
        "warn_threshold": warn,
        "block_threshold": block,
        "block": operating_point(y, blocked),
        "warn_or_block": operating_point(y, flagged),
        "recall_by_typology": by_typ,
        "fpr_by_group": by_group,
        "time_to_detect": {k: {kk: vv for kk, vv in v.items() if kk != "values"} for k, v in ttd.items()},
        "_ttd_values": {k: v["values"] for k, v in ttd.items()},
    }


def equal_fpr_comparison(data: Dataset, model_scores: np.ndarray, rule_scores: np.ndarray) -> dict[str, Any]:
    """Recall per typology of the model vs the rules, the model thresholded at the rules' own FPRs."""
    y = data.is_fraud
    legit = ~y
    out: dict[str, Any] = {}
    for point, level in (("rules_block", 1.0), ("rules_warn_or_block", 0.5)):
        rules_flag = rule_scores >= level
        fpr = float(rules_flag[legit].mean())
        thr = threshold_at_fpr(model_scores[legit], fpr)
        model_flag = model_scores >= thr
        rows = {}
        for typ in sorted(set(data.typology[y].tolist())):
            m = data.typology == typ
            r, mo = float(rules_flag[m].mean()), float(model_flag[m].mean())
            rows[typ] = {"rules_recall": r, "model_recall": mo, "model_beats_rules": mo > r or (mo == r == 1.0)}
        out[point] = {"rules_fpr": fpr, "model_threshold": thr, "model_fpr": float(model_flag[legit].mean()),
                      "by_typology": rows}
    return out


def targets(card: dict[str, Any], comparison: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The acceptance targets, each with the measured value and met/missed."""
    ttd = card["time_to_detect"]
    rows = {
        "block_precision >= 99%": (card["block"]["precision"], card["block"]["precision"] >= TARGETS["block_precision"]),
        "block FPR <= 0.01%": (card["block"]["fpr"], card["block"]["fpr"] <= TARGETS["block_fpr"]),
        "warn-or-block recall >= 90%": (card["warn_or_block"]["recall"],
                                        card["warn_or_block"]["recall"] >= TARGETS["warn_or_block_recall"]),
        "warn-or-block FPR <= 0.1%": (card["warn_or_block"]["fpr"], card["warn_or_block"]["fpr"] <= TARGETS["warn_fpr"]),
    }
    for typ in ("vishing", "spoofing"):
        if typ in ttd:
            v = ttd[typ]["median_calls_to_block"]
            rows[f"median calls to first block, {typ} <= 3"] = (v, v <= TARGETS["median_calls_to_block"])
    beats = all(r["model_beats_rules"] for point in comparison.values() for r in point["by_typology"].values())
    rows["beats rules at equal FPR, every typology (a tie counts only at 100 %)"] = (beats, beats)
    return {k: {"value": v, "met": bool(ok)} for k, (v, ok) in rows.items()}


def evaluate(
    data: Dataset,
    candidate: ModelUnderTest,
    out: Path,
    *,
    from_day: int,
    champion: ModelUnderTest | None = None,
    do_not_originate: tuple[str, ...] = (),
    contributions_sample: int = 20_000,
    seed: int = 0,
) -> dict[str, Any]:
    """Write ``out/report.html``, ``out/*.png`` and ``out/metrics.json``; return the metrics."""
    out.mkdir(parents=True, exist_ok=True)
    history = data.rows(data.day < from_day)
    period = data.rows(data.day >= from_day)
    if not period.is_fraud.any() or period.is_fraud.all():
        raise EvaluationDataError(
            f"the evaluated days (day {from_day} on) need both fraud and legitimate calls; "
            "evaluate a larger world or raise --eval-fraction"
        )
    booster = candidate.booster()
    scores = booster.predict(period.X)
    rules = RulesBaseline(do_not_originate=do_not_originate).fit(history)
    rule_scores = rules.score(period)
    results: dict[str, Any] = {
        "world": {"seed": period.manifest.get("seed"), "parameters": period.manifest.get("parameters"),
                  "evaluated_days": [from_day, data.n_days - 1], "calls": len(period),
                  "fraud_calls": int(period.is_fraud.sum())},
        "candidate": {"version": candidate.version, **scorecard(period, scores, candidate.warn, candidate.block)},
        "rules": scorecard(period, rule_scores, 0.5, 1.0),
    }
    from sklearn.metrics import average_precision_score, roc_auc_score

    results["candidate"]["auc"] = float(roc_auc_score(period.is_fraud, scores))
    results["candidate"]["pr_auc"] = float(average_precision_score(period.is_fraud, scores))
    champ_scores = None
    if champion is not None:
        champ_scores = champion.booster().predict(period.X)
        results["champion"] = {"version": champion.version,
                               **scorecard(period, champ_scores, champion.warn, champion.block)}
        results["champion"]["auc"] = float(roc_auc_score(period.is_fraud, champ_scores))
    results["equal_fpr_vs_rules"] = equal_fpr_comparison(period, scores, rule_scores)
    results["targets"] = targets(results["candidate"], results["equal_fpr_vs_rules"])

    rng = np.random.Generator(np.random.PCG64(seed))
    sample = rng.choice(len(period), min(contributions_sample, len(period)), replace=False)
    contrib = booster.predict(period.X[sample], pred_contrib=True)[:, : len(FEATURE_NAMES)]
    gain = booster.feature_importance(importance_type="gain")
    results["importance"] = {
        name: {"gain": float(g), "mean_abs_contribution": float(c)}
        for name, g, c in zip(FEATURE_NAMES, gain, np.abs(contrib).mean(axis=0))
    }
    from training import report

    plots = report.plots(out, period, scores, rule_scores, champ_scores, results)
    for key in ("candidate", "rules", "champion"):
        if key in results:
            results[key].pop("_ttd_values")
    (out / "metrics.json").write_text(json.dumps(results, indent=2, default=_json_default) + "\n")
    (out / "report.html").write_text(report.html_report(results, plots))
    return results


def _json_default(o: object) -> object:
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(type(o).__name__)

