"""Domain errors of the features package; one line each, mapped to HTTP status in service/."""


class ContractError(ValueError):
    """A record does not follow its contract; the message names the field, value and fix."""

    def __init__(self, message: str, *, record: str, field: str | None) -> None:
        super().__init__(message)
        self.record = record
        self.field = field


class NumberFormatError(ValueError):
    """A phone number is not strict ASCII E.164 (or an allowed short code)."""


class SettingsSecretError(ValueError):
    """A secret setting is missing or has a development value outside development mode."""


class StoreUnavailableError(RuntimeError):
    """The feature store (Redis) did not answer in time or refused the connection; callers fail open."""


class StoreListKindError(ValueError):
    """A list name is not one of block, allow, dno."""


class StoreRecordError(ValueError):
    """A stored registry or list record cannot be decoded (written by another version?)."""


class FeatureTableError(ValueError):
    """An input table of the offline feature builder lacks a column or holds a value outside its contract."""


class ListFileError(ValueError):
    """A list CSV (msisdn,operator,reason) lacks a column or holds a bad number."""
