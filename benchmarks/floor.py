"""The physical floor of a tree walk on this CPU: the latency of one dependent load.

A tree walk is a chain of dependent loads (node -> feature value -> next node), so
one row costs at least ``nodes visited x dependent-load latency`` if walked as one
chain. We measure that latency with a pointer chase over a random cycle through a
buffer the size of the model's node array (the working set a walk touches), in C,
compiled here with the system compiler (the benchmark may use one; the scorer does not).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

CACHE = Path(__file__).parent / ".cache"

_SOURCE = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
/* usage: chase BYTES STEPS -> prints ns per dependent load (one 64-byte line per hop) */
int main(int argc, char** argv) {
    size_t bytes = strtoull(argv[1], 0, 10), steps = strtoull(argv[2], 0, 10);
    size_t n = bytes / 64; if (n < 2) n = 2;
    size_t* buf = aligned_alloc(64, n * 64);
    size_t* perm = malloc(n * sizeof(size_t));
    for (size_t i = 0; i < n; i++) perm[i] = i;
    srand(1);
    for (size_t i = n - 1; i > 0; i--) { size_t j = rand() % (i + 1); size_t t = perm[i]; perm[i] = perm[j]; perm[j] = t; }
    for (size_t i = 0; i < n; i++) buf[perm[i] * 8] = perm[(i + 1) % n] * 8;
    size_t p = 0;
    for (size_t i = 0; i < n * 4; i++) p = buf[p];          /* warm the cache */
    struct timespec a, b;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
    for (size_t i = 0; i < steps; i++) p = buf[p];
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
    double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
    printf("%.3f %zu\n", ns / steps, p);
    return 0;
}
"""


def load_latency_ns(working_set_bytes: int, steps: int = 20_000_000) -> float:
    """Nanoseconds per dependent load over a working set of this size (median of 5 runs)."""
    CACHE.mkdir(exist_ok=True)
    binary = CACHE / "chase"
    if not binary.exists():
        source = CACHE / "chase.c"
        source.write_text(_SOURCE)
        subprocess.run(["cc", "-O2", "-o", str(binary), str(source)], check=True)
    runs = sorted(
        float(subprocess.run([str(binary), str(working_set_bytes), str(steps)], check=True,
                             capture_output=True, text=True).stdout.split()[0])
        for _ in range(5)
    )
    return runs[2]
