"""The public scorer: a LightGBM text model, scored by the compiled Cython kernels.

>>> scorer = Scorer.from_file("tests/models/data/numerical.txt")  # doctest: +SKIP
>>> scorer.predict_one(row)  # probability of one 1-D float64 row, NaN for missing  # doctest: +SKIP
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from models._predictor import Forest
from models._treeshap import TreeShap
from models.compiler import CompiledModel, compile_file, compile_text
from models.errors import ModelUnsupportedError, RowShapeError

# Below this many rows per thread, starting threads costs more than it saves.
MIN_ROWS_PER_THREAD: Final = 4096
SMALL_BATCH_ROWS: Final = 4  # below this, predict_raw scores row by row with the one-row kernel

FloatArray = npt.NDArray[np.float64]


class Scorer:
    """Scores rows with a LightGBM model; raw scores are bit-identical to ``Booster.predict``.

    Rows are float64, one column per model feature, NaN for missing, categories as
    their integer codes.
    """

    def __init__(self, model: CompiledModel) -> None:
        self.model = model
        self.feature_names: list[str] = list(model.feature_names)
        self.num_features: int = model.num_features
        self._forest = Forest(
            model.nodes,
            model.roots,
            model.depths,
            model.counts,
            model.expected,
            model.cat_bounds,
            model.cat_bits,
            model.feature_kinds,
            int(model.transform),
            model.sigmoid,
        )
        # Tables for the fast exact TreeSHAP (models/_treeshap.pyx), built here once; a
        # model it cannot take exactly (zero cover, > 32 distinct features on a path)
        # keeps the reference port of LightGBM's recursion in _predictor.
        self._shap: TreeShap | None
        try:
            self._shap = TreeShap(
                model.nodes,
                model.roots,
                model.counts,
                model.expected,
                model.cat_bounds,
                model.cat_bits,
                model.feature_kinds,
            )
        except ModelUnsupportedError:
            self._shap = None

    @classmethod
    def from_file(cls, path: str | Path) -> Scorer:
        """Load a LightGBM text model (``Booster.save_model``); no compiler is run."""
        return cls(compile_file(path))

    @classmethod
    def from_string(cls, text: str) -> Scorer:
        """Load a LightGBM model from its text (``Booster.model_to_string``)."""
        return cls(compile_text(text))

    def predict_one(self, x: FloatArray) -> float:
        """Prediction (probability for binary) of one 1-D row: the per-call path."""
        result: float = self._forest.predict_one(x)
        return result

    def predict_raw_one(self, x: FloatArray) -> float:
        """Raw score (sum of tree outputs) of one 1-D row."""
        result: float = self._forest.predict_raw_one(x)
        return result

    def predict_raw(self, X: FloatArray, *, n_threads: int = 1) -> FloatArray:
        """Raw scores of a 2-D batch (rows x features); threads only for large batches."""
        rows = self._batch(X)
        out = np.empty(rows.shape[0], dtype=np.float64)
        if rows.shape[0] < SMALL_BATCH_ROWS:
            # The batch kernel walks rows in lock-step lanes and pays a set-up per call;
            # for one to three rows the one-row kernel is about twice as fast.
            for i in range(rows.shape[0]):
                out[i] = self._forest.predict_raw_one(rows[i])
            return out
        threads = max(1, min(n_threads, rows.shape[0] // MIN_ROWS_PER_THREAD))
        if threads == 1:
            self._forest.predict_raw_into(rows, out)
            return out
        # The kernel releases the GIL, so plain threads run it in parallel; each
        # thread writes a disjoint slice of the caller-allocated output.
        bounds = np.linspace(0, rows.shape[0], threads + 1).astype(int)
        with ThreadPoolExecutor(threads) as pool:
            list(
                pool.map(
                    lambda i: self._forest.predict_raw_into(
                        rows[bounds[i] : bounds[i + 1]], out[bounds[i] : bounds[i + 1]]
                    ),
                    range(threads),
                )
            )
        return out

    def predict(self, X: FloatArray, *, n_threads: int = 1) -> FloatArray:
        """Predictions (probabilities for binary) of a 2-D batch."""
        out = self.predict_raw(X, n_threads=n_threads)
        self._forest.output_into(out, out)
        return out

    def contributions(self, x: FloatArray) -> FloatArray:
        """TreeSHAP contributions of one row: one per feature, then the bias.

        Same layout and values (within 1e-9) as ``Booster.predict(x[None], pred_contrib=True)[0]``;
        they sum to the raw score.
        """
        phi = np.empty(self.num_features + 1, dtype=np.float64)
        if self._shap is None:
            self._forest.contributions_into(x, phi)
        else:
            self._shap.contributions_into(self._row(x), phi)
        return phi

    def reference_contributions(self, x: FloatArray) -> FloatArray:
        """``contributions`` by the line-by-line port of LightGBM's TreeSHAP recursion
        (O(leaves x depth^2) per tree): the cross-check for the fast path."""
        phi = np.empty(self.num_features + 1, dtype=np.float64)
        self._forest.contributions_into(x, phi)
        return phi

    def _row(self, x: FloatArray) -> FloatArray:
        if type(x) is np.ndarray and x.dtype == np.float64 and x.ndim == 1 and x.flags.c_contiguous:
            return x
        try:
            return np.ascontiguousarray(x, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise RowShapeError(
                f"row of type {type(x).__name__} is not numeric ({exc}); "
                "expected a 1-D float64 array, NaN for missing"
            ) from None

    def _batch(self, X: FloatArray) -> FloatArray:
        try:
            rows = np.ascontiguousarray(X, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise RowShapeError(
                f"batch of type {type(X).__name__} is not numeric ({exc}); expected a 2-D float64 array"
            ) from None
        if rows.ndim != 2 or rows.shape[1] != self.num_features:
            raise RowShapeError(
                f"batch has shape {rows.shape}; expected (rows, {self.num_features}) "
                "(one column per model feature, NaN for missing)"
            )
        return rows
