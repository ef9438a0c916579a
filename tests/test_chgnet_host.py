"""The host CHGNet oracle (``oracle: chgnet-host``, torch CHGNet behind the bridge), checked
against the in-graph oracle it is the reference of."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from crystaljax.config import ConfigError
from crystaljax.oracles.base import HostOracle, Status
from crystaljax.oracles.chgnet import CHGNetOptions, CHGNetStepOracle
from crystaljax.oracles.chgnet_host import CHGNetHostOptions, CHGNetHostOracle, TorchCHGNet
from crystaljax.oracles.registry import get_oracle
from crystaljax.templates.prototypes import prototype

pytestmark = pytest.mark.xdist_group("chgnet")

SRTIO3 = ["Sr", "Ti", "O", "O", "O"]  # sites of cg-perovskite-4.27: A, B, 3 x X
BATIO3 = ["Ba", "Ti", "O", "O", "O"]
VOCAB = ["Ba", "O", "Sr", "Ti"]


@pytest.fixture(scope="module")
def template():
    return prototype("cg-perovskite-4.27")


def _crystal(template, symbols):
    return Structure(template.lattice, symbols, template.frac_coords)


def _in_graph(property_name, options, template, crystals):
    """(values, statuses) of the in-graph oracle, jitted once, on each crystal's tokens."""
    oracle = CHGNetStepOracle(property_name, options, [template], VOCAB)
    run = jax.jit(lambda tokens: oracle(tokens, jnp.int32(0)))
    out = [run(jnp.asarray([VOCAB.index(s) for s in c], jnp.int32)) for c in crystals]
    return [float(v) for v, _ in out], [int(s) for _, s in out]


def test_energy_equals_the_in_graph_oracle(template):
    with CHGNetHostOracle("energy", {"relax": "none", "workers": 0}) as host:
        assert isinstance(host, HostOracle) and host.unit == "eV/atom"
        results = host.evaluate([_crystal(template, c) for c in (SRTIO3, BATIO3)])  # one batch
    values, statuses = _in_graph("energy", CHGNetOptions(relax="none"), template,
                                 [SRTIO3, BATIO3])
    assert statuses == [Status.OK, Status.OK]
    for result, value in zip(results, values, strict=True):
        assert result.status == Status.OK and result.reason == ""
        assert result.value == pytest.approx(value, abs=1e-4)
        assert result.extra["energy_per_atom"] == result.value
        assert result.extra["scale"] == 1.0
    assert results[0].value < -8.0  # CHGNet's SrTiO3 at a = 4.27 Å: -8.09 eV/atom


def test_volume_relaxed_bulk_modulus_agrees_with_the_in_graph_oracle(template):
    options = {"relax": "volume", "min_scale": 0.8, "max_scale": 1.3, "steps": 8}
    with CHGNetHostOracle("bulk_modulus", {**options, "workers": 0}) as host:
        result = host.evaluate([_crystal(template, SRTIO3)])[0]
    assert result.status == Status.OK, result.reason
    (value,), (status,) = _in_graph("bulk_modulus", CHGNetOptions(**options), template, [SRTIO3])
    assert status == Status.OK
    assert result.value == pytest.approx(value, rel=0.01)
    assert 100 < result.value < 250
    extra = result.extra
    assert extra["scale"] == pytest.approx(0.9226, abs=2e-3)  # the minimum, near a = 3.94 Å
    assert abs(extra["gradient"]) < 1e-3 * extra["curvature"]
    assert extra["volume"] == pytest.approx(template.volume * extra["scale"] ** 3)


def test_no_minimum_in_a_narrow_range(template):
    # SrTiO3 at a = 4.27 Å is expanded (its minimum is near s = 0.92): in [0.97, 1.2]
    # E(s) still falls at the lower end
    with CHGNetHostOracle("bulk_modulus", {"min_scale": 0.97, "max_scale": 1.2,
                                           "workers": 0}) as host:
        result = host.evaluate([_crystal(template, SRTIO3)])[0]
        assert result.status == Status.NO_MINIMUM
        assert np.isnan(result.value)
        assert "min_scale 0.97" in result.reason and "below" in result.reason
        assert host.stats()["failures"] == {"NO_MINIMUM": 1}


def test_full_relaxation_reaches_the_volume_minimum(template):
    with CHGNetHostOracle("density", {"relax": "full", "workers": 0}) as host:
        full = host.evaluate([_crystal(template, SRTIO3)])[0]
    assert full.status == Status.OK, full.reason
    assert full.extra["relax_converged"] and full.extra["relax_steps"] > 0
    lattice = np.asarray(full.extra["lattice"])
    # cubic SrTiO3 stays cubic; its relaxed lattice constant is the volume search's
    assert lattice == pytest.approx(np.eye(3) * lattice[0, 0], abs=1e-3)
    assert full.extra["scale"] == pytest.approx(0.9226, abs=3e-3)
    mass = _crystal(template, SRTIO3).composition.weight
    assert full.value == pytest.approx(mass / abs(np.linalg.det(lattice)) * 1.66053906660,
                                       rel=1e-6)


def test_crystals_that_break_the_model_fail_without_an_exception(template, monkeypatch):
    isolated = Structure(Lattice.cubic(20.0), ["Na"], [[0, 0, 0]])
    americium = _crystal(template, ["Am", "Ti", "O", "O", "O"])  # Z = 95: no embedding
    good = _crystal(template, SRTIO3)
    with CHGNetHostOracle("energy", {"relax": "none", "workers": 0}) as host:
        results = host.evaluate([isolated, good, americium])
        assert [r.status for r in results] == [Status.INVALID_INPUT, Status.OK,
                                               Status.INVALID_INPUT]
        assert "isolated atom" in results[0].reason and np.isnan(results[0].value)
        assert "no element Am" in results[2].reason
        assert host.stats()["invalid_input"] == 2

        # a crystal that makes the model raise fails alone; its batch is recomputed one
        # crystal at a time
        original = TorchCHGNet.scale_derivatives

        def flaky(self, structures, scales, order=2):
            if any(s.composition["Ba"] for s in structures):
                raise RuntimeError("boom")
            return original(self, structures, scales, order)

        monkeypatch.setattr(TorchCHGNet, "scale_derivatives", flaky)
        strontium = _crystal(template, ["Sr", "Ti", "O", "O", "O"])
        strontium.perturb(0.01, min_distance=0.005)  # not in the cache
        barium = _crystal(template, BATIO3)
        crash, ok = host.evaluate([barium, strontium])
        assert crash.status == Status.CRASH and "RuntimeError: boom" in crash.reason
        assert ok.status == Status.OK


def test_time_limit_gives_timeout(template):
    with CHGNetHostOracle("bulk_modulus", {"time_limit": 1e-4, "workers": 0}) as host:
        result = host.evaluate([_crystal(template, SRTIO3)])[0]
    assert result.status == Status.TIMEOUT and "time limit" in result.reason


def test_process_pool_with_one_worker(template):
    crystals = [_crystal(template, SRTIO3), _crystal(template, BATIO3)]
    with CHGNetHostOracle("energy", {"relax": "none", "workers": 0}) as inline:
        expected = [r.value for r in inline.evaluate(crystals)]
    oracle = CHGNetHostOracle("energy", {"relax": "none", "workers": 1})
    assert oracle.executor is not None and oracle.executor.max_workers == 1
    try:
        results = oracle.evaluate(crystals + [crystals[0]])
        assert [r.status for r in results] == [Status.OK] * 3
        assert [r.value for r in results[:2]] == pytest.approx(expected, abs=1e-6)
        assert oracle.executor.worker_pids()  # it ran in a worker process
        again = oracle.evaluate(crystals[:1])[0]
        assert again.value == results[0].value and again.seconds == 0.0
        stats = oracle.stats()
        assert stats["computed"] == 2 and stats["batch_duplicates"] == 1
        assert stats["cache_hits"] == 1 and stats["evaluated"] == 4
    finally:
        oracle.close()
    assert oracle.closed and oracle.executor.worker_pids() == []
    assert oracle.evaluate(crystals[:1])[0].status == Status.ORACLE_ERROR
    oracle.close()  # idempotent


def test_registry_entry_and_options():
    spec = get_oracle("chgnet-host", "bulk_modulus")
    assert not spec.in_graph
    for prop in ("density", "energy"):
        get_oracle("chgnet-host", prop)
    options = spec.parse_options({"relax": "full", "fmax": 0.1, "workers": 0})
    assert isinstance(options, CHGNetHostOptions) and options.relax == "full"
    with spec.build("density", options) as oracle:
        assert isinstance(oracle, HostOracle) and oracle.executor is None
    assert CHGNetHostOptions().workers == 1 and CHGNetHostOptions().relax == "volume"
    with pytest.raises(ConfigError, match="colour"):
        spec.parse_options({"colour": "red"})
    with pytest.raises(ConfigError, match="min_scale"):
        spec.parse_options({"min_scale": 1.5})
    with pytest.raises(ConfigError, match="relax"):
        spec.parse_options({"relax": "partial"})
    with pytest.raises(ConfigError, match="band_gap"):
        get_oracle("chgnet-host", "band_gap")
