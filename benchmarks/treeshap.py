"""Reason-code cost: fast exact TreeSHAP against scoring the same row, and the reference port.

    nice -n 10 .venv/bin/python -m benchmarks.treeshap --models 200x63 1000x127

For each model, in one run on the same rows: CPU time per row of ``Scorer.predict_one``,
``Scorer.contributions`` (models/_treeshap.pyx), the reference port of LightGBM's
recursion and LightGBM's own ``pred_contrib`` (one row, one thread), and reason codes
(contributions + ``top_reasons``); the fast path's largest difference from LightGBM and
from its own contributions' sum (the raw score); the table memory and the load time.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
from models._treeshap import TreeShap

from benchmarks.workload import LARGE, SMALL, model_path, rows
from models import Scorer
from models.reasons import top_reasons

Array = npt.NDArray[np.float64]
SPECS = {spec.name: spec for spec in (SMALL, LARGE)}


def cpu_us_per_row(fn: Callable[[Array], object], X: Array, *, repeats: int = 5, min_s: float = 0.05) -> float:
    """Median over repeats of the CPU time per row of fn over X (process time, one thread).

    One untimed pass first (caches, branch predictors), and each repeat loops over X
    until it has run for min_s: a fast function timed over a few milliseconds alone
    measured up to 2x slow (the warm-up of whichever method came first)."""
    for x in X:
        fn(x)
    per_row = []
    for _ in range(repeats):
        calls = 0
        t0 = time.process_time()
        while True:
            for x in X:
                fn(x)
            calls += len(X)
            elapsed = time.process_time() - t0
            if elapsed >= min_s:
                break
        per_row.append(elapsed / calls * 1e6)
    return float(np.median(per_row))


def run(name: str, n_rows: int) -> None:
    path = model_path(SPECS[name])
    t0 = time.perf_counter()
    scorer = Scorer.from_file(path)
    load_s = time.perf_counter() - t0
    shap = scorer._shap
    m = scorer.model
    t0 = time.perf_counter()
    TreeShap(m.nodes, m.roots, m.counts, m.expected, m.cat_bounds, m.cat_bits, m.feature_kinds)
    tables_s = time.perf_counter() - t0
    booster = lgb.Booster(model_file=str(path))
    X = rows(n_rows, seed=11)
    codes = {f: (f"CODE_{i}", f) for i, f in enumerate(scorer.feature_names)}

    def reasons(x: Array) -> object:
        return top_reasons(scorer.contributions(x), scorer.feature_names, x, codes)

    score = cpu_us_per_row(scorer.predict_one, X)
    fast = cpu_us_per_row(scorer.contributions, X)
    reason = cpu_us_per_row(reasons, X)
    ref_rows = X[: max(3, n_rows // 20)]
    reference = cpu_us_per_row(scorer.reference_contributions, ref_rows, repeats=1, min_s=0.0)
    lightgbm = cpu_us_per_row(lambda x: booster.predict(x[None], pred_contrib=True, num_threads=1), ref_rows,
                              repeats=1, min_s=0.0)
    phi = np.array([scorer.contributions(x) for x in X])
    err = float(np.abs(phi - booster.predict(X, pred_contrib=True)).max())
    sum_err = float(np.abs(phi.sum(axis=1) - booster.predict(X, raw_score=True)).max())
    mb = shap.nbytes / 1e6 if shap is not None else float("nan")
    print(f"\n{name}: Scorer.from_file {load_s:.2f} s, of which TreeSHAP tables {tables_s:.2f} s; tables {mb:.1f} MB, "
          f"rules up to {shap.max_points if shap is not None else 0} points, load average {os.getloadavg()[0]:.2f}")
    print(f"  predict_one                 {score:9.1f} us/row   1.0x")
    print(f"  contributions (fast)        {fast:9.1f} us/row {fast / score:5.1f}x scoring")
    print(f"  reason codes (fast + top 3) {reason:9.1f} us/row {reason / score:5.1f}x scoring")
    print(f"  contributions (reference)   {reference:9.1f} us/row {reference / score:5.1f}x scoring "
          f"({reference / fast:.1f}x the fast path)")
    print(f"  LightGBM pred_contrib       {lightgbm:9.1f} us/row {lightgbm / score:5.1f}x scoring")
    print(f"  max |fast - LightGBM| = {err:.1e}; max |sum(fast) - raw score| = {sum_err:.1e} over {n_rows} rows")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["200x63"], choices=sorted(SPECS))
    parser.add_argument("--rows", type=int, default=200, help="rows timed per method (seeded)")
    args = parser.parse_args()
    for name in args.models:
        run(name, args.rows)


if __name__ == "__main__":
    main()
