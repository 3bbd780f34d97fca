# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Exact path-dependent TreeSHAP in O(nodes x q) per tree, q = ceil(max unique path depth / 2).

The values are LightGBM's ``pred_contrib=True`` (Tree::TreeSHAP) to rounding; the
reference port of LightGBM's O(leaves x depth^2) recursion stays in _predictor.pyx
and the parity tests hold both to LightGBM. (On paths with ~20 or more distinct
features LightGBM's recursion itself drifts by up to ~1e-8, as it divides while
unwinding; there the tests hold this module to exact rational arithmetic.)

Why this is exact. For a leaf l with value v and unique path features U (d of them),
feature i gets v * (o_i - z_i) * sum_{S in U\\{i}} |S|! (d-1-|S|)! / d! * prod_S o_j *
prod_{U\\S\\{i}} z_j, where z_j is the product of the cover fractions of every split on
j along the path and o_j (0 or 1) says whether the row follows every one of them. The
Shapley weight is a Beta integral, so the sum is the integral over [0, 1] of
prod_{j != i} (o_j t + z_j (1 - t)): a polynomial of degree d - 1, which Gauss-Legendre
quadrature with q >= d / 2 points integrates exactly (Linear TreeShap, Yu et al. 2022).
Evaluated at the q points, a product of factors is q multiplications, so one pass
down the tree (G: the product of the factors above a node) and one pass up (T: the
leaf values times the factors below a node) give every edge's integral as
sum_k G(t_k) T(t_k). Where a feature is split again on the same path (rare; those
edges carry their own correction, see models/_treeshap_body.h) the previous factor
is divided out, by reciprocals tabled at load: the kernel never divides.

Scaled factors. Every factor o t + z (1 - t) is (1 - t) (z + o s) with s = t / (1 - t),
so the kernel keeps G / (1 - t)^(k + 1) and T * (1 - t)^k at a node with k distinct
features above it: a split then multiplies by z + o s (the hot side: one FMA, the cold
side: one multiply) and the (1 - t) powers cancel in every product G T; only leaves
and bottom splits meet a power of (1 - t), from a table. (k <= 32, so no power leaves
the double range: (1 - t) >= 0.0053 on the 16-point rule.)

The kernel is C (models/_treeshap_body.h), on vectors of four doubles: a tree's rule
has 4, 8, 12 or 16 points, so every per-point step is one to four vector operations.
It is compiled three times: for baseline x86-64, for AVX2 + FMA, and for AVX-512,
where 8- and 16-point trees run on vectors of eight doubles (one or two operations
per step instead of two or four); the best copy the CPU has runs (checked once at
import). Every split's test for the row is made first, in
one branch-free pass over all splits of the model.
"""

cimport numpy as cnp
from libc.math cimport fabs, trunc
from libc.stdint cimport INT64_MAX, int8_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free
from libc.string cimport memcpy, memset

import numpy as np

from models._predictor import walk_layout
from models.errors import ModelUnsupportedError, RowShapeError

cnp.import_array()


cdef extern from *:
    """
    #include <stdint.h>
    #include <stdlib.h>
    #include <string.h>

    typedef double cs_v4 __attribute__((vector_size(32)));

    /* The edge into a node from its parent (unused for roots). "Combined" values are
       LightGBM's for a feature split more than once on a path: zero fractions multiply,
       the one fraction is 1 only if the row followed every split on it. */
    typedef struct {
        double z;         /* counts[node] / counts[parent]: this split's zero fraction */
        double Z;         /* combined zero fraction of the parent's feature down to this edge */
        double Zp;        /* combined zero fraction at the previous split on that feature (1.0 if none) */
        int32_t prev;     /* local index of the node below that previous split (-1 if none) */
        int32_t feature;  /* the parent's split feature (a row column, not a slot) */
        uint8_t redone;   /* some split below this edge is on the same feature (it collects corrections) */
    } cs_edge;

    /* Offsets are in bytes: into the scratch vectors (a node's are at node * lanes * 32),
       into phi (a feature's accumulators at feature * CS_MAX_POINTS * 8) and into the
       rule's tables of (1 - t) powers (power k at k * lanes * 32). */

    /* An internal split that is not a simple bottom split (32 bytes), level by level.
       Pairs are indexed by "the row goes left" (1: left child, 0: right child), so that
       hot and cold are loads, not branches. */
    typedef struct {
        double pair[2];   /* cover fractions of the (right, left) children */
        uint32_t off;     /* this node's vectors (the left child's follow them) */
        uint32_t roff;    /* the right child's */
        uint32_t out;     /* the feature's accumulators */
        uint32_t flags;   /* CS_SIMPLE and CS_UP_SIMPLE: where either is missing, a cs_rare says the rest */
    } cs_inner;

    /* What a split that is not simple, or whose feature is split again below, needs
       (88 bytes). A tree has three runs of them, each in the order of those splits
       among its inner ones: its splits whose feature is split again below (the chain
       pass), the ones that are not CS_SIMPLE (the way down) and the ones that are not
       CS_UP_SIMPLE (the way up, walked backwards). Fields are indexed by the row's ways
       rather than branching on them. prev is the local index
       of the node below the previous split on the feature along the path, or, without
       one, of the dummy node (one past the largest tree, O = 1, K = 0: as a previous
       split the row followed with Zp = 1, which changes nothing). Reciprocal rows are byte offsets into the tree's
       rcp, by Op = O[prev]: down, the edge factor's 1 / F (ones unless Op = 1: then
       1 / (Zp + s)); up, 1 / F_prev (1 / Zp if Op = 0, 1 / (Zp + s) if Op = 1). */
    typedef struct {
        double K[2][2];   /* [child][Op]: z_c, and Z_c (the combined zero fraction); the kernel's Y */
        double Z[2];      /* Z_c per child */
        double Zp;        /* combined zero fraction at the previous split (1.0 if none) */
        int32_t child[2]; /* local indices of the (left, right) children */
        int32_t prev;
        uint32_t down[2];
        uint32_t up[2];
        uint32_t j;       /* its index among the tree's inner splits (its decision) */
    } cs_rare;

    /* A simple split whose children are both leaves (40 bytes). */
    typedef struct {
        double pair[2];   /* leaf values of the (right, left) children */
        double E;         /* their cover-weighted mean */
        uint32_t off;
        uint32_t out;
        uint32_t pow;     /* offset of (1 - t)^k, k: distinct features above the split */
    } cs_bottom;

    /* A leaf under an inner split (16 bytes): its T is value * (1 - t)^k. */
    typedef struct {
        double value;
        uint32_t off;
        uint32_t pow;     /* offset of (1 - t)^k, k: distinct features above the leaf */
    } cs_leaf;

    enum {
        CS_SIMPLE = 1,    /* simple on the way down: no split on its feature above it */
        CS_UP_SIMPLE = 2, /* simple on the way up: CS_SIMPLE, and its children's counts add
                             up to its own (z_left + z_right = 1) */
        CS_MAX_POINTS = 16,
        CS_MAX_POWER = 33  /* (1 - t)^k for k = 0 .. CS_MAX_POWER: 2 * CS_MAX_POINTS distinct features + 1 */
    };

    /* One tree's part of the model's tables (borrowed pointers). */
    typedef struct {
        const cs_inner* inner;
        const cs_bottom* bottom;
        const cs_leaf* leaves;
        const cs_rare* rare;       /* the records of this tree's splits that are not CS_SIMPLE */
        const cs_rare* rare_up;    /* one past the last record of its splits that are not CS_UP_SIMPLE */
        const cs_rare* chain;      /* the records of its splits whose feature is split again below */
        const cs_v4* s;            /* the rule: s = t / (1 - t) at its 4 * lanes points */
        const cs_v4* w;            /* weights / (1 - t): G at the root, scaled */
        const cs_v4* pw;           /* (1 - t)^k, k = 0 .. CS_MAX_POWER */
        const cs_v4* tpw;          /* t (1 - t)^k */
        const double* rcp;         /* reciprocal rows of repeated splits' previous factors (cs_rare) */
        double expected;           /* Tree::ExpectedValue */
        int32_t n_inner, n_bottom, n_leaves;
        int32_t lanes;             /* vectors per point set (1 to 4); 0: a single leaf */
        int32_t dec;               /* index of this tree's first split in the decision array */
        int32_t n_chain;
    } cs_tree;

    #define CS_AT(base, off) ((CS_V*)((char*)(base) + (off)))  /* CS_V: the includer of _treeshap_body.h sets it */

    /* a if bit else b, by a mask: the row's way at a split is a coin flip, and GCC
       compiles `bit ? a : b` there to a branch. */
    static inline __attribute__((always_inline)) uint32_t cs_pick(uint32_t bit, uint32_t a, uint32_t b) {
        return b ^ ((a ^ b) & (0u - bit));
    }

    static __attribute__((noinline)) uint64_t cs_shap_wide_right(int64_t code, int64_t k, const uint32_t* bits,
                                                                 const int32_t* bounds) {
        /* Common::FindInBitset, for a bitset past 64 categories (rare); as _predictor's cs_wide_right. */
        int32_t start = bounds[k];
        if (code < 0 || (code >> 5) >= bounds[k + 1] - start) return 1;
        return ((bits[start + (code >> 5)] >> (code & 31)) & 1) ^ 1;
    }

    /* dec[k] = 1 if the row goes left at split k: the scorer's cs_step, as a value, in
       one pass: x <= key (numerical, on the order-preserving integer keys) or x & key
       (categorical: the row's code as a one-hot word against the split's bitset),
       picked by is_cat[k] with a mask (most of a model's splits can be categorical; a
       second pass over them cost more than the first). wide[j]: the splits whose
       bitset goes past 64 codes (rare), tested again afterwards. */
    static inline __attribute__((always_inline)) void cs_decide_body(
            const int64_t* __restrict keys, const uint16_t* __restrict slots, const uint8_t* __restrict is_cat,
            uint32_t n, const uint32_t* __restrict wide, uint32_t n_wide, const int64_t* __restrict xk,
            const uint32_t* cat_bits, const int32_t* bounds, uint8_t* __restrict dec) {
        for (uint32_t k = 0; k < n; k++) {
            int64_t x = xk[slots[k]], p = keys[k];
            uint8_t le = x <= p, in = (x & p) != 0;
            dec[k] = le ^ ((le ^ in) & is_cat[k]);
        }
        for (uint32_t j = 0; j < n_wide; j++) {
            uint32_t k = wide[j];
            dec[k] = (uint8_t)(cs_shap_wide_right(xk[slots[k]], keys[k], cat_bits, bounds) ^ 1);
        }
    }

    /* cs_tree_body_v4 and cs_tree_body_v8: one body (models/_treeshap_body.h) on
       vectors of four doubles (AVX2 and baseline copies) or eight (AVX-512 copy). */
    typedef double cs_v8 __attribute__((vector_size(64)));
    #define CS_V cs_v4
    #define CS_TREE_BODY cs_tree_body_v4
    #include "_treeshap_body.h"
    #undef CS_V
    #undef CS_TREE_BODY
    #define CS_V cs_v8
    #define CS_TREE_BODY cs_tree_body_v8
    #include "_treeshap_body.h"
    #undef CS_V
    #undef CS_TREE_BODY

    typedef void (*cs_shap_fn)(const cs_tree*, const uint8_t*, double*, uint8_t*, cs_v4*, int);

    /* One copy per (target, lanes). Scratch: four arrays of m nodes x U vectors. */
    #define CS_SHAP_KERNEL(NAME, ATTR, V, BODY, U)                                                      \\
        static ATTR void NAME(const cs_tree* tr, const uint8_t* dec, double* phi, uint8_t* O, cs_v4* s,  \\
                              int m) {                                                                    \\
            V* v = (V*)s;                                                                                 \\
            double* K = (double*)(v + 2 * m * U);                                                         \\
            K[m - 1] = 0.0;  /* the dummy's */                                                           \\
            BODY(tr, dec, phi, O, v, v + m * U, K, U);                                                    \\
        }
    #define CS_AVX512 __attribute__((target("avx512f,avx2,fma")))
    #define CS_AVX2 __attribute__((target("avx2,fma")))
    #define CS_BASE
    CS_SHAP_KERNEL(cs_shap_avx512_1, CS_AVX512, cs_v8, cs_tree_body_v8, 1)
    CS_SHAP_KERNEL(cs_shap_avx512_2, CS_AVX512, cs_v8, cs_tree_body_v8, 2)
    CS_SHAP_KERNEL(cs_shap_avx2_1, CS_AVX2, cs_v4, cs_tree_body_v4, 1)
    CS_SHAP_KERNEL(cs_shap_avx2_2, CS_AVX2, cs_v4, cs_tree_body_v4, 2)
    CS_SHAP_KERNEL(cs_shap_avx2_3, CS_AVX2, cs_v4, cs_tree_body_v4, 3)
    CS_SHAP_KERNEL(cs_shap_avx2_4, CS_AVX2, cs_v4, cs_tree_body_v4, 4)
    CS_SHAP_KERNEL(cs_shap_base_1, CS_BASE, cs_v4, cs_tree_body_v4, 1)
    CS_SHAP_KERNEL(cs_shap_base_2, CS_BASE, cs_v4, cs_tree_body_v4, 2)
    CS_SHAP_KERNEL(cs_shap_base_3, CS_BASE, cs_v4, cs_tree_body_v4, 3)
    CS_SHAP_KERNEL(cs_shap_base_4, CS_BASE, cs_v4, cs_tree_body_v4, 4)
    /* By instruction set (baseline, AVX2 + FMA, AVX-512) and rule (4, 8, 12, 16 points).
       The scratch layout is the same for all: a node's vectors take points * 8 bytes, so
       an 8- or 16-point rule is one or two vectors of eight doubles; a 4- or 12-point
       rule stays on vectors of four. */
    enum { CS_ISA_BASE = 0, CS_ISA_AVX2 = 1, CS_ISA_AVX512 = 2 };
    static const cs_shap_fn cs_shap_kernels[3][4] = {
        {cs_shap_base_1, cs_shap_base_2, cs_shap_base_3, cs_shap_base_4},
        {cs_shap_avx2_1, cs_shap_avx2_2, cs_shap_avx2_3, cs_shap_avx2_4},
        {cs_shap_avx2_1, cs_shap_avx512_1, cs_shap_avx2_3, cs_shap_avx512_2},
    };
    /* (GCC vectorises the first loop of cs_decide_body with emulated gathers, which
       take more instructions than the scalar loop.) */
    #define CS_SCALAR __attribute__((optimize("no-tree-vectorize")))
    static CS_AVX2 CS_SCALAR void cs_decide_avx2(const int64_t* keys, const uint16_t* slots, const uint8_t* is_cat,
                                                 uint32_t n, const uint32_t* wide, uint32_t n_wide, const int64_t* xk,
                                                 const uint32_t* cat_bits, const int32_t* bounds, uint8_t* dec) {
        cs_decide_body(keys, slots, is_cat, n, wide, n_wide, xk, cat_bits, bounds, dec);
    }
    static CS_SCALAR void cs_decide_base(const int64_t* keys, const uint16_t* slots, const uint8_t* is_cat, uint32_t n,
                                         const uint32_t* wide, uint32_t n_wide, const int64_t* xk,
                                         const uint32_t* cat_bits, const int32_t* bounds, uint8_t* dec) {
        cs_decide_body(keys, slots, is_cat, n, wide, n_wide, xk, cat_bits, bounds, dec);
    }

    /* The best copy this CPU (and its OS, for the AVX-512 state) runs. */
    static int cs_shap_best_isa(void) {
        __builtin_cpu_init();
        if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return CS_ISA_BASE;
        return __builtin_cpu_supports("avx512f") ? CS_ISA_AVX512 : CS_ISA_AVX2;
    }

    /* Every split's test, then every tree in order; the bias is summed as
       Tree::PredictContrib sums it. */
    static void cs_shap_trees(const cs_tree* trees, int n_trees, const int64_t* keys, const uint16_t* slots,
                              const uint8_t* is_cat, uint32_t n_splits, const uint32_t* wide, uint32_t n_wide, const int64_t* xk,
                              const uint32_t* cat_bits, const int32_t* bounds, double* phi, double* bias,
                              uint8_t* dec, uint8_t* O, cs_v4* scratch, int m, int isa) {
        const cs_shap_fn* fns = cs_shap_kernels[isa];
        (isa != CS_ISA_BASE ? cs_decide_avx2 : cs_decide_base)(keys, slots, is_cat, n_splits, wide, n_wide, xk, cat_bits,
                                                               bounds, dec);
        for (int t = 0; t < n_trees; t++) {
            const cs_tree* tr = trees + t;
            *bias += tr->expected;
            if (tr->lanes) fns[tr->lanes - 1](tr, dec + tr->dec, phi, O, scratch, m);
        }
    }

    static void* cs_shap_alloc(size_t bytes) {
        void* p = NULL;
        return posix_memalign(&p, 64, bytes ? bytes : 64) ? NULL : p;
    }
    """
    ctypedef double cs_v4
    ctypedef struct cs_edge:
        double z
        double Z
        double Zp
        int32_t prev
        int32_t feature
        uint8_t redone
    ctypedef struct cs_inner:
        pass
    ctypedef struct cs_bottom:
        pass
    ctypedef struct cs_leaf:
        pass
    ctypedef struct cs_rare:
        pass
    ctypedef struct cs_tree:
        const cs_inner* inner
        const cs_bottom* bottom
        const cs_leaf* leaves
        const cs_rare* rare
        const cs_rare* rare_up
        const cs_rare* chain
        const cs_v4* s
        const cs_v4* w
        const cs_v4* pw
        const cs_v4* tpw
        const double* rcp
        double expected
        int32_t n_inner
        int32_t n_bottom
        int32_t n_leaves
        int32_t lanes
        int32_t dec
        int32_t n_chain
    enum:
        CS_SIMPLE
        CS_UP_SIMPLE
        CS_MAX_POINTS
        CS_MAX_POWER
    int cs_shap_best_isa() noexcept nogil
    void cs_shap_trees(const cs_tree* trees, int n_trees, const int64_t* keys, const uint16_t* slots,
                       const uint8_t* is_cat, uint32_t n_splits, const uint32_t* wide, uint32_t n_wide, const int64_t* xk,
                       const uint32_t* cat_bits, const int32_t* bounds, double* phi, double* bias,
                       uint8_t* dec, uint8_t* O, cs_v4* scratch, int m, int isa) noexcept nogil
    void* cs_shap_alloc(size_t bytes) noexcept nogil


cdef enum:
    KIND_CATEGORICAL = 1
    KIND_LEAF = 2
    FEATURE_NONE = 0
    FEATURE_NAN = 1
    FEATURE_ZERO = 2
    FEATURE_CATEGORICAL = 3
    # Gauss-Legendre points per tree are capped here: exact for up to 2 * MAX_POINTS
    # distinct features on a path. A deeper model is refused and the scorer keeps the
    # reference recursion for it.
    MAX_POINTS = 16

RULES = (4, 8, 12, 16)  # point counts a tree may use: one to four vectors of four doubles
# The kernel copies, by the instruction set they are compiled for (the C block's CS_ISA_*).
ISAS = ("base", "avx2", "avx512")
BEST_ISA = ISAS[cs_shap_best_isa()]  # the copy this process runs unless told otherwise

# The row transform mirrors _predictor.pyx's _walk_row line for line (that module is
# the scorer's and has no .pxd to share); the parity tests compare both to LightGBM.
cdef double ZERO_THRESHOLD = <double>(<float>1e-35)
cdef double INT_LIMIT = 2147483648.0
cdef int64_t KEY_MISSING_LEFT = <int64_t>0x800FFFFFFFFFFFFF
cdef int64_t KEY_MISSING_RIGHT = INT64_MAX


cdef inline int64_t _key(double v) noexcept nogil:
    cdef int64_t b
    memcpy(&b, &v, sizeof(double))
    return b ^ ((b >> 63) & INT64_MAX)


cdef inline void _walk_row(const double* x, int64_t* xt, const uint8_t* kinds, int n_features) noexcept nogil:
    cdef int j
    cdef double v
    cdef int64_t k, c
    cdef uint8_t kind
    cdef int64_t* xr = xt + n_features + 1
    for j in range(n_features):
        v = x[j]
        if fabs(v) <= ZERO_THRESHOLD:
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


def _aligned_zeros(Py_ssize_t n, dtype):
    """A zeroed 1-D array of n items whose data starts on a 64-byte boundary (the kernel's vectors need 32)."""
    dtype = np.dtype(dtype)
    raw = np.zeros(n * dtype.itemsize + 64, dtype=np.uint8)
    offset = (-raw.ctypes.data) % 64
    return raw[offset:offset + n * dtype.itemsize].view(dtype)


EDGE_DTYPE = np.dtype(
    [("z", "f8"), ("Z", "f8"), ("Zp", "f8"), ("prev", "i4"), ("feature", "i4"), ("redone", "u1")], align=True)
INNER_DTYPE = np.dtype(
    [("pair", "f8", (2,)), ("off", "u4"), ("roff", "u4"), ("out", "u4"), ("flags", "u4")],
    align=True)
RARE_DTYPE = np.dtype(
    [("K", "f8", (2, 2)), ("Z", "f8", (2,)), ("Zp", "f8"), ("child", "i4", (2,)), ("prev", "i4"), ("down", "u4", (2,)),
     ("up", "u4", (2,)), ("j", "u4")], align=True)
BOTTOM_DTYPE = np.dtype(
    [("pair", "f8", (2,)), ("E", "f8"), ("off", "u4"), ("out", "u4"), ("pow", "u4")], align=True)
LEAF_DTYPE = np.dtype([("value", "f8"), ("off", "u4"), ("pow", "u4")], align=True)
_SIZES = {"cs_edge": (EDGE_DTYPE, sizeof(cs_edge)), "cs_inner": (INNER_DTYPE, sizeof(cs_inner)),
          "cs_bottom": (BOTTOM_DTYPE, sizeof(cs_bottom)), "cs_leaf": (LEAF_DTYPE, sizeof(cs_leaf)),
          "cs_rare": (RARE_DTYPE, sizeof(cs_rare))}


def _rule_tables(int q):
    """The q-point Gauss-Legendre rule on [0, 1] as the kernel reads it: s, w / (1 - t),
    (1 - t)^k and t (1 - t)^k for k = 0 .. CS_MAX_POWER, each q doubles (64-byte aligned)."""
    x, w = np.polynomial.legendre.leggauss(q)
    t = (x + 1.0) / 2.0
    omt = 1.0 - t
    k = np.arange(CS_MAX_POWER + 1)[:, None]
    powers = omt[None, :] ** k
    table = _aligned_zeros((2 + 2 * (CS_MAX_POWER + 1)) * q, np.float64).reshape(-1, q)
    table[0] = t / omt
    table[1] = (w / 2.0) / omt
    table[2:CS_MAX_POWER + 3] = powers
    table[CS_MAX_POWER + 3:] = t[None, :] * powers
    return table


cdef class TreeShap:
    """Per-model tables for exact TreeSHAP, built once at load; ``contributions_into`` per row."""

    cdef readonly int n_features
    cdef readonly int n_trees
    cdef readonly int max_points
    cdef readonly Py_ssize_t nbytes
    cdef readonly str isa  # the kernel copy it runs: one of ISAS
    cdef int _isa
    cdef int _max_nodes
    cdef int _max_lanes
    cdef uint32_t _n_splits
    cdef uint32_t _n_wide
    cdef const cs_tree* _trees  # into self._keep (a byte array of n_trees cs_tree)
    cdef const int64_t[::1] _keys  # per split, in decision order (tree by tree: inner, then bottom)
    cdef const uint16_t[::1] _slots
    cdef const uint8_t[::1] _is_cat
    cdef const uint32_t[::1] _wide
    cdef const int32_t[::1] _cat_bounds
    cdef const uint32_t[::1] _cat_bits
    cdef const uint8_t[::1] _kinds
    cdef object _keep

    def __init__(self, nodes, roots, counts, expected, cat_bounds, cat_bits, feature_kinds, *, isa=None):
        """Build the tables from the compiler's flat arrays (models.compiler.CompiledModel).

        ``isa``: None runs the best kernel copy the CPU has (``BEST_ISA``); "base",
        "avx2" or "avx512" forces one (the tests run each this CPU can); one the CPU
        lacks is an error.
        Raises ModelUnsupportedError for a model this algorithm cannot take exactly (a
        split with an empty side, or more than 2 * MAX_POINTS features on one path).
        """
        cdef Py_ssize_t n_nodes = nodes.shape[0]
        cdef cs_tree* trees
        cdef int t, q, r
        n_features = feature_kinds.shape[0]
        value = np.ascontiguousarray(nodes["value"], dtype=np.float64)
        right = np.ascontiguousarray(nodes["right"], dtype=np.int32)
        slot = np.ascontiguousarray(nodes["feature"], dtype=np.uint16)
        kind = np.ascontiguousarray(nodes["kind"], dtype=np.uint8)
        counts = np.ascontiguousarray(counts, dtype=np.float64)
        cat_bits = np.ascontiguousarray(cat_bits if len(cat_bits) else np.zeros(1, np.uint32), np.uint32)
        self.n_features = n_features
        self.n_trees = roots.shape[0]
        isa = BEST_ISA if isa is None else isa
        if isa not in ISAS:
            raise ValueError(f"isa={isa!r}: expected one of {ISAS} or None (the best this CPU runs)")
        if ISAS.index(isa) > ISAS.index(BEST_ISA):
            raise ValueError(f"isa={isa!r}, but this CPU runs at most {BEST_ISA!r}; pass isa=None to detect")
        self.isa = isa
        self._isa = ISAS.index(isa)
        if np.any(counts <= 0):
            raise ModelUnsupportedError(
                "a split sends no training rows to one side (zero cover); exact fast TreeSHAP "
                "needs positive covers, so the reference recursion is used")
        for name, (dtype, size) in _SIZES.items():
            if dtype.itemsize != size:
                raise RuntimeError(f"{name} and its numpy dtype disagree")  # a build problem, not data
        # Slot to row column: a default-right split reads the feature's second slot.
        feature = np.where(slot > n_features, slot.astype(np.int32) - n_features - 1, slot.astype(np.int32))
        internal = (kind & KIND_LEAF) == 0
        edges = np.zeros(n_nodes, dtype=EDGE_DTYPE)
        points = np.zeros(self.n_trees, dtype=np.int32)
        distinct = np.zeros(n_nodes, dtype=np.int32)
        level = np.zeros(n_nodes, dtype=np.int32)
        depth = _link(n_nodes, roots, right, feature, internal.view(np.uint8), counts, edges, points, distinct,
                      level)
        if depth > 2 * MAX_POINTS:
            raise ModelUnsupportedError(
                f"a path splits on {depth} distinct features; fast TreeSHAP handles at most "
                f"{2 * MAX_POINTS}, so the reference recursion is used")
        ends = np.append(roots[1:], n_nodes)
        tree_of = np.repeat(np.arange(self.n_trees), ends - roots)
        local = (np.arange(n_nodes) - roots[tree_of]).astype(np.int64)
        # Bytes per node in the scratch: the tree's rule, in vectors of four doubles.
        stride = (points // 4 * 32).astype(np.int64)[tree_of]
        nodes_i = np.flatnonzero(internal)
        left_i = nodes_i + 1
        right_i = right[nodes_i]
        repeat = edges["prev"][left_i] >= 0
        adds_up = counts[left_i] + counts[right_i] == counts[nodes_i]
        chain = (edges["redone"][left_i] != 0) | (edges["redone"][right_i] != 0)
        up_simple = ~repeat & adds_up
        bottom_mask = up_simple & ~chain & ~internal[left_i] & ~internal[right_i]
        flags = np.zeros(n_nodes, dtype=np.uint32)
        flags[nodes_i] = np.where(~repeat, CS_SIMPLE, 0) | np.where(up_simple, CS_UP_SIMPLE, 0)
        chained = np.zeros(n_nodes, dtype=bool)
        chained[nodes_i] = chain
        # Inner splits level by level (a parent still comes before its children, and
        # after them on the way up), so that consecutive splits do not wait on each
        # other's vectors: in preorder a split follows its parent, a dependent load.
        # Within a level the simple splits come first and the rare ones last, so the
        # kernel's branch (simple or rare) changes at most twice per level.
        inner_i = nodes_i[~bottom_mask]
        rare_key = ((flags[inner_i] & CS_UP_SIMPLE) == 0).astype(np.int8)
        inner_i = inner_i[np.lexsort((inner_i, rare_key, level[inner_i], tree_of[inner_i]))]
        bottom_i = nodes_i[bottom_mask]

        inner = np.zeros(len(inner_i), dtype=INNER_DTYPE)
        inner["pair"][:, 1] = edges["z"][inner_i + 1]
        inner["pair"][:, 0] = edges["z"][right[inner_i]]
        inner["off"] = local[inner_i] * stride[inner_i]
        inner["roff"] = local[right[inner_i]] * stride[inner_i]
        inner["out"] = feature[inner_i].astype(np.int64) * MAX_POINTS * 8
        inner["flags"] = flags[inner_i]
        is_rare = (inner["flags"] & CS_SIMPLE) == 0
        is_rare_up = (inner["flags"] & CS_UP_SIMPLE) == 0  # is_rare and more
        is_chain = chained[inner_i]
        has_record = is_rare_up | is_chain

        bottom = np.zeros(len(bottom_i), dtype=BOTTOM_DTYPE)
        z_left = edges["z"][bottom_i + 1]
        z_right = edges["z"][right[bottom_i]]
        bottom["pair"][:, 1] = value[bottom_i + 1]
        bottom["pair"][:, 0] = value[right[bottom_i]]
        bottom["E"] = z_right * bottom["pair"][:, 0] + z_left * bottom["pair"][:, 1]
        bottom["off"] = local[bottom_i] * stride[bottom_i]
        bottom["out"] = feature[bottom_i].astype(np.int64) * MAX_POINTS * 8
        bottom["pow"] = distinct[bottom_i] * stride[bottom_i]

        # Leaves under inner splits need T filled per row; a bottom split reads its own.
        under_bottom = np.zeros(n_nodes, dtype=bool)
        under_bottom[bottom_i + 1] = True
        under_bottom[right[bottom_i]] = True
        leaves_i = np.flatnonzero(~internal & ~under_bottom & (points[tree_of] > 0))
        leaves = np.zeros(len(leaves_i), dtype=LEAF_DTYPE)
        leaves["value"] = value[leaves_i]
        leaves["off"] = local[leaves_i] * stride[leaves_i]
        leaves["pow"] = distinct[leaves_i] * stride[leaves_i]

        bounds = np.append(roots, n_nodes)
        inner_start = np.searchsorted(np.sort(inner_i), bounds).astype(np.int32)
        bottom_start = np.searchsorted(bottom_i, bounds).astype(np.int32)
        leaf_start = np.searchsorted(leaves_i, bounds).astype(np.int32)

        # Decision order: tree by tree, its inner splits, then its bottom ones. The test
        # is the scorer's own (integer keys, category masks: _predictor.walk_layout).
        order = np.argsort(np.concatenate([tree_of[inner_i] * 2, tree_of[bottom_i] * 2 + 1]), kind="stable")
        split_nodes = np.concatenate([inner_i, bottom_i])[order]
        walk = walk_layout(nodes, cat_bounds, cat_bits, n_features)[split_nodes]
        keys = np.ascontiguousarray(walk["p"], dtype=np.int64)
        slots = np.ascontiguousarray(walk["slot"], dtype=np.uint16)
        is_cat = np.ascontiguousarray(walk["bits"] != 0, dtype=np.uint8)
        wide = np.flatnonzero(walk["wide"] != 0).astype(np.uint32)
        dec_start = inner_start + bottom_start  # this tree's first split in decision order
        rare_start = np.searchsorted(np.flatnonzero(is_rare), inner_start).astype(np.int32)
        rare_up_end = np.searchsorted(np.flatnonzero(is_rare_up), inner_start[1:]).astype(np.int32)
        chain_start = np.searchsorted(np.flatnonzero(is_chain), inner_start).astype(np.int32)

        rules = {q: _rule_tables(q) for q in set(points.tolist()) - {0}}
        max_nodes = int((ends - roots).max()) if self.n_trees else 1
        records, rcp = _rare_tables(inner_i[has_record], right, local, edges, points[tree_of[inner_i[has_record]]],
                                    rules, max_nodes)
        position = np.arange(len(inner_i)) - inner_start[tree_of[inner_i]]  # index among the tree's inner splits
        records["j"] = position[has_record]
        rare = np.ascontiguousarray(records[is_rare[has_record]])
        rare_up = np.ascontiguousarray(records[is_rare_up[has_record]])
        chains = np.ascontiguousarray(records[is_chain[has_record]])
        tree_bytes = _aligned_zeros(self.n_trees * sizeof(cs_tree), np.uint8)
        trees = <cs_tree*>cnp.PyArray_DATA(tree_bytes)
        cdef const char* inner_p = <const char*>cnp.PyArray_DATA(inner)
        cdef const char* bottom_p = <const char*>cnp.PyArray_DATA(bottom)
        cdef const char* leaves_p = <const char*>cnp.PyArray_DATA(leaves)
        cdef const cs_rare* rare_p = <const cs_rare*>cnp.PyArray_DATA(rare)
        cdef const cs_rare* rare_up_p = <const cs_rare*>cnp.PyArray_DATA(rare_up)
        cdef const cs_rare* chain_p = <const cs_rare*>cnp.PyArray_DATA(chains)
        cdef const double* rcp_p = <const double*>cnp.PyArray_DATA(rcp)
        cdef const double* rule_p
        cdef int32_t[::1] roots_v = np.ascontiguousarray(roots, dtype=np.int32)
        cdef int32_t[::1] points_v = points
        cdef int32_t[::1] inner_v = inner_start
        cdef int32_t[::1] bottom_v = bottom_start
        cdef int32_t[::1] leaf_v = leaf_start
        cdef int32_t[::1] dec_v = dec_start
        cdef int32_t[::1] rare_v = rare_start
        cdef int32_t[::1] rare_up_v = rare_up_end
        cdef int32_t[::1] chain_v = chain_start
        cdef double[::1] expected_v = np.ascontiguousarray(expected, dtype=np.float64)
        for t in range(self.n_trees):
            q = points_v[t]
            trees[t].expected = expected_v[t]
            trees[t].lanes = q // 4
            trees[t].inner = <const cs_inner*>(inner_p + inner_v[t] * sizeof(cs_inner))
            trees[t].n_inner = inner_v[t + 1] - inner_v[t]
            trees[t].bottom = <const cs_bottom*>(bottom_p + bottom_v[t] * sizeof(cs_bottom))
            trees[t].n_bottom = bottom_v[t + 1] - bottom_v[t]
            trees[t].leaves = <const cs_leaf*>(leaves_p + leaf_v[t] * sizeof(cs_leaf))
            trees[t].n_leaves = leaf_v[t + 1] - leaf_v[t]
            trees[t].rare = rare_p + rare_v[t]
            trees[t].rare_up = rare_up_p + rare_up_v[t]
            trees[t].chain = chain_p + chain_v[t]
            trees[t].n_chain = chain_v[t + 1] - chain_v[t]
            trees[t].rcp = rcp_p
            trees[t].dec = dec_v[t]
            if q:
                rule_p = <const double*>cnp.PyArray_DATA(rules[q])
                trees[t].s = <const cs_v4*>rule_p
                trees[t].w = <const cs_v4*>(rule_p + q)
                trees[t].pw = <const cs_v4*>(rule_p + 2 * q)
                trees[t].tpw = <const cs_v4*>(rule_p + (CS_MAX_POWER + 3) * q)
        self._trees = trees
        self._keys = keys
        self._slots = slots
        self._is_cat = is_cat
        self._wide = wide
        self._n_splits = len(keys)
        self._n_wide = len(wide)
        self._cat_bounds = cat_bounds
        self._cat_bits = cat_bits
        self._kinds = feature_kinds
        self._max_nodes = max_nodes
        self.max_points = int(points.max()) if self.n_trees else 0
        self._max_lanes = max(1, self.max_points // 4)
        self._keep = (cat_bounds, cat_bits, feature_kinds, inner, bottom, leaves, rare, rare_up, chains, keys, slots, is_cat,
                      wide, rules, rcp, tree_bytes)
        self.nbytes = sum(a.nbytes for a in (inner, bottom, leaves, rare, rare_up, chains, keys, slots, is_cat, wide, rcp,
                                             tree_bytes))

    def contributions_into(self, x, double[::1] phi):
        """TreeSHAP contributions of one row into phi (n_features + 1, bias last)."""
        cdef cnp.ndarray arr = np.ascontiguousarray(x, dtype=np.float64)
        cdef const double* row
        cdef int k, f, F = self.n_features
        cdef int m = self._max_nodes + 1  # the largest tree's nodes and the dummy (cs_rare)
        cdef size_t vectors = 3 * <size_t>m * self._max_lanes
        cdef double total, bias = 0.0
        cdef double* phiv
        cdef cs_v4* scratch
        cdef int64_t* xk
        cdef uint8_t* dec
        if cnp.PyArray_NDIM(arr) != 1 or cnp.PyArray_DIM(arr, 0) != F:
            raise RowShapeError(f"row has shape {np.shape(arr)}; expected ({F},) "
                                "(one value per model feature, NaN for missing)")
        if phi.shape[0] != F + 1:
            raise RowShapeError(f"contribution buffer has {phi.shape[0]} slots; expected {F + 1}")
        row = <const double*>cnp.PyArray_DATA(arr)
        # One block: phiv (F x MAX_POINTS), scratch (3 arrays of m x lanes vectors of 4
        # doubles: G, T and room for the kernel's K), the transformed row (2F + 1 keys),
        # the decisions, O (m bytes, the dummy's 1 last).
        phiv = <double*>cs_shap_alloc((F * MAX_POINTS + 4 * vectors) * sizeof(double)
                                      + (2 * F + 1) * sizeof(int64_t) + self._n_splits + m)
        if phiv == NULL:
            raise MemoryError()
        scratch = <cs_v4*>(phiv + F * MAX_POINTS)
        xk = <int64_t*>(phiv + F * MAX_POINTS + 4 * vectors)
        dec = <uint8_t*>(xk + 2 * F + 1)
        dec[self._n_splits + m - 1] = 1  # O[dummy]: no tree writes it
        with nogil:
            _walk_row(row, xk, &self._kinds[0], F)
            memset(phiv, 0, F * MAX_POINTS * sizeof(double))
            cs_shap_trees(self._trees, self.n_trees, &self._keys[0] if self._n_splits else NULL,
                          &self._slots[0] if self._n_splits else NULL,
                          &self._is_cat[0] if self._n_splits else NULL, self._n_splits,
                          &self._wide[0] if self._n_wide else NULL, self._n_wide, xk, &self._cat_bits[0],
                          &self._cat_bounds[0], phiv, &bias, dec, dec + self._n_splits, scratch, m, self._isa)
            phi[F] = bias
            for f in range(F):
                total = 0.0
                for k in range(MAX_POINTS):
                    total += phiv[f * MAX_POINTS + k]
                phi[f] = total
        free(phiv)


def _rare_tables(rare_i, right, local, edges, points, rules, int dummy):
    """The cs_rare records of the splits rare_i (in the kernel's order) and the rows of
    reciprocals they point to (see cs_rare): per point count a row of ones, then per
    split with a previous split on its feature 1 / (Zp + s) and 1 / Zp. Rows are 64-byte aligned
    (an 8-point row is one vector of eight doubles)."""
    rl = rare_i + 1
    rr = right[rare_i]
    prev = edges["prev"][rl]
    has_prev = prev >= 0
    # Both children's edges see the same previous split (the search starts at the parent).
    assert np.array_equal(prev, edges["prev"][rr]) and np.array_equal(edges["Zp"][rl], edges["Zp"][rr])
    rare = np.zeros(len(rare_i), dtype=RARE_DTYPE)
    for side, c in enumerate((rl, rr)):
        rare["K"][:, side, 0] = edges["z"][c]
        rare["K"][:, side, 1] = edges["Z"][c]
        rare["Z"][:, side] = edges["Z"][c]
        rare["child"][:, side] = local[c]
    rare["Zp"] = edges["Zp"][rl]
    rare["prev"] = np.where(has_prev, prev, dummy)
    width = {q: (q + 7) // 8 * 8 for q in rules}
    n_rows = sum(width.values()) + 2 * sum(width[q] for q in points[has_prev].tolist())
    rcp = _aligned_zeros(max(n_rows, 8), np.float64)
    ones = {}
    at = 0
    for q in sorted(rules):
        ones[q] = at * 8
        rcp[at:at + q] = 1.0
        at += width[q]
    for k in range(len(rare_i)):
        q = int(points[k])
        one = ones[q]
        if not has_prev[k]:
            rare["down"][k] = (one, one)
            rare["up"][k] = (one, one)
            continue
        zp = float(rare["Zp"][k])
        rcp[at:at + q] = 1.0 / (zp + rules[q][0])
        rcp[at + width[q]:at + width[q] + q] = 1.0 / zp
        rare["down"][k] = (one, at * 8)
        rare["up"][k] = ((at + width[q]) * 8, at * 8)
        at += 2 * width[q]
    return rare, rcp

cdef int _link(Py_ssize_t n_nodes, const int32_t[::1] roots, const int32_t[::1] right,
               const int32_t[::1] feature, const uint8_t[::1] internal, const double[::1] counts,
               cs_edge[::1] edges, int32_t[::1] points, int32_t[::1] distinct,
               int32_t[::1] level) except -1:
    """Fill the edge table, each tree's point count, each node's number of distinct
    features above it and its depth; returns the largest number of distinct features on one path."""
    cdef int n_trees = roots.shape[0]
    cdef int t, i, c, a, q, side, f, root, end, deepest = 0, tree_deepest
    cdef int32_t[::1] parent = np.full(n_nodes, -1, dtype=np.int32)
    cdef cs_edge* e
    for t in range(n_trees):
        root = roots[t]
        end = roots[t + 1] if t + 1 < n_trees else <int>n_nodes
        tree_deepest = 0
        # Preorder layout: a parent comes before its children, so one forward scan
        # sees every edge after the edges above it.
        for i in range(root, end):
            if not internal[i]:
                if distinct[i] > tree_deepest:
                    tree_deepest = distinct[i]
                continue
            f = feature[i]
            for side in range(2):
                c = i + 1 if side == 0 else right[i]
                parent[c] = i
                e = &edges[c]
                e.z = counts[c] / counts[i]
                e.feature = f
                e.prev = -1
                e.Zp = 1.0
                # The previous split on f along the path, nearest first.
                a = i
                while parent[a] >= 0:
                    if edges[a].feature == f:
                        e.prev = a - root
                        e.Zp = edges[a].Z
                        edges[a].redone = 1
                        break
                    a = parent[a]
                e.Z = e.Zp * e.z
                distinct[c] = distinct[i] + (1 if e.prev < 0 else 0)
                level[c] = level[i] + 1
        points[t] = 0
        for q in RULES:
            if 2 * q >= tree_deepest > 0:
                points[t] = q
                break
        if tree_deepest > deepest:
            deepest = tree_deepest
    return deepest
