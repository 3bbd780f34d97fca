/* One tree's exact TreeSHAP (models/_treeshap.pyx), on vectors of CS_V: included
   twice by that module, once with CS_V = cs_v4 (four doubles: AVX2 and baseline
   copies) and once with CS_V = cs_v8 (eight doubles: the AVX-512 copy). The
   includer defines CS_V, CS_TREE_BODY (the function's name) and the types and
   constants of _treeshap.pyx's C block; there is deliberately no include guard. */

/* Adds one tree's contributions to phi (CS_MAX_POINTS doubles per feature, one per
   point; the caller sums them). G, T: scratch of U vectors per local node (one more
   node than the largest tree: the dummy, see cs_rare); O and K: one byte and one
   double per local node, O[dummy] = 1 and K[dummy] = 0; dec: the tree's decisions
   (inner splits, then bottom).

   Chain (scalar, level order, only the splits whose feature is split again below):
   O[c], the combined one fraction of the edge into c, and K[c], the sum of the edge
   coefficients (O - Z) - (Op - Zp) from c up the chain of splits on that feature,
   which a later split on it multiplies its correction by (see the way up).

   Down (level order): the edge into c multiplies G by m_c = z_c + O_c s, O_c the
   row's way there (over the previous factor Zp + Op s, and with the combined Z_c and
   O_c, when the feature was split on above), and G[root] holds the quadrature
   weights, so that a sum over points is an integral.
   Up (reverse level order): T[n] = sum over children m_c * T[c]; the edge into c then
   adds (O_c - Z_c) * G[parent] * T[c] to its feature.

   Only the split's kind (simple or rare, fixed by the model) is a branch; the row's
   ways are loads and masks, so a row cannot make a branch mispredict. U is a
   constant at every call site (the cs_shap_* wrappers), so each per-point loop is U
   straight vector operations. */
static inline __attribute__((always_inline)) void CS_TREE_BODY(
        const cs_tree* tr, const uint8_t* __restrict dec, double* __restrict phi, uint8_t* __restrict O,
        CS_V* __restrict G, CS_V* __restrict T, double* __restrict K, const int U) {
    const uint32_t S = (uint32_t)(U * sizeof(CS_V));  /* bytes per node */
    const cs_rare* __restrict r = tr->rare;  /* the next rare split's record, in kernel order */
    const cs_rare* __restrict r_up = tr->rare_up;  /* the way up walks its own records backwards */
    const double* __restrict rcp = tr->rcp;
    const cs_inner* __restrict inner = tr->inner;
    const cs_bottom* __restrict bottom = tr->bottom;
    const cs_leaf* __restrict leaves = tr->leaves;
    const CS_V* __restrict pw = (const CS_V*)tr->pw;
    const CS_V* __restrict tpw = (const CS_V*)tr->tpw;
    const uint32_t n_inner = (uint32_t)tr->n_inner, n_bottom = (uint32_t)tr->n_bottom;
    const uint32_t n_leaves = (uint32_t)tr->n_leaves;
    const uint8_t* __restrict dec_bottom = dec + n_inner;
    CS_V sk[4];
    for (int u = 0; u < U; u++) {
        sk[u] = ((const CS_V*)tr->s)[u];
        G[u] = ((const CS_V*)tr->w)[u];
    }
    /* ---- chain: O and K below the splits whose feature is split again ---- */
    for (int32_t k = 0; k < tr->n_chain; k++) {
        const cs_rare* c = tr->chain + k;
        uint32_t left = dec[c->j], Op = O[c->prev];
        double dp = (double)Op - c->Zp, kp = K[c->prev];
        for (int side = 0; side < 2; side++) {
            uint32_t Oc = Op & (left ^ (uint32_t)side);
            O[c->child[side]] = (uint8_t)Oc;
            K[c->child[side]] = (((double)Oc - c->Z[side]) - dp) + kp;
        }
    }
    /* ---- down: G of every node below an inner split ---- */
    for (uint32_t j = 0; j < n_inner; j++) {
        const cs_inner* sp = inner + j;
        uint32_t left = dec[j];
        uint32_t off = sp->off, L = off + S, R = sp->roff;
        const CS_V* gi = CS_AT(G, off);
        if (__builtin_expect(sp->flags & CS_SIMPLE, 1)) {
            /* Hot child h: G (z_h + s); cold child: G z_c. Both are written, a leaf's G
               is never read: no branch on the row. */
            uint32_t h = cs_pick(left, L, R), c = L ^ R ^ h;
            double zh = sp->pair[left], zc = sp->pair[left ^ 1];
            CS_V* gh = CS_AT(G, h);
            CS_V* gc = CS_AT(G, c);
            for (int u = 0; u < U; u++) {
                CS_V g = gi[u];
                gh[u] = zh * g + sk[u] * g;
                gc[u] = zc * g;
            }
            continue;
        }
        /* Repeated: the edge factor is m_c = (Y + O_c s) / F with, when the row
           followed the previous split on the feature (Op = 1), Y = Z_c and F = Zp + s,
           else Y = z_c and F = 1 (the 1 / F rows are tables). */
        uint32_t Op = O[r->prev];
        const CS_V* f = CS_AT(rcp, r->down[Op]);
        for (int side = 0; side < 2; side++) {
            double Y = r->K[side][Op], oo = (double)(Op & (left ^ (uint32_t)side));
            CS_V* gc = CS_AT(G, side ? R : L);
            for (int u = 0; u < U; u++) gc[u] = gi[u] * ((Y + oo * sk[u]) * f[u]);
        }
        r++;
    }
    /* ---- up ---- */
    /* Bottom splits first (their T depends on nothing else). With k distinct features
       above the split, its leaves' T are v (1 - t)^(k + 1), so
       T = (1 - t)^(k + 1) E + t (1 - t)^k v_h, and the edges add
       G (1 - t)^(k + 1) (v_h - E). */
    for (uint32_t j = 0; j < n_bottom; j++) {
        const cs_bottom* bp = bottom + j;
        uint32_t left = dec_bottom[j];
        double vh = bp->pair[left], E = bp->E, sd = vh - E;
        const CS_V* a = CS_AT(pw, bp->pow + S);
        const CS_V* b = CS_AT(tpw, bp->pow);
        CS_V* out = CS_AT(phi, bp->out);
        const CS_V* gi = CS_AT(G, bp->off);
        CS_V* ti = CS_AT(T, bp->off);
        for (int u = 0; u < U; u++) {
            out[u] += (gi[u] * a[u]) * sd;
            ti[u] = a[u] * E + b[u] * vh;
        }
    }
    for (uint32_t j = 0; j < n_leaves; j++) {
        const cs_leaf* lf = leaves + j;
        const CS_V* a = CS_AT(pw, lf->pow);
        CS_V* tl = CS_AT(T, lf->off);
        for (int u = 0; u < U; u++) tl[u] = lf->value * a[u];
    }
    for (uint32_t j = n_inner; j-- > 0;) {
        const cs_inner* sp = inner + j;
        uint32_t left = dec[j];
        uint32_t off = sp->off, L = off + S, R = sp->roff;
        CS_V* out = CS_AT(phi, sp->out);
        CS_V* ti = CS_AT(T, off);
        if (__builtin_expect(sp->flags & CS_UP_SIMPLE, 1)) {
            /* No split on this feature above it, z_h + z_c = 1 (splits on it below
               add their part themselves, see the rare case). With
               d = T_h - T_c: T = (z_h + s) T_h + z_c T_c = T_c + z_h d + s T_h, and
               the edges add G ((1 - z_h) T_h - z_c T_c) = G_c d (G_c = z_c G). */
            uint32_t h = cs_pick(left, L, R), c = L ^ R ^ h;
            double zh = sp->pair[left];
            const CS_V* th = CS_AT(T, h);
            const CS_V* tc = CS_AT(T, c);
            const CS_V* gc = CS_AT(G, c);
            for (int u = 0; u < U; u++) {
                CS_V d = th[u] - tc[u];
                ti[u] = sk[u] * th[u] + (zh * d + tc[u]);
                out[u] += gc[u] * d;
            }
            continue;
        }
        /* Rare: a feature split again on the path, or covers that do not add up. For
           the edge into c, R_c = sum over the leaves below of value * G_leaf / (the
           leaf's final factor of this feature), and the edge adds coef_c R_c, coef_c =
           (O_c - Z_c) - (Op - Zp). Leaves with no later split on it give
           G[i] / F_prev * T[c] (F_prev: the factor at the previous split, 1 if none);
           the others come in through the later splits. The edge's leaves enter the R of
           every earlier edge on the feature up the chain, as their R here instead of
           their G / F_prev there: so this split adds that difference times K[prev]
           (the chain's coefficients, summed by the chain pass) directly, and no split
           waits on corrections from below. (Scaled: G T is the unscaled product across
           a new feature's edge; across a repeated one the (1 - t) of F_prev cancels it.)
           Without a previous split, prev is the dummy node (O = 1, Zp = 1,
           1 / F_prev = 1, K = 0). */
        r_up--;
        uint32_t Op = O[r_up->prev];
        const CS_V* fd = CS_AT(rcp, r_up->down[Op]);  /* 1 / F (the edge factors, as on the way down) */
        const CS_V* f = CS_AT(rcp, r_up->up[Op]);     /* 1 / F_prev */
        const CS_V* gi = CS_AT(G, off);
        double dp = (double)Op - r_up->Zp, kp = K[r_up->prev];
        CS_V half[4];
        for (int side = 0; side < 2; side++) {
            double oo = (double)(Op & (left ^ (uint32_t)side));
            double Y = r_up->K[side][Op], coef = (oo - r_up->Z[side]) - dp;
            const CS_V* tc = CS_AT(T, side ? R : L);
            for (int u = 0; u < U; u++) {
                CS_V m = (Y + oo * sk[u]) * fd[u];
                CS_V gx = gi[u] * f[u];
                CS_V rr = gx * tc[u];
                out[u] += coef * rr + kp * (rr - gx * m * tc[u]);
                if (side) ti[u] = half[u] + m * tc[u];
                else half[u] = m * tc[u];
            }
        }
    }
}
