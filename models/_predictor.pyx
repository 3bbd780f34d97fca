# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Tree-walking kernels for a LightGBM model laid out by models/compiler.py.

Follows scikit-learn's _hist_gradient_boosting/_predictor.pyx: flat node arrays,
const typed memoryviews, nogil kernels, a caller-allocated output buffer. Parity
with ``lightgbm.Booster.predict`` is the contract, so every odd constraint below
names the LightGBM behaviour it reproduces.
"""

cimport numpy as cnp
from libc.math cimport INFINITY, NAN, exp, fabs, trunc
from libc.stdint cimport int32_t, uint8_t, uint16_t, uint32_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

import numpy as np

from models.errors import RowShapeError

cnp.import_array()


ctypedef struct Node:
    # Mirrors compiler.NODE_DTYPE (16 bytes, four nodes per cache line). A split's
    # left child is the next node; a leaf keeps its output in `value`, reads the
    # always-NaN slot and points `right` at itself, so it steps to itself.
    double value
    int32_t right
    uint16_t feature
    uint8_t default_left
    uint8_t kind


ctypedef struct PathElement:
    # LightGBM's Tree::PathElement, field for field (TreeSHAP).
    int feature_index
    double zero_fraction
    double one_fraction
    double pweight


cdef enum:
    KIND_CATEGORICAL = 1
    KIND_LEAF = 2
    FEATURE_NONE = 0
    FEATURE_NAN = 1
    FEATURE_ZERO = 2
    FEATURE_CATEGORICAL = 3
    TRANSFORM_IDENTITY = 0
    TRANSFORM_SIGMOID = 1
    TRANSFORM_EXP = 2
    # Rows per block in the batch kernel: the transformed block (64 x ~40 doubles,
    # 2 x 40 slots, 41 KB) stays in L1 while every tree is walked over it.
    BLOCK_ROWS = 64
    # Rows up to this many features use a stack buffer in the one-row path (no malloc).
    STACK_FEATURES = 511
    # Trees (one row) and rows (batch) walked in lock-step; set by measurement
    # (benchmarks/README.md): enough independent load chains to hide L2 latency.
    TREE_LANES = 8
    ROW_LANES = 4

# LightGBM's kZeroThreshold is the float literal 1e-35f widened to double.
cdef double ZERO_THRESHOLD = <double>(<float>1e-35)
# static_cast<int> of a double outside int range gives INT_MIN on x86-64 (cvttsd2si),
# which LightGBM's CategoricalDecision then sends right; we make that explicit.
cdef double INT_LIMIT = 2147483648.0


cdef inline void _transform_row(const double* x, double* xt, const uint8_t* kinds, int n_features) noexcept nogil:
    """Fold LightGBM's per-split missing-value rules into one pass over the row.

    Writes 2F+1 slots: xt[j] is read by default-left splits (a missing value is
    -inf, so it goes left), xt[F + 1 + j] by default-right ones (NaN: `NaN <= t` is
    false, so it goes right, even past the +inf thresholds LightGBM writes), and
    xt[F] is the NaN every leaf reads. After this, a numerical split is `x <= t`.
    """
    cdef int j
    cdef double v, right
    cdef uint8_t kind
    cdef double* xr = xt + n_features + 1
    for j in range(n_features):
        v = x[j]
        # The dense-matrix reader of LightGBM's C API keeps only |v| > kZeroThreshold
        # or NaN; anything else is read as an absent value, i.e. 0.0.
        if fabs(v) <= ZERO_THRESHOLD:
            v = 0.0
        kind = kinds[j]
        right = v
        if kind == FEATURE_NONE:
            if v != v:
                v = 0.0  # NumericalDecision: NaN -> 0 unless missing type is NaN
                right = 0.0
        elif kind == FEATURE_NAN:
            if v != v:
                v = -INFINITY
        elif kind == FEATURE_ZERO:
            if v != v or v == 0.0:  # IsZero(v) (|v| <= kZeroThreshold is 0.0 by now) or NaN
                v = -INFINITY
                right = NAN
        else:
            if v != v or v <= -1.0 or v >= INT_LIMIT:
                v = -1.0  # CategoricalDecision: int_fval < 0 (NaN/inf cast to INT_MIN) -> right
            else:
                v = trunc(v)  # static_cast<int> truncates toward zero: -0.5 is category 0
            right = v
        xt[j] = v
        xr[j] = right
    xt[n_features] = NAN  # the slot every leaf reads: NaN <= anything is false, so it steps right, to itself


cdef inline bint _in_bitset(double code, double split, const uint32_t* bits, const int32_t* bounds) noexcept nogil:
    # Common::FindInBitset: categories beyond the stored words are not in the set.
    cdef int c = <int>code
    cdef int k = <int>split
    cdef int start = bounds[k]
    if c < 0 or (c >> 5) >= bounds[k + 1] - start:
        return False
    return (bits[start + (c >> 5)] >> (c & 31)) & 1


cdef inline int32_t _step(const Node* nodes, int32_t i, const double* xt,
                          const uint32_t* bits, const int32_t* bounds) noexcept nogil:
    cdef const Node* n = nodes + i
    cdef double x = xt[n.feature]
    cdef int32_t left
    cdef int32_t right = n.right
    if n.kind & KIND_CATEGORICAL:
        left = _in_bitset(x, n.value, bits, bounds)
    else:
        left = x <= n.value  # missing values were made +-inf by _transform_row
    # Branch-free select: a split is a coin flip for the branch predictor, and one
    # misprediction would flush every lane walked in lock-step with this one.
    return right ^ ((right ^ (i + 1)) & -left)


cdef class Forest:
    """The compiled model: owns the flat arrays and exposes the kernels."""

    cdef readonly int n_features
    cdef readonly int n_trees
    cdef readonly int transform
    cdef readonly double sigmoid
    cdef readonly int max_depth
    cdef const Node[::1] _nodes
    cdef const int32_t[::1] _roots
    cdef const double[::1] _counts
    cdef const double[::1] _expected
    cdef const int32_t[::1] _cat_bounds
    cdef const uint32_t[::1] _cat_bits
    cdef const uint8_t[::1] _kinds
    cdef object _keep  # the numpy arrays behind the views (and an empty-safe bits array)

    def __init__(self, nodes, roots, depths, counts, expected, cat_bounds, cat_bits, feature_kinds,
                 int transform, double sigmoid):
        cat_bits = np.ascontiguousarray(cat_bits if len(cat_bits) else np.zeros(1, np.uint32), np.uint32)
        self._keep = (nodes, roots, counts, expected, cat_bounds, cat_bits, feature_kinds)
        self._nodes = nodes
        self._roots = roots
        self._counts = counts
        self._expected = expected
        self._cat_bounds = cat_bounds
        self._cat_bits = cat_bits
        self._kinds = feature_kinds
        self.n_features = feature_kinds.shape[0]
        self.n_trees = roots.shape[0]
        self.transform = transform
        self.sigmoid = sigmoid
        self.max_depth = int(depths.max()) if len(depths) else 0

    # ---- kernels (nogil, no Python objects) -------------------------------------

    cdef double _raw_one(self, const double* xt) noexcept nogil:
        """Sum of tree outputs in tree order, from 0.0, as GBDT::PredictRaw does.

        TREE_LANES trees are walked in lock-step so that TREE_LANES independent chains of
        dependent loads are in flight; leaves step to themselves, so a finished
        lane simply idles. Outputs are still added in tree order: bit-identical.
        """
        cdef const Node* nodes = &self._nodes[0]
        cdef const int32_t* roots = &self._roots[0]
        cdef const uint32_t* bits = &self._cat_bits[0]
        cdef const int32_t* bounds = &self._cat_bounds[0]
        cdef double total = 0.0
        cdef int t = 0
        cdef int k
        cdef uint8_t done
        cdef int32_t lane[TREE_LANES]
        while t + TREE_LANES <= self.n_trees:
            for k in range(TREE_LANES):
                lane[k] = roots[t + k]
            while True:
                done = KIND_LEAF
                for k in range(TREE_LANES):
                    done &= nodes[lane[k]].kind
                if done:
                    break
                for k in range(TREE_LANES):
                    lane[k] = _step(nodes, lane[k], xt, bits, bounds)
            for k in range(TREE_LANES):
                total += nodes[lane[k]].value
            t += TREE_LANES
        while t < self.n_trees:
            k = roots[t]
            while not (nodes[k].kind & KIND_LEAF):
                k = _step(nodes, k, xt, bits, bounds)
            total += nodes[k].value
            t += 1
        return total

    cdef void _raw_block(self, const double* xt, int rows, int stride, double* out) noexcept nogil:
        """Add every tree, in order, to `rows` transformed rows; ROW_LANES rows per tree in lock-step."""
        cdef const Node* nodes = &self._nodes[0]
        cdef const int32_t* roots = &self._roots[0]
        cdef const uint32_t* bits = &self._cat_bits[0]
        cdef const int32_t* bounds = &self._cat_bounds[0]
        cdef int t, r, k
        cdef int32_t root, a
        cdef uint8_t done
        cdef int32_t lane[ROW_LANES]
        for t in range(self.n_trees):
            root = roots[t]
            r = 0
            while r + ROW_LANES <= rows:
                for k in range(ROW_LANES):
                    lane[k] = root
                while True:
                    done = KIND_LEAF
                    for k in range(ROW_LANES):
                        done &= nodes[lane[k]].kind
                    if done:
                        break
                    for k in range(ROW_LANES):
                        lane[k] = _step(nodes, lane[k], xt + (r + k) * stride, bits, bounds)
                for k in range(ROW_LANES):
                    out[r + k] += nodes[lane[k]].value
                r += ROW_LANES
            while r < rows:
                a = root
                while not (nodes[a].kind & KIND_LEAF):
                    a = _step(nodes, a, xt + r * stride, bits, bounds)
                out[r] += nodes[a].value
                r += 1

    cdef int _raw_batch(self, const double* X, Py_ssize_t n_rows, double* out) noexcept nogil:
        """Raw scores of n_rows C-contiguous rows into out; returns -1 if out of memory."""
        cdef int stride = 2 * self.n_features + 1
        cdef double* xt = <double*>malloc(BLOCK_ROWS * stride * sizeof(double))
        cdef Py_ssize_t start
        cdef int rows, r
        if xt == NULL:
            return -1
        start = 0
        while start < n_rows:
            rows = <int>min(<Py_ssize_t>BLOCK_ROWS, n_rows - start)
            for r in range(rows):
                _transform_row(X + (start + r) * self.n_features, xt + r * stride,
                               &self._kinds[0], self.n_features)
                out[start + r] = 0.0
            self._raw_block(xt, rows, stride, out + start)
            start += rows
        free(xt)
        return 0

    cdef inline double _output(self, double raw) noexcept nogil:
        # ObjectiveFunction::ConvertOutput: binary/xentropy 1/(1+exp(-sigmoid*raw)),
        # poisson/gamma/tweedie exp(raw); same libm exp, so the same double.
        if self.transform == TRANSFORM_SIGMOID:
            return 1.0 / (1.0 + exp(-self.sigmoid * raw))
        if self.transform == TRANSFORM_EXP:
            return exp(raw)
        return raw

    # ---- TreeSHAP: a line-by-line port of LightGBM's tree.cpp -------------------

    cdef void _contrib(self, const double* xt, double* phi, PathElement* path) noexcept nogil:
        cdef int t
        for t in range(self.n_trees):
            # Tree::PredictContrib: the bias slot gets the tree's expected value first.
            phi[self.n_features] += self._expected[t]
            if not (self._nodes[self._roots[t]].kind & KIND_LEAF):
                _tree_shap(&self._nodes[0], &self._counts[0], xt, phi, self._roots[t], 0, path,
                           1.0, 1.0, -1, &self._cat_bits[0], &self._cat_bounds[0], self.n_features)

    # ---- Python entry points ----------------------------------------------------

    cdef cnp.ndarray _row(self, object x):
        """x as a 1-D C-contiguous float64 array of the model's width (no copy if it already is)."""
        cdef cnp.ndarray arr
        if (type(x) is np.ndarray and cnp.PyArray_TYPE(<cnp.ndarray>x) == cnp.NPY_DOUBLE
                and cnp.PyArray_NDIM(<cnp.ndarray>x) == 1
                and cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>x)):
            arr = <cnp.ndarray>x
        else:
            try:
                arr = np.ascontiguousarray(x, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise RowShapeError(f"row of type {type(x).__name__} is not numeric ({exc}); "
                                    "expected a 1-D float64 array, NaN for missing") from None
        if cnp.PyArray_NDIM(arr) != 1 or cnp.PyArray_DIM(arr, 0) != self.n_features:
            raise RowShapeError(f"row has shape {np.shape(arr)}; expected ({self.n_features},) "
                                "(one value per model feature, NaN for missing)")
        return arr

    def predict_raw_one(self, x):
        """Raw score of one row (1-D float64, NaN for missing)."""
        cdef cnp.ndarray arr = self._row(x)
        cdef const double* row = <const double*>cnp.PyArray_DATA(arr)
        cdef double stack_buf[2 * STACK_FEATURES + 1]
        cdef double* xt = stack_buf
        cdef double raw
        if self.n_features > STACK_FEATURES:
            xt = <double*>malloc((2 * self.n_features + 1) * sizeof(double))
            if xt == NULL:
                raise MemoryError()
        # The GIL is kept: a one-row walk is ~10 us and dropping and retaking the GIL
        # costs more than it would let other threads do.
        _transform_row(row, xt, &self._kinds[0], self.n_features)
        raw = self._raw_one(xt)
        if xt != stack_buf:
            free(xt)
        return raw

    def predict_one(self, x):
        """Prediction (probability for binary) of one row."""
        return self._output(self.predict_raw_one(x))

    def predict_raw_into(self, const double[:, ::1] X, double[::1] out):
        """Raw scores of the rows of X into the caller's buffer `out` (GIL released)."""
        cdef int status
        if X.shape[1] != self.n_features or out.shape[0] != X.shape[0]:
            raise RowShapeError(f"batch has shape {(X.shape[0], X.shape[1])} and output {out.shape[0]}; "
                                f"expected (n, {self.n_features}) and n")
        if X.shape[0] == 0:
            return
        with nogil:
            status = self._raw_batch(&X[0, 0], X.shape[0], &out[0])
        if status != 0:
            raise MemoryError()

    def output_into(self, double[::1] raw, double[::1] out):
        """Apply the objective transform elementwise (out may alias raw)."""
        cdef Py_ssize_t i
        with nogil:
            for i in range(raw.shape[0]):
                out[i] = self._output(raw[i])

    def contributions_into(self, x, double[::1] phi):
        """TreeSHAP contributions of one row into phi (n_features + 1, bias last), zeroed first."""
        cdef cnp.ndarray arr = self._row(x)
        cdef const double* row = <const double*>cnp.PyArray_DATA(arr)
        cdef int depth = self.max_depth + 1
        cdef double* xt
        cdef PathElement* path
        if phi.shape[0] != self.n_features + 1:
            raise RowShapeError(f"contribution buffer has {phi.shape[0]} slots; expected {self.n_features + 1}")
        xt = <double*>malloc((2 * self.n_features + 1) * sizeof(double))
        # Tree::PredictContrib sizes the path buffer as max_path_len*(max_path_len+1)/2.
        path = <PathElement*>malloc(((depth * (depth + 1)) // 2 + 1) * sizeof(PathElement))
        if xt == NULL or path == NULL:
            free(xt)
            free(path)
            raise MemoryError()
        with nogil:
            memset(&phi[0], 0, phi.shape[0] * sizeof(double))
            _transform_row(row, xt, &self._kinds[0], self.n_features)
            self._contrib(xt, &phi[0], path)
        free(xt)
        free(path)


cdef void _extend_path(PathElement* unique_path, int unique_depth, double zero_fraction,
                       double one_fraction, int feature_index) noexcept nogil:
    cdef int i
    unique_path[unique_depth].feature_index = feature_index
    unique_path[unique_depth].zero_fraction = zero_fraction
    unique_path[unique_depth].one_fraction = one_fraction
    unique_path[unique_depth].pweight = 1.0 if unique_depth == 0 else 0.0
    for i in range(unique_depth - 1, -1, -1):
        unique_path[i + 1].pweight += (one_fraction * unique_path[i].pweight * (i + 1)
                                       / <double>(unique_depth + 1))
        unique_path[i].pweight = (zero_fraction * unique_path[i].pweight * (unique_depth - i)
                                  / <double>(unique_depth + 1))


cdef void _unwind_path(PathElement* unique_path, int unique_depth, int path_index) noexcept nogil:
    cdef double one_fraction = unique_path[path_index].one_fraction
    cdef double zero_fraction = unique_path[path_index].zero_fraction
    cdef double next_one_portion = unique_path[unique_depth].pweight
    cdef double tmp
    cdef int i
    for i in range(unique_depth - 1, -1, -1):
        if one_fraction != 0:
            tmp = unique_path[i].pweight
            unique_path[i].pweight = (next_one_portion * (unique_depth + 1)
                                      / <double>((i + 1) * one_fraction))
            next_one_portion = (tmp - unique_path[i].pweight * zero_fraction * (unique_depth - i)
                                / <double>(unique_depth + 1))
        else:
            unique_path[i].pweight = ((unique_path[i].pweight * (unique_depth + 1))
                                      / <double>(zero_fraction * (unique_depth - i)))
    for i in range(path_index, unique_depth):
        unique_path[i].feature_index = unique_path[i + 1].feature_index
        unique_path[i].zero_fraction = unique_path[i + 1].zero_fraction
        unique_path[i].one_fraction = unique_path[i + 1].one_fraction


cdef double _unwound_path_sum(const PathElement* unique_path, int unique_depth, int path_index) noexcept nogil:
    cdef double one_fraction = unique_path[path_index].one_fraction
    cdef double zero_fraction = unique_path[path_index].zero_fraction
    cdef double next_one_portion = unique_path[unique_depth].pweight
    cdef double total = 0.0
    cdef double tmp
    cdef int i
    for i in range(unique_depth - 1, -1, -1):
        if one_fraction != 0:
            tmp = next_one_portion * (unique_depth + 1) / <double>((i + 1) * one_fraction)
            total += tmp
            next_one_portion = (unique_path[i].pweight - tmp * zero_fraction
                                * ((unique_depth - i) / <double>(unique_depth + 1)))
        else:
            total += ((unique_path[i].pweight / zero_fraction)
                      / ((unique_depth - i) / <double>(unique_depth + 1)))
    return total


cdef void _tree_shap(const Node* nodes, const double* counts, const double* xt, double* phi,
                     int32_t node, int unique_depth, PathElement* parent_unique_path,
                     double parent_zero_fraction, double parent_one_fraction,
                     int parent_feature_index, const uint32_t* bits, const int32_t* bounds,
                     int n_features) noexcept nogil:
    cdef PathElement* unique_path = parent_unique_path + unique_depth
    cdef const Node* n = nodes + node
    cdef int i, path_index
    cdef int32_t hot, cold
    cdef double w, hot_zero_fraction, cold_zero_fraction
    cdef double incoming_zero_fraction = 1.0
    cdef double incoming_one_fraction = 1.0
    cdef int feature
    if unique_depth > 0:
        memcpy(unique_path, parent_unique_path, unique_depth * sizeof(PathElement))
    _extend_path(unique_path, unique_depth, parent_zero_fraction, parent_one_fraction,
                 parent_feature_index)
    if n.kind & KIND_LEAF:
        for i in range(1, unique_depth + 1):
            w = _unwound_path_sum(unique_path, unique_depth, i)
            phi[unique_path[i].feature_index] += (
                w * (unique_path[i].one_fraction - unique_path[i].zero_fraction) * n.value)
        return
    # A default-right split reads the feature's second slot (see _transform_row).
    feature = n.feature if n.feature < n_features else n.feature - n_features - 1
    hot = _step(nodes, node, xt, bits, bounds)
    cold = n.right if hot == node + 1 else node + 1
    w = counts[node]
    hot_zero_fraction = counts[hot] / w
    cold_zero_fraction = counts[cold] / w
    # If this feature was already split on, undo that split so it can be redone here.
    path_index = 0
    while path_index <= unique_depth:
        if unique_path[path_index].feature_index == feature:
            break
        path_index += 1
    if path_index != unique_depth + 1:
        incoming_zero_fraction = unique_path[path_index].zero_fraction
        incoming_one_fraction = unique_path[path_index].one_fraction
        _unwind_path(unique_path, unique_depth, path_index)
        unique_depth -= 1
    _tree_shap(nodes, counts, xt, phi, hot, unique_depth + 1, unique_path,
               hot_zero_fraction * incoming_zero_fraction, incoming_one_fraction, feature,
               bits, bounds, n_features)
    _tree_shap(nodes, counts, xt, phi, cold, unique_depth + 1, unique_path,
               cold_zero_fraction * incoming_zero_fraction, 0.0, feature, bits, bounds, n_features)
