"""SQLite result cache: persistence, killed writers, symmetry-equivalent keys, counters."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap

from pymatgen.core import Lattice, Structure

from crystaljax.oracles.base import OracleResult, Status
from crystaljax.oracles.cache import ResultCache, class_key, settings_hash

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
