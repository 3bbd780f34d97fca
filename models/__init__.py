"""Model artefacts and registry, the compiled scorer, reason codes and the decision policy."""

from models.scorer import Scorer

__all__ = ["Scorer"]
