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
same path (rare; those edges carry their own correction, see ``_tree``).
"""

cimport numpy as cnp
from libc.math cimport INFINITY, NAN, fabs, trunc
from libc.stdint cimport int32_t, uint8_t, uint16_t, uint32_t
from libc.stdlib cimport free, malloc
from libc.string cimport memset

import numpy as np

from models.errors import ModelUnsupportedError, RowShapeError

cnp.import_array()


ctypedef struct Edge:
    # The edge into a node from its parent (unused for roots). "Combined" values are
    # LightGBM's for a feature split more than once on a path: zero fractions multiply,
    # the one fraction is 1 only if the row followed every split on it.
    double z        # counts[node] / counts[parent]: this split's zero fraction
    double Z        # combined zero fraction of the parent's feature down to this edge
    double Zp       # combined zero fraction at the previous split on that feature (1.0 if none)
    int32_t prev    # local index of the node below that previous split (-1 if none)
    int32_t feature  # the parent's split feature (a row column, not a slot)
    uint8_t redone  # some split below this edge is on the same feature (it collects corrections)


ctypedef struct Split:
    # One internal node (48 bytes: every row reads all of them). The kernels walk lists
    # of these instead of all nodes, so that "is this a leaf?" is never a (mispredicted)
    # branch; pairs are indexed by "the row goes left" (1: left child, 0: right child),
    # so that hot and cold are loads, not branches either.
    double value     # threshold, or bitset index for a categorical split
    double pair[2]   # cover fractions of the children; a bottom split: its leaf values
    double E         # a bottom split: the cover-weighted mean of its two leaf values
    int32_t node     # local index in the tree (left child: node + 1)
    int32_t right    # local index of the right child
    int32_t feature  # row column
    uint16_t slot    # row slot the scorer reads (see _transform_row)
    uint8_t kind
    uint8_t flags    # SIMPLE and/or REPEAT


cdef enum:
    KIND_CATEGORICAL = 1
    KIND_LEAF = 2
    SIMPLE = 1  # Split.flags: the only split on its feature along every path through it
    REPEAT = 2  # Split.flags: its feature was split on above it
    FEATURE_NONE = 0
    FEATURE_NAN = 1
    FEATURE_ZERO = 2
    # Gauss-Legendre points per tree are capped here: exact for up to 2 * MAX_POINTS
    # distinct features on a path. A deeper model is refused and the scorer keeps the
    # reference recursion for it.
    MAX_POINTS = 16


# The row transform and bitset test mirror _predictor.pyx line for line (that module is
# the scorer's and has no .pxd to share); the parity tests compare both to LightGBM.
cdef double ZERO_THRESHOLD = <double>(<float>1e-35)
cdef double INT_LIMIT = 2147483648.0


cdef inline void _transform_row(const double* x, double* xt, const uint8_t* kinds, int n_features) noexcept nogil:
    cdef int j
    cdef double v, right
    cdef uint8_t kind
    cdef double* xr = xt + n_features + 1
    for j in range(n_features):
        v = x[j]
        if fabs(v) <= ZERO_THRESHOLD:
            v = 0.0
        kind = kinds[j]
        right = v
        if kind == FEATURE_NONE:
            if v != v:
                v = 0.0
                right = 0.0
        elif kind == FEATURE_NAN:
            if v != v:
                v = -INFINITY
        elif kind == FEATURE_ZERO:
            if v != v or v == 0.0:
                v = -INFINITY
                right = NAN
        else:
            if v != v or v <= -1.0 or v >= INT_LIMIT:
                v = -1.0
            else:
                v = trunc(v)
            right = v
        xt[j] = v
        xr[j] = right
    xt[n_features] = NAN


cdef inline bint _goes_left(uint8_t kind, double x, double split, const uint32_t* bits,
                            const int32_t* bounds) noexcept nogil:
    cdef int c, k, start
    if kind & KIND_CATEGORICAL:
        c = <int>x
        k = <int>split
        start = bounds[k]
        if c < 0 or (c >> 5) >= bounds[k + 1] - start:
            return False
        return (bits[start + (c >> 5)] >> (c & 31)) & 1
    return x <= split


# Per-point arithmetic runs on pairs of doubles: GCC's vector extension, which every
# x86-64 compiles to SSE2 (the baseline, so no CPU check is needed). Cython sees the
# type as a double; the C compiler applies each operator to both lanes and broadcasts
# scalar operands. (Left to itself, GCC kept these short loops scalar.)
cdef extern from *:
    """
    typedef double shap_vec2 __attribute__((vector_size(16)));
    """
    ctypedef double vec2 "shap_vec2"

# One struct per point count a tree may use: the kernel is specialised on it (a fused
# type), so every per-point loop has a compile-time length. A tree needing q points
# uses the smallest rule with at least q (more Gauss-Legendre points are as exact).
ctypedef struct Lanes2:
    vec2 v[1]
ctypedef struct Lanes4:
    vec2 v[2]
ctypedef struct Lanes6:
    vec2 v[3]
ctypedef struct Lanes8:
    vec2 v[4]
ctypedef struct Lanes12:
    vec2 v[6]
ctypedef struct Lanes16:
    vec2 v[8]

ctypedef fused lanes_t:
    Lanes2
    Lanes4
    Lanes6
    Lanes8
    Lanes12
    Lanes16

RULES = (2, 4, 6, 8, 12, 16)  # the point counts above, ascending


ctypedef struct Tree:
    # Borrowed pointers to one tree's part of TreeShap's arrays.
    const Split* inner  # n_inner splits in preorder: all but the simple bottom ones
    const Split* bottom  # n_bottom simple splits whose children are both leaves
    const int32_t* leaves  # n_leaves local indices of the leaves under inner splits
    int n_inner
    int n_bottom
    int n_leaves
    const double* value  # per local node (leaf outputs)
    const Edge* edges  # per local node
    const uint32_t* bits
    const int32_t* bounds
    const vec2* t  # the tree's Gauss-Legendre rule on [0, 1] (16-byte aligned)
    const vec2* omt  # 1 - t
    const vec2* w


cdef void _tree(const Tree* tr, const double* xt, vec2* phiv, uint8_t* O,
                lanes_t* M, lanes_t* G, lanes_t* T, lanes_t* acc) noexcept nogil:
    """Add one tree's contributions to phiv (MAX_POINTS / 2 pairs per feature).

    Scratch is indexed by local node, one lanes_t per node.
    Down (preorder): O[c] is the combined one fraction of the edge into c, which
    multiplies by M_c(t) = Z_c (1 - t) + O_c t (divided by the previous factor when the
    feature was split on above); G[c] = G[parent] * M_c and G[root] holds the
    quadrature weights, so that a sum over points is an integral.
    Up (reverse preorder): T[n] = sum over children M_c * T[c], T[leaf] = its value;
    the edge into c then adds (O_c - Z_c) * G[parent] * T[c] to its feature.
    """
    cdef int U = sizeof(lanes_t) // sizeof(vec2)
    cdef lanes_t tk, omt, th, tc, gi, gio, ti
    cdef const Split* sp
    cdef const Edge* edges = tr.edges
    cdef int j, i, u, side, c, p, L, R, h, cold
    cdef uint8_t left
    cdef double zh, zc, Op, Zp, coef, oo, v, vh, E, sd
    cdef vec2 r, ml, mr, a
    cdef const Edge* e
    cdef vec2* out
    cdef vec2* Mc
    cdef vec2 Gx[8]  # MAX_POINTS / 2
    for u in range(U):
        G[0].v[u] = tr.w[u]
        tk.v[u] = tr.t[u]
        omt.v[u] = tr.omt[u]
    # ---- down: G of every internal node ----
    for j in range(tr.n_inner):
        sp = tr.inner + j
        left = _goes_left(sp.kind, xt[sp.slot], sp.value, tr.bits, tr.bounds)
        i = sp.node
        L = i + 1
        R = sp.right
        if not (sp.flags & REPEAT):
            O[L] = left
            O[R] = 1 - left
            # Hot child h: z_h (1 - t) + t; cold child: z_c (1 - t). Both are written,
            # a leaf's G is never read: no branch on the row.
            h = R + (L - R) * left
            cold = L + R - h
            zh = sp.pair[left]
            zc = sp.pair[1 - left]
            gi = G[i]
            for u in range(U):
                gio.v[u] = gi.v[u] * omt.v[u]
                th.v[u] = zh * gio.v[u] + gi.v[u] * tk.v[u]
                tc.v[u] = zc * gio.v[u]
            G[h] = th
            G[cold] = tc
        else:
            # The feature was split on above: its factor Zp (1 - t) + Op t becomes
            # Z (1 - t) + (Op and o) t. M is kept for the way up.
            Op = O[edges[L].prev]
            for side in range(2):
                c = L if side == 0 else R
                e = edges + c
                O[c] = <uint8_t>Op & (left if side == 0 else 1 - left)
                Mc = M[c].v
                oo = <double>O[c]
                for u in range(U):
                    if Op:
                        Mc[u] = (e.Z * omt.v[u] + oo * tk.v[u]) / (tk.v[u] + e.Zp * omt.v[u])
                    else:
                        Mc[u] = e.z + 0.0 * tk.v[u]
                    G[c].v[u] = G[i].v[u] * Mc[u]
        if not (sp.flags & SIMPLE):
            if edges[L].redone:
                memset(acc[L].v, 0, sizeof(lanes_t))
            if edges[R].redone:
                memset(acc[R].v, 0, sizeof(lanes_t))
    # ---- up ----
    # Bottom splits first (their T depends on nothing else): T = (1 - t) E + t v_h and
    # the edges add v_h - E, times G.
    for j in range(tr.n_bottom):
        sp = tr.bottom + j
        left = _goes_left(sp.kind, xt[sp.slot], sp.value, tr.bits, tr.bounds)
        vh = sp.pair[left]
        E = sp.E
        sd = vh - E
        out = phiv + sp.feature * (MAX_POINTS // 2)
        gi = G[sp.node]
        for u in range(U):
            out[u] += sd * gi.v[u]
            ti.v[u] = E * omt.v[u] + vh * tk.v[u]
        T[sp.node] = ti
    for j in range(tr.n_leaves):
        v = tr.value[tr.leaves[j]]
        for u in range(U):
            T[tr.leaves[j]].v[u] = v + 0.0 * tk.v[u]  # broadcast
    for j in range(tr.n_inner - 1, -1, -1):
        sp = tr.inner + j
        i = sp.node
        L = i + 1
        R = sp.right
        out = phiv + sp.feature * (MAX_POINTS // 2)
        if sp.flags & SIMPLE:
            # The only split on this feature along the path. With a = z_h T_h + z_c T_c:
            # T = (1 - t) a + t T_h, and the edges add (1 - z_h) T_h - z_c T_c = T_h - a.
            left = O[L]
            h = R + (L - R) * left
            cold = L + R - h
            zh = sp.pair[left]
            zc = sp.pair[1 - left]
            th = T[h]
            tc = T[cold]
            gi = G[i]
            for u in range(U):
                a = zh * th.v[u] + zc * tc.v[u]
                ti.v[u] = omt.v[u] * a + tk.v[u] * th.v[u]
                out[u] += gi.v[u] * (th.v[u] - a)
            T[i] = ti
            continue
        # A feature split more than once on the path (rare).
        p = edges[L].prev
        for u in range(U):
            if p < 0:
                ml = edges[L].z * omt.v[u] + O[L] * tk.v[u]
                mr = edges[R].z * omt.v[u] + O[R] * tk.v[u]
            else:
                ml = M[L].v[u]
                mr = M[R].v[u]
            T[i].v[u] = ml * T[L].v[u] + mr * T[R].v[u]
        # For the edge into c, R_c = sum over the leaves below of value * G_leaf / (the
        # leaf's final factor of this feature). Leaves with no later split on it give
        # G[i] / F_prev * T[c] (F_prev: the factor at the previous split, 1 if none);
        # the others come in through the later splits' corrections, collected in
        # acc[c]. Contributions telescope: each split on the feature adds the change of
        # its (O - Z).
        if p < 0:
            Zp = 1.0
            Op = 1.0
            for u in range(U):
                Gx[u] = G[i].v[u]
        else:
            Op = O[p]
            Zp = edges[L].Zp
            for u in range(U):
                Gx[u] = G[i].v[u] / (Op * tk.v[u] + Zp * omt.v[u])
        for side in range(2):
            c = L if side == 0 else R
            e = edges + c
            coef = (O[c] - e.Z) - (Op - Zp)
            for u in range(U):
                r = Gx[u] * T[c].v[u]
                if e.redone:
                    r = r + acc[c].v[u]
                out[u] += coef * r
                if p >= 0:
                    # This edge's share of the previous split's R: its leaves' R here
                    # instead of their G / F_prev there.
                    acc[p].v[u] += r - Gx[u] * M[c].v[u] * T[c].v[u]


cdef class TreeShap:
    """Per-model tables for exact TreeSHAP, built once at load; ``contributions_into`` per row."""

    cdef readonly int n_features
    cdef readonly int n_trees
    cdef readonly int max_points
    cdef readonly Py_ssize_t nbytes
    cdef int _max_nodes
    cdef const double[::1] _value
    cdef const int32_t[::1] _roots
    cdef const double[::1] _expected
    cdef const int32_t[::1] _cat_bounds
    cdef const uint32_t[::1] _cat_bits
    cdef const uint8_t[::1] _kinds
    cdef const int32_t[::1] _points  # Gauss-Legendre points of each tree (one of RULES; 0: a leaf)
    cdef const Edge[::1] _edges
    cdef const Split* _inner  # tree t's: [_inner_start[t], _inner_start[t + 1])
    cdef const Split* _bottom
    cdef const int32_t[::1] _inner_start
    cdef const int32_t[::1] _bottom_start
    cdef const int32_t[::1] _leaves
    cdef const int32_t[::1] _leaf_start
    cdef const double[:, ::1] _t
    cdef const double[:, ::1] _omt
    cdef const double[:, ::1] _w
    cdef object _keep

    def __init__(self, nodes, roots, counts, expected, cat_bounds, cat_bits, feature_kinds):
        """Build the tables from the compiler's flat arrays (models.compiler.CompiledModel).

        Raises ModelUnsupportedError for a model this algorithm cannot take exactly (a
        split with an empty side, or more than 2 * MAX_POINTS features on one path).
        """
        cdef Py_ssize_t n_nodes = nodes.shape[0]
        n_features = feature_kinds.shape[0]
        value = np.ascontiguousarray(nodes["value"], dtype=np.float64)
        right = np.ascontiguousarray(nodes["right"], dtype=np.int32)
        slot = np.ascontiguousarray(nodes["feature"], dtype=np.uint16)
        kind = np.ascontiguousarray(nodes["kind"], dtype=np.uint8)
        counts = np.ascontiguousarray(counts, dtype=np.float64)
        cat_bits = np.ascontiguousarray(cat_bits if len(cat_bits) else np.zeros(1, np.uint32), np.uint32)
        self.n_features = n_features
        self.n_trees = roots.shape[0]
        if np.any(counts <= 0):
            raise ModelUnsupportedError(
                "a split sends no training rows to one side (zero cover); exact fast TreeSHAP "
                "needs positive covers, so the reference recursion is used")
        # Slot to row column: a default-right split reads the feature's second slot.
        feature = np.where(slot > n_features, slot.astype(np.int32) - n_features - 1, slot.astype(np.int32))
        internal = (kind & KIND_LEAF) == 0
        edges = np.zeros(n_nodes, dtype=np.dtype(
            [("z", "f8"), ("Z", "f8"), ("Zp", "f8"), ("prev", "i4"), ("feature", "i4"), ("redone", "u1")],
            align=True))
        splits = np.zeros(int(internal.sum()), dtype=np.dtype(
            [("value", "f8"), ("pair", "f8", (2,)), ("E", "f8"), ("node", "i4"), ("right", "i4"),
             ("feature", "i4"), ("slot", "u2"), ("kind", "u1"), ("flags", "u1")], align=True))
        if edges.dtype.itemsize != sizeof(Edge) or splits.dtype.itemsize != sizeof(Split):
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
        splits["value"] = value[nodes_i]
        splits["pair"][:, 1] = edges["z"][left_i]
        splits["pair"][:, 0] = edges["z"][right_i]
        splits["node"] = local[nodes_i]
        splits["right"] = local[right[nodes_i]]
        splits["feature"] = feature[nodes_i]
        splits["slot"] = slot[nodes_i]
        splits["kind"] = kind[nodes_i]
        repeat = edges["prev"][left_i] >= 0
        simple = ~repeat & (edges["redone"][left_i] == 0) & (edges["redone"][right_i] == 0)
        splits["flags"] = np.where(simple, SIMPLE, 0) | np.where(repeat, REPEAT, 0)
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
        leaves = local[leaves_i]
        leaf_start = np.searchsorted(leaves_i, bounds).astype(np.int32)
        t = np.full((MAX_POINTS + 1, MAX_POINTS), 0.5)
        w = np.zeros((MAX_POINTS + 1, MAX_POINTS))
        for q in RULES:
            x, wq = np.polynomial.legendre.leggauss(q)
            t[q, :q] = (x + 1.0) / 2.0
            w[q, :q] = wq / 2.0
        omt = 1.0 - t
        if any(a.ctypes.data % 16 for a in (t, omt, w)):
            raise RuntimeError("quadrature tables are not 16-byte aligned")  # numpy guarantees it on x86-64
        self._value = value
        self._roots = roots
        self._expected = expected
        self._cat_bounds = cat_bounds
        self._cat_bits = cat_bits
        self._kinds = feature_kinds
        self._points = points
        self._edges = edges
        self._inner = <const Split*>cnp.PyArray_DATA(inner)
        self._bottom = <const Split*>cnp.PyArray_DATA(bottom)
        self._inner_start = inner_start
        self._bottom_start = bottom_start
        self._leaves = leaves
        self._leaf_start = leaf_start
        self._t = t
        self._omt = omt
        self._w = w
        self._max_nodes = int((ends - roots).max()) if self.n_trees else 1
        self.max_points = int(points.max()) if self.n_trees else 0
        self._keep = (value, roots, expected, cat_bounds, cat_bits, feature_kinds, points, edges,
                      inner, bottom, inner_start, bottom_start, leaves, leaf_start, t, omt, w)
        self.nbytes = sum(a.nbytes for a in (value, points, edges, inner, bottom, inner_start, bottom_start,
                                              leaves, leaf_start))

    def contributions_into(self, x, double[::1] phi):
        """TreeSHAP contributions of one row into phi (n_features + 1, bias last)."""
        cdef cnp.ndarray arr = np.ascontiguousarray(x, dtype=np.float64)
        cdef const double* row
        cdef int t, k, f, root, q, F = self.n_features
        cdef int m = self._max_nodes
        cdef double total
        cdef double* xt
        cdef double* phiv
        cdef double* scratch
        cdef uint8_t* O
        cdef Tree tr
        if cnp.PyArray_NDIM(arr) != 1 or cnp.PyArray_DIM(arr, 0) != F:
            raise RowShapeError(f"row has shape {np.shape(arr)}; expected ({F},) "
                                "(one value per model feature, NaN for missing)")
        if phi.shape[0] != F + 1:
            raise RowShapeError(f"contribution buffer has {phi.shape[0]} slots; expected {F + 1}")
        row = <const double*>cnp.PyArray_DATA(arr)
        # malloc aligns to 16 bytes; every vector below starts at a multiple of 16.
        phiv = <double*>malloc(((F + 4 * m) * MAX_POINTS + 2 * F + 1) * sizeof(double))
        O = <uint8_t*>malloc(m)
        if phiv == NULL or O == NULL:
            free(phiv)
            free(O)
            raise MemoryError()
        scratch = phiv + F * MAX_POINTS
        xt = scratch + 4 * m * MAX_POINTS
        tr.bits = &self._cat_bits[0]
        tr.bounds = &self._cat_bounds[0]
        with nogil:
            _transform_row(row, xt, &self._kinds[0], F)
            memset(phiv, 0, F * MAX_POINTS * sizeof(double))
            phi[F] = 0.0
            for t in range(self.n_trees):
                # Tree::PredictContrib adds each tree's expected value to the bias first.
                phi[F] += self._expected[t]
                q = self._points[t]
                if q == 0:
                    continue  # a single leaf: only the bias
                root = self._roots[t]
                tr.inner = self._inner + self._inner_start[t]
                tr.n_inner = self._inner_start[t + 1] - self._inner_start[t]
                tr.bottom = self._bottom + self._bottom_start[t]
                tr.n_bottom = self._bottom_start[t + 1] - self._bottom_start[t]
                tr.leaves = &self._leaves[self._leaf_start[t]]
                tr.n_leaves = self._leaf_start[t + 1] - self._leaf_start[t]
                tr.value = &self._value[root]
                tr.edges = &self._edges[root]
                tr.t = <const vec2*>&self._t[q, 0]
                tr.omt = <const vec2*>&self._omt[q, 0]
                tr.w = <const vec2*>&self._w[q, 0]
                _dispatch(&tr, q, xt, <vec2*>phiv, O, scratch, m)
            for f in range(F):
                total = 0.0
                for k in range(MAX_POINTS):
                    total += phiv[f * MAX_POINTS + k]
                phi[f] = total
        free(phiv)
        free(O)


cdef int _link(Py_ssize_t n_nodes, const int32_t[::1] roots, const int32_t[::1] right,
               const int32_t[::1] feature, const uint8_t[::1] internal, const double[::1] counts,
               Edge[::1] edges, int32_t[::1] points) except -1:
    """Fill the edge table and each tree's point count; returns the largest number of
    distinct features on one path."""
    cdef int n_trees = roots.shape[0]
    cdef int t, i, c, a, q, side, f, root, end, deepest = 0, tree_deepest
    cdef int32_t[::1] parent = np.full(n_nodes, -1, dtype=np.int32)
    cdef int32_t[::1] distinct = np.zeros(n_nodes, dtype=np.int32)
    cdef Edge* e
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


cdef inline void _dispatch(const Tree* tr, int q, const double* xt, vec2* phiv, uint8_t* O,
                           double* scratch, int m) noexcept nogil:
    # Four scratch arrays of m nodes each (M, G, T, acc), as lanes of the tree's rule.
    if q == 2:
        _tree(tr, xt, phiv, O, <Lanes2*>scratch, <Lanes2*>scratch + m, <Lanes2*>scratch + 2 * m,
              <Lanes2*>scratch + 3 * m)
    elif q == 4:
        _tree(tr, xt, phiv, O, <Lanes4*>scratch, <Lanes4*>scratch + m, <Lanes4*>scratch + 2 * m,
              <Lanes4*>scratch + 3 * m)
    elif q == 6:
        _tree(tr, xt, phiv, O, <Lanes6*>scratch, <Lanes6*>scratch + m, <Lanes6*>scratch + 2 * m,
              <Lanes6*>scratch + 3 * m)
    elif q == 8:
        _tree(tr, xt, phiv, O, <Lanes8*>scratch, <Lanes8*>scratch + m, <Lanes8*>scratch + 2 * m,
              <Lanes8*>scratch + 3 * m)
    elif q == 12:
        _tree(tr, xt, phiv, O, <Lanes12*>scratch, <Lanes12*>scratch + m, <Lanes12*>scratch + 2 * m,
              <Lanes12*>scratch + 3 * m)
    else:
        _tree(tr, xt, phiv, O, <Lanes16*>scratch, <Lanes16*>scratch + m, <Lanes16*>scratch + 2 * m,
              <Lanes16*>scratch + 3 * m)
