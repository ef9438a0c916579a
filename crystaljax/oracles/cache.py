"""Persistent result cache of host oracles (SQLite in WAL mode).

Key = canonical structure key + hash of the oracle settings.

The canonical structure key makes symmetry-equivalent crystals share one entry
(e.g. the decorations of one template that a space-group operation, an origin
shift or a site permutation maps onto each other). It is built in two stages:

1. a *class key*: spglib's space group, composition, sizes of the
   symmetry-equivalent site orbits per element, and volume per atom (rounded);
2. within a class, pymatgen's ``StructureMatcher`` (no rescaling, tight
   tolerances) decides which stored representative the crystal equals; a
   crystal matching none becomes a new representative.

Only outcomes of the crystal under the oracle's settings are stored
(:func:`is_cacheable`; ``NO_MINIMUM``, a crystal without an E(V) minimum, is one): a
program that could not start, a job that overran the executor's deadline or an error
of crystaljax's own code belongs to the machine, not the crystal, and is computed again
next time. A TIMEOUT is stored with the time
limit it ran under and answers only lookups whose limit is not larger. Every stored
result, failures included, is committed before :meth:`ResultCache.put` returns, so a
killed process loses nothing it computed. Counters (hits,
misses, DFT seconds, failures by class) are kept per process in
:class:`CacheStats`, and :meth:`ResultCache.totals` reads totals from the file.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import math
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from crystaljax.oracles.base import OracleResult, Status

_SCHEMA = """
CREATE TABLE IF NOT EXISTS representatives (
    class_key TEXT NOT NULL,
    idx INTEGER NOT NULL,
    structure TEXT NOT NULL,
    PRIMARY KEY (class_key, idx)
);
CREATE TABLE IF NOT EXISTS results (
    settings_hash TEXT NOT NULL,
    structure_key TEXT NOT NULL,
    property TEXT NOT NULL,
    value REAL,
    status INTEGER NOT NULL,
    reason TEXT NOT NULL,
    seconds REAL NOT NULL,
    extra TEXT NOT NULL,
    formula TEXT NOT NULL,
    created REAL NOT NULL,
    time_limit REAL,
    PRIMARY KEY (settings_hash, structure_key)
);
"""

#: ``extra`` flags of a result that belongs to the machine, not the crystal (never cached):
#: the program could not be started; the job overran the executor's deadline.
MACHINE_FAILURE_FLAGS = ("not_started", "executor_deadline")


def is_cacheable(result: OracleResult) -> bool:
    """Whether ``result`` is an outcome of the crystal under its settings (may be cached).

    Not cacheable: ORACLE_ERROR (an error of crystaljax's own code or of the executor)
    and results flagged with one of :data:`MACHINE_FAILURE_FLAGS`. A TIMEOUT is
    cacheable, but :meth:`ResultCache.get` reuses it only under a time limit that is
    not larger than the one it ran under.
    """
    if Status(result.status) == Status.ORACLE_ERROR:
        return False
    return not any(result.extra.get(flag) for flag in MACHINE_FAILURE_FLAGS)


#: reason of a program that could not be started, as written before ``not_started`` existed
_LEGACY_NOT_STARTED = "cannot start "


def _reusable(result: OracleResult, stored_limit: float | None, time_limit: float | None) -> bool:
    """Whether a stored result may answer a lookup (entries that older versions stored for
    machine failures are skipped too)."""
    if not is_cacheable(result) or result.reason.startswith(_LEGACY_NOT_STARTED):
        return False
    return result.status != Status.TIMEOUT or timeout_applies(stored_limit, time_limit)


def timeout_applies(stored_limit: float | None, time_limit: float | None) -> bool:
    """A TIMEOUT stored under ``stored_limit`` (s) answers a run limited to ``time_limit``
    only when both are known and ``time_limit <= stored_limit``."""
    return stored_limit is not None and time_limit is not None and time_limit <= stored_limit


#: (ltol, stol, angle_tol) of the ``StructureMatcher`` that decides equivalence
MATCH_TOLERANCES = (0.01, 0.02, 0.5)


def structure_matcher(match_tolerances: tuple[float, float, float] = MATCH_TOLERANCES
                      ) -> StructureMatcher:
    """The matcher of equivalent crystals: no rescaling, no supercells, tight tolerances."""
    ltol, stol, angle_tol = match_tolerances
    return StructureMatcher(ltol=ltol, stol=stol, angle_tol=angle_tol, primitive_cell=True,
                            scale=False, attempt_supercell=False)


def settings_hash(settings: Any) -> str:
    """A stable 16-hex-digit hash of JSON-serialisable ``settings``."""
    blob = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def class_key(structure: Structure, symprec: float = 1e-3) -> str:
    """Symmetry class of ``structure`` (equal for symmetry-equivalent crystals).

    Built from spglib's symmetry dataset: space-group number, composition,
    sorted (element, orbit size) pairs of the symmetry-equivalent site orbits
    (invariant under the choice of origin, unlike Wyckoff letters) and the
    volume per atom rounded to 0.01 Å^3.
    """
    try:
        analyzer = SpacegroupAnalyzer(structure, symprec=symprec)
        data = analyzer.get_symmetry_dataset()
        number = int(data.number)
        orbits = collections.Counter(int(i) for i in data.equivalent_atoms)
        wyckoffs = sorted((structure[i].specie.symbol, n) for i, n in orbits.items())
    except Exception:  # spglib can fail on degenerate cells; fall back to composition only
        number, wyckoffs = 0, []
    parts = {
        "sg": number,
        "formula": structure.composition.formula,
        "orbits": wyckoffs,
        "vpa": round(structure.volume / len(structure), 2),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def _round_floats(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _round_floats(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_round_floats(v) for v in value]
    if hasattr(value, "tolist"):
        return _round_floats(value.tolist())
    return value


@dataclasses.dataclass
class CacheStats:
    """Counters of this process.

    Attributes:
      hits: lookups answered from the cache.
      misses: lookups that needed a computation.
      dft_seconds: wall time of the computations stored by this process (s).
      failures: count of stored failed results by status name.
    """

    hits: int = 0
    misses: int = 0
    dft_seconds: float = 0.0
    failures: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    @property
    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def as_dict(self) -> dict:
        return {
            "hits": self.hits, "misses": self.misses, "hit_ratio": self.hit_ratio,
            "dft_seconds": self.dft_seconds, "failures": dict(self.failures),
        }


class ResultCache:
    """SQLite cache of :class:`OracleResult` keyed by (settings hash, structure key).

    Safe for several processes at once (WAL journal, one transaction per write)
    and for threads of one process (one connection guarded by a lock).

    Args:
      path: the database file (created with its parent directory).
      symprec: symmetry tolerance (Å) of the class key.
      match_tolerances: (ltol, stol, angle_tol) of ``StructureMatcher``.
    """

    def __init__(
        self,
        path: str | Path,
        symprec: float = 1e-3,
        match_tolerances: tuple[float, float, float] = MATCH_TOLERANCES,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.symprec = symprec
        self._matcher = structure_matcher(match_tolerances)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, timeout=60.0, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        self._conn.commit()
        self._migrate()
        self.stats = CacheStats()
        self._closed = False

    def _migrate(self) -> None:
        """Add the ``time_limit`` column to a file written before it existed."""
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(results)")}
        if "time_limit" in columns:
            return
        try:
            with self._conn:
                self._conn.execute("ALTER TABLE results ADD COLUMN time_limit REAL")
        except sqlite3.OperationalError as exc:  # another process added it first
            if "duplicate column" not in str(exc):
                raise

    def close(self) -> None:
        """Close the database (safe to call more than once)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    def structure_key(self, structure: Structure) -> str:
        """Canonical key: ``<class key>#<representative index>`` (registers new ones)."""
        ckey = class_key(structure, self.symprec)
        with self._lock:
            rows = self._conn.execute(
                "SELECT idx, structure FROM representatives WHERE class_key = ? ORDER BY idx",
                (ckey,),
            ).fetchall()
            for idx, text in rows:
                if self._matcher.fit(structure, Structure.from_dict(json.loads(text))):
                    return f"{ckey}#{idx}"
            idx = len(rows)
            with self._conn:
                self._conn.execute(
                    "INSERT OR IGNORE INTO representatives VALUES (?, ?, ?)",
                    (ckey, idx, json.dumps(structure.as_dict())),
                )
            # Another process may have taken this index for a different crystal.
            stored = self._conn.execute(
                "SELECT structure FROM representatives WHERE class_key = ? AND idx = ?",
                (ckey, idx),
            ).fetchone()[0]
        if self._matcher.fit(structure, Structure.from_dict(json.loads(stored))):
            return f"{ckey}#{idx}"
        return self.structure_key(structure)

    def get(self, key: str, settings: str, time_limit: float | None = None) -> OracleResult | None:
        """The stored result for (structure key, settings hash), counting a hit or miss.

        ``time_limit``: the caller's limit per program run (s); a stored TIMEOUT is
        returned only when it ran under a limit at least as large (:func:`timeout_applies`),
        else the lookup is a miss.
        """
        with self._lock:
            row = self._conn.execute(
                "SELECT value, status, reason, extra, time_limit FROM results "
                "WHERE settings_hash = ? AND structure_key = ?",
                (settings, key),
            ).fetchone()
        result = None
        if row is not None:
            value, status, reason, extra, stored_limit = row
            value = float("nan") if value is None else float(value)
            result = OracleResult(value, Status(status), reason, 0.0,
                                  {**json.loads(extra), "cached": True})
            if not _reusable(result, stored_limit, time_limit):
                result = None
        if result is None:
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        return result

    def put(
        self, key: str, settings: str, property_name: str, result: OracleResult, formula: str = "",
        time_limit: float | None = None,
    ) -> bool:
        """Store ``result`` and commit before returning (overwrites an older entry).

        ``time_limit``: the limit per program run (s) the result was computed under
        (needed for a TIMEOUT to be reused). Returns False, storing nothing, for a result
        that is not :func:`is_cacheable`.
        """
        if not is_cacheable(result):
            return False
        value = result.value if math.isfinite(result.value) else None
        limit = float(time_limit) if time_limit is not None else None
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT OR REPLACE INTO results (settings_hash, structure_key, property, value, "
                "status, reason, seconds, extra, formula, created, time_limit) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    settings, key, property_name, value, int(result.status), result.reason,
                    float(result.seconds), json.dumps(_round_floats(result.extra)), formula,
                    time.time(), limit,
                ),
            )
        self.stats.dft_seconds += float(result.seconds)
        if result.status != Status.OK:
            self.stats.failures[Status(result.status).name] += 1
        return True

    def totals(self) -> dict:
        """Totals over the whole file: entries, DFT seconds, entries by status name."""
        with self._lock:
            count, seconds = self._conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(seconds), 0) FROM results"
            ).fetchone()
            by_status = self._conn.execute(
                "SELECT status, COUNT(*) FROM results GROUP BY status"
            ).fetchall()
        return {
            "entries": int(count), "dft_seconds": float(seconds),
            "by_status": {Status(s).name: int(n) for s, n in by_status},
        }
