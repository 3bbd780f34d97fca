"""Domain errors of the training package; one line each."""


class DatasetLabelError(ValueError):
    """A world's labels are missing or do not cover its CDRs."""


class TrainingDataError(ValueError):
    """The training data cannot produce a model (no fraud in a split, too few days...)."""


class EvaluationDataError(ValueError):
    """The evaluated days of a world lack fraud or legitimate calls."""


class TrainingConfigError(ValueError):
    """A training or evaluation setting is out of range; the message names the setting and the range."""
