from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from features.contracts import Cdr
from features.store import CallContext

RECORD: int
COLUMNS: tuple[str, ...]
SCRIPT_VALUES: int
ARGS_PER_CALL: int

def digest6(value: bytes) -> bytes: ...
def start_times(
    cdrs: list[Cdr], fallback: Callable[[datetime], int]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]: ...
def assemble_rows(
    t: npt.NDArray[np.int64],
    raw: npt.NDArray[np.float64],
    origin: npt.NDArray[np.float64],
    registry: list[bytes | None],
    owners: npt.NDArray[np.int64],
) -> npt.NDArray[np.float64]: ...
def origin_codes(
    cdrs: list[Cdr], ingress_codes: Mapping[str, int], classify: Callable[[str], int]
) -> npt.NDArray[np.float64]: ...

class Batch:
    payload: bytes
    scripts: int
    callers: list[int]
    def __init__(
        self,
        cdrs: list[Cdr],
        fallback: Callable[[datetime], int],
        prologue: bytes,
        fixed: int,
        per_script: int,
        ingress_codes: Mapping[str, int],
        classify: Callable[[str], Any],
    ) -> None: ...
    def start_ms(self, i: int) -> int: ...
    def groups(self) -> list[int]: ...
    def calls_of(self, groups: Any) -> list[int]: ...
    def features(
        self, replies: list[Any], plain: tuple[CallContext, ...]
    ) -> tuple[npt.NDArray[np.float64], list[CallContext]]: ...
