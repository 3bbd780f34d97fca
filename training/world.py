"""The simulated population: numbers, subscribers, devices, cells and the contact graph.

Everything that does not change from day to day lives here, drawn once from the seed.
Calls are drawn per day by :mod:`training.behaviour` (legitimate) and
:mod:`training.typologies` (fraud). Numbers are entity ids into one table so that the
day loop works on integer arrays and turns them into strings only when writing.

Fraud SIMs are drawn from the same number ranges, the same IMEI generator and the same
id counters as everybody else: nothing in an identifier encodes the label.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

OPERATORS: tuple[str, ...] = ("kcell", "beeline", "tele2")
OPERATOR_SHARE = np.array([0.42, 0.36, 0.22])
# Kazakh mobile ranges (CONTRACTS.md); portability means the range does not name the operator.
KZ_MOBILE_ABC = np.array([700, 701, 702, 705, 707, 708, 747, 771, 775, 776, 777, 778])
KZ_FIXED_ABC = np.array([727, 717, 721, 712, 718, 725])  # Almaty, Astana, Karaganda, Atyrau, Pavlodar, Shymkent
KZ_NONGEO_ABC = np.array([750, 751, 760])
# Foreign ranges: relatives abroad and the premium ranges wangiri campaigns rent.
RELATIVE_PREFIXES = ("+7916", "+7903", "+7925", "+90532", "+49151", "+82105", "+86139", "+99890", "+996555")
PREMIUM_PREFIXES = ("+88216", "+8819", "+37181", "+23276", "+22507", "+21629", "+4233")
ROAMING_COUNTRIES = ("TR", "RU", "AE", "DE", "KR", "CN", "UZ", "TH", "GE")

GROUPS: tuple[str, ...] = (
    "normal", "courier", "taxi", "call_centre", "service", "elderly", "roamer",
    "relative_abroad", "business", "new_subscriber", "fraud",
)
G = {name: i for i, name in enumerate(GROUPS)}
TYPOLOGIES: tuple[str, ...] = ("legit", "spoofing", "vishing", "simbox", "wangiri", "robocall")
T = {name: i for i, name in enumerate(TYPOLOGIES)}
INGRESS: tuple[str, ...] = ("mobile", "fixed", "international", "voip")
I = {name: i for i, name in enumerate(INGRESS)}
BIOMETRIC: tuple[str, ...] = ("verified", "pending", "failed", "unverified")
SHORT_CODES: tuple[str, ...] = ("112", "102", "103", "1414", "7575", "505")

DAY_MS = 86_400_000


@dataclass(frozen=True)
class WorldParams:
    """Knobs of one world. ``shift`` perturbs behaviour for held-out worlds (0 = defaults)."""

    subscribers: int = 50_000
    days: int = 30
    start: str = "2026-10-01"
    fraud_scale: float = 1.0
    shift: float = 0.0


@dataclass
class Registry:
    """Columns of the subscriber registry (one row per SIM the operators hold)."""

    entity: list[np.ndarray] = field(default_factory=list)
    biometric: list[np.ndarray] = field(default_factory=list)
    verified_at: list[np.ndarray] = field(default_factory=list)  # epoch ms, -1 = none
    activated_at: list[np.ndarray] = field(default_factory=list)
    corporate: list[np.ndarray] = field(default_factory=list)
    roaming: list[np.ndarray] = field(default_factory=list)  # index into ROAMING_COUNTRIES, -1 = home
    owner: list[np.ndarray] = field(default_factory=list)  # owner id, -1 = none


class World:
    """Number table plus per-entity attributes, grown by :meth:`add_numbers`."""

    def __init__(self, params: WorldParams, rng: np.random.Generator) -> None:
        self.params = params
        self.rng = rng
        self.start_ms = int(np.datetime64(params.start, "ms").astype(np.int64))
        self.numbers: list[str] = []
        self.group: list[np.ndarray] = []
        self.operator: list[np.ndarray] = []  # -1 for numbers no KZ operator holds
        self.registry = Registry()
        self.imeis: list[str] = []
        self.cells: list[str] = []
        self._used_national: set[int] = set()
        self._owner_counter = 0
        self._imei_pool = self._draw_imeis(params.subscribers * 2 + 20_000)
        self._imei_next = 0

    # -- numbers ---------------------------------------------------------------------------

    def _unique_national(self, abc: np.ndarray, n: int) -> np.ndarray:
        out: list[int] = []
        while len(out) < n:
            draw = self.rng.choice(abc, n * 2) * 10_000_000 + self.rng.integers(0, 10_000_000, n * 2)
            for v in np.unique(draw).tolist():
                if v not in self._used_national:
                    self._used_national.add(v)
                    out.append(v)
        picked = np.array(out[: len(out)])
        self.rng.shuffle(picked)
        for v in picked[n:].tolist():
            self._used_national.discard(v)
        return picked[:n]

    def draw_kz(self, kind: str, n: int) -> list[str]:
        """``n`` fresh unique Kazakh numbers of a kind (mobile/fixed/nongeo), not yet in the table."""
        abc = {"mobile": KZ_MOBILE_ABC, "fixed": KZ_FIXED_ABC, "nongeo": KZ_NONGEO_ABC}[kind]
        return [f"+7{v}" for v in self._unique_national(abc, n).tolist()]

    def draw_foreign(self, prefixes: tuple[str, ...], n: int) -> list[str]:
        pre = self.rng.choice(len(prefixes), n)
        digits = self.rng.integers(1_000_000, 9_999_999, n)
        return list(dict.fromkeys(f"{prefixes[p]}{d}" for p, d in zip(pre.tolist(), digits.tolist())))

    def add_numbers(self, numbers: list[str], group: int | np.ndarray, operator: int | np.ndarray = -1) -> np.ndarray:
        """Append numbers to the table; returns their entity ids."""
        first = len(self.numbers)
        self.numbers.extend(numbers)
        n = len(numbers)
        self.group.append(np.broadcast_to(np.asarray(group, np.int8), (n,)).copy())
        self.operator.append(np.broadcast_to(np.asarray(operator, np.int8), (n,)).copy())
        return np.arange(first, first + n, dtype=np.int64)

    def register(
        self,
        ids: np.ndarray,
        *,
        biometric: np.ndarray,
        activated_at: np.ndarray,
        verified_at: np.ndarray,
        corporate: bool | np.ndarray = False,
        roaming: np.ndarray | None = None,
        owner: np.ndarray | None = None,
    ) -> None:
        """Put SIMs into the operators' registry."""
        n = len(ids)
        r = self.registry
        r.entity.append(ids)
        r.biometric.append(np.asarray(biometric, np.int8))
        r.activated_at.append(np.asarray(activated_at, np.int64))
        r.verified_at.append(np.asarray(verified_at, np.int64))
        r.corporate.append(np.broadcast_to(np.asarray(corporate, bool), (n,)).copy())
        r.roaming.append(np.full(n, -1, np.int8) if roaming is None else np.asarray(roaming, np.int8))
        r.owner.append(self.new_owners(n) if owner is None else np.asarray(owner, np.int64))

    def new_owners(self, n: int) -> np.ndarray:
        ids = np.arange(self._owner_counter, self._owner_counter + n, dtype=np.int64)
        self._owner_counter += n
        return ids

    # -- devices and cells -----------------------------------------------------------------

    def _draw_imeis(self, n: int) -> np.ndarray:
        # 8-digit type allocation code from a handful of popular models, then a serial.
        tacs = self.rng.integers(35_000_000, 35_999_999, 400)
        return self.rng.choice(tacs, n) * 10_000_000 + self.rng.integers(0, 10_000_000, n)

    def new_devices(self, n: int) -> np.ndarray:
        """Indices into :attr:`imeis` of ``n`` new devices."""
        if self._imei_next + n > len(self._imei_pool):
            self._imei_pool = np.concatenate([self._imei_pool, self._draw_imeis(n + 10_000)])
        vals = self._imei_pool[self._imei_next : self._imei_next + n]
        self._imei_next += n
        first = len(self.imeis)
        self.imeis.extend(str(v) for v in vals.tolist())
        return np.arange(first, first + n, dtype=np.int32)

    def make_cells(self, per_operator: int) -> np.ndarray:
        """Cell-id strings ``<mcc-mnc>-<lac>-<ci>``; returns the first cell index per operator."""
        mnc = {"kcell": "40102", "beeline": "40101", "tele2": "40177"}
        self.cells_per_op = per_operator
        starts = []
        for op in OPERATORS:
            starts.append(len(self.cells))
            lac = self.rng.integers(1000, 9999, per_operator)
            ci = self.rng.integers(10000, 65535, per_operator)
            self.cells.extend(f"{mnc[op]}-{a}-{b}" for a, b in zip(lac.tolist(), ci.tolist()))
        self.cell_start = np.array(starts, np.int32)
        return self.cell_start

    def cell_of(self, entity: int, offset: int) -> int:
        """The cell at ``offset`` on the network of ``entity``'s operator (a site serves every operator)."""
        return int(self.cell_start[int(self.operator_of[entity])] + offset % self.cells_per_op)

    # -- finalised views -------------------------------------------------------------------

    def freeze(self) -> None:
        """Concatenate the growing attribute lists into arrays."""
        self.group_of = np.concatenate(self.group)
        self.operator_of = np.concatenate(self.operator)


def ms_in_days(world: World, day: float) -> int:
    return world.start_ms + int(day * DAY_MS)
