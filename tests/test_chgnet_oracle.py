"""The in-graph CHGNet oracle (``oracle: chgnet``) inside the jitted, vmapped env step,
checked against the torch CHGNet run through the same protocol."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pymatgen.core import Structure

import crystaljax
from crystaljax.config import ConfigError
from crystaljax.mlip.relax import relax_volume
from crystaljax.oracles.base import Status
from crystaljax.templates.prototypes import prototype

pytestmark = pytest.mark.xdist_group("chgnet")

SRTIO3 = ["Sr", "Ti", "O", "O", "O"]  # sites of cg-perovskite-4.27: A, B, 3 x X


@pytest.fixture(scope="module")
def torch_chgnet():
    from chgnet.model import CHGNet

    return CHGNet.load(verbose=False)


@pytest.fixture(scope="module")
def modulus_env():
    env, params = crystaljax.make("bulk-modulus-perovskite-small-v0", oracle="chgnet",
                                  target=60, vocab=["Sr", "Ti", "O", "Ba", "Li"])
    step = jax.jit(jax.vmap(env.step_env, (0, 0, None)))
    return env, params, step


def _fill(env, params, step, rows):
    """Finished states of len(rows) envs whose sites hold the vocabulary indices ``rows``
    (in site order), plus the last step's outputs."""
    n = len(rows)
    _, state = jax.vmap(env.reset, (0, None))(jax.random.split(jax.random.PRNGKey(0), n), params)
    for k in range(env.templates[0].num_sites):
        sites = np.asarray(state.order)[:, k]
        actions = jnp.asarray([rows[i][s] for i, s in enumerate(sites)], jnp.int32)
        _, state, reward, done, _, info = step(state, actions, params)
    return state, reward, done, info


def _torch_scale_derivatives(model, structure, scale):
    """(E', E'') of the torch CHGNet's energy per cell (eV) with respect to the lattice scale
    s at ``scale`` (relative to ``structure``), by torch autograd: the same protocol."""
    import torch

    scaled = structure.copy()
    scaled.scale_lattice(structure.volume * scale ** 3)
    graph = model.graph_converter(scaled)
    t = torch.tensor(1.0, requires_grad=True)
    graph.lattice = graph.lattice.detach() * t
    model.eval()
    energy = model([graph], task="e")["e"].sum() * len(structure)
    (g,) = torch.autograd.grad(energy, t, create_graph=True)
    (h,) = torch.autograd.grad(g, t)
    return float(g) / scale, float(h) / scale ** 2


def test_volume_relaxed_bulk_modulus_matches_torch_protocol(modulus_env, torch_chgnet):
    env, params, step = modulus_env
    vocab = env.vocab
    crystals = [SRTIO3, ["Ba", "Ti", "O", "O", "O"]]
    state, reward, done, info = _fill(env, params, step, [[vocab.index(s) for s in c]
                                                           for c in crystals])
    assert bool(done.all())
    assert np.asarray(info["status"]).tolist() == [Status.OK, Status.OK]
    template = env.templates[0]
    oracle_scale = jax.jit(lambda tokens: relax_volume(
        env_oracle(env).energy_of_scale(tokens, jnp.int32(0)), 0.8, 1.3, 8).scale)
    for i, symbols in enumerate(crystals):
        structure = Structure(template.lattice, symbols, template.frac_coords)
        b_jax = float(info["property"][i])
        s = float(oracle_scale(state.tokens[i]))
        g, h = _torch_scale_derivatives(torch_chgnet, structure, s)
        assert abs(g) < 0.05 * h * 0.01, (symbols, g, h)  # torch agrees it is a minimum
        b_torch = (h - 2 * g / s) / (9 * structure.volume * s) * 160.21766208
        assert b_jax == pytest.approx(b_torch, rel=0.01), symbols
        assert 50 < b_jax < 400, symbols
        expected_reward = max(-abs(60 - b_jax) / 60, -5.0)
        assert float(reward[i]) == pytest.approx(expected_reward, abs=1e-5)


def env_oracle(env):
    """The CHGNetStepOracle behind an env's step (its in-graph oracle object)."""
    from crystaljax.oracles.chgnet import CHGNetStepOracle

    oracle = env.in_graph_oracle
    assert isinstance(oracle, CHGNetStepOracle)
    return oracle


def test_unfinished_envs_are_not_evaluated(modulus_env):
    env, params, step = modulus_env
    _, state = jax.vmap(env.reset, (0, None))(jax.random.split(jax.random.PRNGKey(1), 3), params)
    _, state, reward, done, _, info = step(state, jnp.zeros(3, jnp.int32), params)
    assert not bool(done.any())
    assert np.asarray(info["status"]).tolist() == [Status.NOT_EVALUATED] * 3
    assert np.isnan(np.asarray(info["property"])).all()
    assert np.asarray(reward).tolist() == [0.0, 0.0, 0.0]


def test_no_minimum_in_range_gets_the_floor_not_a_number():
    # SrTiO3 at a = 4.27 Å is expanded (its CHGNet minimum is near 3.94 Å, s ~ 0.92):
    # a search in [0.97, 1.2] finds E still falling at its lower end
    env, params = crystaljax.make("bulk-modulus-perovskite-small-v0", oracle="chgnet",
                                  vocab=["Sr", "Ti", "O"], floor=-3.0,
                                  oracle_options={"min_scale": 0.97, "max_scale": 1.2, "steps": 4})
    assert env.oracle_can_fail
    step = jax.jit(jax.vmap(env.step_env, (0, 0, None)))
    _, reward, done, info = _fill(env, params, step, [[env.vocab.index(s) for s in SRTIO3]])
    assert bool(done[0])
    assert int(info["status"][0]) == Status.NO_MINIMUM
    assert np.isnan(float(info["property"][0]))
    assert float(reward[0]) == pytest.approx(-3.0)  # the floor, not the penalty (-5)


def test_relax_none_density_is_the_fixed_lattice_density_and_energy_matches_torch(torch_chgnet):
    vocab = ["Sr", "Ti", "O"]
    row = [[vocab.index(s) for s in SRTIO3]]
    density_env = crystaljax.make("density-perovskite-small-v0", oracle="chgnet", vocab=vocab,
                                  oracle_options={"relax": "none"})
    analytic_env = crystaljax.make("density-perovskite-small-v0", vocab=vocab)
    values = []
    for env, params in (density_env, analytic_env):
        step = jax.jit(jax.vmap(env.step_env, (0, 0, None)))
        values.append(float(_fill(env, params, step, row)[3]["property"][0]))
    assert values[0] == pytest.approx(values[1], rel=1e-5)
    assert not density_env[0].oracle_can_fail

    env, params = crystaljax.make("energy-perovskite-small-v0", vocab=vocab,
                                  oracle_options={"relax": "none"})
    assert env.oracle_name == "chgnet"
    step = jax.jit(jax.vmap(env.step_env, (0, 0, None)))
    energy = float(_fill(env, params, step, row)[3]["property"][0])
    template = env.templates[0]
    reference = torch_chgnet.predict_structure(
        Structure(template.lattice, SRTIO3, template.frac_coords), task="e")
    assert energy == pytest.approx(float(reference["e"]), abs=1e-4)


def test_relax_volume_finds_the_minimum_of_a_known_curve():
    # E(s) = (s - 1.07)^2 * 40 + 0.3 (s - 1.07)^3 : minimum at 1.07, E'' = 80 there
    curve = lambda s: 40 * (s - 1.07) ** 2 + 0.3 * (s - 1.07) ** 3  # noqa: E731
    found = jax.jit(lambda: relax_volume(curve, 0.8, 1.3, steps=8))()
    assert bool(found.has_minimum)
    assert float(found.scale) == pytest.approx(1.07, abs=1e-5)
    assert float(found.curvature) == pytest.approx(80.0, rel=1e-4)
    falling = jax.jit(lambda: relax_volume(lambda s: -s ** 2, 0.8, 1.3, steps=8))()
    assert not bool(falling.has_minimum)
    # a minimum within half a grid step of either end is found, one just outside is not
    for where, inside in ((0.81, True), (1.29, True), (0.79, False), (1.31, False)):
        found = jax.jit(lambda: relax_volume(lambda s: 40 * (s - where) ** 2, 0.8, 1.3, 8))()
        assert bool(found.has_minimum) == inside, where
        if inside:
            assert bool(found.converged) and float(found.scale) == pytest.approx(where, abs=1e-4)


@pytest.mark.parametrize("options, message", [
    ({"relax": "full"}, "relax"),
    ({"colour": "x"}, "colour"),
    ({"min_scale": 1.5}, "min_scale"),
    ({"steps": 0}, "steps"),
])
def test_bad_options_are_config_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        crystaljax.make("bulk-modulus-perovskite-small-v0", oracle="chgnet", oracle_options=options)


def test_chgnet_does_not_compute_band_gaps():
    with pytest.raises(ConfigError, match="no in-graph oracle for 'band_gap'"):
        crystaljax.make("band-gap-perovskite-small-v0", oracle="chgnet")


def test_graph_skin_covers_the_searched_compression():
    from crystaljax.mlip.graph import build_graph

    t = prototype("cg-perovskite-4.27")
    plain, skinned = build_graph(t.lattice, t.frac_coords), build_graph(
        t.lattice, t.frac_coords, min_scale=0.8)
    assert skinned.counts[1] > plain.counts[1] and skinned.counts[3] > plain.counts[3]


def test_nested_vmap_over_seeds_gives_the_same_values(modulus_env):
    """vmap over seeds of vmap over envs (the sweep's shape): the custom batching rule
    of the inner level is traced by the outer one and the values do not change."""
    env, params, step = modulus_env
    rows = [[env.vocab.index(s) for s in SRTIO3], [env.vocab.index(s) for s in ["Li"] * 5]]
    _, _, _, flat = _fill(env, params, step, rows)
    _, state = jax.vmap(env.reset, (0, None))(jax.random.split(jax.random.PRNGKey(0), 2), params)
    state = jax.tree.map(lambda x: jnp.stack([x, x]), state)  # [seeds=2, envs=2, ...]
    nested = jax.jit(jax.vmap(jax.vmap(env.step_env, (0, 0, None)), (0, 0, None)))
    for k in range(env.templates[0].num_sites):
        sites = np.asarray(state.order)[0, :, k]
        actions = jnp.asarray([rows[i][s] for i, s in enumerate(sites)], jnp.int32)
        _, state, _, _, _, info = nested(state, jnp.stack([actions, actions]), params)
    for seed in range(2):
        np.testing.assert_allclose(np.asarray(info["property"][seed]),
                                   np.asarray(flat["property"]), rtol=2e-3)  # float32 E"
        assert np.asarray(info["status"][seed]).tolist() == np.asarray(flat["status"]).tolist()


def test_map_batching_graph_levels_give_the_single_graph_energies():
    """``batching: map`` reads E(s) on the smallest graph valid at s (levels 0.8, 0.85,
    0.9, 1.0, 1.15); the values equal the one skinned graph of ``vmap`` batching at every
    scale, on both sides of each level."""
    vocab = ["Sr", "Ti", "O", "Ba", "Li", "Mg"]
    oracles = {mode: crystaljax.make("bulk-modulus-perovskite-small-v0", oracle="chgnet",
                                     vocab=vocab, oracle_options={"batching": mode})[0]
               .in_graph_oracle for mode in ("map", "vmap")}
    assert oracles["map"].levels == (0.8, 0.85, 0.9, 1.0, 1.15)
    assert oracles["vmap"].levels == (0.8,)
    edges = [g["edge_mask"].shape[1] for g in oracles["map"].graph_levels]
    assert all(a > b for a, b in zip(edges, edges[1:]))  # the levels really are smaller
    rng = np.random.default_rng(3)
    tokens = jnp.asarray(rng.integers(0, len(vocab), (4, 5)), jnp.int32)
    scales = jnp.asarray([0.8, 0.849, 0.85, 0.89, 0.9, 0.97, 0.999, 1.0, 1.149, 1.15, 1.2, 1.3],
                         jnp.float32)

    def energies(oracle):
        e = lambda t, s: oracle.energy_of_scale(t, jnp.int32(0))(s)  # noqa: E731
        return np.asarray(jax.jit(jax.vmap(jax.vmap(e, (None, 0)), (0, None)))(tokens, scales))

    np.testing.assert_allclose(energies(oracles["map"]), energies(oracles["vmap"]), atol=2e-4)

    # the relaxation's grid: each static scale on its own level's graph, in grid order
    oracle = oracles["map"]
    grid = np.linspace(np.float32(0.8), np.float32(1.3), 11, dtype=np.float32)
    on_grid = jax.jit(jax.vmap(lambda t: oracle.energies_on_grid(t, jnp.int32(0))(grid)))
    switched = jax.vmap(jax.vmap(lambda t, s: oracle.energy_of_scale(t, jnp.int32(0))(s),
                                 (None, 0)), (0, None))
    np.testing.assert_allclose(np.asarray(on_grid(tokens)),
                               np.asarray(jax.jit(switched)(tokens, jnp.asarray(grid))),
                               atol=2e-4)
    with pytest.raises(ValueError, match="ascending"):
        oracle.energies_on_grid(tokens[0], jnp.int32(0))(grid[::-1])


def test_a_level_whose_graph_would_isolate_an_atom_is_left_out():
    """Simple cubic, a = 5.5 Å: every atom has neighbours within 6 Å (and within the
    skinned 7.5 Å of 0.8), but none within 6 / 1.15 = 5.2 Å, so the level 1.15 cannot be
    built; its scales use the graph of the level below, whose energies it keeps."""
    from pymatgen.core import Lattice

    from crystaljax.oracles.chgnet import CHGNetOptions, CHGNetStepOracle
    from crystaljax.templates.core import from_structure

    template = from_structure(Structure(Lattice.cubic(5.5), ["Cu"], [[0, 0, 0]]))
    oracle = CHGNetStepOracle("energy", CHGNetOptions(batching="map"), [template], ["Cu"])
    assert oracle.levels == (0.8, 0.85, 0.9, 1.0)
    e = jax.jit(lambda s: oracle.energy_of_scale(jnp.zeros(1, jnp.int32), jnp.int32(0))(s))
    skinned = CHGNetStepOracle("energy", CHGNetOptions(batching="vmap"), [template], ["Cu"])
    e_one = jax.jit(lambda s: skinned.energy_of_scale(jnp.zeros(1, jnp.int32), jnp.int32(0))(s))
    for s in (1.05, 1.2):
        assert abs(float(e(jnp.float32(s))) - float(e_one(jnp.float32(s)))) < 2e-4


def test_energy_at_scale_equals_the_energy_of_the_scaled_cell_and_jet_equals_nested_jvp():
    """The oracle's E(s) reuses the cell's geometry at scale 1 (lengths scale, angles do
    not): equal to the energy of the explicitly scaled lattice. Its (E, E', E'') by one
    Taylor-mode pass (``jet``) equal forward-over-forward autodiff of the plain energy."""
    from crystaljax.mlip import chgnet
    from crystaljax.mlip.relax import _taylor, jet_taylor

    oracle = crystaljax.make("bulk-modulus-perovskite-small-v0", oracle="chgnet",
                             vocab=["Sr", "Ti", "O", "Ba", "Li", "Mg"],
                             oracle_options={"batching": "map"})[0].in_graph_oracle
    tokens = jnp.asarray([[0, 1, 2, 2, 2], [3, 5, 2, 4, 2]], jnp.int32)
    graph = jax.tree.map(lambda x: x[0], oracle.graph_levels[0])
    frac, lattice = oracle.frac_coords[0], oracle.lattices[0]
    for t in tokens:
        numbers = oracle.atomic_numbers[t]
        plain = lambda s: chgnet.energy(oracle.params, graph, numbers, frac, s * lattice)  # noqa: E731
        scaled = oracle._branches(t, jnp.int32(0))[0]
        for s in (0.8, 0.93, 1.0, 1.21):
            s = jnp.float32(s)
            assert abs(float(jax.jit(scaled)(s)) - float(jax.jit(plain)(s))) < 2e-4
            ours = jax.jit(lambda x: jet_taylor(scaled, x))(s)  # noqa: B023
            nested = jax.jit(lambda x: _taylor(plain, x))(s)  # noqa: B023
            _close(ours, nested)
        switched = jax.jit(oracle.taylor_of_scale(t, jnp.int32(0)))  # the level's graph
        _close(switched(jnp.float32(1.1)),
               jax.jit(lambda x: _taylor(plain, x))(jnp.float32(1.1)))  # noqa: B023


def _close(ours, theirs):
    """(E, E', E'') equal to float32 noise: 2e-4 eV, 2e-3 eV, 2e-2 eV or 2e-3 relative."""
    for a, b, atol in zip(ours, theirs, (2e-4, 2e-3, 2e-2), strict=True):
        assert abs(float(a) - float(b)) <= atol + 2e-3 * abs(float(b)), (ours, theirs)
