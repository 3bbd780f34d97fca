"""How long the online store keeps what, in event time and in wall-clock time.

Two clocks, on purpose. *Trimming* uses event time (CDR ``start_time``): an entry is
dropped once it is older than the retention before the newest event of its structure,
so that a simulated world from last year or next year behaves like a live one and a
replay gives the same state. *Expiry* (Redis TTL) uses the wall clock: a structure not
written for its TTL is gone, which bounds memory for numbers that fall silent.

The event-time retentions exceed the longest window by one hour: a record that arrives
up to an hour late (out of order) still sees its full window.

Every call reads its caller's full 24 h (there is no cap on the calls read): the caller's
own calls come back from Redis as one packed string and the windows are computed on the
client (``features/_online.pyx``), linear in the calls in the window. A robocaller with
4,000 calls in 20 h cost, per call, 40-53 us of client CPU and 15-19 (screen) to 38-42
(process) us of Redis CPU in ``benchmarks/store.py`` (two runs, load average 4-5),
against 1-2 ms of Redis time per call when the script scanned up to 512 of its calls
(see benchmarks/README.md).
"""

from __future__ import annotations

from typing import Final

from features.definitions import DAY_MS, HISTORY_MS, HOUR_MS

LATENESS_MS: Final = HOUR_MS
EVENT_RETAIN_MS: Final = DAY_MS + LATENESS_MS
"""Per-call events (outgoing, inbound, numbers per IMEI): the 24 h windows plus lateness."""
RELATION_RETAIN_MS: Final = HISTORY_MS + LATENESS_MS
"""Last contact per (caller, callee) pair: the 30-day history plus lateness."""
EVENT_TTL_MS: Final = DAY_MS + LATENESS_MS
RELATION_TTL_MS: Final = HISTORY_MS + DAY_MS
