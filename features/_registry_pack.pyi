from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

RECORD_MAX: int

class RecordCheckError(ValueError):
    index: int
    def __init__(self, index: int) -> None: ...

class OwnerDigest:
    def __init__(self, key: bytes) -> None: ...
    def __call__(self, value: str) -> bytes: ...

def pack_records(
    records: list[Any],
    op_codes: dict[str, int],
    op_code: Callable[[str], int],
    owner_digest: OwnerDigest,
    biometric_codes: dict[str, int],
    check: bool,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8], npt.NDArray[np.uint8], npt.NDArray[np.uint8]]: ...
def encode_calls(
    bucket: npt.NDArray[np.int64],
    field: npt.NDArray[np.uint8],
    packed: npt.NDArray[np.uint8],
    length: npt.NDArray[np.uint8],
    order: npt.NDArray[np.int64],
    head: bytes,
    head_args: int,
    per_call: int,
) -> list[bytes]: ...
