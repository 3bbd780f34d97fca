"""Domain errors of the models package; one line each, mapped to HTTP status in service/."""


class ModelFormatError(ValueError):
    """A model file is not a LightGBM text model the parser can read; the message names the line."""


class ModelUnsupportedError(ValueError):
    """A valid LightGBM model uses something the scorer does not implement (multiclass, linear trees...)."""


class RowShapeError(ValueError):
    """An input row or batch has the wrong dimensions, length or dtype for the model."""


class ModelDigestMismatchError(ValueError):
    """A registered model file's SHA-256 differs from its card: it changed after registration."""


class ModelFeatureMismatchError(ValueError):
    """A model's feature names or feature-definition version differ from the code's (features.definitions)."""


class ModelNotFoundError(LookupError):
    """No registered model has this version, or the alias points nowhere."""


class ModelVersionTakenError(ValueError):
    """A model version is already registered; versions are immutable."""


class ModelAliasError(ValueError):
    """An alias name is not one of the registry's aliases, or has no earlier version to roll back to."""


class ModelCardError(ValueError):
    """A card.json or aliases.json is unreadable or holds a value outside its format; the message names the field."""
