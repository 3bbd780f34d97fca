import numpy as np
import numpy.typing as npt

RECORD: int
COLUMNS: tuple[str, ...]
SCRIPT_VALUES: int

def raw_aggregates(
    calls: bytes,
    group: npt.NDArray[np.int64],
    script: bytes,
    history: bytes,
    offsets: npt.NDArray[np.int64],
    order: npt.NDArray[np.int64],
    day: int,
    hour: int,
    minutes10: int,
    short_s: float,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_], npt.NDArray[np.int64]]: ...
