"""A small closed-loop HTTP/1.1 keep-alive load client for the API tests (raw asyncio streams).

httpx costs a millisecond or more per request on a loaded 2-core machine, which would
swamp the latencies these tests bound; this client costs tens of microseconds.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any


async def run(
    port: int, path: str, body: Callable[[], dict[str, Any]], *, seconds: float, conns: int, key: str
) -> list[tuple[int, float, dict[str, Any]]]:
    """Send ``body()`` to ``path`` from ``conns`` connections for ``seconds``; (status, ms, json) per answer."""
    out: list[tuple[int, float, dict[str, Any]]] = []
    stop = time.monotonic() + seconds

    async def one() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.monotonic() < stop:
                payload = json.dumps(body()).encode()
                head = (
                    f"POST {path} HTTP/1.1\r\nHost: t\r\nX-API-Key: {key}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
                ).encode()
                t0 = time.perf_counter()
                writer.write(head + payload)
                raw = await reader.readuntil(b"\r\n\r\n")
                lines = raw.decode("latin-1").split("\r\n")
                status = int(lines[0].split()[1])
                length = next(int(v) for k, _, v in (h.partition(":") for h in lines[1:]) if k.lower() == "content-length")
                data = await reader.readexactly(length)
                out.append((status, (time.perf_counter() - t0) * 1000, json.loads(data)))
        finally:
            writer.close()

    await asyncio.gather(*(one() for _ in range(conns)))
    return out
