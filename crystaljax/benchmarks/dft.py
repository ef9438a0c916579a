"""The QE oracle's benchmarks (scripts/bench_dft.py): wall time per property of two presets
side by side (``default`` against ``gth``), evaluations per hour and cache hit ratio.
Validation against published PBE numbers is :mod:`crystaljax.benchmarks.validation`.
Results go to JSON files that are rewritten after every measurement, so a run can be
stopped and resumed."""

from __future__ import annotations

import json
import random
import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from pymatgen.core import Lattice, Structure

from crystaljax.benchmarks.validation import evaluate

SMALL = "Li Na K Rb Be Ca Mg Sr H C N O P S Se F Cl Br".split()
PEROVSKITE = [(0, 0, 0), (0.5, 0.5, 0.5), (0, 0.5, 0.5), (0.5, 0, 0.5), (0.5, 0.5, 0)]
BCC4 = [(0, 0, 0), (0.5, 0.5, 0), (0, 0.5, 0.5), (0.5, 0, 0.5)]


def fcc_lattice(a: float) -> Lattice:
    """The primitive lattice of an fcc cell with conventional lattice constant ``a`` (Å)."""
    return Lattice([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]])


def rock_salt(cation: str, anion: str, a: float) -> Structure:
    """Two-site rock-salt primitive cell of lattice constant ``a`` (Å)."""
    return Structure(fcc_lattice(a), [cation, anion], [[0, 0, 0], [0.5, 0.5, 0.5]])


def cubic5(a: float, species) -> Structure:
    """5-site cubic template (Pm-3m perovskite arrangement), lattice constant ``a`` (Å)."""
    return Structure(Lattice.cubic(a), species, PEROVSKITE)


def cell4(species) -> Structure:
    """4-site cell a = b = c = 5.1693 Å, alpha = beta = gamma = 109.4712 deg."""
    return Structure(Lattice.from_parameters(5.1693, 5.1693, 5.1693, 109.4712, 109.4712,
                                             109.4712), species, BCC4)


def soft_elements() -> list[str]:
    """Small-vocabulary elements whose ``gth`` cutoff is <= 100 Ry (the throughput crystals)."""
    from crystaljax.oracles.qe.presets import GTH_ECUTWFC

    return [e for e in SMALL if GTH_ECUTWFC[e] <= 100]


#: (label, property, structure) of the side-by-side wall-time measurements: each CrystalGym
#: cell with a decoration of soft elements (NaSe4 on the 4.2748 Å cell is the original's
#: bulk-modulus example) and one with O, N or F; then the validation crystals
#: (:data:`crystaljax.benchmarks.validation.REFERENCE`) for band gap and bulk modulus.
CASES = [
    ("4-site, a=5.1693 (SrLiSeBr)", "density", lambda: cell4(["Sr", "Li", "Se", "Br"])),
    ("4-site, a=5.1693 (CaMgO2)", "density", lambda: cell4(["Ca", "Mg", "O", "O"])),
    ("5-site, a=4.2748 (NaSe4)", "bulk_modulus",
     lambda: cubic5(4.2748, ["Na", "Se", "Se", "Se", "Se"])),
    ("5-site, a=4.2748 (KMgF3)", "bulk_modulus",
     lambda: cubic5(4.2748, ["K", "Mg", "F", "F", "F"])),
    ("5-site, a=4.5443 (KMgCl3)", "band_gap",
     lambda: cubic5(4.5443, ["K", "Mg", "Cl", "Cl", "Cl"])),
    ("5-site, a=4.5443 (SrTiO3)", "band_gap",
     lambda: cubic5(4.5443, ["Sr", "Ti", "O", "O", "O"])),
]


def slowest_expected(candidates: Iterable[Structure], preset: str = "default") -> Structure:
    """The crystal of ``candidates`` that ``preset`` expects to be the slowest
    (:func:`~crystaljax.oracles.qe.cost.expected_cost`; the first of equal ones)."""
    from crystaljax.oracles.qe.cost import expected_cost
    from crystaljax.oracles.qe.oracle import QEOracle

    with QEOracle("bulk_modulus", preset=preset, cache=None, workers=1) as oracle:
        return max(candidates, key=lambda s: expected_cost(s, oracle.family, oracle.settings))


def hardest_two_site(preset: str = "default") -> Structure:
    """The 2-site rock-salt crystal of the large vocabulary that ``preset`` expects to be the
    slowest (:func:`slowest_expected`; nearest-neighbour distance the sum of the atomic
    radii): the bulk-modulus target is for *any* 2-site crystal."""
    from pymatgen.core import Element

    from crystaljax.elements import LARGE

    def contact(a: str, b: str) -> Structure:
        nn = (Element(a).atomic_radius or 1.5) + (Element(b).atomic_radius or 1.5)
        return rock_salt(a, b, 2.0 * float(nn))

    return slowest_expected((contact(a, b) for i, a in enumerate(LARGE) for b in LARGE[i:]),
                            preset)


def hardest_two_site_template(preset: str = "default") -> Structure:
    """The decoration of a 2-site template of the prototype library
    (:mod:`crystaljax.templates.prototypes`: rock salt, CsCl, zinc blende, diamond, hcp,
    L1_0, alpha-U) with two elements of the large vocabulary that ``preset`` expects to be
    the slowest (:func:`slowest_expected`): the slowest 2-site crystal an agent can build,
    on the template's own lattice."""
    from crystaljax.elements import LARGE
    from crystaljax.templates.prototypes import list_prototypes, prototype

    templates = [t for t in map(prototype, list_prototypes()) if t.num_sites == 2]
    return slowest_expected((Structure(Lattice(t.lattice), [a, b], t.frac_coords)
                             for t in templates for a in LARGE for b in LARGE), preset)


def validation_cases() -> list:
    """(label, property, structure maker) of the validation crystals, gap and modulus."""
    from crystaljax.benchmarks.validation import REFERENCE

    return [(f"{name} (validation, a={ref.a})", prop, ref.structure)
            for name, ref in REFERENCE.items() for prop in ("band_gap", "bulk_modulus")]


def ratio_bound(first: str, second: str) -> str | None:
    """What a time ratio second / first is when runs hit their time limit: ``"lower"``
    (only the second timed out: it would have taken longer), ``"upper"`` (only the first),
    ``"none"`` (both: not a measurement), or ``None`` (an exact ratio)."""
    timed_out = (first == "TIMEOUT", second == "TIMEOUT")
    return {(False, False): None, (False, True): "lower", (True, False): "upper",
            (True, True): "none"}[timed_out]


def has_hard_anion(structure) -> bool:
    """Whether ``structure`` contains O, N or F (the elements GTH needs 200-300 Ry for)."""
    return bool({"O", "N", "F"} & {el.symbol for el in structure.composition.elements})


def parse_column(spec: str) -> tuple[str, dict, dict]:
    """A side-by-side column: ``PRESET`` or ``PRESET:KEY=VALUE,...`` with recipe option
    overrides (e.g. ``default:reuse_density=false``, ``gth:volume_scales=[0.99,1,1.01]``)
    and pw.x settings overrides (``settings.KEY=VALUE``, e.g.
    ``default:settings.mixing_beta=0.4``) -> (preset, checked recipe overrides, checked
    settings overrides). ConfigError for an unknown preset or option, or a bad value."""
    from crystaljax.config import ConfigError, parse_value
    from crystaljax.oracles.qe.options import check_recipe, check_settings
    from crystaljax.oracles.qe.presets import get_preset

    preset, _, rest = spec.partition(":")
    try:
        get_preset(preset)
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"column {spec!r}: {exc}") from None
    recipe, settings = {}, {}
    for item in filter(None, re.split(r",(?=\s*[A-Za-z_][\w.]*\s*=)", rest)):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"column {spec!r}: expected PRESET:KEY=VALUE,..., got {item!r}")
        if key.startswith("settings."):
            settings[key.removeprefix("settings.")] = parse_value(value.strip())
        else:
            recipe[key] = parse_value(value.strip())
    return (preset, check_recipe(recipe, f"column {spec!r}"),
            check_settings(settings, f"column {spec!r} settings"))


def per_property(runner, only: Sequence[str] | None = None,
                 presets: Sequence[str] = ("default", "gth"), done: Sequence[dict] = (),
                 on_row=None, cases: Sequence[str] | None = None) -> list[dict]:
    """Wall time of one evaluation per case and column, the columns one after the other on
    the same crystal, each on a warm one-worker pool (its start-up is recorded as
    ``pool_start_s``, not timed); ``ratio`` = time of the second column / time of the first. A column
    is a preset name, optionally with recipe and settings overrides (:func:`parse_column`). Rows of
    ``done`` (same cell and property) are kept, not re-measured; ``on_row(rows)`` is called
    after each new row (to save progress). ``cases``: measure only the cases whose label
    contains one of these strings."""
    if len(set(presets)) != len(presets):
        raise ValueError(f"the columns must differ, got {list(presets)}")
    columns = {spec: parse_column(spec) for spec in presets}
    rows = list(done)
    measured = {(r["cell"], r["property"]) for r in rows}
    hardest = [("2-site template, hardest decoration expected ({})", "bulk_modulus",
                hardest_two_site_template),
               ("2-site rock salt, hardest pair expected ({})", "bulk_modulus", hardest_two_site)]
    chosen = [c for c in [*CASES, *validation_cases(), *hardest]
              if (not only or c[1] in only) and (not cases or any(k in c[0] for k in cases))]
    cases = [(label, prop, make()) for label, prop, make in chosen]
    # small cells first, and among them crystals with O, N or F (the speed target is about
    # them): a run stopped early has the most rows
    for label, prop, structure in sorted(cases, key=lambda c: (len(c[2]),
                                                               not has_hard_anion(c[2]))):
        label = label.format(structure.composition.reduced_formula)
        if (label, prop) in measured:
            continue
        row = {"cell": label, "property": prop, "hard_anion": has_hard_anion(structure),
               "presets": {}}
        for spec, (preset, recipe, settings) in columns.items():
            timings: dict = {}
            (result,), wall = evaluate(prop, [structure], runner, preset, timings=timings,
                                       recipe=recipe, settings=settings)
            # the cutoffs the runs used (None for a job that raised)
            ecutwfc, ecutrho = result.extra.get("cutoffs_ry") or (None, None)
            row["presets"][spec] = {
                "value": result.value, "status": result.status.name, "reason": result.reason,
                "wall_s": round(wall, 1), "ecutwfc_ry": ecutwfc, "ecutrho_ry": ecutrho,
                **timings,
            }
        first, second = (row["presets"][p] for p in presets[:2])
        row["ratio"] = round(second["wall_s"] / max(first["wall_s"], 1e-9), 2)
        row["ratio_bound"] = ratio_bound(first["status"], second["status"])
        rows.append(row)
        print(row, flush=True)
        if on_row is not None:
            on_row(rows)
    return rows


def throughput(runner, batch: int, workers: int, seed: int = 0, preset: str = "default") -> dict:
    """Density evaluations per hour of ``batch`` random decorations of the 4-site cell."""
    rng = random.Random(seed)
    soft = soft_elements()
    crystals = [cell4([rng.choice(soft) for _ in range(4)]) for _ in range(batch)]
    results, wall = evaluate("density", crystals, runner, preset, workers)
    return {"workers": workers, "batch": batch, "wall_s": round(wall, 1),
            "evaluations_per_hour": round(3600.0 * batch / wall, 1),
            "statuses": [r.status.name for r in results],
            "formulas": [c.composition.formula for c in crystals]}


def hit_ratio(policy: str, episodes: int, seed: int = 0) -> dict:
    """Cache hits of simulated episodes on the 5-site cell ("random" policy, or a fixed
    crystal with 10 % random actions), counted with the cache's canonical keys (no DFT)."""
    from crystaljax.oracles.cache import ResultCache

    rng = random.Random(seed)
    fixed = ["Sr", "Mg", "O", "O", "O"]
    with tempfile.TemporaryDirectory() as tmp:
        cache = ResultCache(Path(tmp) / "c.sqlite")
        seen: set = set()
        hits = 0
        for _ in range(episodes):
            species = [rng.choice(SMALL) if policy == "random" or rng.random() < 0.1 else s
                       for s in fixed]
            key = cache.structure_key(cubic5(4.2748, species))
            hits += key in seen
            seen.add(key)
        cache.close()
    return {"policy": policy, "episodes": episodes, "hits": hits,
            "hit_ratio": round(hits / episodes, 3), "distinct_crystals": len(seen)}


def load_json(out: Path) -> dict:
    """A results file's contents ({} if it does not exist yet)."""
    return json.loads(out.read_text()) if out.exists() else {}


def save_json(out: Path, data: dict) -> None:
    """Write ``data`` to ``out`` (folders created), indented."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1, default=str))


def bench(out: str, batch: int = 4, episodes: int = 500, time_limit: float = 900.0,
          properties: bool = True, only: Sequence[str] | None = None, hit_ratios: bool = True,
          throughputs: bool = True, presets: Sequence[str] = ("default", "gth"),
          redo: bool = False, cases: Sequence[str] | None = None) -> dict:
    """The QE oracle benchmark into ``out``: side-by-side wall times of ``presets``
    (:func:`per_property`; rows already in ``out`` are kept unless ``redo``), density
    evaluations per hour with the first preset, and cache hit ratios."""
    from crystaljax.oracles.executors import available_cores
    from crystaljax.oracles.qe.runner import RunnerConfig

    runner = RunnerConfig(time_limit=time_limit)
    path = Path(out)
    data = load_json(path)
    data["machine"] = {"cores": available_cores(), "mpi_ranks_per_run": 1,
                       "time_limit_per_pw_run_s": time_limit}
    if hit_ratios or "hit_ratio" not in data:
        data["hit_ratio"] = [hit_ratio("random", episodes), hit_ratio("fixed", episodes)]
        print(data["hit_ratio"], flush=True)
    save_json(path, data)
    if properties:
        done = [] if redo else [r for r in data.get("side_by_side", [])
                                if list(r["presets"]) == list(presets)]

        def save(rows):
            data["side_by_side"] = rows
            save_json(path, data)

        save(per_property(runner, only, presets, done, on_row=save, cases=cases))
    if throughputs:
        data["throughput"] = []
        for workers in (available_cores(), 1):
            data["throughput"].append(throughput(runner, batch, workers,
                                                 preset=parse_column(presets[0])[0]))
            print(data["throughput"][-1], flush=True)
            save_json(path, data)
    return data


def bench_table(data: dict) -> str:
    """The Markdown tables of a :func:`bench` results file."""
    rows = data.get("side_by_side", [])
    presets = list(rows[0]["presets"]) if rows else []
    lines = []
    if rows:
        lines += [f"| crystal | property | O/N/F | {' | '.join(f'{p} (s)' for p in presets)} | "
                  f"{presets[-1]} / {presets[0]} | values |",
                  "|---|---|---|" + "---|" * len(presets) + "---|---|"]
        for r in rows:
            times = " | ".join(
                f"{v['wall_s']}" + ("" if v["status"] == "OK" else f" ({v['status']})")
                for v in r["presets"].values())
            values = ", ".join(f"{v['value']:.3g}" for v in r["presets"].values())
            bound = r.get("ratio_bound")
            ratio = {"lower": f"≥ {r['ratio']}", "upper": f"≤ {r['ratio']}",
                     "none": "(both timed out)"}.get(bound, f"{r['ratio']}")
            lines.append(f"| {r['cell']} | {r['property']} | {'yes' if r['hard_anion'] else ''} "
                         f"| {times} | {ratio} | {values} |")
        lines.append("")
    lines += ["| measurement | setting | result |", "|---|---|---|"]
    lines += [f"| evaluations/hour (density) | {r['workers']} worker(s), batch {r['batch']} | "
              f"{r['evaluations_per_hour']} |" for r in data.get("throughput", [])]
    lines += [f"| cache hit ratio | {r['policy']} policy, {r['episodes']} episodes | "
              f"{r['hit_ratio']} |" for r in data.get("hit_ratio", [])]
    return "\n".join(lines)


__all__ = ["CASES", "bench", "bench_table", "ratio_bound", "cell4", "cubic5", "fcc_lattice", "has_hard_anion",
           "hardest_two_site", "hardest_two_site_template", "hit_ratio", "parse_column",
           "per_property", "slowest_expected", "throughput", "validation_cases"]
