"""The compiled distinct-in-window kernel equals a brute-force count."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from features._window import distinct_in_window

calls = st.lists(
    # group, time, value (-1 missing), probe
    st.tuples(st.integers(0, 3), st.integers(0, 30), st.integers(-1, 4), st.integers(-1, 4)),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(rows=calls, width=st.integers(0, 12))
def test_kernel_equals_brute_force(rows: list[tuple[int, int, int, int]], width: int) -> None:
    rows = sorted(rows, key=lambda r: (r[0], r[1]))
    g = np.array([r[0] for r in rows], np.int64)
    t = np.array([r[1] for r in rows], np.int64)
    v = np.array([r[2] for r in rows], np.int64)
    p = np.array([r[3] for r in rows], np.int64)
    distinct, own, found = distinct_in_window(g, t, v, p, width, 5)
    for i, (gi, ti, vi, pi) in enumerate(rows):
        seen = {vj for gj, tj, vj, _ in rows if gj == gi and ti - width <= tj < ti and vj >= 0}
        assert distinct[i] == len(seen)
        assert bool(own[i]) == (vi >= 0 and vi in seen)
        assert bool(found[i]) == (pi >= 0 and pi in seen)
