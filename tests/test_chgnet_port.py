"""The JAX port of CHGNet (crystaljax.mlip) reproduces the torch ``chgnet`` package: energy,
forces and stress of random decorations, graphs with a compression skin, padded graphs,
and the one-time conversion of the bundled weights. Bounds: 1e-4 eV/atom, 1e-3 eV/Å,
0.05 GPa (``crystaljax.benchmarks.chgnet_port.BOUNDS``)."""

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("chgnet")

import jax  # noqa: E402
from pymatgen.core import Structure  # noqa: E402

from crystaljax.benchmarks import chgnet_port  # noqa: E402
from crystaljax.benchmarks.chgnet_port import BOUNDS  # noqa: E402
from crystaljax.mlip import chgnet, weights  # noqa: E402
from crystaljax.mlip.graph import GRAPH_FIELDS, build_graph, stack_graphs  # noqa: E402
from crystaljax.templates.prototypes import prototype  # noqa: E402

EFS = jax.jit(chgnet.energy_forces_stress)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(torch CHGNet 0.3.0, the port's parameters converted into a fresh folder)."""
    from chgnet.model import CHGNet

    arrays, _ = weights.load_weights(cache_dir=tmp_path_factory.mktemp("cache"))
    return CHGNet.load(verbose=False), chgnet.to_params(arrays)


def _row(table: dict, t: int) -> dict:
    return {f: table[f][t] for f in GRAPH_FIELDS}


def _inputs(structure: Structure, size: int, pad_number: int = 1):
    """Atomic numbers int32 [size], fractional coordinates f32 [size, 3] (padding atoms at
    the origin), lattice f32 [3, 3] of ``structure``."""
    numbers = np.full(size, pad_number, np.int32)
    numbers[:len(structure)] = structure.atomic_numbers
    frac = np.zeros((size, 3), np.float32)
    frac[:len(structure)] = structure.frac_coords
    return numbers, frac, structure.lattice.matrix.astype(np.float32)


def _errors(out: dict, ref: dict, n: int) -> dict:
    return {"energy": abs(float(out["energy"]) - float(ref["e"])),
            "forces": float(np.abs(np.asarray(out["forces"])[:n] - ref["f"]).max()),
            "stress": float(np.abs(np.asarray(out["stress"]) - ref["s"]).max())}


def _within(errors: dict) -> bool:
    return all(errors[q] <= bound for q, bound in BOUNDS.items())


def test_random_decorations_match_torch(reference):
    # a15 and chalcopyrite have 8 sites, wurtzite (hexagonal) and chalcopyrite are not cubic
    crystals = chgnet_port.random_crystals(["rocksalt", "a15", "wurtzite", "chalcopyrite"], 6,
                                           seed=1)
    result = chgnet_port.compare(crystals, *reference)
    summary = result["summary"]
    assert summary["count"] == 6 and summary["prototypes"] == 4
    assert summary["min_scale"] < 0.95  # the graphs carry a compression skin
    assert len({r["formula"] for r in result["rows"]}) == 6
    for q, bound in BOUNDS.items():
        assert summary[q]["max"] <= bound, (q, result["rows"])
    assert all(np.isfinite(r["energy_torch"]) for r in result["rows"])


def test_skin_graph_matches_plain_graph_and_torch_under_compression(reference):
    model, params = reference
    template = prototype("wurtzite")
    structure = Structure(np.asarray(template.lattice), ["Zn", "Zn", "O", "S"],
                          np.asarray(template.frac_coords))
    structure.translate_sites([0], [0.01, -0.02, 0.015])  # break the symmetry: non-zero forces
    plain = build_graph(structure.lattice.matrix, structure.frac_coords, min_scale=1.0)
    skin = build_graph(structure.lattice.matrix, structure.frac_coords, min_scale=0.8)
    assert skin.counts[1] > plain.counts[1] and skin.counts[3] > plain.counts[3]
    table = stack_graphs([plain, skin])  # one padded shape: one compiled program
    size = table["atom_mask"].shape[1]

    at_one = [EFS(params, _row(table, t), *_inputs(structure, size)) for t in (0, 1)]
    assert abs(float(at_one[0]["energy"]) - float(at_one[1]["energy"])) < 1e-6
    np.testing.assert_allclose(at_one[1]["forces"], at_one[0]["forces"], atol=1e-5)
    np.testing.assert_allclose(at_one[1]["stress"], at_one[0]["stress"], atol=1e-4)
    assert np.abs(np.asarray(at_one[0]["forces"])).max() > 1e-2

    compressed = structure.copy()
    compressed.scale_lattice(structure.volume * 0.85**3)
    ref = model.predict_structure(compressed, task="efs")
    errors = [_errors(EFS(params, _row(table, t), *_inputs(compressed, size)), ref,
                      len(structure)) for t in (0, 1)]
    assert _within(errors[1]), errors[1]
    # without the skin the pairs that come within the cut-offs are missing: the test sees it
    assert not _within(errors[0]), errors[0]


def test_padding_changes_nothing(reference):
    _, params = reference
    small, large = prototype("rocksalt"), prototype("a15")
    structures = [Structure(np.asarray(t.lattice), species, np.asarray(t.frac_coords))
                  for t, species in ((small, ["Na", "Cl"]), (large, ["Nb"] * 6 + ["Sn"] * 2))]
    graphs = [build_graph(s.lattice.matrix, s.frac_coords) for s in structures]
    big = stack_graphs(graphs)
    sizes = tuple(int(big[f].shape[1]) + extra for f, extra in zip(
        ("atom_mask", "edge_mask", "bond_mask", "angle_mask", "message_weight"),
        (3, 40, 20, 100, 30)))
    padded = stack_graphs(graphs, sizes)
    assert padded["num_atoms"].tolist() == [2, 8]

    alone = EFS(params, _row(stack_graphs(graphs[:1]), 0), *_inputs(structures[0], 2))
    # the padding atoms sit at the origin, on top of the Na atom, and are oxygen
    inside = EFS(params, _row(padded, 0), *_inputs(structures[0], sizes[0], pad_number=8))
    forces = np.asarray(inside["forces"])
    assert np.isfinite(forces).all() and np.isfinite(np.asarray(inside["stress"])).all()
    assert np.all(forces[2:] == 0.0)
    assert abs(float(inside["energy"]) - float(alone["energy"])) < 1e-6
    np.testing.assert_allclose(forces[:2], alone["forces"], atol=1e-5)
    np.testing.assert_allclose(inside["stress"], alone["stress"], atol=1e-4)

    # the other crystal of the same padded table, vmapped: same as evaluated alone
    batch = [_inputs(s, sizes[0]) for s in structures]
    stacked = [np.stack(x) for x in zip(*batch)]
    both = jax.jit(jax.vmap(chgnet.energy_forces_stress, in_axes=(None, 0, 0, 0, 0)))(
        params, {f: padded[f] for f in GRAPH_FIELDS}, *stacked)
    assert np.isfinite(np.asarray(both["forces"])).all()
    assert abs(float(both["energy"][0]) - float(alone["energy"])) < 1e-6
    large_alone = EFS(params, _row(stack_graphs(graphs[1:]), 0), *_inputs(structures[1], 8))
    assert abs(float(both["energy"][1]) - float(large_alone["energy"])) < 1e-6
    np.testing.assert_allclose(both["stress"][1], large_alone["stress"], atol=1e-4)
    assert float(both["energy"][0]) != pytest.approx(float(both["energy"][1]), abs=1e-3)


def test_load_weights_converts_once_into_a_fresh_cache(isolated_cache_dir, monkeypatch,
                                                       reference):
    model, _ = reference
    arrays, record = weights.load_weights()
    (npz,) = (isolated_cache_dir / "chgnet").glob("*.npz")
    assert record["sha256"][:16] in npz.name
    assert json.loads(npz.with_suffix(".json").read_text()) == record
    state = model.state_dict()
    assert set(arrays) == set(state) and record["num_parameters"] == sum(
        v.numel() for v in state.values())
    for name, value in state.items():
        np.testing.assert_array_equal(arrays[name], value.detach().numpy(), err_msg=name)

    def no_conversion(*args, **kwargs):
        raise AssertionError("the cached weights were converted again")

    monkeypatch.setattr(weights, "convert_checkpoint", no_conversion)
    mtime = npz.stat().st_mtime_ns
    again, record_again = weights.load_weights()
    assert record_again == record and npz.stat().st_mtime_ns == mtime
    assert all(np.array_equal(again[k], arrays[k]) for k in arrays)


def test_unknown_version_is_a_weights_error():
    with pytest.raises(weights.WeightsError, match="unknown CHGNet version '9.9.9'"):
        weights.checkpoint_path("9.9.9")
    assert weights.checkpoint_path().is_file()
