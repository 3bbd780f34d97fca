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
sum_k G(t_k) T(t_k), with no division except where a feature is split again on the
same path (rare; those edges carry their own correction, see cs_tree_body).

The kernel is C (below), on vectors of four doubles: a tree's rule has 4, 8, 12 or
16 points, so every per-point step is one to four vector operations. It is compiled
twice, for AVX2 + FMA and for baseline x86-64, and the AVX2 copy runs where the CPU
has it (checked once at import).
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

    /* One internal node (48 bytes: every row reads all of them). The kernel walks lists
       of these instead of all nodes, so that "is this a leaf?" is never a (mispredicted)
       branch; pairs are indexed by "the row goes left" (1: left child, 0: right child),
       so that hot and cold are loads, not branches either. The test is the scorer's
       (models/_predictor.pyx, walk_layout): key, slot and bits are its cs_node's. */
    typedef struct {
        int64_t key;      /* threshold key, 64-bit category mask, or (wide) bitset index */
        double pair[2];   /* cover fractions of the children; a bottom split: its leaf values */
        double E;         /* a bottom split: the cover-weighted mean of its two leaf values */
        int32_t node;     /* local index in the tree (left child: node + 1) */
        int32_t right;    /* local index of the right child */
        int32_t feature;  /* row column */
        uint16_t slot;    /* transformed-row slot the test reads */
        int8_t bits;      /* -1: bit test (slot & key), 0: compare (slot <= key) */
        uint8_t flags;    /* CS_SIMPLE, CS_REPEAT, CS_WIDE */
    } cs_split;

    enum {
        CS_SIMPLE = 1,  /* the only split on its feature along every path through it */
        CS_REPEAT = 2,  /* its feature was split on above it */
        CS_WIDE = 4,    /* categorical bitset past 64 codes: tested out of line */
        CS_MAX_POINTS = 16
    };

    /* One tree's part of the model's tables (borrowed pointers). */
    typedef struct {
        const cs_split* inner;   /* n_inner splits in preorder: all but the simple bottom ones */
        const cs_split* bottom;  /* n_bottom simple splits whose children are both leaves */
        const int32_t* leaves;   /* n_leaves local indices of the leaves under inner splits */
        const double* value;     /* per local node (leaf outputs) */
        const cs_edge* edges;    /* per local node */
        const cs_v4* t;          /* the tree's Gauss-Legendre rule on [0, 1], 4 * lanes points */
        const cs_v4* omt;        /* 1 - t */
        const cs_v4* w;          /* weights */
        double expected;         /* Tree::ExpectedValue */
        int32_t n_inner, n_bottom, n_leaves;
        int32_t lanes;           /* vectors per point set (1 to 4); 0: a single leaf */
    } cs_tree;

    static __attribute__((noinline)) uint64_t cs_shap_wide_right(int64_t code, int64_t k, const uint32_t* bits,
                                                                 const int32_t* bounds) {
        /* Common::FindInBitset, for a bitset past 64 categories (rare); as _predictor's cs_wide_right. */
        int32_t start = bounds[k];
        if (code < 0 || (code >> 5) >= bounds[k + 1] - start) return 1;
        return ((bits[start + (code >> 5)] >> (code & 31)) & 1) ^ 1;
    }

    /* 1 if the row goes left at sp: the scorer's cs_step, as a value. */
    static inline __attribute__((always_inline)) int cs_goes_left(
            const cs_split* sp, const int64_t* xk, const uint32_t* cat_bits, const int32_t* bounds, const int wide) {
        int64_t x = xk[sp->slot];
        int64_t p = sp->key;
        uint64_t gt = x > p, miss = (x & p) == 0;
        uint64_t right = gt ^ ((gt ^ miss) & (uint64_t)(int64_t)sp->bits);
        if (wide && __builtin_expect(sp->flags & CS_WIDE, 0)) right = cs_shap_wide_right(x, p, cat_bits, bounds);
        return (int)(right ^ 1);
    }

    /* Adds one tree's contributions to phi (CS_MAX_POINTS doubles per feature, one per
       point; the caller sums them). Scratch holds U vectors per local node in each of
       M, G, T, acc; O one byte per local node.

       Down (preorder): O[c] is the combined one fraction of the edge into c, which
       multiplies by M_c(t) = Z_c (1 - t) + O_c t (divided by the previous factor when the
       feature was split on above); G[c] = G[parent] * M_c and G[root] holds the
       quadrature weights, so that a sum over points is an integral.
       Up (reverse preorder): T[n] = sum over children M_c * T[c], T[leaf] = its value;
       the edge into c then adds (O_c - Z_c) * G[parent] * T[c] to its feature.

       U and wide are constants at every call site (the cs_shap_* wrappers), so each
       per-point loop is U straight vector operations. */
    static inline __attribute__((always_inline)) void cs_tree_body(
            const cs_tree* tr, const int64_t* __restrict xk, const uint32_t* cat_bits, const int32_t* bounds,
            double* __restrict phi, uint8_t* __restrict O, uint8_t* __restrict dec, cs_v4* __restrict M,
            cs_v4* __restrict G, cs_v4* __restrict T, cs_v4* __restrict acc, const int U, const int wide) {
        const cs_edge* __restrict edges = tr->edges;
        const cs_split* __restrict inner = tr->inner;
        const cs_split* __restrict bottom = tr->bottom;
        const int32_t* __restrict leaves = tr->leaves;
        const double* __restrict value = tr->value;
        const uint32_t n_inner = (uint32_t)tr->n_inner, n_bottom = (uint32_t)tr->n_bottom;
        const uint32_t n_leaves = (uint32_t)tr->n_leaves;
        cs_v4 tk[4], omt[4];
        for (int u = 0; u < U; u++) {
            tk[u] = tr->t[u];
            omt[u] = tr->omt[u];
            G[u] = tr->w[u];
        }
        /* ---- down: G of every node below an inner split ---- */
        for (uint32_t j = 0; j < n_inner; j++) {
            const cs_split* sp = inner + j;
            uint32_t left = (uint32_t)cs_goes_left(sp, xk, cat_bits, bounds, wide);
            uint32_t i = (uint32_t)sp->node, L = i + 1, R = (uint32_t)sp->right;
            uint32_t flags = sp->flags;
            const cs_v4* gi = G + i * U;
            dec[j] = (uint8_t)left;
            if (__builtin_expect(!(flags & CS_REPEAT), 1)) {
                /* Hot child h: z_h (1 - t) + t; cold child: z_c (1 - t). Both are written,
                   a leaf's G is never read: no branch on the row. */
                uint32_t h = left ? L : R, c = left ? R : L;
                double zh = sp->pair[left], zc = sp->pair[left ^ 1];
                cs_v4* gh = G + h * U;
                cs_v4* gc = G + c * U;
                for (int u = 0; u < U; u++) {
                    cs_v4 g = gi[u], gio = g * omt[u];
                    gh[u] = zh * gio + g * tk[u];
                    gc[u] = zc * gio;
                }
                if (__builtin_expect(!(flags & CS_SIMPLE), 0)) {
                    O[L] = (uint8_t)left;
                    O[R] = (uint8_t)(left ^ 1);
                    if (edges[L].redone) memset(acc + L * U, 0, U * sizeof(cs_v4));
                    if (edges[R].redone) memset(acc + R * U, 0, U * sizeof(cs_v4));
                }
            } else {
                /* The feature was split on above: its factor Zp (1 - t) + Op t becomes
                   Z (1 - t) + (Op and o) t. M is kept for the way up. */
                uint32_t Op = O[edges[L].prev];
                for (int side = 0; side < 2; side++) {
                    uint32_t c = side ? R : L;
                    const cs_edge* e = edges + c;
                    uint32_t Oc = Op & (side ? left ^ 1 : left);
                    double oo = (double)Oc;
                    O[c] = (uint8_t)Oc;
                    for (int u = 0; u < U; u++) {
                        cs_v4 m;
                        if (Op)
                            m = (e->Z * omt[u] + oo * tk[u]) / (tk[u] + e->Zp * omt[u]);
                        else
                            m = e->z + 0.0 * tk[u];
                        M[c * U + u] = m;
                        G[c * U + u] = gi[u] * m;
                    }
                    if (e->redone) memset(acc + c * U, 0, U * sizeof(cs_v4));
                }
            }
        }
        /* ---- up ---- */
        /* Bottom splits first (their T depends on nothing else): T = (1 - t) E + t v_h and
           the edges add v_h - E, times G. */
        for (uint32_t j = 0; j < n_bottom; j++) {
            const cs_split* sp = bottom + j;
            uint32_t left = (uint32_t)cs_goes_left(sp, xk, cat_bits, bounds, wide);
            double vh = sp->pair[left], E = sp->E, sd = vh - E;
            uint32_t i = (uint32_t)sp->node;
            cs_v4* out = (cs_v4*)(phi + (uint32_t)sp->feature * CS_MAX_POINTS);
            const cs_v4* gi = G + i * U;
            cs_v4* ti = T + i * U;
            for (int u = 0; u < U; u++) {
                out[u] += sd * gi[u];
                ti[u] = E * omt[u] + vh * tk[u];
            }
        }
        for (uint32_t j = 0; j < n_leaves; j++) {
            uint32_t l = (uint32_t)leaves[j];
            double v = value[l];
            for (int u = 0; u < U; u++) T[l * U + u] = v + 0.0 * tk[u];  /* broadcast */
        }
        for (uint32_t j = n_inner; j-- > 0;) {
            const cs_split* sp = inner + j;
            uint32_t i = (uint32_t)sp->node, L = i + 1, R = (uint32_t)sp->right;
            cs_v4* out = (cs_v4*)(phi + (uint32_t)sp->feature * CS_MAX_POINTS);
            if (__builtin_expect(sp->flags & CS_SIMPLE, 1)) {
                /* The only split on this feature along the path. With a = z_h T_h + z_c T_c:
                   T = (1 - t) a + t T_h, and the edges add (1 - z_h) T_h - z_c T_c = T_h - a. */
                uint32_t left = dec[j];
                uint32_t h = left ? L : R, c = left ? R : L;
                double zh = sp->pair[left], zc = sp->pair[left ^ 1];
                const cs_v4* th = T + h * U;
                const cs_v4* tc = T + c * U;
                const cs_v4* gi = G + i * U;
                cs_v4* ti = T + i * U;
                for (int u = 0; u < U; u++) {
                    cs_v4 a = zh * th[u] + zc * tc[u];
                    ti[u] = omt[u] * a + tk[u] * th[u];
                    out[u] += gi[u] * (th[u] - a);
                }
                continue;
            }
            /* A feature split more than once on the path (rare). */
            int32_t p = edges[L].prev;
            for (int u = 0; u < U; u++) {
                cs_v4 ml, mr;
                if (p < 0) {
                    ml = edges[L].z * omt[u] + (double)O[L] * tk[u];
                    mr = edges[R].z * omt[u] + (double)O[R] * tk[u];
                } else {
                    ml = M[L * U + u];
                    mr = M[R * U + u];
                }
                T[i * U + u] = ml * T[L * U + u] + mr * T[R * U + u];
            }
            /* For the edge into c, R_c = sum over the leaves below of value * G_leaf / (the
               leaf's final factor of this feature). Leaves with no later split on it give
               G[i] / F_prev * T[c] (F_prev: the factor at the previous split, 1 if none);
               the others come in through the later splits' corrections, collected in
               acc[c]. Contributions telescope: each split on the feature adds the change of
               its (O - Z). */
            double Zp, Op;
            cs_v4 Gx[4];
            if (p < 0) {
                Zp = 1.0;
                Op = 1.0;
                for (int u = 0; u < U; u++) Gx[u] = G[i * U + u];
            } else {
                Op = O[p];
                Zp = edges[L].Zp;
                for (int u = 0; u < U; u++) Gx[u] = G[i * U + u] / (Op * tk[u] + Zp * omt[u]);
            }
            for (int side = 0; side < 2; side++) {
                uint32_t c = side ? R : L;
                const cs_edge* e = edges + c;
                double coef = ((double)O[c] - e->Z) - (Op - Zp);
                for (int u = 0; u < U; u++) {
                    cs_v4 r = Gx[u] * T[c * U + u];
                    if (e->redone) r = r + acc[c * U + u];
                    out[u] += coef * r;
                    if (p >= 0) {
                        /* This edge's share of the previous split's R: its leaves' R here
                           instead of their G / F_prev there. */
                        acc[p * U + u] += r - Gx[u] * M[c * U + u] * T[c * U + u];
                    }
                }
            }
        }
    }

    typedef void (*cs_shap_fn)(const cs_tree*, const int64_t*, const uint32_t*, const int32_t*, double*,
                               uint8_t*, uint8_t*, cs_v4*, int);

    /* One copy per (target, lanes, wide). Scratch: four arrays of m nodes x U vectors. */
    #define CS_SHAP_KERNEL(NAME, ATTR, U, WIDE)                                                             \\
        static ATTR void NAME(const cs_tree* tr, const int64_t* xk, const uint32_t* cat_bits,                \\
                              const int32_t* bounds, double* phi, uint8_t* O, uint8_t* dec, cs_v4* s, int m) { \\
            cs_tree_body(tr, xk, cat_bits, bounds, phi, O, dec, s, s + m * U, s + 2 * m * U, s + 3 * m * U, U,     \\
                         WIDE);                                                                                 \\
        }
    #define CS_AVX2 __attribute__((target("avx2,fma")))
    #define CS_BASE
    CS_SHAP_KERNEL(cs_shap_avx2_1, CS_AVX2, 1, 0)
    CS_SHAP_KERNEL(cs_shap_avx2_2, CS_AVX2, 2, 0)
    CS_SHAP_KERNEL(cs_shap_avx2_3, CS_AVX2, 3, 0)
    CS_SHAP_KERNEL(cs_shap_avx2_4, CS_AVX2, 4, 0)
    CS_SHAP_KERNEL(cs_shap_avx2_1w, CS_AVX2, 1, 1)
    CS_SHAP_KERNEL(cs_shap_avx2_2w, CS_AVX2, 2, 1)
    CS_SHAP_KERNEL(cs_shap_avx2_3w, CS_AVX2, 3, 1)
    CS_SHAP_KERNEL(cs_shap_avx2_4w, CS_AVX2, 4, 1)
    CS_SHAP_KERNEL(cs_shap_base_1, CS_BASE, 1, 0)
    CS_SHAP_KERNEL(cs_shap_base_2, CS_BASE, 2, 0)
    CS_SHAP_KERNEL(cs_shap_base_3, CS_BASE, 3, 0)
    CS_SHAP_KERNEL(cs_shap_base_4, CS_BASE, 4, 0)
    CS_SHAP_KERNEL(cs_shap_base_1w, CS_BASE, 1, 1)
    CS_SHAP_KERNEL(cs_shap_base_2w, CS_BASE, 2, 1)
    CS_SHAP_KERNEL(cs_shap_base_3w, CS_BASE, 3, 1)
    CS_SHAP_KERNEL(cs_shap_base_4w, CS_BASE, 4, 1)
    static const cs_shap_fn cs_shap_kernels[2][2][4] = {
        {{cs_shap_base_1, cs_shap_base_2, cs_shap_base_3, cs_shap_base_4},
         {cs_shap_base_1w, cs_shap_base_2w, cs_shap_base_3w, cs_shap_base_4w}},
        {{cs_shap_avx2_1, cs_shap_avx2_2, cs_shap_avx2_3, cs_shap_avx2_4},
         {cs_shap_avx2_1w, cs_shap_avx2_2w, cs_shap_avx2_3w, cs_shap_avx2_4w}},
    };

    static int cs_shap_has_avx2(void) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }

    /* Every tree in order; the bias is summed as Tree::PredictContrib sums it. */
    static void cs_shap_trees(const cs_tree* trees, int n_trees, const int64_t* xk, const uint32_t* cat_bits,
                              const int32_t* bounds, double* phi, double* bias, uint8_t* O, cs_v4* scratch,
                              int m, int wide, int avx2) {
        const cs_shap_fn* fns = cs_shap_kernels[avx2 ? 1 : 0][wide ? 1 : 0];
        for (int t = 0; t < n_trees; t++) {
            const cs_tree* tr = trees + t;
            *bias += tr->expected;
            if (tr->lanes) fns[tr->lanes - 1](tr, xk, cat_bits, bounds, phi, O, O + m, scratch, m);
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
    ctypedef struct cs_split:
        int64_t key
        double pair[2]
        double E
        int32_t node
        int32_t right
        int32_t feature
        uint16_t slot
        int8_t bits
        uint8_t flags
    ctypedef struct cs_tree:
        const cs_split* inner
        const cs_split* bottom
        const int32_t* leaves
        const double* value
        const cs_edge* edges
        const cs_v4* t
        const cs_v4* omt
        const cs_v4* w
        double expected
        int32_t n_inner
        int32_t n_bottom
        int32_t n_leaves
        int32_t lanes
    enum:
        CS_SIMPLE
        CS_REPEAT
        CS_WIDE
        CS_MAX_POINTS
    int cs_shap_has_avx2() noexcept nogil
    void cs_shap_trees(const cs_tree* trees, int n_trees, const int64_t* xk, const uint32_t* cat_bits,
                       const int32_t* bounds, double* phi, double* bias, uint8_t* O, cs_v4* scratch,
                       int m, int wide, int avx2) noexcept nogil
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
cdef int HAS_AVX2_C = cs_shap_has_avx2()
HAS_AVX2 = bool(HAS_AVX2_C)  # the kernel copy this process runs (AVX2 + FMA or baseline)

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
SPLIT_DTYPE = np.dtype(
    [("key", "i8"), ("pair", "f8", (2,)), ("E", "f8"), ("node", "i4"), ("right", "i4"), ("feature", "i4"),
     ("slot", "u2"), ("bits", "i1"), ("flags", "u1")], align=True)


cdef class TreeShap:
    """Per-model tables for exact TreeSHAP, built once at load; ``contributions_into`` per row."""

    cdef readonly int n_features
    cdef readonly int n_trees
    cdef readonly int max_points
    cdef readonly Py_ssize_t nbytes
    cdef int _max_nodes
    cdef int _max_lanes
    cdef bint _wide
    cdef readonly bint avx2  # runs the AVX2 + FMA kernel copy (else the baseline one)
    cdef const cs_tree* _trees  # into self._keep (a byte array of n_trees cs_tree)
    cdef const int32_t[::1] _cat_bounds
    cdef const uint32_t[::1] _cat_bits
    cdef const uint8_t[::1] _kinds
    cdef object _keep

    def __init__(self, nodes, roots, counts, expected, cat_bounds, cat_bits, feature_kinds, *, avx2=None):
        """Build the tables from the compiler's flat arrays (models.compiler.CompiledModel).

        ``avx2``: None runs the AVX2 + FMA copy where the CPU has it; False forces the
        baseline copy (the tests run both); True where the CPU lacks it is an error.

        Raises ModelUnsupportedError for a model this algorithm cannot take exactly (a
        split with an empty side, or more than 2 * MAX_POINTS features on one path).
        """
        cdef Py_ssize_t n_nodes = nodes.shape[0]
        cdef cs_tree* trees
        cdef int t, q
        n_features = feature_kinds.shape[0]
        value = np.ascontiguousarray(nodes["value"], dtype=np.float64)
        right = np.ascontiguousarray(nodes["right"], dtype=np.int32)
        slot = np.ascontiguousarray(nodes["feature"], dtype=np.uint16)
        kind = np.ascontiguousarray(nodes["kind"], dtype=np.uint8)
        counts = np.ascontiguousarray(counts, dtype=np.float64)
        cat_bits = np.ascontiguousarray(cat_bits if len(cat_bits) else np.zeros(1, np.uint32), np.uint32)
        self.n_features = n_features
        self.n_trees = roots.shape[0]
        if avx2 and not HAS_AVX2:
            raise ValueError("avx2=True, but this CPU lacks AVX2 or FMA; pass avx2=None to detect")
        self.avx2 = HAS_AVX2 if avx2 is None else bool(avx2)
        if np.any(counts <= 0):
            raise ModelUnsupportedError(
                "a split sends no training rows to one side (zero cover); exact fast TreeSHAP "
                "needs positive covers, so the reference recursion is used")
        # Slot to row column: a default-right split reads the feature's second slot.
        feature = np.where(slot > n_features, slot.astype(np.int32) - n_features - 1, slot.astype(np.int32))
        internal = (kind & KIND_LEAF) == 0
        edges = np.zeros(n_nodes, dtype=EDGE_DTYPE)
        splits = np.zeros(int(internal.sum()), dtype=SPLIT_DTYPE)
        if edges.dtype.itemsize != sizeof(cs_edge) or splits.dtype.itemsize != sizeof(cs_split):
            raise RuntimeError("a struct and its numpy dtype disagree")  # a build problem, not data
        points = np.zeros(self.n_trees, dtype=np.int32)
        depth = _link(value.shape[0], roots, right, feature, internal.view(np.uint8), counts, edges, points)
        if depth > 2 * MAX_POINTS:
            raise ModelUnsupportedError(
                f"a path splits on {depth} distinct features; fast TreeSHAP handles at most "
                f"{2 * MAX_POINTS}, so the reference recursion is used")
        ends = np.append(roots[1:], n_nodes)
        tree_of = np.repeat(np.arange(self.n_trees), ends - roots)
        local = (np.arange(n_nodes) - roots[tree_of]).astype(np.int32)
        nodes_i = np.flatnonzero(internal)
        left_i = nodes_i + 1
        right_i = right[nodes_i]
        # The split test is the scorer's own (integer keys, category masks).
        walk = walk_layout(nodes, cat_bounds, cat_bits, n_features)[nodes_i]
        splits["key"] = walk["p"]
        splits["slot"] = walk["slot"]
        splits["bits"] = walk["bits"]
        splits["pair"][:, 1] = edges["z"][left_i]
        splits["pair"][:, 0] = edges["z"][right_i]
        splits["node"] = local[nodes_i]
        splits["right"] = local[right[nodes_i]]
        splits["feature"] = feature[nodes_i]
        repeat = edges["prev"][left_i] >= 0
        simple = ~repeat & (edges["redone"][left_i] == 0) & (edges["redone"][right_i] == 0)
        splits["flags"] = (np.where(simple, CS_SIMPLE, 0) | np.where(repeat, CS_REPEAT, 0)
                           | np.where(walk["wide"] != 0, CS_WIDE, 0))
        self._wide = bool(walk["wide"].any())
        bottom_mask = simple & ~internal[left_i] & ~internal[right_i]
        # A bottom split needs its leaf values (where others keep the cover fractions)
        # and their cover-weighted mean.
        z0 = splits["pair"][:, 0].copy()
        z1 = splits["pair"][:, 1].copy()
        splits["pair"][bottom_mask, 1] = value[left_i][bottom_mask]
        splits["pair"][bottom_mask, 0] = value[right_i][bottom_mask]
        splits["E"] = np.where(bottom_mask, z0 * splits["pair"][:, 0] + z1 * splits["pair"][:, 1], 0.0)
        inner = np.ascontiguousarray(splits[~bottom_mask])
        bottom = np.ascontiguousarray(splits[bottom_mask])
        bounds = np.append(roots, n_nodes)
        inner_start = np.searchsorted(nodes_i[~bottom_mask], bounds).astype(np.int32)
        bottom_start = np.searchsorted(nodes_i[bottom_mask], bounds).astype(np.int32)
        # Leaves under inner splits need T filled per row; a bottom split reads its own.
        under_bottom = np.zeros(n_nodes, dtype=bool)
        under_bottom[left_i[bottom_mask]] = True
        under_bottom[right_i[bottom_mask]] = True
        leaves_i = np.flatnonzero(~internal & ~under_bottom)
        leaves = np.ascontiguousarray(local[leaves_i])
        leaf_start = np.searchsorted(leaves_i, bounds).astype(np.int32)
        # Rules: row r of `rules` is (t, 1 - t, w) of the rule with RULES[r] points.
        rules = _aligned_zeros(len(RULES) * 3 * MAX_POINTS, np.float64).reshape(len(RULES), 3, MAX_POINTS)
        for r, q in enumerate(RULES):
            x, wq = np.polynomial.legendre.leggauss(q)
            rules[r, 0, :q] = (x + 1.0) / 2.0
            rules[r, 1, :q] = 1.0 - rules[r, 0, :q]
            rules[r, 2, :q] = wq / 2.0
        tree_bytes = _aligned_zeros(self.n_trees * sizeof(cs_tree), np.uint8)
        trees = <cs_tree*>cnp.PyArray_DATA(tree_bytes)
        cdef const cs_split* inner_p = <const cs_split*>cnp.PyArray_DATA(inner)
        cdef const cs_split* bottom_p = <const cs_split*>cnp.PyArray_DATA(bottom)
        cdef const int32_t* leaves_p = <const int32_t*>cnp.PyArray_DATA(leaves)
        cdef const double* value_p = <const double*>cnp.PyArray_DATA(value)
        cdef const cs_edge* edges_p = <const cs_edge*>cnp.PyArray_DATA(edges)
        cdef const double* rules_p = <const double*>cnp.PyArray_DATA(rules)
        cdef int32_t[::1] roots_v = np.ascontiguousarray(roots, dtype=np.int32)
        cdef int32_t[::1] points_v = points
        cdef int32_t[::1] inner_v = inner_start
        cdef int32_t[::1] bottom_v = bottom_start
        cdef int32_t[::1] leaf_v = leaf_start
        cdef double[::1] expected_v = np.ascontiguousarray(expected, dtype=np.float64)
        for t in range(self.n_trees):
            q = points_v[t]
            trees[t].expected = expected_v[t]
            trees[t].lanes = q // 4
            trees[t].inner = inner_p + inner_v[t]
            trees[t].n_inner = inner_v[t + 1] - inner_v[t]
            trees[t].bottom = bottom_p + bottom_v[t]
            trees[t].n_bottom = bottom_v[t + 1] - bottom_v[t]
            trees[t].leaves = leaves_p + leaf_v[t]
            trees[t].n_leaves = leaf_v[t + 1] - leaf_v[t]
            trees[t].value = value_p + roots_v[t]
            trees[t].edges = edges_p + roots_v[t]
            if q:
                q = RULES.index(q)
                trees[t].t = <const cs_v4*>(rules_p + (3 * q + 0) * MAX_POINTS)
                trees[t].omt = <const cs_v4*>(rules_p + (3 * q + 1) * MAX_POINTS)
                trees[t].w = <const cs_v4*>(rules_p + (3 * q + 2) * MAX_POINTS)
        self._trees = trees
        self._cat_bounds = cat_bounds
        self._cat_bits = cat_bits
        self._kinds = feature_kinds
        self._max_nodes = int((ends - roots).max()) if self.n_trees else 1
        self.max_points = int(points.max()) if self.n_trees else 0
        self._max_lanes = max(1, self.max_points // 4)
        self._keep = (value, cat_bounds, cat_bits, feature_kinds, edges, inner, bottom, leaves, rules, tree_bytes)
        self.nbytes = sum(a.nbytes for a in (value, edges, inner, bottom, leaves, tree_bytes))

    def contributions_into(self, x, double[::1] phi):
        """TreeSHAP contributions of one row into phi (n_features + 1, bias last)."""
        cdef cnp.ndarray arr = np.ascontiguousarray(x, dtype=np.float64)
        cdef const double* row
        cdef int k, f, F = self.n_features
        cdef int m = self._max_nodes
        cdef double total, bias = 0.0
        cdef double* phiv
        cdef cs_v4* scratch
        cdef int64_t* xk
        cdef uint8_t* O
        if cnp.PyArray_NDIM(arr) != 1 or cnp.PyArray_DIM(arr, 0) != F:
            raise RowShapeError(f"row has shape {np.shape(arr)}; expected ({F},) "
                                "(one value per model feature, NaN for missing)")
        if phi.shape[0] != F + 1:
            raise RowShapeError(f"contribution buffer has {phi.shape[0]} slots; expected {F + 1}")
        row = <const double*>cnp.PyArray_DATA(arr)
        # One block: phiv (F x MAX_POINTS), scratch (4 x m x lanes vectors of 4), the
        # transformed row (2F + 1 keys), O (m bytes).
        phiv = <double*>cs_shap_alloc((F * MAX_POINTS + 16 * m * self._max_lanes) * sizeof(double)
                                      + (2 * F + 1) * sizeof(int64_t) + 2 * m)
        if phiv == NULL:
            raise MemoryError()
        scratch = <cs_v4*>(phiv + F * MAX_POINTS)
        xk = <int64_t*>(phiv + F * MAX_POINTS + 16 * m * self._max_lanes)
        O = <uint8_t*>(xk + 2 * F + 1)
        with nogil:
            _walk_row(row, xk, &self._kinds[0], F)
            memset(phiv, 0, F * MAX_POINTS * sizeof(double))
            cs_shap_trees(self._trees, self.n_trees, xk, &self._cat_bits[0], &self._cat_bounds[0], phiv,
                          &bias, O, scratch, m, self._wide, self.avx2)
            phi[F] = bias
            for f in range(F):
                total = 0.0
                for k in range(MAX_POINTS):
                    total += phiv[f * MAX_POINTS + k]
                phi[f] = total
        free(phiv)



cdef int _link(Py_ssize_t n_nodes, const int32_t[::1] roots, const int32_t[::1] right,
               const int32_t[::1] feature, const uint8_t[::1] internal, const double[::1] counts,
               cs_edge[::1] edges, int32_t[::1] points) except -1:
    """Fill the edge table and each tree's point count; returns the largest number of
    distinct features on one path."""
    cdef int n_trees = roots.shape[0]
    cdef int t, i, c, a, q, side, f, root, end, deepest = 0, tree_deepest
    cdef int32_t[::1] parent = np.full(n_nodes, -1, dtype=np.int32)
    cdef int32_t[::1] distinct = np.zeros(n_nodes, dtype=np.int32)
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
        points[t] = 0
        for q in RULES:
            if 2 * q >= tree_deepest > 0:
                points[t] = q
                break
        if tree_deepest > deepest:
            deepest = tree_deepest
    return deepest
