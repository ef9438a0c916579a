"""SQLite result cache: persistence, killed writers, symmetry-equivalent keys, counters."""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

from pymatgen.core import Lattice, Structure

from crystaljax.oracles.base import OracleResult, Status
from crystaljax.oracles.cache import _SCHEMA, ResultCache, class_key, is_cacheable, settings_hash

PEROVSKITE_SITES = [(0, 0, 0), (0.5, 0.5, 0.5), (0, 0.5, 0.5), (0.5, 0, 0.5), (0.5, 0.5, 0)]


def perovskite(species) -> Structure:
    return Structure(Lattice.cubic(4.2748), species, PEROVSKITE_SITES)


def test_symmetry_equivalent_decorations_share_a_key(tmp_path):
    cache = ResultCache(tmp_path / "c.sqlite")
    # One Ti on any of the three face sites: related by the cube's rotations.
    faces = [perovskite(["Sr", "O", "Ti", "O", "O"]),
             perovskite(["Sr", "O", "O", "Ti", "O"]),
             perovskite(["Sr", "O", "O", "O", "Ti"])]
    keys = {cache.structure_key(s) for s in faces}
    assert len(keys) == 1
    # A rigid translation of the whole crystal is the same crystal too.
    shifted = perovskite(["Sr", "Ti", "O", "O", "O"])
    shifted.translate_sites(range(5), [0.5, 0.5, 0.5])
    assert cache.structure_key(shifted) == cache.structure_key(perovskite(
        ["Sr", "Ti", "O", "O", "O"]))
    # Ti on the body centre vs Sr there: different crystals, different keys.
    assert cache.structure_key(perovskite(["Sr", "Ti", "O", "O", "O"])) != cache.structure_key(
        perovskite(["Ti", "Sr", "O", "O", "O"]))
    assert cache.structure_key(faces[0]) not in {
        cache.structure_key(perovskite(["Sr", "Ti", "O", "O", "O"]))}


def test_class_key_separates_volumes():
    a = perovskite(["Sr", "Ti", "O", "O", "O"])
    b = a.copy()
    b.scale_lattice(a.volume * 1.05)
    assert class_key(a) != class_key(b)


def test_roundtrip_failures_and_counters(tmp_path):
    cache = ResultCache(tmp_path / "c.sqlite")
    s = perovskite(["Sr", "Ti", "O", "O", "O"])
    key, h = cache.structure_key(s), settings_hash({"p": "band_gap", "ecut": 30})
    assert cache.get(key, h) is None
    cache.put(key, h, "band_gap", OracleResult(1.5, Status.OK, "", 12.0,
                                               {"energy_per_atom": -5.0}))
    got = cache.get(key, h)
    assert got.value == 1.5 and got.status == Status.OK and got.seconds == 0.0
    assert got.extra["energy_per_atom"] == -5.0 and got.extra["cached"]
    other = settings_hash({"p": "band_gap", "ecut": 40})
    assert cache.get(key, other) is None
    cache.put(key, other, "band_gap",
              OracleResult.failure(Status.SCF_NOT_CONVERGED, "convergence NOT achieved"))
    failed = cache.get(key, other)
    assert failed.status == Status.SCF_NOT_CONVERGED and math.isnan(failed.value)
    assert failed.reason == "convergence NOT achieved"
    stats = cache.stats.as_dict()
    assert stats["hits"] == 2 and stats["misses"] == 2 and stats["dft_seconds"] == 12.0
    assert stats["failures"] == {"SCF_NOT_CONVERGED": 1}
    assert cache.totals()["by_status"] == {"OK": 1, "SCF_NOT_CONVERGED": 1}


WRITER = textwrap.dedent("""
    import os, signal, sys
    from pymatgen.core import Lattice, Structure
    from crystaljax.oracles.base import OracleResult, Status
    from crystaljax.oracles.cache import ResultCache
    cache = ResultCache(sys.argv[1])
    for i in range(5):
        s = Structure(Lattice.cubic(3.0 + 0.1 * i), ["Na", "Cl"], [[0, 0, 0], [.5, .5, .5]])
        cache.put(cache.structure_key(s), "h", "density", OracleResult(float(i), Status.OK))
    os.kill(os.getpid(), signal.SIGKILL)  # die without closing anything
""")


def test_results_survive_a_killed_writer_and_a_new_process(tmp_path):
    path = tmp_path / "c.sqlite"
    proc = subprocess.run([sys.executable, "-c", WRITER, str(path)], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    cache = ResultCache(path)
    for i in range(5):
        s = Structure(Lattice.cubic(3.0 + 0.1 * i), ["Na", "Cl"], [[0, 0, 0], [.5, .5, .5]])
        got = cache.get(cache.structure_key(s), "h")
        assert got is not None and got.value == float(i)
    assert cache.totals()["entries"] == 5
    assert os.path.exists(path)


def test_timeout_answers_only_limits_not_larger_than_its_own(tmp_path):
    cache = ResultCache(tmp_path / "c.sqlite")
    key = cache.structure_key(perovskite(["Sr", "Ti", "O", "O", "O"]))
    timeout = OracleResult.failure(Status.TIMEOUT, "pw.x killed after the time limit (0 s)")
    assert cache.put(key, "h", "density", timeout, time_limit=0.5)
    assert cache.get(key, "h", time_limit=300.0) is None  # a longer run may finish
    assert cache.get(key, "h") is None  # limit unknown: not reused
    for limit in (0.5, 0.4):
        assert cache.get(key, "h", time_limit=limit).status == Status.TIMEOUT
    assert cache.stats.hits == 2 and cache.stats.misses == 2
    # the longer run's outcome replaces the entry and answers every limit
    cache.put(key, "h", "density", OracleResult(2.1, Status.OK), time_limit=300.0)
    assert cache.get(key, "h", time_limit=1000.0).value == 2.1


def test_failures_of_the_machine_are_not_stored(tmp_path):
    cache = ResultCache(tmp_path / "c.sqlite")
    key = cache.structure_key(perovskite(["Sr", "Ti", "O", "O", "O"]))
    machine = [
        OracleResult.failure(Status.ORACLE_ERROR, "KeyError: 'x'"),
        OracleResult.failure(Status.CRASH, "cannot start 'pw.x': no such file", not_started=True),
        OracleResult.failure(Status.TIMEOUT, "job exceeded its deadline", executor_deadline=True),
    ]
    for result in machine:
        assert not is_cacheable(result)
        assert cache.put(key, "h", "density", result, time_limit=10.0) is False
        assert cache.get(key, "h", time_limit=10.0) is None
    assert cache.totals()["entries"] == 0 and cache.stats.failures == {}
    crystal = OracleResult.failure(Status.CRASH, "pw.x error in cdiaghg: S matrix")
    assert is_cacheable(crystal) and cache.put(key, "h", "density", crystal)
    assert cache.get(key, "h").status == Status.CRASH
    cache.close()
    cache.close()  # idempotent


def test_a_file_from_before_the_time_limit_column_is_upgraded(tmp_path):
    path = tmp_path / "old.sqlite"
    old_schema = _SCHEMA.replace("    time_limit REAL,\n", "")
    conn = sqlite3.connect(path)
    conn.executescript(old_schema)
    conn.execute("INSERT INTO results VALUES ('h', 'k1', 'density', 2.0, 0, '', 1.0, '{}', "
                 "'NaCl', 0.0)")
    conn.execute("INSERT INTO results VALUES ('h', 'k2', 'density', NULL, 4, 'slow', 1.0, "
                 "'{}', 'NaCl', 0.0)")
    # machine failures that older versions stored: computed again, not returned
    conn.execute("INSERT INTO results VALUES ('h', 'k3', 'density', NULL, 3, "
                 "'cannot start ''pw.x'': [Errno 2]', 0.0, '{}', 'NaCl', 0.0)")
    conn.execute("INSERT INTO results VALUES ('h', 'k4', 'density', NULL, 7, 'KeyError', 0.0, "
                 "'{}', 'NaCl', 0.0)")
    conn.commit()
    conn.close()
    cache = ResultCache(path)
    assert cache.get("k1", "h").value == 2.0
    assert cache.get("k2", "h", time_limit=1.0) is None  # limit unknown: computed again
    assert cache.get("k3", "h") is None and cache.get("k4", "h") is None
    assert ResultCache(path).totals()["entries"] == 4  # a second open does not migrate twice
