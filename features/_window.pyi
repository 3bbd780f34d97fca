import numpy as np
import numpy.typing as npt

def distinct_in_window(
    group: npt.NDArray[np.int64],
    time: npt.NDArray[np.int64],
    value: npt.NDArray[np.int64],
    probe: npt.NDArray[np.int64],
    width: int,
    n_values: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_], npt.NDArray[np.bool_]]: ...
