"""Bulk loading of the subscriber registry from JSON Lines or Parquet (``callscreen subscribers load``).

Fast enough for a national registry (the target is 100k records/s): JSON Lines are
validated by msgspec in chunks, Parquet columns are read by pyarrow and validated
column-wise; records go to Redis as packed triples in large Lua calls
(``RedisStore.upsert_packed``). Within a file, a later record for a number replaces the
earlier one, as on the ``subscriber-status`` topic.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Final, Protocol

import msgspec

from features.contracts import Subscriber, convert
from features.definitions import BIOMETRIC_CODES
from features.errors import ContractError
from features.numbering import E164_PATTERN
from features.registry_codec import OwnerHasher, bucket, pack, pack_fields

CHUNK: Final = 200_000  # records per sorted write chunk: about 20 per registry bucket at national density
_E164: Final = re.compile(E164_PATTERN)
_COUNTRY: Final = re.compile(r"^[A-Z]{2}$")
_TYPES: Final = frozenset({"individual", "corporate"})


class PackedSink(Protocol):
    def operator_code(self, operator: str) -> int: ...
    def upsert_packed(self, records: list[tuple[str, bytes, bytes]]) -> int: ...


class _Writer:
    """Writes chunks on one background thread, so that packing the next chunk overlaps
    Redis applying this one (the socket wait releases the GIL). At most two chunks in flight."""

    def __init__(self, sink: PackedSink) -> None:
        self._sink = sink
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="registry-load")
        self._pending: list[Future[int]] = []
        self.total = 0

    def put(self, records: list[tuple[str, bytes, bytes]]) -> None:
        if len(self._pending) >= 2:
            self.total += self._pending.pop(0).result()
        self._pending.append(self._pool.submit(self._sink.upsert_packed, records))

    def close(self) -> int:
        try:
            for f in self._pending:
                self.total += f.result()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
        return self.total


def read_jsonl(path: Path) -> Iterator[list[Subscriber]]:
    """Validated records in chunks; a bad line raises ContractError naming its line number."""
    decoder = msgspec.json.Decoder(list[Subscriber])
    with path.open("rb") as f:
        lines: list[bytes] = []
        first = 1
        for n, line in enumerate(f, 1):
            if line.strip():
                lines.append(line)
            if len(lines) >= CHUNK:
                yield _decode(decoder, lines, first)
                lines, first = [], n + 1
        if lines:
            yield _decode(decoder, lines, first)


def _decode(decoder: msgspec.json.Decoder[list[Subscriber]], lines: list[bytes], first: int) -> list[Subscriber]:
    try:
        return decoder.decode(b"[" + b",".join(lines) + b"]")
    except msgspec.ValidationError:
        pass  # find the line and say which
    except msgspec.DecodeError:
        pass
    for k, line in enumerate(lines):
        try:
            convert(Subscriber, msgspec.json.decode(line))
        except (ContractError, msgspec.DecodeError) as exc:
            raise ContractError(f"line {first + k}: {exc}", record="subscriber/1", field=None) from None
    raise ContractError(f"lines {first}-{first + len(lines) - 1}: not valid subscriber/1", record="subscriber/1",
                        field=None)


def load_jsonl(sink: PackedSink, path: Path, owner_hash: OwnerHasher) -> int:
    writer = _Writer(sink)
    try:
        for chunk in read_jsonl(path):
            records = []
            for s in chunk:
                b, f = bucket(s.msisdn)
                owner = None if s.owner_ref is None else owner_hash(s.owner_ref)
                records.append((b, f, pack(s, sink.operator_code(s.operator), owner)))
            writer.put(records)
    finally:
        total = writer.close()
    return total


def load_parquet(sink: PackedSink, path: Path, owner_hash: OwnerHasher) -> int:
    """Column-wise: each batch's columns become Python lists once, then one pass packs them."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    total = 0
    writer = _Writer(sink)
    try:
        dataset = ds.dataset(str(path), format="parquet")
        wanted = ["msisdn", "operator", "biometric_status", "sim_activated_at", "verified_at",
                  "subscriber_type", "roaming_country", "owner_ref"]
        names = set(dataset.schema.names)
        for batch in dataset.to_batches(columns=[c for c in wanted if c in names], batch_size=CHUNK):
            n = batch.num_rows
            col = {name: batch.column(name) for name in batch.schema.names}

            def pylist(name: str, n: int = n, col: dict[str, pa.Array] = col) -> list[object]:
                return col[name].to_pylist() if name in col else [None] * n

            def millis(name: str, n: int = n, col: dict[str, pa.Array] = col) -> list[int | None]:
                if name not in col:
                    return [None] * n
                ms: list[int | None] = pc.cast(col[name].cast(pa.timestamp("ms", tz="UTC")), pa.int64()).to_pylist()
                return ms

            msisdn, operator, status = pylist("msisdn"), pylist("operator"), pylist("biometric_status")
            kind, roaming, owner = pylist("subscriber_type"), pylist("roaming_country"), pylist("owner_ref")
            activated, verified = millis("sim_activated_at"), millis("verified_at")
            records = []
            for i in range(n):
                m, st, act, k, r = msisdn[i], status[i], activated[i], kind[i] or "individual", roaming[i]
                if not isinstance(m, str) or not _E164.match(m):
                    raise ContractError(f"row {total + i}: field 'msisdn' is not E.164; fix: +77011234567 form",
                                        record="subscriber/1", field="msisdn")
                if st not in BIOMETRIC_CODES or act is None or k not in _TYPES or (
                    r is not None and not _COUNTRY.match(str(r))
                ):
                    # the slow path names the exact field and value
                    convert(Subscriber, {name: col[name][i].as_py() for name in col})
                op = operator[i]
                if not isinstance(op, str) or not op:
                    raise ContractError(f"row {total + i}: field 'operator' is missing", record="subscriber/1",
                                        field="operator")
                o = owner[i]
                b, f = bucket(m)
                records.append((b, f, pack_fields(
                    int(BIOMETRIC_CODES[st]), k == "corporate", sink.operator_code(op), int(act),  # type: ignore[index,arg-type]
                    verified[i], r if isinstance(r, str) else None, None if o is None else owner_hash(str(o)),
                )))
            writer.put(records)
            total += n
    finally:
        written = writer.close()
    return written


def load(sink: PackedSink, path: Path, owner_hash: OwnerHasher) -> int:
    """Load a .jsonl file or a Parquet file/dataset folder; returns the records written."""
    if path.suffix == ".jsonl":
        return load_jsonl(sink, path, owner_hash)
    return load_parquet(sink, path, owner_hash)
