"""Plots (PNG, matplotlib Agg) and the HTML page of an evaluation."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np

from training.dataset import Dataset


def plots(out: Path, data: Dataset, scores: np.ndarray, rule_scores: np.ndarray, champ_scores: np.ndarray | None,
          results: dict[str, Any]) -> dict[str, str]:
    """Write the plots into ``out``; returns {title: file name}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    y = data.is_fraud
    files: dict[str, str] = {}

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    for name, s in (("candidate", scores), ("champion", champ_scores)):
        if s is None:
            continue
        p, r, _ = precision_recall_curve(y, s)
        ax1.plot(r, p, label=name)
        fpr, tpr, _ = roc_curve(y, s)
        ax2.plot(np.maximum(fpr, 1e-7), tpr, label=name)
    for level, marker in ((1.0, "s"), (0.5, "^")):
        flag = rule_scores >= level
        rec = flag[y].mean()
        prec = y[flag].mean() if flag.any() else 0.0
        fpr_r = flag[~y].mean()
        label = f"rules ({'block' if level == 1.0 else 'warn or block'})"
        ax1.plot([rec], [prec], marker, label=label)
        ax2.plot([max(fpr_r, 1e-7)], [rec], marker, label=label)
    c = results["candidate"]
    for key, marker in (("block", "o"), ("warn_or_block", "D")):
        ax2.plot([max(c[key]["fpr"], 1e-7)], [c[key]["recall"]], marker, color="k", label=f"candidate {key}")
    ax1.set(xlabel="recall (fraud calls)", ylabel="precision", title="Precision-recall")
    ax2.set(xscale="log", xlabel="false-positive rate on legitimate calls (log)", ylabel="recall", title="ROC")
    ax2.axvline(1e-4, ls=":", c="grey")
    ax2.axvline(1e-3, ls=":", c="grey")
    ax1.legend(fontsize=7)
    ax2.legend(fontsize=7)
    files["Precision-recall and ROC"] = _save(fig, out, "pr_roc.png")

    fig, ax = plt.subplots(figsize=(9, 4))
    typs = list(c["recall_by_typology"])
    x = np.arange(len(typs))
    w = 0.2
    ax.bar(x - 1.5 * w, [c["recall_by_typology"][t]["block"] for t in typs], w, label="model block")
    ax.bar(x - 0.5 * w, [c["recall_by_typology"][t]["warn_or_block"] for t in typs], w, label="model warn or block")
    rr = results["rules"]["recall_by_typology"]
    ax.bar(x + 0.5 * w, [rr[t]["block"] for t in typs], w, label="rules block")
    ax.bar(x + 1.5 * w, [rr[t]["warn_or_block"] for t in typs], w, label="rules warn or block")
    ax.set_xticks(x, typs)
    ax.set(ylabel="recall", ylim=(0, 1.05), title="Recall per typology at each threshold")
    ax.legend(fontsize=7)
    files["Recall per typology"] = _save(fig, out, "typology_recall.png")

    fig, ax = plt.subplots(figsize=(10, 4))
    groups = list(c["fpr_by_group"])
    x = np.arange(len(groups))
    ax.bar(x - 0.2, [c["fpr_by_group"][g]["block_fpr"] * 100 for g in groups], 0.4, label="block")
    ax.bar(x + 0.2, [c["fpr_by_group"][g]["warn_or_block_fpr"] * 100 for g in groups], 0.4, label="warn or block")
    ax.set_xticks(x, groups, rotation=30, ha="right")
    ax.set(ylabel="false-positive rate, %", title="False positives per legitimate group (model)")
    ax.legend(fontsize=7)
    files["False positives per legitimate group"] = _save(fig, out, "group_fpr.png")

    fig, ax = plt.subplots(figsize=(5, 5))
    # Fixed bins dense near 0 and 1: nearly every call scores close to 0, so quantile bins collapse.
    edges = np.array([0, .001, .01, .05, .1, .2, .3, .4, .5, .6, .7, .8, .9, .95, .99, 1.0 + 1e-9])
    b = np.clip(np.searchsorted(edges, scores, side="right") - 1, 0, len(edges) - 2)
    count = np.bincount(b, minlength=len(edges) - 1)
    full = count > 0
    mean_p = np.bincount(b, scores, len(edges) - 1)[full] / count[full]
    frac = np.bincount(b, y.astype(float), len(edges) - 1)[full] / count[full]
    ax.plot(mean_p, frac, "o-", label="candidate")
    ax.plot([0, 1], [0, 1], ":", c="grey", label="perfect calibration")
    ax.set(xlabel="mean predicted score", ylabel="observed fraud share", xlim=(0, 1), ylim=(0, 1),
           title="Calibration (negatives were subsampled in training)")
    ax.legend(fontsize=7)
    files["Calibration"] = _save(fig, out, "calibration.png")

    imp = results["importance"]
    names = sorted(imp, key=lambda n: imp[n]["mean_abs_contribution"], reverse=True)[:20]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 5.5))
    ax1.barh(names[::-1], [imp[n]["gain"] for n in names[::-1]])
    ax1.set(title="Importance: total gain")
    ax2.barh(names[::-1], [imp[n]["mean_abs_contribution"] for n in names[::-1]])
    ax2.set(title="Importance: mean |contribution| (log-odds)")
    fig.tight_layout()
    files["Feature importance"] = _save(fig, out, "importance.png")

    fig, ax = plt.subplots(figsize=(8, 4))
    for name in ("candidate", "rules", "champion"):
        if name not in results:
            continue
        for typ, vals in results[name]["_ttd_values"].items():
            if typ not in ("vishing", "spoofing"):
                continue
            v = np.array([x if x is not None else np.inf for x in vals])
            grid = np.arange(1, 21)
            ax.plot(grid, [(v <= g).mean() for g in grid], label=f"{name}: {typ}")
    ax.set(xlabel="fraud calls made by the number", ylabel="share of numbers blocked by then",
           title="Number-level time to detect", ylim=(0, 1.02))
    ax.legend(fontsize=7)
    files["Time to detect"] = _save(fig, out, "time_to_detect.png")
    return files


def _save(fig: Any, out: Path, name: str) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(out / name, dpi=90)
    plt.close(fig)
    return name


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v != v:
            return "n/a"
        if v == float("inf"):
            return "never"
        return f"{v:.6g}" if abs(v) < 1e-3 and v != 0 else f"{v:.4f}"
    return html.escape(str(v))


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def html_report(results: dict[str, Any], plots: dict[str, str]) -> str:
    c = results["candidate"]
    scorers = [k for k in ("candidate", "champion", "rules") if k in results]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>callscreen evaluation</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse;"
        "margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        ".met{color:green}.missed{color:#b00}</style></head><body>",
        f"<h1>Evaluation of model {html.escape(str(c['version']))}</h1>",
        f"<p>World seed {_fmt(results['world']['seed'])}, evaluated days {results['world']['evaluated_days']}, "
        f"{results['world']['calls']} calls of which {results['world']['fraud_calls']} fraud. "
        f"AUC {c['auc']:.6f}, PR-AUC {c['pr_auc']:.6f}.</p>",
        "<h2>Targets</h2>",
        "<table><tr><th>target</th><th>measured</th><th>status</th></tr>"
        + "".join(
            f"<tr><td>{html.escape(k)}</td><td>{_fmt(v['value'])}</td>"
            f"<td class='{'met' if v['met'] else 'missed'}'>{'met' if v['met'] else 'missed'}</td></tr>"
            for k, v in results["targets"].items()
        ) + "</table>",
        "<h2>Call level, each scorer at its own thresholds</h2>",
        _table(["scorer", "threshold", "precision", "recall", "FPR", "false positives"],
               [[s, p, results[s][p]["precision"], results[s][p]["recall"], results[s][p]["fpr"],
                 results[s][p]["false_positives"]] for s in scorers for p in ("block", "warn_or_block")]),
        "<h2>Recall per typology</h2>",
        _table(["typology", "calls"] + [f"{s} {p}" for s in scorers for p in ("block", "warn/block")],
               [[t, c["recall_by_typology"][t]["calls"]]
                + [results[s]["recall_by_typology"].get(t, {}).get(k, float("nan")) for s in scorers
                   for k in ("block", "warn_or_block")] for t in c["recall_by_typology"]]),
        "<h2>Model vs rules at the rules' own false-positive rates</h2>",
    ]
    for point, cmp in results["equal_fpr_vs_rules"].items():
        parts.append(f"<p>{html.escape(point)}: rules FPR {_fmt(cmp['rules_fpr'])}, model FPR {_fmt(cmp['model_fpr'])}</p>")
        parts.append(_table(["typology", "rules recall", "model recall", "model beats rules (or both 100 %)"],
                            [[t, r["rules_recall"], r["model_recall"], r["model_beats_rules"]]
                             for t, r in cmp["by_typology"].items()]))
    parts += [
        "<h2>False-positive rate per legitimate group</h2>",
        _table(["group", "calls"] + [f"{s} {p}" for s in scorers for p in ("block", "warn/block")],
               [[g, c["fpr_by_group"][g]["calls"]]
                + [results[s]["fpr_by_group"].get(g, {}).get(k, float("nan")) for s in scorers
                   for k in ("block_fpr", "warn_or_block_fpr")] for g in c["fpr_by_group"]]),
        "<h2>Number-level time to detect (fraud calls up to the first block)</h2>",
        _table(["scorer", "typology", "numbers", "median calls", "never blocked"],
               [[s, t, v["numbers"], v["median_calls_to_block"], v["never_blocked"]]
                for s in scorers for t, v in results[s]["time_to_detect"].items()]),
    ]
    for title, name in plots.items():
        parts.append(f"<h2>{html.escape(title)}</h2><img src='{html.escape(name)}' alt='{html.escape(title)}'>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
