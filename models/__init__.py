"""Model artefacts and registry, the compiled scorer, reason codes and the decision policy."""
