# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Tree-walking kernels for a LightGBM model laid out by models/compiler.py.

Follows scikit-learn's _hist_gradient_boosting/_predictor.pyx: flat node arrays,
const typed memoryviews, nogil kernels, a caller-allocated output buffer. Parity
with ``lightgbm.Booster.predict`` is the contract, so every odd constraint below
names the LightGBM behaviour it reproduces.
"""

cimport numpy as cnp
from libc.math cimport INFINITY, NAN, exp, fabs, trunc
from libc.stdint cimport INT64_MAX, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

import numpy as np

from models.errors import RowShapeError

cnp.import_array()


ctypedef struct Node:
    # Mirrors compiler.NODE_DTYPE (16 bytes, four nodes per cache line). A split's
    # left child is the next node; a leaf keeps its output in `value`, reads the
    # always-NaN slot and points `right` at itself, so it steps to itself.
    # TreeSHAP walks this layout; scoring walks WalkNode, derived from it.
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


cdef extern from *:
    """
    #define CALLSCREEN_UNLIKELY(x) __builtin_expect(!!(x), 0)
    """
    bint CALLSCREEN_UNLIKELY(bint) noexcept nogil


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
    # Rows up to this many features use a stack buffer in the one-row path (no malloc).
    STACK_FEATURES = 511

# LightGBM's kZeroThreshold is the float literal 1e-35f widened to double.
cdef double ZERO_THRESHOLD = <double>(<float>1e-35)
# static_cast<int> of a double outside int range gives INT_MIN on x86-64 (cvttsd2si),
# which LightGBM's CategoricalDecision then sends right; we make that explicit.
cdef double INT_LIMIT = 2147483648.0
cdef extern from *:
    """
    #define CS_BLOCK_ROWS 64
    """
    # Rows per block in the batch kernel: the transformed block (64 x 81 slots x 8 bytes,
    # 41 KB) stays in L1 while every tree is walked over it.
    enum: BLOCK_ROWS "CS_BLOCK_ROWS"
# _key(-inf): a missing value that goes left is below every threshold's key.
cdef int64_t KEY_MISSING_LEFT = <int64_t>0x800FFFFFFFFFFFFF
# Above every key of a non-NaN threshold: a missing value that goes right.
cdef int64_t KEY_MISSING_RIGHT = INT64_MAX


cdef inline int64_t _key(double v) noexcept nogil:
    """Order-preserving integer image of a double: a <= b iff _key(a) <= _key(b) (no NaN, no -0.0).

    The sign-magnitude bits of a negative double are flipped so that more negative
    sorts lower; the walk then compares two int64, which costs the same as a double
    compare but shares its operands with the categorical bit test.
    """
    cdef int64_t b
    memcpy(&b, &v, sizeof(double))
    return b ^ ((b >> 63) & INT64_MAX)


cdef inline void _transform_row(const double* x, double* xt, const uint8_t* kinds, int n_features) noexcept nogil:
    """Fold LightGBM's per-split missing-value rules into one pass over the row.

    Writes 2F+1 slots: xt[j] is read by default-left splits (a missing value is
    -inf, so it goes left), xt[F + 1 + j] by default-right ones (NaN: `NaN <= t` is
    false, so it goes right, even past the +inf thresholds LightGBM writes), and
    xt[F] is the NaN every leaf reads. After this, a numerical split is `x <= t`.
    (TreeSHAP's form; scoring uses _walk_row, the same rules as integers.)
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


cdef inline void _walk_row(const double* x, int64_t* xt, const uint8_t* kinds, int n_features) noexcept nogil:
    """_transform_row's rules, written as the integers WalkNode tests read.

    Numerical slots hold _key(value), with a missing value as KEY_MISSING_LEFT in the
    default-left slot and KEY_MISSING_RIGHT in the default-right one. A categorical
    feature's first slot holds its code (-1: always right), its second 1 << code (0
    for codes past 63). Slot F is 0, which no bit test matches: leaves step to themselves.
    """
    cdef int j
    cdef double v
    cdef int64_t k, c
    cdef uint8_t kind
    cdef int64_t* xr = xt + n_features + 1
    for j in range(n_features):
        v = x[j]
        if fabs(v) <= ZERO_THRESHOLD:  # see _transform_row; this also turns -0.0 into 0.0
            v = 0.0
        kind = kinds[j]
        if kind == FEATURE_CATEGORICAL:
            if v != v or v <= -1.0 or v >= INT_LIMIT:
                c = -1
            else:
                c = <int64_t>trunc(v)
            xt[j] = c
            xr[j] = <int64_t>((<uint64_t>1) << c) if 0 <= c < 64 else 0
            continue
        if v != v:
            if kind == FEATURE_NONE:
                k = _key(0.0)
                xt[j] = k
                xr[j] = k
            else:
                xt[j] = KEY_MISSING_LEFT
                xr[j] = KEY_MISSING_RIGHT
            continue
        if kind == FEATURE_ZERO and v == 0.0:
            xt[j] = KEY_MISSING_LEFT
            xr[j] = KEY_MISSING_RIGHT
            continue
        k = _key(v)
        xt[j] = k
        xr[j] = k
    xt[n_features] = 0


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
    return right ^ ((right ^ (i + 1)) & -left)


cdef extern from *:
    """
    /* The scoring walk, in C so that the lock-step lanes live in registers and the
       child choice is a select: GCC turns Cython's loops over a lane array into
       stack round-trips and the kind test into a branch (a coin flip here: most
       paths interleave categorical and numerical splits). */
    #include <stdint.h>
    typedef union { int64_t key; uint64_t mask; double value; } cs_payload;
    typedef struct {
        cs_payload p;
        int32_t skip;    /* bytes from the left child (the next node) to the right child; leaf: -16, itself */
        uint16_t slot;   /* transformed-row slot the test reads */
        int8_t bits;     /* -1: bit test (slot & mask), 0: compare (slot <= key); sign-extends to the select mask */
        uint8_t wide;    /* 1: categorical bitset past 64 codes, tested out of line */
    } cs_node;

    static __attribute__((noinline)) uint64_t cs_wide_right(int64_t code, int64_t k, const uint32_t* bits,
                                                            const int32_t* bounds) {
        /* Not Common::FindInBitset, for a bitset past 64 categories (rare). */
        int32_t start = bounds[k];
        if (code < 0 || (code >> 5) >= bounds[k + 1] - start) return 1;
        return ((bits[start + (code >> 5)] >> (code & 31)) & 1) ^ 1;
    }

    /* `wide` is a constant at every call site (the walks are always inlined), so
       models without wide bitsets pay nothing for them. */
    static inline __attribute__((always_inline)) const cs_node* cs_step(
            const cs_node* n, const int64_t* xt, const uint32_t* cat_bits, const int32_t* bounds, const int wide) {
        int64_t x = xt[n->slot];
        int64_t p = n->p.key;
        uint64_t gt = x > p, miss = (x & p) == 0;
        uint64_t right = gt ^ ((gt ^ miss) & (uint64_t)(int64_t)n->bits);
        if (wide && __builtin_expect(n->wide, 0)) right = cs_wide_right(x, p, cat_bits, bounds);
        return (const cs_node*)((const char*)(n + 1) + (n->skip & -(int64_t)right));
    }

    /* Walks trees [t, t + CS_TREE_LANES) for one row; returns their outputs added in tree order to total.
       Lanes are independent chains of dependent loads, in flight together; a leaf steps to itself, so
       a finished lane idles, and the group ends on the first round where no lane moved. The lane
       counts are set by measurement (benchmarks/README.md). */
    #define CS_TREE_LANES 8
    static inline __attribute__((always_inline)) double cs_walk_trees(
            const cs_node* nodes, const int32_t* roots, int t, const int64_t* xt,
            const uint32_t* cat_bits, const int32_t* bounds, double total, const int wide) {
        const cs_node* lane[CS_TREE_LANES];
        uintptr_t moved;
        #pragma GCC unroll 16
        for (int k = 0; k < CS_TREE_LANES; k++) lane[k] = nodes + roots[t + k];
        do {
            moved = 0;
            #pragma GCC unroll 16
            for (int k = 0; k < CS_TREE_LANES; k++) {
                const cs_node* next = cs_step(lane[k], xt, cat_bits, bounds, wide);
                moved |= (uintptr_t)next ^ (uintptr_t)lane[k];
                lane[k] = next;
            }
        } while (moved);
        #pragma GCC unroll 16
        for (int k = 0; k < CS_TREE_LANES; k++) total += lane[k]->p.value;
        return total;
    }

    /* Walks one tree for rows [0, CS_ROW_LANES) of a block (row r at xt + r * stride); adds each output to out[r]. */
    #define CS_ROW_LANES 8
    static inline __attribute__((always_inline)) void cs_walk_rows(
            const cs_node* root, const int64_t* xt, int stride, const uint32_t* cat_bits, const int32_t* bounds,
            double* out, const int wide) {
        const cs_node* lane[CS_ROW_LANES];
        uintptr_t moved;
        #pragma GCC unroll 16
        for (int k = 0; k < CS_ROW_LANES; k++) lane[k] = root;
        do {
            moved = 0;
            #pragma GCC unroll 16
            for (int k = 0; k < CS_ROW_LANES; k++) {
                const cs_node* next = cs_step(lane[k], xt + k * stride, cat_bits, bounds, wide);
                moved |= (uintptr_t)next ^ (uintptr_t)lane[k];
                lane[k] = next;
            }
        } while (moved);
        #pragma GCC unroll 16
        for (int k = 0; k < CS_ROW_LANES; k++) out[k] += lane[k]->p.value;
    }

    static inline double cs_walk_one(const cs_node* n, const int64_t* xt, const uint32_t* cat_bits,
                                     const int32_t* bounds) {
        const cs_node* next;
        while ((next = cs_step(n, xt, cat_bits, bounds, 1)) != n) n = next;
        return n->p.value;
    }

    /* Asks for a tree's nodes before its walk needs them: a large model does not fit in L2. */
    static inline void cs_prefetch(const cs_node* first, const cs_node* end) {
        for (const char* a = (const char*)first; a < (const char*)end; a += 64) __builtin_prefetch(a, 0, 2);
    }
    """
    ctypedef struct WalkNode "cs_node":
        pass
    enum: CS_TREE_LANES, CS_ROW_LANES
    double cs_walk_trees(const WalkNode* nodes, const int32_t* roots, int t, const int64_t* xt,
                         const uint32_t* cat_bits, const int32_t* bounds, double total, int wide) noexcept nogil
    void cs_walk_rows(const WalkNode* root, const int64_t* xt, int stride,
                      const uint32_t* cat_bits, const int32_t* bounds, double* out, int wide) noexcept nogil
    double cs_walk_one(const WalkNode* n, const int64_t* xt, const uint32_t* cat_bits,
                       const int32_t* bounds) noexcept nogil
    void cs_prefetch(const WalkNode* first, const WalkNode* end) noexcept nogil


WALK_DTYPE = np.dtype([("p", "<i8"), ("skip", "<i4"), ("slot", "<u2"), ("bits", "i1"), ("wide", "u1")])


def walk_layout(nodes, cat_bounds, cat_bits, int n_features):
    """The cs_node array for the compiler's Node array (same order, same tree shapes)."""
    value = np.ascontiguousarray(nodes["value"], dtype=np.float64)
    kind = nodes["kind"]
    leaf = (kind & KIND_LEAF) != 0
    cat = ((kind & KIND_CATEGORICAL) != 0) & ~leaf
    num = ~leaf & ~cat
    walk = np.zeros(len(nodes), dtype=WALK_DTYPE)
    right = nodes["right"].astype(np.int64)
    walk["skip"] = (right - np.arange(1, len(nodes) + 1)) * WALK_DTYPE.itemsize
    walk["slot"] = nodes["feature"]
    # Leaves: a bit test on slot F (always 0) fails, so the walk goes right, to itself.
    walk["p"][leaf] = value[leaf].view(np.int64)
    walk["bits"][leaf] = -1
    walk["slot"][leaf] = n_features
    threshold = value[num] + 0.0  # -0.0 -> 0.0: _key orders the two zeros, <= does not
    keys = threshold.view(np.int64)
    keys = keys ^ ((keys >> 63) & np.int64(0x7FFFFFFFFFFFFFFF))
    keys[np.isnan(threshold)] = np.iinfo(np.int64).min  # x <= NaN never holds
    walk["p"][num] = keys
    if cat.any():
        index = value[cat].astype(np.int64)
        bounds = np.asarray(cat_bounds, dtype=np.int64)
        words = np.asarray(cat_bits, dtype=np.uint64)
        start = bounds[index]
        width = bounds[index + 1] - start
        inline = width <= 2
        mask = np.where(width >= 1, words[np.minimum(start, len(words) - 1)], 0)
        mask |= np.where(width >= 2, words[np.minimum(start + 1, len(words) - 1)] << np.uint64(32), 0)
        cat_index = np.flatnonzero(cat)
        walk["p"][cat_index] = np.where(inline, mask.view(np.int64), index)
        walk["bits"][cat_index] = -1
        walk["wide"][cat_index] = ~inline
        walk["slot"][cat_index] += np.where(inline, n_features + 1, 0).astype(np.uint16)
    return walk


cdef class Forest:
    """The compiled model: owns the flat arrays and exposes the kernels."""

    cdef readonly int n_features
    cdef readonly int n_trees
    cdef readonly int transform
    cdef readonly double sigmoid
    cdef readonly int max_depth
    cdef bint _wide  # some categorical split has a bitset past 64 codes (see cs_step)
    cdef const Node[::1] _nodes
    cdef const WalkNode* _walk  # into self._keep[1] (memoryviews cannot type a struct holding a union)
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
        walk = walk_layout(nodes, cat_bounds, cat_bits, feature_kinds.shape[0])
        self._keep = (nodes, walk, roots, counts, expected, cat_bounds, cat_bits, feature_kinds)
        self._nodes = nodes
        self._walk = <const WalkNode*>cnp.PyArray_DATA(<cnp.ndarray>walk)
        self._wide = bool(walk["wide"].any())
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

    cdef double _raw_one(self, const int64_t* xt) noexcept nogil:
        """Sum of tree outputs in tree order, from 0.0, as GBDT::PredictRaw does (see cs_walk_trees)."""
        cdef const WalkNode* nodes = self._walk
        cdef const int32_t* roots = &self._roots[0]
        cdef const uint32_t* bits = &self._cat_bits[0]
        cdef const int32_t* bounds = &self._cat_bounds[0]
        cdef double total = 0.0
        cdef int t = 0
        # Two call sites so that each inlined walk has `wide` as a constant.
        if self._wide:
            while t + CS_TREE_LANES <= self.n_trees:
                total = cs_walk_trees(nodes, roots, t, xt, bits, bounds, total, 1)
                t += CS_TREE_LANES
        else:
            while t + CS_TREE_LANES <= self.n_trees:
                total = cs_walk_trees(nodes, roots, t, xt, bits, bounds, total, 0)
                t += CS_TREE_LANES
        while t < self.n_trees:
            total += cs_walk_one(nodes + roots[t], xt, bits, bounds)
            t += 1
        return total

    cdef void _raw_block(self, const int64_t* xt, int rows, int stride, double* out) noexcept nogil:
        """Add every tree, in order, to `rows` transformed rows; CS_ROW_LANES rows per tree in lock-step."""
        cdef const WalkNode* nodes = self._walk
        cdef const int32_t* roots = &self._roots[0]
        cdef const uint32_t* bits = &self._cat_bits[0]
        cdef const int32_t* bounds = &self._cat_bounds[0]
        cdef int t, r
        cdef const WalkNode* root
        for t in range(self.n_trees):
            root = nodes + roots[t]
            if t + 2 < self.n_trees:
                cs_prefetch(nodes + roots[t + 1], nodes + roots[t + 2])
            r = 0
            if self._wide:
                while r + CS_ROW_LANES <= rows:
                    cs_walk_rows(root, xt + r * stride, stride, bits, bounds, out + r, 1)
                    r += CS_ROW_LANES
            else:
                while r + CS_ROW_LANES <= rows:
                    cs_walk_rows(root, xt + r * stride, stride, bits, bounds, out + r, 0)
                    r += CS_ROW_LANES
            while r < rows:
                out[r] += cs_walk_one(root, xt + r * stride, bits, bounds)
                r += 1

    cdef int _raw_batch(self, const double* X, Py_ssize_t n_rows, double* out) noexcept nogil:
        """Raw scores of n_rows C-contiguous rows into out; returns -1 if out of memory.

        Whole groups of CS_ROW_LANES rows go through the row-lane walk; the last few
        rows, which would walk as single chains there, take the one-row kernel instead.
        """
        cdef int stride = 2 * self.n_features + 1
        cdef int64_t* xt = <int64_t*>malloc(BLOCK_ROWS * stride * sizeof(int64_t))
        cdef Py_ssize_t start
        cdef Py_ssize_t laned = n_rows - n_rows % CS_ROW_LANES
        cdef int rows, r
        if xt == NULL:
            return -1
        start = 0
        while start < laned:
            rows = <int>min(<Py_ssize_t>BLOCK_ROWS, laned - start)
            for r in range(rows):
                _walk_row(X + (start + r) * self.n_features, xt + r * stride,
                          &self._kinds[0], self.n_features)
                out[start + r] = 0.0
            self._raw_block(xt, rows, stride, out + start)
            start += rows
        while start < n_rows:
            _walk_row(X + start * self.n_features, xt, &self._kinds[0], self.n_features)
            out[start] = self._raw_one(xt)
            start += 1
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
        cdef int64_t stack_buf[2 * STACK_FEATURES + 1]
        cdef int64_t* xt = stack_buf
        cdef double raw
        if self.n_features > STACK_FEATURES:
            xt = <int64_t*>malloc((2 * self.n_features + 1) * sizeof(int64_t))
            if xt == NULL:
                raise MemoryError()
        # The GIL is kept: a one-row walk is ~10 us and dropping and retaking the GIL
        # costs more than it would let other threads do.
        _walk_row(row, xt, &self._kinds[0], self.n_features)
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
