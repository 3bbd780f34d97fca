"""Hot model promotion: follow the registry's ``champion`` (and ``challenger``) aliases.

Every ``interval_s`` the API checks the aliases file's mtime; when it changed, it loads
the aliased version (digest and feature list verified by the registry) in a thread and
swaps it into the engine atomically (each engine batch reads the model reference once),
so no request fails and none waits for the load. A model that fails verification is
refused and counted; the last good one keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any

from models.engine import Engine
from service.metrics import ApiMetrics

log = logging.getLogger(__name__)


class ModelWatcher:
    """Keeps ``engine`` on the registry's champion (and challenger as shadow, when enabled)."""

    def __init__(
        self, registry: Any, engine: Engine, metrics: ApiMetrics, *, shadow: bool, interval_s: float = 1.0
    ) -> None:
        self.registry = registry
        self.engine = engine
        self.metrics = metrics
        self.shadow = shadow
        self.interval_s = interval_s
        self.last_error: str | None = None
        self._mtime: float | None = None
        self._lock = threading.Lock()
        self._refused: set[str] = set()

    @property
    def aliases_path(self) -> Path:
        return Path(self.registry.root) / "aliases.json"

    def refresh(self) -> bool:
        """Load the aliased versions if they differ from what is served; True if anything changed."""
        with self._lock:
            changed = self._follow("champion")
            if self.shadow:
                changed = self._follow("challenger") or changed
            return changed

    def _follow(self, alias: str) -> bool:
        version = self.registry.alias(alias)
        current = self.engine.model if alias == "champion" else self.engine.shadow
        if version is None or (current is not None and current.card.version == version):
            return False
        if version in self._refused:
            return False
        try:
            model = self.registry.load(version)
        except Exception as exc:  # refused: digest/feature mismatch, unreadable file
            self._refused.add(version)
            self.last_error = f"{alias} {version} refused: {exc}"
            self.metrics.model_swaps.labels("refused").inc()
            log.error("model %s (%s) refused, keeping %s: %s", version, alias, current and current.card.version, exc)
            return False
        if alias == "champion":
            self.engine.swap_model(model)
            self.metrics.model_info.clear()
            self.metrics.model_info.labels(version).set(1)
        else:
            self.engine.shadow = model
        self.metrics.model_swaps.labels("loaded").inc()
        log.info("now serving %s as %s", version, alias)
        return True

    def forget_refusal(self, version: str) -> None:
        """An explicit promotion retries a version even if it was refused before."""
        self._refused.discard(version)

    def _changed(self) -> bool:
        try:
            mtime = self.aliases_path.stat().st_mtime_ns
        except OSError:
            return False
        if mtime == self._mtime:
            return False
        self._mtime = mtime
        return True

    async def run(self) -> None:
        """Poll forever (cancelled at shutdown)."""
        while True:
            await asyncio.sleep(self.interval_s)
            if self._changed():
                try:
                    await asyncio.to_thread(self.refresh)
                except Exception:
                    log.exception("model refresh failed; serving continues")
