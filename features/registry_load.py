"""Bulk loading of the subscriber registry from JSON Lines or Parquet (``callscreen subscribers load``).

The target is 100k records/s, so the client may spend a few microseconds per record:

* JSON Lines are read in blocks of ``BLOCK_BYTES`` and decoded by msgspec in one call per
  block into a struct without the contract's regex patterns (the patterns cost more than the
  rest of the decoding); ``features/_registry_pack.pyx`` then makes the same checks in C,
  packs the records and hashes the owners. A block with any problem (or a blank line) is
  decoded again line by line with the contract, which names the line and the field.
* Records are sorted by registry bucket in windows of ``WINDOW`` records (a stable sort: a
  later record for a number still replaces an earlier one), so that one HMGET and one HSET
  serve many numbers of a bucket, and written as ``registry.lua`` calls of ``PER_CALL``
  records (a few ms of Redis time each, so screening calls are not stalled for long).
* ``RedisBulk`` sends the calls in Redis wire format, pipelined on one connection from a
  background thread, while the caller decodes and packs the next window.

Within a file a later record for a number replaces the earlier one, as on the
``subscriber-status`` topic; owner counts stay exact (the script reads each old record).
"""

from __future__ import annotations

import datetime as dt
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Protocol

import msgspec
import numpy as np
import numpy.typing as npt
import redis
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from features._registry_pack import (
    OwnerDigest,
    RecordCheckError,
    encode_calls,
    pack_records,
)
from features.contracts import Subscriber, convert, decode
from features.definitions import BIOMETRIC_CODES
from features.errors import ContractError, StoreRecordError, StoreUnavailableError
from features.registry_codec import OwnerHasher

__all__ = ["Packed", "Packer", "RecordCheckError", "RedisBulk", "Unchecked", "load", "load_jsonl", "load_parquet"]

BLOCK_BYTES: Final = 4 << 20  # about 18k records of ~230 bytes
WINDOW: Final = 1_000_000  # records sorted together: ~20 per bucket at 20 % density, 1M numbers (the CLI peaked at 182 MB RSS loading 1M)
PER_CALL: Final = 1000  # records per script call
_BIOMETRIC: Final = {name: int(code) for name, code in BIOMETRIC_CODES.items()}
_UNAVAILABLE: Final = (RedisConnectionError, RedisTimeoutError, BusyLoadingError, OSError)

Timestamp = Annotated[dt.datetime, msgspec.Meta(tz=True)]


class Unchecked(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """``Subscriber`` without its patterns and lengths (``pack_records`` checks those)."""

    msisdn: str
    operator: str
    biometric_status: Literal["verified", "pending", "failed", "unverified"]
    sim_activated_at: Timestamp
    verified_at: Timestamp | None = None
    subscriber_type: Literal["individual", "corporate"] = "individual"
    roaming_country: str | None = None
    owner_ref: str | None = None


_BLOCK_DECODER: Final = msgspec.json.Decoder(list[Unchecked])
_ONE_DECODER: Final = msgspec.json.Decoder(Unchecked)


@dataclass(frozen=True)
class Packed:
    """Packed records in input order (``_registry_pack.pack_records``)."""

    bucket: npt.NDArray[np.int64]
    field: npt.NDArray[np.uint8]
    packed: npt.NDArray[np.uint8]
    length: npt.NDArray[np.uint8]

    def __len__(self) -> int:
        return len(self.bucket)

    @staticmethod
    def concat(parts: Sequence[Packed]) -> Packed:
        if len(parts) == 1:
            return parts[0]
        return Packed(*(np.concatenate([getattr(p, name) for p in parts])
                        for name in ("bucket", "field", "packed", "length")))

    def triples(self) -> list[tuple[str, bytes, bytes]]:
        """(bucket, field, packed record) as ``RedisStore.upsert_packed`` takes them."""
        return [(f"+{b}", bytes((f,)), bytes(p[:n]))
                for b, f, p, n in zip(self.bucket.tolist(), self.field.tolist(), self.packed, self.length.tolist(),
                                      strict=True)]


class Packer:
    """Checks and packs records; operator codes are cached, new ones asked of ``operator_code``."""

    def __init__(self, operator_code: Callable[[str], int], owner_hash: OwnerHasher) -> None:
        self._op_code = operator_code
        self._op_codes: dict[str, int] = {}
        self._digest = OwnerDigest(owner_hash.key)

    def pack(self, records: Sequence[Unchecked | Subscriber], *, check: bool = True) -> Packed:
        """Pack; with ``check`` (records not built by the contract), the first record failing
        one of the contract's pattern or length checks raises ``RecordCheckError(index)``."""
        return Packed(*pack_records(list(records), self._op_codes, self._op_code, self._digest, _BIOMETRIC, check))


class PackedSink(Protocol):
    def operator_code(self, operator: str) -> int: ...
    def upsert_packed(self, records: list[tuple[str, bytes, bytes]]) -> int: ...


class RedisBulk:
    """The fast sink: ``registry.lua`` calls in wire format, pipelined on one connection by a
    background thread (the socket waits release the GIL), so Redis applies one window while
    the caller packs the next. At most one window waits behind the one being sent.

    ``operator_code`` is the store's (``RedisStore.operator_code``); ``prefix`` must be the
    store's key prefix."""

    def __init__(self, client: redis.Redis, operator_code: Callable[[str], int], *, prefix: str = "cs:",
                 per_call: int = PER_CALL) -> None:
        script = _script()
        self.operator_code = operator_code
        self._client = client
        self._per_call = per_call
        self._head = b"".join(_bulk(x) for x in (b"EVAL", script, b"0", prefix.encode(), b"u"))
        self._queue: queue.Queue[list[bytes] | None] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self.total = 0
        self._thread = threading.Thread(target=self._send_all, name="registry-load", daemon=True)
        self._thread.start()

    def put(self, packed: Packed) -> None:
        """Queue a window; blocks while the previous one is still waiting to be sent."""
        order = np.argsort(packed.bucket, kind="stable")
        calls = encode_calls(packed.bucket, packed.field, packed.packed, packed.length, order, self._head, 5,
                             self._per_call)
        while self._error is None:
            try:
                self._queue.put(calls, timeout=0.2)
                return
            except queue.Full:
                continue
        self._raise()

    def close(self) -> int:
        """Wait for every queued call; returns the records the script wrote."""
        while self._thread.is_alive():
            try:
                self._queue.put(None, timeout=0.2)
                break
            except queue.Full:
                continue
        self._thread.join()
        self._raise()
        return self.total

    def _raise(self) -> None:
        exc = self._error
        if exc is None:
            return
        if isinstance(exc, _UNAVAILABLE):
            raise StoreUnavailableError(f"feature store: Redis unavailable ({type(exc).__name__})") from exc
        if isinstance(exc, redis.ResponseError):
            raise StoreRecordError(f"registry script failed: {exc}") from exc
        raise exc

    def _send_all(self) -> None:
        conn: Any = None
        try:
            conn = self._client.connection_pool.get_connection()
            while (calls := self._queue.get()) is not None:
                conn.send_packed_command(calls, check_health=False)
                for _ in calls:
                    reply = conn.read_response()
                    if isinstance(reply, Exception):
                        raise reply
                    self.total += int(reply)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread, raised there
            self._error = exc
            if conn is not None:
                conn.disconnect()
            while True:  # unblock a put() waiting on the queue
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
        finally:
            if conn is not None:
                self._client.connection_pool.release(conn)


def _script() -> bytes:
    from importlib import resources

    return resources.files("features").joinpath("registry.lua").read_bytes()


def _bulk(x: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(x), x)


class _Writer:
    """The sink behind one load: ``RedisBulk`` as is, any other sink through ``upsert_packed``."""

    def __init__(self, sink: RedisBulk | PackedSink) -> None:
        self._sink = sink
        self.total = 0

    def put(self, packed: Packed) -> None:
        if isinstance(self._sink, RedisBulk):
            self._sink.put(packed)
        else:
            self.total += self._sink.upsert_packed(packed.triples())

    def close(self) -> int:
        if isinstance(self._sink, RedisBulk):
            return self._sink.close()
        return self.total


def read_jsonl_blocks(path: Path) -> Iterator[tuple[bytes, int]]:
    """Blocks of whole lines, with the number of each block's first line."""
    line = 1
    rest = b""
    with path.open("rb") as f:
        while chunk := f.read(BLOCK_BYTES):
            data = rest + chunk
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                rest = data
                continue
            block, rest = data[:cut], data[cut:]
            yield block, line
            line += block.count(b"\n")
    if rest:
        yield rest, line


def decode_block(block: bytes, first_line: int) -> tuple[list[Unchecked] | list[Subscriber], bool]:
    """The records of a block of lines, and whether the contract checked them: unchecked on the
    fast path; decoded line by line with the contract when the fast decoding fails (a blank
    line, a bad record), where a bad line raises ContractError naming it."""
    body = block[:-1] if block.endswith(b"\n") else block
    if body:
        try:
            records = _BLOCK_DECODER.decode(b"[" + body.replace(b"\n", b",") + b"]")
        except (msgspec.DecodeError, msgspec.ValidationError):
            pass  # the slow path finds the line
        else:
            if len(records) == body.count(b"\n") + 1:  # else a line held two records, comma-separated
                return records, False
    return contract_lines(block, first_line), True


def contract_lines(block: bytes, first_line: int) -> list[Subscriber]:
    out = []
    for k, line in enumerate(block.split(b"\n")):
        if line.strip():
            try:
                out.append(decode(Subscriber, line))
            except ContractError as exc:
                raise ContractError(f"line {first_line + k}: {exc}", record="subscriber/1", field=exc.field) from None
    return out


def load_jsonl(sink: RedisBulk | PackedSink, path: Path, owner_hash: OwnerHasher) -> int:
    packer = Packer(sink.operator_code, owner_hash)
    writer = _Writer(sink)
    window: list[Packed] = []
    held = 0
    try:
        for block, first in read_jsonl_blocks(path):
            records, checked = decode_block(block, first)
            try:
                packed = packer.pack(records, check=not checked)
            except RecordCheckError:
                packed = packer.pack(contract_lines(block, first), check=False)
            window.append(packed)
            held += len(packed)
            if held >= WINDOW:
                writer.put(Packed.concat(window))
                window, held = [], 0
        if window:
            writer.put(Packed.concat(window))
    finally:
        total = writer.close()
    return total


def load_parquet(sink: RedisBulk | PackedSink, path: Path, owner_hash: OwnerHasher) -> int:
    """Row batches become ``Unchecked`` records (times as UTC), then take the JSON path's packer."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    packer = Packer(sink.operator_code, owner_hash)
    writer = _Writer(sink)
    wanted = [f for f in Unchecked.__struct_fields__]
    rows_before = 0
    try:
        dataset = ds.dataset(str(path), format="parquet")
        names = set(dataset.schema.names)
        for batch in dataset.to_batches(columns=[c for c in wanted if c in names], batch_size=WINDOW):
            columns = []
            for name in batch.schema.names:
                col = batch.column(name)
                if pa.types.is_timestamp(col.type):
                    col = col.cast(pa.timestamp("us", tz="UTC"))
                elif name == "subscriber_type":
                    col = pc.fill_null(col, "individual")
                columns.append(col)
            rows = pa.RecordBatch.from_arrays(columns, names=batch.schema.names).to_pylist()
            for row in rows:  # absent optional values take the contract's defaults
                for key in [k for k, v in row.items() if v is None]:
                    del row[key]
            try:
                records = msgspec.convert(rows, list[Unchecked])
                packed = packer.pack(records)
            except (msgspec.ValidationError, RecordCheckError):
                checked = []
                for k, row in enumerate(rows):
                    try:
                        checked.append(convert(Subscriber, row))
                    except ContractError as exc:
                        raise ContractError(f"row {rows_before + k}: {exc}", record="subscriber/1",
                                            field=exc.field) from None
                packed = packer.pack(checked, check=False)
            writer.put(packed)
            rows_before += len(rows)
    finally:
        total = writer.close()
    return total


def load(sink: RedisBulk | PackedSink, path: Path, owner_hash: OwnerHasher) -> int:
    """Load a .jsonl file or a Parquet file/dataset folder; returns the records written."""
    if path.suffix == ".jsonl":
        return load_jsonl(sink, path, owner_hash)
    return load_parquet(sink, path, owner_hash)
