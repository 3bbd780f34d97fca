"""``callscreen simulate``, ``callscreen train`` and ``callscreen evaluate``: the data scientists' pipeline.

Only this module reads Settings (the registry folder); the training package receives
plain arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sim = sub.add_parser("simulate", help="write a simulated Kazakh telecom world (CDRs, registry, labels)")
    sim.add_argument("--out", type=Path, required=True, help="output folder")
    sim.add_argument("--subscribers", type=int, default=50_000, help="individual subscribers (default 50000)")
    sim.add_argument("--days", type=int, default=30, help="days of calls (default 30)")
    sim.add_argument("--seed", type=int, default=1, help="random seed; the same seed writes the same world")
    sim.add_argument("--start", default="2026-10-01", help="first local calendar day, YYYY-MM-DD")
    sim.add_argument("--fraud-scale", type=float, default=1.0, help="multiplies the number of fraud actors")
    sim.add_argument("--shift", type=float, default=0.0,
                     help="perturbs behaviour (group mix, rates, contact degree) for held-out worlds, e.g. 0.3")
    sim.add_argument("--jsonl", action="store_true", help="also write subscribers.jsonl and cdrs.jsonl")
    sim.set_defaults(func=_simulate)
    register_train(sub)


def _simulate(args: argparse.Namespace) -> int:
    from training.simulator import simulate

    if args.subscribers < 1000 or args.days < 1:
        sys.stderr.write("callscreen simulate: --subscribers must be >= 1000 and --days >= 1\n")
        return 2
    manifest = simulate(args.out, seed=args.seed, subscribers=args.subscribers, days=args.days, start=args.start,
                        fraud_scale=args.fraud_scale, shift=args.shift, jsonl=args.jsonl)
    json.dump(manifest["counts"], sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def register_train(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tr = sub.add_parser("train", help="train a LightGBM model on a simulated world and register it")
    tr.add_argument("--world", type=Path, required=True, help="folder written by `callscreen simulate`")
    tr.add_argument("--registry", type=Path, help="registry folder (default: CALLSCREEN_REGISTRY_DIR)")
    tr.add_argument("--seed", type=int, default=7, help="training seed; the same seed and data give the same model")
    tr.add_argument("--valid-fraction", type=float, default=0.2, help="share of the latest days used to validate")
    tr.add_argument("--negative-rate", type=float, default=0.1, help="share of legitimate training calls kept")
    tr.add_argument("--block-fpr", type=float, default=0.0001, help="target FPR of the block threshold (0.01%%)")
    tr.add_argument("--warn-fpr", type=float, default=0.001, help="target FPR of warn-or-block (0.1%%)")
    tr.add_argument("--fpr-margin", type=float, default=0.6,
                    help="thresholds are set at margin x target FPR on validation, to hold on new data")
    tr.add_argument("--max-rounds", type=int, default=400, help="boosting rounds at most (early stopping ends sooner)")
    tr.add_argument("--version", help="version name (default: m-<time>-<digest>)")
    tr.add_argument("--promote", action="store_true",
                    help="make it champion (the first model becomes champion anyway when none exists)")
    tr.set_defaults(func=_train)

    ev = sub.add_parser("evaluate", help="HTML evaluation report of a model vs the champion and a rules baseline")
    ev.add_argument("--world", type=Path, required=True, help="folder written by `callscreen simulate` (ideally another seed)")
    ev.add_argument("--out", type=Path, required=True, help="report folder (report.html, *.png, metrics.json)")
    ev.add_argument("--registry", type=Path, help="registry folder (default: CALLSCREEN_REGISTRY_DIR)")
    ev.add_argument("--model", default="latest", help="version or alias to evaluate (default: the newest version)")
    ev.add_argument("--eval-fraction", type=float, default=0.3,
                    help="share of the latest days evaluated; earlier days are history (rules' blocklist, windows)")
    ev.set_defaults(func=_evaluate)


def _registry_root(args: argparse.Namespace) -> Path:
    if args.registry is not None:
        return Path(args.registry)
    from deploy import settings

    return settings.load(default_env="development").models_dir


def _train(args: argparse.Namespace) -> int:
    from features.definitions import FEATURE_NAMES, FEATURE_VERSION
    from models.registry import Registry, Thresholds
    from training.dataset import load
    from training.train import FraudModelTrainer, TrainConfig, config_dict

    from training.errors import TrainingConfigError
    from training.train import check_config

    config = TrainConfig(seed=args.seed, valid_fraction=args.valid_fraction, negative_rate=args.negative_rate,
                         block_fpr=args.block_fpr, warn_fpr=args.warn_fpr, max_rounds=args.max_rounds,
                         fpr_margin=args.fpr_margin)
    try:
        check_config(config)
    except TrainingConfigError as exc:
        sys.stderr.write(f"callscreen train: {exc}\n")
        return 2
    sys.stderr.write(f"loading {args.world} and building features ...\n")
    data = load(args.world)
    sys.stderr.write(f"{len(data)} calls, {int(data.is_fraud.sum())} fraud, features in {data.build_seconds:.0f} s\n")
    trainer = FraudModelTrainer(config).fit(data)
    warn, block = trainer.thresholds_
    registry = Registry(_registry_root(args))
    card = registry.register(
        trainer.model_text_, feature_names=FEATURE_NAMES, feature_version=FEATURE_VERSION,
        thresholds=Thresholds(warn=warn, block=block), data_range=trainer.data_range_, metrics=trainer.metrics_,
        params={**trainer.params_, "config": config_dict(config)}, version=args.version,
    )
    promoted = args.promote or registry.alias("champion") is None
    if promoted:
        registry.promote(card.version, "champion")
    m = trainer.metrics_
    sys.stdout.write(json.dumps({
        "version": card.version, "champion": promoted, "registry": str(registry.root),
        "thresholds": {"warn": warn, "block": block},
        "validation": {k: m[k] for k in ("auc", "pr_auc", "block_precision", "block_fpr", "block_recall",
                                         "warn_or_block_recall", "warn_fpr")},
    }, indent=2) + "\n")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from models.registry import MODEL_FILE, Registry
    from training.dataset import load
    from training.evaluate import ModelUnderTest, evaluate

    if not 0.0 < args.eval_fraction < 1.0:
        sys.stderr.write(f"callscreen evaluate: --eval-fraction is {args.eval_fraction}; expected a number in (0, 1)\n")
        return 2
    registry = Registry(_registry_root(args))
    cards = registry.list()
    if not cards:
        sys.stderr.write(f"callscreen evaluate: no model in {registry.root}; run `callscreen train` first\n")
        return 2

    def under_test(ref: str, name: str) -> ModelUnderTest:
        card = registry.verify(ref)
        text = (registry.root / card.version / MODEL_FILE).read_text()
        return ModelUnderTest(name, card.version, text, card.thresholds.warn, card.thresholds.block)

    candidate = under_test(cards[-1].version if args.model == "latest" else args.model, "candidate")
    champion_version = registry.alias("champion")
    champion = under_test(champion_version, "champion") if champion_version else None
    sys.stderr.write(f"loading {args.world} and building features ...\n")
    data = load(args.world)
    from_day = data.n_days - max(1, int(round(data.n_days * args.eval_fraction)))
    results = evaluate(data, candidate, args.out, from_day=from_day, champion=champion,
                       do_not_originate=tuple(data.manifest.get("bank_hotlines", ())))
    sys.stdout.write(json.dumps({"report": str(args.out / "report.html"), "targets": results["targets"]}, indent=2) + "\n")
    return 0
