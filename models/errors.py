"""Domain errors of the models package; one line each, mapped to HTTP status in service/."""


class ModelFormatError(ValueError):
    """A model file is not a LightGBM text model the parser can read; the message names the line."""


class ModelUnsupportedError(ValueError):
    """A valid LightGBM model uses something the scorer does not implement (multiclass, linear trees...)."""


class RowShapeError(ValueError):
    """An input row or batch has the wrong dimensions, length or dtype for the model."""
