"""Symmetry-reduced CHGNet graphs (``mlip.graph.reduce_by_symmetry``): one edge, bond and
angle per orbit of the template's site-fixing operations, weighted by the orbit's size,
give the energy of the full graph for every decoration and every isotropic scale."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import crystaljax
from crystaljax.mlip import chgnet
from crystaljax.mlip.graph import build_graph, reduce_by_symmetry, site_fixing_rotations, stack_graphs
from crystaljax.mlip.weights import load_weights
from crystaljax.templates.prototypes import prototype

pytestmark = pytest.mark.xdist_group("chgnet")


@pytest.fixture(scope="module")
def params():
    return chgnet.to_params(load_weights("0.3.0")[0])


def _arrays(graph):
    return {k: jnp.asarray(v[0]) for k, v in stack_graphs([graph]).items() if k != "num_atoms"}


@pytest.mark.parametrize("name, operations, min_scale", [
    ("cg-perovskite-4.27", 8, 0.8), ("cg-bcc4-5.17", 8, 0.8), ("rocksalt", 48, 0.8),
    ("hcp", 12, 1.0), ("wurtzite", 6, 0.8), ("rutile", 2, 0.8)])
def test_reduced_graph_gives_the_full_graph_energy(params, name, operations, min_scale):
    template = prototype(name)
    lattice = np.asarray(template.lattice, np.float32)
    frac = np.asarray(template.frac_coords, np.float32)
    assert len(site_fixing_rotations(lattice, frac)) == operations
    full = build_graph(lattice, frac, min_scale=min_scale)
    if name == "hcp":
        assert full.counts[3] == 0  # no bond within 3 Å at s >= 1: a graph without angles
    reduced = reduce_by_symmetry(full, lattice, frac)
    # fewer message edges, bonds and angles; the weights count every directed edge once
    assert reduced.counts[4] < full.counts[4] and reduced.counts[2] < full.counts[2]
    assert reduced.counts[3] < full.counts[3] or full.counts[3] == 0
    assert reduced.message_weight.sum() == full.counts[1]
    assert reduced.counts[1] == full.counts[1]  # the geometry keeps every directed edge

    energy = jax.jit(lambda g, z, ref, s: chgnet.energy_at_scale(params, g, z, ref, s))
    reference = jax.jit(lambda g: chgnet.scale_reference(params, g, jnp.asarray(frac),
                                                         jnp.asarray(lattice)))
    graphs = {"full": _arrays(full), "reduced": _arrays(reduced)}
    refs = {k: reference(g) for k, g in graphs.items()}
    rng = np.random.default_rng(7)
    for _ in range(3):
        numbers = jnp.asarray(rng.integers(1, 84, template.num_sites), jnp.int32)
        for s in (0.82, 0.95, 1.0, 1.2) if min_scale < 0.82 else (1.0, 1.2):
            e = {k: float(energy(g, numbers, refs[k], jnp.float32(s))) for k, g in graphs.items()}
            assert abs(e["full"] - e["reduced"]) / template.num_sites < 5e-5, (name, s, e)


def test_a_template_without_site_fixing_symmetry_keeps_its_graph():
    template = prototype("a15")  # no operation maps each of its 8 sites onto itself
    lattice, frac = np.asarray(template.lattice), np.asarray(template.frac_coords)
    assert len(site_fixing_rotations(lattice, frac)) == 1
    full = build_graph(lattice, frac)
    assert reduce_by_symmetry(full, lattice, frac) is full


def test_oracle_with_and_without_symmetry_gives_the_same_relaxed_bulk_moduli():
    vocab = ["Sr", "Ti", "O", "Ba", "Li", "Mg", "K", "F"]
    oracles = {sym: crystaljax.make("bulk-modulus-perovskite-small-v0", oracle="chgnet",
                                    vocab=vocab,
                                    oracle_options={"symmetry": sym, "batching": "vmap"})[0]
               .in_graph_oracle for sym in (True, False)}
    angles = {sym: [int(g["angle_mask"].sum()) for g in o.graph_levels]
              for sym, o in oracles.items()}
    assert all(a * 3 <= b for a, b in zip(angles[True], angles[False])), angles
    rng = np.random.default_rng(11)
    tokens = jnp.asarray(np.concatenate([[[0, 1, 2, 2, 2], [3, 1, 2, 2, 2], [6, 5, 7, 7, 7]],
                                         rng.integers(0, len(vocab), (9, 5))]), jnp.int32)
    found = {sym: jax.device_get(jax.jit(jax.vmap(
        lambda t, o=o: o.evaluate(t, jnp.int32(0))))(tokens)) for sym, o in oracles.items()}
    assert found[True]["status"].tolist() == found[False]["status"].tolist()
    ok = found[True]["status"] == 0
    assert ok.sum() >= 6
    np.testing.assert_allclose(found[True]["value"][ok], found[False]["value"][ok], rtol=2e-3)
    np.testing.assert_allclose(found[True]["scale"][ok], found[False]["scale"][ok], atol=1e-4)


def test_reduced_graphs_of_two_templates_stack_and_pad(params):
    """Reduced graphs of different sizes in one padded table (weight 0 on the padding):
    each row gives the energy of its template's full graph."""
    rows = []
    for name in ("cg-perovskite-4.27", "rocksalt"):
        template = prototype(name)
        lattice = np.asarray(template.lattice, np.float32)
        frac = np.zeros((5, 3), np.float32)
        frac[:template.num_sites] = template.frac_coords
        full = build_graph(lattice, frac[:template.num_sites])
        rows.append((template, lattice, frac, full,
                     reduce_by_symmetry(full, lattice, frac[:template.num_sites])))
    table = stack_graphs([r[4] for r in rows], sizes=(5, 600, 100, 200, 150))
    energy = jax.jit(lambda g, z, f, lat: chgnet.energy(params, g, z, f, lat))
    for t, (template, lattice, frac, full, _) in enumerate(rows):
        numbers = np.ones(5, np.int32)
        numbers[:template.num_sites] = [38, 22, 8, 8, 8][:template.num_sites]
        padded = {k: jnp.asarray(v[t]) for k, v in table.items() if k != "num_atoms"}
        alone = {k: jnp.asarray(v[0]) for k, v in stack_graphs([full], sizes=(
            5,) + full.sizes[1:]).items() if k != "num_atoms"}
        e_padded = float(energy(padded, jnp.asarray(numbers), jnp.asarray(frac), lattice))
        e_full = float(energy(alone, jnp.asarray(numbers), jnp.asarray(frac), lattice))
        assert abs(e_padded - e_full) / template.num_sites < 5e-5, (template.name, e_padded,
                                                                     e_full)


def test_an_operation_that_is_not_a_symmetry_is_left_out(monkeypatch):
    """Swapping x and y is a symmetry of the empty perovskite cell but moves the X sites
    onto each other: handed such an operation, the reduction leaves it out."""
    import crystaljax.mlip.graph as graph_module

    template = prototype("cg-perovskite-4.27")
    lattice, frac = np.asarray(template.lattice), np.asarray(template.frac_coords)
    full = build_graph(lattice, frac)
    swap = np.asarray([[0, 1, 0], [1, 0, 0], [0, 0, 1]])
    monkeypatch.setattr(graph_module, "site_fixing_rotations",
                        lambda *a, **k: np.stack([np.eye(3, dtype=np.int64), swap]))
    assert reduce_by_symmetry(full, lattice, frac) is full
    mirror = np.diag([-1, 1, 1])  # a real one beside it still reduces
    monkeypatch.setattr(graph_module, "site_fixing_rotations",
                        lambda *a, **k: np.stack([np.eye(3, dtype=np.int64), swap, mirror]))
    halved = reduce_by_symmetry(full, lattice, frac)
    assert halved.message_weight.sum() == full.counts[1]
    assert full.counts[4] / 2 <= halved.counts[4] < full.counts[4]


def test_a_padded_or_reduced_graph_is_refused():
    from crystaljax.mlip.graph import GraphError, pad_graph

    template = prototype("rocksalt")
    lattice, frac = np.asarray(template.lattice), np.asarray(template.frac_coords)
    full = build_graph(lattice, frac)
    reduced = reduce_by_symmetry(full, lattice, frac)
    with pytest.raises(GraphError, match="full, unpadded"):
        reduce_by_symmetry(reduced, lattice, frac)
    with pytest.raises(GraphError, match="full, unpadded"):
        reduce_by_symmetry(pad_graph(full, tuple(n + 1 for n in full.sizes)), lattice, frac)
