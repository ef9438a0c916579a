"""In-graph CHGNet oracle (``oracle: chgnet``): a machine-learned potential inside the step.

The finished crystal's energy comes from the JAX port of CHGNet 0.3.0
(:mod:`crystaljax.mlip.chgnet`) on a graph built on the host once per template
(:mod:`crystaljax.mlip.graph`); the species come from the env state. Everything is pure
``jnp``: it jits, vmaps over envs and runs on a GPU with no host round trip.

Properties: ``density`` (g/cm³), ``bulk_modulus`` (GPa, B = V d2E/dV2 by autodiff),
``energy`` (eV/atom) and ``formation_energy`` (eV/atom: E/N minus the composition-weighted
elemental references of :mod:`crystaljax.mlip.references`, each element relaxed once by
the same model; a per-token table, so it stays pure ``jnp``). Options
(:class:`CHGNetOptions`, key ``env.oracle_options``):

* ``relax: volume`` (default): the lattice is scaled isotropically (fractional
  coordinates fixed) to the minimum of E inside ``[min_scale, max_scale]`` x the template's
  lattice constants (:func:`crystaljax.mlip.relax.relax_volume`); the property is read
  there. A crystal without a minimum in that range gets status ``NO_MINIMUM`` (the floor
  reward), never a made-up number.
* ``relax: none``: CrystalGym's protocol, everything at the template's volume (the bulk
  modulus is the local curvature there, and may be negative).
* ``max_formation_energy`` (eV/atom, default off): whatever the property, a crystal whose
  formation energy (at the same volume) is above it gets status ``UNSTABLE`` (the floor
  reward, no value), which steers agents toward crystals that could exist.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from pymatgen.core import Element

from crystaljax.config import check, option
from crystaljax.mlip import chgnet
from crystaljax.mlip.graph import CrystalGraph, GraphError, build_graph, reduce_by_symmetry, stack_graphs
from crystaljax.mlip.references import reference_energies
from crystaljax.mlip.relax import bulk_modulus, jet_taylor, relax_volume
from crystaljax.mlip.weights import CHECKPOINTS, load_weights
from crystaljax.oracles.analytic import AMU_PER_A3_TO_G_PER_CM3
from crystaljax.oracles.base import Status
from crystaljax.oracles.batching import BATCHING

#: lattice-constant scales from which ``batching: map`` keeps a smaller graph of its own
#: (valid for every scale above; the graph of ``min_scale`` covers the rest). Below 1.0 the
#: bond graph shrinks fastest (3 Å cut-off); above it the atom graph (6 Å); more levels
#: compile longer and were measured no faster (docs/MLIP.md).
GRAPH_LEVELS = (0.85, 0.9, 1.0, 1.15)

#: properties the in-graph CHGNet oracle computes
PROPERTIES = ("density", "bulk_modulus", "energy", "formation_energy")


@dataclasses.dataclass(frozen=True)
class CHGNetOptions:
    """Options of the CHGNet oracles (``env.oracle_options``).

    Attributes:
      relax: ``volume`` (isotropic volume relaxation, default) or ``none`` (template volume).
      min_scale, max_scale: the searched range of the lattice-constant scale factor.
      steps: Newton/bisection steps of the volume search (fixed, so it jits).
      version: CHGNet checkpoint bundled with the ``chgnet`` package.
      max_formation_energy: eV/atom or None (off, default): a crystal whose formation
        energy is above it gets ``Status.UNSTABLE`` (the floor reward) for any property.
      batching: how a batch of finished crystals is computed: ``map`` (one by one in a
        compiled loop, each energy on the smallest graph valid at its scale), ``vmap``
        (one vmapped computation on the graph of ``min_scale``) or ``auto`` (default:
        ``map`` on CPU, ``vmap`` on accelerators; see docs/MLIP.md for the measurement).
      chunk: ``vmap`` batching computes at most this many crystals at once (larger batches
        run chunk after chunk in a compiled loop): the memory of a vmapped relaxation grows
        with the batch (about 70 MB per 5-site perovskite, measured on CPU), so thousands of
        envs on a GPU need it; 0 = the whole batch at once. Default 128: on an H200, 4,096
        envs ran at 884 / 698 / 526 crystals/s in chunks of 128 / 256 / 512 (a chunk's
        volume search runs until its slowest crystal stops, so smaller chunks waste less).
      symmetry: compute on one edge, bond and angle per orbit of the template's site-fixing
        symmetry operations, weighted by the orbit's size (default true): the same E(s) up
        to float32 rounding (and spglib's 1e-4 Å tolerance), for every decoration
        (``mlip.graph.reduce_by_symmetry``); in the cubic perovskite cell 3-6x fewer
        message edges, bonds and angles per graph level; false: the full graph.
    """

    relax: str = option("volume", choices=("none", "volume"))
    min_scale: float = option(0.8, gt=0.5, le=1.0)
    max_scale: float = option(1.3, ge=1.0, le=2.0)
    steps: int = option(8, ge=1, le=100)
    version: str = option("0.3.0", choices=tuple(CHECKPOINTS))
    max_formation_energy: float | None = option(None)
    batching: str = option("auto", choices=("auto", *BATCHING))
    chunk: int = option(128, ge=0)
    symmetry: bool = option(True)

    def __post_init__(self):
        check(self)

    def resolved_batching(self) -> str:
        """``batching`` with ``auto`` resolved for JAX's default backend."""
        if self.batching != "auto":
            return self.batching
        return "map" if jax.default_backend() == "cpu" else "vmap"


class CHGNetStepOracle:
    """``fn(tokens [S], template_id [], params) -> (value f32 [], status int32 [])``.

    Holds the CHGNet parameters and the stacked, padded graphs of the env's templates
    (arrays closed over by the jitted step), and, for ``formation_energy`` or
    ``max_formation_energy``, the elemental reference energy of each token
    (``references``, eV/atom; 0 for the empty token). ``can_fail``: True with
    ``relax: volume`` (``NO_MINIMUM``) or ``max_formation_energy`` (``UNSTABLE``), False
    otherwise (a value is always returned). ``expensive``: the env evaluates it only at
    steps where an env finished.
    """

    expensive = True

    def __init__(self, property_name: str, options: CHGNetOptions, templates: Sequence[Any],
                 vocab: Sequence[str], cache_dir: str | None = None):
        if property_name not in PROPERTIES:
            raise ValueError(f"the CHGNet oracle computes {list(PROPERTIES)}, not "
                             f"{property_name!r}")
        self.property_name = property_name
        self.options = options
        self.can_fail = options.relax == "volume" or options.max_formation_energy is not None
        state_dict, self.weights_record = load_weights(options.version, cache_dir)
        self.reference_table: dict[str, tuple[float, str]] | None = None
        self.references = None
        if property_name == "formation_energy" or options.max_formation_energy is not None:
            self.reference_table = reference_energies(vocab, options.version, cache_dir)
            self.references = jnp.asarray([self.reference_table[s][0] for s in vocab] + [0.0],
                                          jnp.float32)
        self.params = chgnet.to_params(state_dict)
        self.batching = options.resolved_batching()
        self.chunk = options.chunk
        min_scale, max_scale = ((options.min_scale, options.max_scale)
                                if options.relax == "volume" else (1.0, 1.0))
        #: ascending scales; graph k serves s >= levels[k] (map batching: up to the next)
        self.levels = (min_scale,)
        tables = [stack_graphs([self._graph(t, min_scale) for t in templates])]
        if self.batching == "map":
            for level in (level for level in GRAPH_LEVELS if min_scale < level < max_scale):
                try:
                    tables.append(stack_graphs([self._graph(t, level) for t in templates]))
                except GraphError:  # an atom alone within the shorter reach: keep the
                    continue        # larger graph of the level below for these scales
                self.levels += (level,)
        table = tables[0]
        n = table["atom_mask"].shape[1]
        self.graph_levels = [{k: jnp.asarray(v) for k, v in t.items() if k != "num_atoms"}
                             for t in tables]
        self.graphs = self.graph_levels[0]
        frac = np.zeros((len(templates), n, 3), np.float32)
        for i, t in enumerate(templates):
            frac[i, :t.num_sites] = t.frac_coords
        self.frac_coords = jnp.asarray(frac)
        self.lattices = jnp.asarray(np.stack([np.asarray(t.lattice, np.float32)
                                              for t in templates]))
        # each template's geometry at scale 1 on each graph: E(s) then only scales lengths
        reference = jax.jit(jax.vmap(partial(chgnet.scale_reference, self.params)))
        self.scale_references = [reference(graphs, self.frac_coords, self.lattices)
                                 for graphs in self.graph_levels]
        self.volumes = jnp.asarray([abs(np.linalg.det(t.lattice)) for t in templates],
                                   jnp.float32)
        # atomic number per token; the empty token (index V) is H on a masked site
        self.atomic_numbers = jnp.asarray([Element(s).Z for s in vocab] + [1], jnp.int32)
        self.masses = jnp.asarray([float(Element(s).atomic_mass) for s in vocab] + [0.0],
                                  jnp.float32)

    def _graph(self, template: Any, min_scale: float) -> CrystalGraph:
        """The template's graph valid from ``min_scale`` up (reduced by symmetry unless
        ``symmetry`` is off)."""
        graph = build_graph(template.lattice, template.frac_coords, min_scale=min_scale)
        if self.options.symmetry:
            graph = reduce_by_symmetry(graph, template.lattice, template.frac_coords)
        return graph

    def _branches(self, tokens: jnp.ndarray, template_id: jnp.ndarray):
        """E(s) on the graph of each level (ascending scales), in eV per cell."""
        n = self.frac_coords.shape[1]
        numbers = self.atomic_numbers[tokens[:n]]

        def on_graph(level: int):
            graph, reference = jax.tree.map(lambda x: x[template_id],
                                            (self.graph_levels[level],
                                             self.scale_references[level]))
            return lambda s: chgnet.energy_at_scale(self.params, graph, numbers, reference, s)

        return [on_graph(k) for k in range(len(self.levels))]

    def energy_of_scale(self, tokens: jnp.ndarray, template_id: jnp.ndarray):
        """E(s) in eV per cell of the decorated template with its lattice scaled by s, on the
        smallest graph valid at s (a ``lax.switch`` over :attr:`levels`; one graph under
        ``vmap`` batching, where a switch would compute every branch)."""
        return self._by_level(self._branches(tokens, template_id))

    def _by_level(self, branches):
        """``fn(s)``: the branch of the level of s (a ``lax.switch``; the branch itself when
        there is one level)."""
        if len(branches) == 1:
            return branches[0]
        bounds = jnp.asarray(self.levels[1:], jnp.float32)
        return lambda s: jax.lax.switch(jnp.sum(s >= bounds), branches, s)

    def taylor_of_scale(self, tokens: jnp.ndarray, template_id: jnp.ndarray):
        """``fn(s) -> (E, E', E'')`` (eV per cell) on the graph of :meth:`energy_of_scale`:
        the switch picks a branch that computes all three in one Taylor-mode pass
        (:func:`~crystaljax.mlip.relax.jet_taylor`)."""
        return self._by_level([partial(jet_taylor, b)
                               for b in self._branches(tokens, template_id)])

    def energies_on_grid(self, tokens: jnp.ndarray, template_id: jnp.ndarray):
        """``fn(grid) -> E f32 [G]`` (eV per cell) at the static, ascending scales ``grid``
        (f32 [G] NumPy): the level of each scale is known at trace time, so each group of
        scales runs vmapped on its own graph (a switch under ``vmap`` would run every graph
        at every scale). Vmapped rather than one by one in a ``lax.map``: 30 % faster on a
        CPU (the graphs are small, so per-op overhead dominates; docs/MLIP.md)."""
        branches = self._branches(tokens, template_id)
        if len(branches) == 1:
            return jax.vmap(branches[0])
        bounds = np.asarray(self.levels[1:], np.float32)

        def on_grid(grid: np.ndarray) -> jnp.ndarray:
            grid = np.asarray(grid, np.float32)
            level = (grid[:, None] >= bounds).sum(1)
            if np.any(np.diff(level) < 0):
                raise ValueError("the grid must be ascending")
            return jnp.concatenate([jax.vmap(branches[k])(jnp.asarray(grid[level == k]))
                                    for k in np.unique(level)])

        return on_grid

    def __call__(self, tokens: jnp.ndarray, template_id: jnp.ndarray, params: Any = None
                 ) -> tuple[jnp.ndarray, jnp.ndarray]:
        """(value in the property's unit, Status code) of one finished crystal."""
        found = self.evaluate(tokens, template_id)
        return found["value"], found["status"]

    def evaluate(self, tokens: jnp.ndarray, template_id: jnp.ndarray) -> dict[str, jnp.ndarray]:
        """One finished crystal in full: ``value`` f32 [] (nan unless OK), ``status`` int32
        [], ``scale`` f32 [] (lattice-constant factor where it was read) and
        ``energy_per_atom`` f32 [] (eV/atom there)."""
        n = self.frac_coords.shape[1]
        e_of_s = self.energy_of_scale(tokens, template_id)
        volume0 = self.volumes[template_id]
        atoms = self.graphs["atom_mask"][template_id].sum()
        mass = self.masses[tokens[:n]].sum()
        if self.options.relax == "volume":
            found = relax_volume(e_of_s, self.options.min_scale, self.options.max_scale,
                                 self.options.steps,
                                 energies_on_grid=self.energies_on_grid(tokens, template_id),
                                 taylor_of_scale=self.taylor_of_scale(tokens, template_id))
            scale, energy, ok = found.scale, found.energy, found.has_minimum & found.converged
            gradient, curvature = found.gradient, found.curvature
            failed = jnp.where(found.has_minimum, int(Status.RELAX_NOT_CONVERGED),
                               int(Status.NO_MINIMUM))
        else:
            scale = jnp.float32(1.0)
            energy = e_of_s(scale)
            if self.property_name == "bulk_modulus":
                _, gradient, curvature = self.taylor_of_scale(tokens, template_id)(scale)
            else:
                gradient = curvature = jnp.float32(jnp.nan)
            ok = jnp.isfinite(energy)
            failed = int(Status.NO_MINIMUM)
        if self.references is not None:
            formation = (energy - self.references[tokens[:n]].sum()) / atoms
        if self.property_name == "density":
            value = mass / (volume0 * scale ** 3) * AMU_PER_A3_TO_G_PER_CM3
        elif self.property_name == "bulk_modulus":
            value = bulk_modulus(gradient, curvature, scale, volume0)
        elif self.property_name == "formation_energy":
            value = formation
        else:
            value = energy / atoms
        status = jnp.where(ok, int(Status.OK), failed)
        if self.options.max_formation_energy is not None:
            unstable = ok & (formation > self.options.max_formation_energy)
            status = jnp.where(unstable, int(Status.UNSTABLE), status)
        status = status.astype(jnp.int32)
        return {"value": jnp.where(status == int(Status.OK), value, jnp.nan).astype(jnp.float32),
                "status": status, "scale": jnp.asarray(scale, jnp.float32),
                "energy_per_atom": (energy / atoms).astype(jnp.float32)}


def build_in_graph(property_name: str, options: CHGNetOptions | None, templates: Sequence[Any],
                   vocab: Sequence[str]) -> CHGNetStepOracle:
    """The registry's builder of ``oracle: chgnet``."""
    return CHGNetStepOracle(property_name, options or CHGNetOptions(), templates, vocab)


__all__ = ["CHGNetOptions", "CHGNetStepOracle", "PROPERTIES", "build_in_graph"]
