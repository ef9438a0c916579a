"""A batch's DFT jobs start longest-expected first, and the oracle reports core use."""

from __future__ import annotations

import concurrent.futures
import shutil
import time

import pytest
from pymatgen.core import Lattice, Structure

from crystaljax.oracles.base import OracleResult, Status
from crystaljax.oracles.qe.cost import expected_cost
from crystaljax.oracles.qe.oracle import QEOracle

pytestmark = pytest.mark.skipif(shutil.which("ld1.x") is None, reason="ld1.x not installed")


def _work(seconds):
    time.sleep(seconds)
    return OracleResult(1.0, Status.OK, "", seconds)


class RecordingExecutor:
    """Runs no DFT: records the order of submitted crystals; each job sleeps 0.3 s on one of
    two threads and reports those seconds."""

    max_workers = 2

    def __init__(self):
        self.order: list[str] = []
        self.pool = concurrent.futures.ThreadPoolExecutor(self.max_workers)

    def submit(self, fn, job):
        self.order.append(Structure.from_dict(job.structure).composition.reduced_formula)
        return self.pool.submit(_work, 0.3)

    def shutdown(self):
        self.pool.shutdown()


def _cubic(a, species):
    coords = [(0, 0, 0), (0.5, 0.5, 0.5), (0, 0.5, 0.5), (0.5, 0, 0.5), (0.5, 0.5, 0)]
    return Structure(Lattice.cubic(a), species, coords[:len(species)])


def test_expected_cost_grows_with_cell_electrons_and_k_points(tmp_path):
    with QEOracle("band_gap", preset="default", cache=None, pseudo_dir=tmp_path / "pp",
                  executor=RecordingExecutor()) as oracle:
        family, settings = oracle.family, oracle.settings
        small = expected_cost(_cubic(4.0, ["Li", "Li"]), family, settings)
        larger = expected_cost(_cubic(5.0, ["Li", "Li"]), family, settings)
        heavier = expected_cost(_cubic(4.0, ["Ba", "Ba"]), family, settings)
        assert larger > small and heavier > small
        coarse = expected_cost(_cubic(4.0, ["Li", "Li"]), family, settings.replace(kppa=100))
        assert coarse < small


def test_batch_starts_longest_expected_first_and_reports_utilisation(tmp_path):
    executor = RecordingExecutor()
    crystals = [_cubic(4.0, ["Li", "H"]), _cubic(4.5, ["Sr", "Ti", "O", "O", "O"]),
                _cubic(4.2, ["K", "Cl"])]
    with QEOracle("band_gap", preset="test", cache=None, pseudo_dir=tmp_path / "pp",
                  executor=executor) as oracle:
        costs = [expected_cost(c, oracle.family, oracle.settings) for c in crystals]
        results = oracle.evaluate(crystals)
        stats = oracle.stats()
    assert [r.status for r in results] == [Status.OK] * 3  # answers keep the input order
    expected = [crystals[i].composition.reduced_formula
                for i in sorted(range(3), key=lambda i: -costs[i])]
    assert executor.order == expected and executor.order[0] == "SrTiO3"
    # 3 jobs of 0.3 s on 2 workers: two waves (>= 0.6 s), 0.9 busy of >= 1.2 core-seconds
    assert stats["batch_seconds"] >= 0.6 and stats["dft_seconds"] == pytest.approx(0.9)
    assert 0.3 < stats["core_utilisation"] <= 0.76
    assert stats["busy_core_seconds"] == pytest.approx(0.9)
