"""Physics validation of the default preset against published PBE numbers (slow).

Band gap and bulk modulus at the PBE lattice constants of DESIGN.md, and the
density after a full vc-relax against the density of that PBE lattice.
Targets: gap within 0.3 eV, bulk modulus within 15 %, relaxed density within 3 %.
Measured numbers and their discussion: docs/VALIDATION.md.
"""

from __future__ import annotations

import pytest
from qe_helpers import diamond, requires_pw, rocksalt

from crystaljax.oracles.base import Status
from crystaljax.oracles.qe.oracle import QEOracle
from crystaljax.oracles.qe.recipes import density_of
from crystaljax.oracles.qe.runner import RunnerConfig

CRYSTALS = {
    "Si": (lambda: diamond(5.47), 0.6, 89.0),
    "NaCl": (lambda: rocksalt(5.69, "Na", "Cl"), 5.0, 24.0),
    "MgO": (lambda: rocksalt(4.25, "Mg", "O"), 4.5, 155.0),
}


def _evaluate(prop, structure, tmp_path, **recipe):
    oracle = QEOracle(prop, preset="default", cache=None, recipe=recipe,
                      pseudo_dir=tmp_path / "pp",
                      runner=RunnerConfig(mpi_ranks=1, time_limit=3600.0,
                                          scratch_root=str(tmp_path / "scratch")))
    with oracle:
        result = oracle.evaluate([structure])[0]
    assert result.status == Status.OK, result.reason
    return result.value


@pytest.mark.slow
@requires_pw
@pytest.mark.parametrize("name", ["Si", "NaCl", "MgO"])
def test_band_gap(name, tmp_path):
    make, gap, _ = CRYSTALS[name]
    assert _evaluate("band_gap", make(), tmp_path) == pytest.approx(gap, abs=0.3)


@pytest.mark.slow
@requires_pw
@pytest.mark.parametrize("name", ["Si", "NaCl", "MgO"])
def test_bulk_modulus(name, tmp_path):
    make, _, modulus = CRYSTALS[name]
    assert _evaluate("bulk_modulus", make(), tmp_path) == pytest.approx(modulus, rel=0.15)


@pytest.mark.slow
@requires_pw
@pytest.mark.parametrize("name", ["Si", "NaCl", "MgO"])
def test_relaxed_density(name, tmp_path):
    structure = CRYSTALS[name][0]()
    relaxed = _evaluate("density", structure, tmp_path, nstep=60)
    assert relaxed == pytest.approx(density_of(structure), rel=0.03)
