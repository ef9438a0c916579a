"""Formation energies of the in-graph CHGNet oracle: the elemental references (each
element relaxed once by the same model, cached per machine), the ``formation_energy``
property and the ``max_formation_energy`` option (status UNSTABLE, the floor reward)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pymatgen.core import Structure

import crystaljax
from crystaljax.config import ConfigError
from crystaljax.mlip import references
from crystaljax.mlip.weights import load_weights
from crystaljax.oracles.base import FLOOR_STATUSES, Status
from crystaljax.templates.prototypes import prototype

pytestmark = pytest.mark.xdist_group("chgnet")

VOCAB = ["Na", "Cl"]


@pytest.fixture(scope="module")
def chgnet_home(tmp_path_factory):
    """A fresh ``CRYSTALJAX_CACHE_DIR`` for this module (no reference table) that shares the
    machine's converted CHGNet weights (converted once per machine, not per test)."""
    _, record = load_weights()  # in the machine's cache
    home = tmp_path_factory.mktemp("crystaljax-home")
    (home / "chgnet").mkdir()
    weights = references.default_cache_dir() / "chgnet"
    for path in weights.glob(f"chgnet_*_{record['sha256'][:16]}.*"):
        (home / "chgnet" / path.name).symlink_to(path)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CRYSTALJAX_CACHE_DIR", str(home))
        yield home


@pytest.fixture(scope="module")
def table(chgnet_home):
    """The reference records of Na and Cl, computed once into the module's cache."""
    assert not references.references_path().exists()
    return references.load_table(VOCAB)


def test_references_are_cached_and_not_recomputed(table, monkeypatch):
    path = references.references_path()
    data = json.loads(path.read_text())
    assert data["candidates_version"] == references.CANDIDATES_VERSION
    assert data["weights_sha256"][:16] in path.name
    assert data["runs"][0]["symbols"] == VOCAB and data["runs"][0]["seconds"] > 0

    def fail(*args, **kwargs):
        raise AssertionError("recomputed a cached reference")

    monkeypatch.setattr(references, "compute_references", fail)
    again = references.reference_energies(["Cl", "Na"])
    assert again == {s: (table[s]["energy_per_atom"], table[s]["structure"]) for s in ("Cl", "Na")}

    # an element the table lacks is computed alone and merged in
    asked = []

    def fake(symbols, *args, **kwargs):
        asked.append(list(symbols))
        return {s: {"energy_per_atom": -1.0, "structure": "bcc", "scale": 1.0,
                    "nn_distance": 3.0, "candidates": {}} for s in symbols}

    monkeypatch.setattr(references, "compute_references", fake)
    assert references.reference_energies(["Na", "Li"])["Li"] == (-1.0, "bcc")
    assert asked == [["Li"]]
    assert set(json.loads(path.read_text())["elements"]) == {"Na", "Cl", "Li"}


def test_reference_is_the_lowest_candidate_with_a_minimum(table):
    for symbol, record in table.items():
        candidates = record["candidates"]
        assert set(candidates) == {c.name for c in references.CANDIDATES}
        found = {n: c["energy_per_atom"] for n, c in candidates.items() if c["has_minimum"]}
        assert record["energy_per_atom"] == min(found.values())
        assert found[record["structure"]] == record["energy_per_atom"]
    na, cl = table["Na"], table["Cl"]
    assert na["structure"] in ("fcc", "bcc", "hcp")  # a metal
    assert na["energy_per_atom"] <= na["candidates"]["fcc"]["energy_per_atom"]
    assert -1.45 < na["energy_per_atom"] < -1.15  # Materials Project's Na: about -1.3
    assert 3.4 < na["nn_distance"] < 4.0  # Na metal: 3.66-3.72 Å
    assert cl["structure"] == "dimer"  # Cl2
    assert 1.8 < cl["nn_distance"] < 2.2  # Cl-Cl bond: 1.99 Å
    assert -2.0 < cl["energy_per_atom"] < -1.7  # Materials Project's Cl2: about -1.85


def _rocksalt(task, rows, **options):
    """(env, params, reward, info) of len(rows) envs on the 2-site rock-salt cell whose
    sites hold the vocabulary indices ``rows``, at the template volume (one compile)."""
    env, params = crystaljax.make(task, oracle="chgnet", template="rocksalt", vocab=VOCAB,
                                  floor=-3.0,
                                  oracle_options={"relax": "none", **options})
    step = jax.jit(jax.vmap(env.step_env, (0, 0, None)))
    keys = jax.random.split(jax.random.PRNGKey(0), len(rows))
    _, state = jax.vmap(env.reset, (0, None))(keys, params)
    for k in range(2):
        sites = np.asarray(state.order)[:, k]
        actions = jnp.asarray([rows[i][s] for i, s in enumerate(sites)], jnp.int32)
        _, state, reward, done, _, info = step(state, actions, params)
    assert bool(done.all())
    return env, params, reward, info


@pytest.fixture(scope="module")
def rocksalt_run(table):
    """Formation energies of NaCl, Na alone and Cl alone on the rock-salt cell, with
    max_formation_energy = 0.2 eV/atom (Na or Cl alone: about +0.44 eV/atom)."""
    # vocabulary indices per site: NaCl, Na on both sites, Cl on both sites
    return _rocksalt("formation-energy-perovskite-small-v0", [[0, 1], [0, 0], [1, 1]],
                     max_formation_energy=0.2)


def test_nacl_has_a_negative_formation_energy(rocksalt_run, table):
    from chgnet.model import CHGNet

    env, params, reward, info = rocksalt_run
    assert env.oracle_name == "chgnet" and env.oracle_can_fail
    assert int(info["status"][0]) == Status.OK
    value = float(info["property"][0])
    assert -2.6 < value < -1.6  # Materials Project's NaCl: about -2.1 eV/atom
    template = prototype("rocksalt")
    structure = Structure(template.lattice, ["Na", "Cl"], template.frac_coords)
    energy = float(CHGNet.load(verbose=False).predict_structure(structure, task="e")["e"])
    expected = energy - (table["Na"]["energy_per_atom"] + table["Cl"]["energy_per_atom"]) / 2
    assert value == pytest.approx(expected, abs=1e-3)
    assert float(reward[0]) == pytest.approx(np.exp(-(value - params.reward.target) ** 2),
                                             abs=1e-5)


def test_max_formation_energy_gives_unstable_and_the_floor(rocksalt_run):
    _, _, reward, info = rocksalt_run
    # Na or Cl alone on the rock-salt sites: a simple cubic lattice, nearest neighbours
    # at 2.82 Å, far above the elements' references
    assert Status.UNSTABLE in FLOOR_STATUSES
    assert np.asarray(info["status"][1:]).tolist() == [Status.UNSTABLE, Status.UNSTABLE]
    assert np.isnan(np.asarray(info["property"][1:])).all()
    assert np.asarray(reward[1:]).tolist() == [0.0, 0.0]  # the Gaussian's minimum (> floor)


@pytest.mark.parametrize("options, message", [
    ({"max_formation_energy": "high"}, "max_formation_energy"),
    ({"max_formation_energy": [0.1]}, "max_formation_energy"),
])
def test_bad_max_formation_energy_is_a_config_error(options, message):
    with pytest.raises(ConfigError, match=message):
        crystaljax.make("formation-energy-perovskite-small-v0", oracle_options=options)


def test_max_formation_energy_applies_to_any_property(table):
    env, params, reward, info = _rocksalt("bulk-modulus-perovskite-small-v0", [[0, 1], [1, 1]],
                                          max_formation_energy=0.2)
    assert env.oracle_can_fail
    assert np.asarray(info["status"]).tolist() == [Status.OK, Status.UNSTABLE]
    assert np.isfinite(float(info["property"][0])) and np.isnan(float(info["property"][1]))
    assert float(reward[1]) == pytest.approx(-3.0)  # the floor, not the penalty (-5)
