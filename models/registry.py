"""The model registry: immutable versioned folders plus two movable aliases.

Layout under the registry root (``Settings().models_dir``)::

    <root>/<version>/model.txt     LightGBM text model (never a pickle)
    <root>/<version>/card.json     ModelCard: digest, feature names and version, thresholds, ...
    <root>/aliases.json            {"aliases": {"champion": v, "challenger": v},
                                    "history": {"champion": [older, ...], ...}}

A version folder is written under a temporary name and renamed into place, and
``aliases.json`` is replaced with ``os.replace`` under a lock file, so a reader never
sees half a model or half an alias file. Loading re-hashes ``model.txt`` and compares
the card's feature list with ``features.definitions``: a changed file or a model
trained on other features is refused, never scored.
"""

from __future__ import annotations

import builtins
import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from features.definitions import FEATURE_NAMES, FEATURE_VERSION
from models.errors import (
    ModelAliasError,
    ModelCardError,
    ModelDigestMismatchError,
    ModelFeatureMismatchError,
    ModelNotFoundError,
    ModelVersionTakenError,
)
from models.scorer import Scorer

ALIASES: Final = ("champion", "challenger")
MODEL_FILE: Final = "model.txt"
CARD_FILE: Final = "card.json"
ALIAS_FILE: Final = "aliases.json"
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Thresholds:
    """Warn/block probability thresholds, with per-operator overrides."""

    warn: float
    block: float
    per_operator: dict[str, tuple[float, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, (warn, block) in {"default": (self.warn, self.block), **self.per_operator}.items():
            if not 0.0 <= warn <= block <= 1.0:
                raise ModelCardError(
                    f"thresholds for {name!r} are warn={warn!r}, block={block!r}; expected 0 <= warn <= block <= 1"
                )

    def for_operator(self, op: str) -> tuple[float, float]:
        """(warn, block) for calls reported by ``op``."""
        return self.per_operator.get(op, (self.warn, self.block))

    def to_json(self) -> dict[str, Any]:
        return {"warn": self.warn, "block": self.block,
                "per_operator": {op: list(wb) for op, wb in sorted(self.per_operator.items())}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Thresholds:
        per_op = {str(op): (float(wb[0]), float(wb[1])) for op, wb in data.get("per_operator", {}).items()}
        return cls(float(data["warn"]), float(data["block"]), per_op)


@dataclass(frozen=True)
class ModelCard:
    """Everything known about one registered model version."""

    version: str
    digest: str
    feature_version: str
    feature_names: tuple[str, ...]
    thresholds: Thresholds
    created_at: str
    data_range: dict[str, Any]
    metrics: dict[str, Any]
    params: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "digest": self.digest,
            "feature_version": self.feature_version,
            "feature_names": list(self.feature_names),
            "thresholds": self.thresholds.to_json(),
            "created_at": self.created_at,
            "data_range": self.data_range,
            "metrics": self.metrics,
            "params": self.params,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str) -> ModelCard:
        try:
            return cls(
                version=str(data["version"]),
                digest=str(data["digest"]),
                feature_version=str(data["feature_version"]),
                feature_names=tuple(str(x) for x in data["feature_names"]),
                thresholds=Thresholds.from_json(data["thresholds"]),
                created_at=str(data["created_at"]),
                data_range=dict(data.get("data_range", {})),
                metrics=dict(data.get("metrics", {})),
                params=dict(data.get("params", {})),
            )
        except KeyError as exc:
            raise ModelCardError(f"{where}: field {exc.args[0]!r} is missing; re-register the model") from None
        except (TypeError, ValueError, IndexError) as exc:
            raise ModelCardError(f"{where}: {exc}") from None


@dataclass(frozen=True)
class LoadedModel:
    """A verified model ready to score: its card and its compiled scorer."""

    card: ModelCard
    scorer: Scorer


class Registry:
    """Model versions under ``root``; see the module docstring for the layout."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def register(
        self,
        model_text: str,
        *,
        feature_names: Sequence[str],
        feature_version: str,
        thresholds: Thresholds,
        data_range: dict[str, Any],
        metrics: dict[str, Any],
        params: dict[str, Any],
        version: str | None = None,
    ) -> ModelCard:
        """Store a new immutable version and return its card (aliases are not moved)."""
        body = model_text.encode("utf-8")
        digest = hashlib.sha256(body).hexdigest()
        names = tuple(feature_names)
        _check_model_features(model_text, names)
        now = dt.datetime.now(dt.UTC)
        version = version or f"m-{now:%Y%m%d-%H%M%S}-{digest[:8]}"
        if not _VERSION.fullmatch(version) or version in ALIASES:
            raise ModelCardError(
                f"version {version!r} is not a valid name; expected 1-64 chars of [A-Za-z0-9._-], "
                f"not an alias ({', '.join(ALIASES)})"
            )
        card = ModelCard(
            version=version,
            digest=digest,
            feature_version=feature_version,
            feature_names=names,
            thresholds=thresholds,
            created_at=now.isoformat(timespec="seconds").replace("+00:00", "Z"),
            data_range=dict(data_range),
            metrics=dict(metrics),
            params=dict(params),
        )
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.root / version
        if target.exists():
            raise ModelVersionTakenError(f"model version {version!r} is already registered in {self.root}")
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
        try:
            (staging / MODEL_FILE).write_bytes(body)
            _write_json(staging / CARD_FILE, card.to_json())
            try:
                staging.rename(target)  # atomic; fails if another writer took the name first
            except OSError:
                raise ModelVersionTakenError(
                    f"model version {version!r} is already registered in {self.root}"
                ) from None
        finally:
            if staging.exists():
                shutil.rmtree(staging)
        return card

    def list(self) -> builtins.list[ModelCard]:
        """Every registered version, oldest first."""
        if not self.root.is_dir():
            return []
        cards = [
            self._read_card(p.name)
            for p in self.root.iterdir()
            if p.is_dir() and not p.name.startswith(".") and (p / CARD_FILE).is_file()
        ]
        return sorted(cards, key=lambda c: (c.created_at, c.version))

    def alias(self, name: str) -> str | None:
        """The version ``name`` points at, or None."""
        _check_alias(name)
        value = self._read_aliases()["aliases"].get(name)
        return str(value) if value is not None else None

    def aliases(self) -> dict[str, str]:
        """Every alias that points somewhere."""
        return {k: str(v) for k, v in self._read_aliases()["aliases"].items() if v is not None}

    def card(self, ref: str) -> ModelCard:
        """Card of a version or alias."""
        return self._read_card(self._resolve(ref))

    def load(self, ref: str) -> LoadedModel:
        """Verify and compile a version or alias; refuses a changed file or a feature mismatch."""
        version = self._resolve(ref)
        card = self._read_card(version)
        body = (self.root / version / MODEL_FILE).read_bytes()
        _verify(card, body)
        return LoadedModel(card=card, scorer=Scorer.from_string(body.decode("utf-8")))

    def verify(self, ref: str) -> ModelCard:
        """Check digest and features without compiling the model."""
        version = self._resolve(ref)
        card = self._read_card(version)
        _verify(card, (self.root / version / MODEL_FILE).read_bytes())
        return card

    def promote(self, version: str, alias: str = "champion") -> ModelCard:
        """Point ``alias`` at ``version`` (which must verify), remembering the previous target."""
        _check_alias(alias)
        card = self.verify(version)
        if card.version != version:
            raise ModelAliasError(f"promote takes a version, not the alias {version!r}")
        with self._locked():
            state = self._read_aliases()
            previous = state["aliases"].get(alias)
            if previous == version:
                return card
            if previous is not None:
                state["history"].setdefault(alias, []).append(previous)
            state["aliases"][alias] = version
            self._write_aliases(state)
        return card

    def rollback(self, alias: str = "champion") -> ModelCard:
        """Point ``alias`` back at the version it had before the last promotion."""
        _check_alias(alias)
        with self._locked():
            state = self._read_aliases()
            history = state["history"].get(alias) or []
            if not history:
                raise ModelAliasError(f"alias {alias!r} has no earlier version to roll back to")
            version = history.pop()
            card = self.verify(version)
            state["aliases"][alias] = version
            self._write_aliases(state)
        return card

    # -- storage --------------------------------------------------------------

    def _resolve(self, ref: str) -> str:
        if ref in ALIASES:
            version = self.alias(ref)
            if version is None:
                raise ModelNotFoundError(
                    f"alias {ref!r} points at no model in {self.root}; fix: callscreen models promote VERSION"
                )
            return version
        if not _VERSION.fullmatch(ref) or not (self.root / ref / CARD_FILE).is_file():
            raise ModelNotFoundError(
                f"no model version {ref!r} in {self.root}; fix: callscreen models list"
            )
        return ref

    def _read_card(self, version: str) -> ModelCard:
        path = self.root / version / CARD_FILE
        card = ModelCard.from_json(_read_json(path), str(path))
        if card.version != version:
            raise ModelCardError(f"{path}: version {card.version!r} does not match its folder {version!r}")
        return card

    def _read_aliases(self) -> dict[str, Any]:
        path = self.root / ALIAS_FILE
        if not path.exists():
            return {"aliases": {}, "history": {}}
        data = _read_json(path)
        if not isinstance(data.get("aliases"), dict) or not isinstance(data.get("history"), dict):
            raise ModelCardError(f"{path}: expected objects 'aliases' and 'history'")
        return data

    def _write_aliases(self, state: dict[str, Any]) -> None:
        _write_json(self.root / ALIAS_FILE, state)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # Promotions from two shells must not lose one another's history entry.
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def _verify(card: ModelCard, body: bytes) -> None:
    digest = hashlib.sha256(body).hexdigest()
    if digest != card.digest:
        raise ModelDigestMismatchError(
            f"model {card.version!r}: model.txt has SHA-256 {digest[:12]}..., its card says {card.digest[:12]}...; "
            "the file changed after registration - register it again as a new version"
        )
    if card.feature_version != FEATURE_VERSION or card.feature_names != FEATURE_NAMES:
        raise ModelFeatureMismatchError(
            f"model {card.version!r} was trained on features {card.feature_version!r} "
            f"({_difference(card.feature_names)}), the code computes {FEATURE_VERSION!r}; "
            "retrain it on the current features"
        )


def _difference(names: tuple[str, ...]) -> str:
    if names == FEATURE_NAMES:
        return "same names"
    if len(names) != len(FEATURE_NAMES):
        return f"{len(names)} features, code has {len(FEATURE_NAMES)}"
    i = next(i for i, (a, b) in enumerate(zip(names, FEATURE_NAMES, strict=True)) if a != b)
    return f"feature {i} is {names[i]!r}, code has {FEATURE_NAMES[i]!r}"


def _check_model_features(model_text: str, names: tuple[str, ...]) -> None:
    """The model file's own ``feature_names=`` line must agree with the card being written."""
    for line in model_text.splitlines():
        if line.startswith("feature_names="):
            in_file = tuple(line.removeprefix("feature_names=").split())
            if in_file != names:
                raise ModelFeatureMismatchError(
                    f"model text lists {len(in_file)} features {in_file[:3]}..., "
                    f"the card {len(names)} {names[:3]}...; pass the names the model was trained with"
                )
            return


def _check_alias(name: str) -> None:
    if name not in ALIASES:
        raise ModelAliasError(f"alias {name!r} is unknown; expected one of {', '.join(ALIASES)}")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelCardError(f"{path}: cannot be read as JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ModelCardError(f"{path}: expected a JSON object")
    return data


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write via a temporary file and ``os.replace``: readers see the old or the new file, whole."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
