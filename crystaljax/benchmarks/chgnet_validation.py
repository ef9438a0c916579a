"""CHGNet (in-graph ``chgnet`` and torch ``chgnet-host``) against published PBE values and
the QE oracle (scripts/validate_chgnet.py, docs/VALIDATION.md).

Two sets, both with the volume-relaxed bulk modulus B0 and density (one E(V) search per
crystal and oracle gives both: B at the minimum, density at its volume):

* ``validation``: the seven crystals of :data:`~crystaljax.benchmarks.validation.REFERENCE`
  at their PBE lattice, against the published PBE B0 and the density of the PBE lattice,
  and against our QE values of ``benchmarks/validation.json`` (not recomputed);
* ``random``: random decorations of an env template with the small vocabulary (fixed
  seed), against the QE oracle (``relax: volume``) on the same range of scales.

Results go to a JSON file rewritten after every computation; a rerun skips what is there.
"""

from __future__ import annotations

import datetime
import math
import time
from pathlib import Path

import numpy as np

from crystaljax.benchmarks.dft import load_json, save_json
from crystaljax.benchmarks.validation import REFERENCE

PROPS = ("bulk_modulus", "density")
#: (a, b) pairs compared per set; "pbe" is the published reference (validation set only)
PAIRS = {"validation": (("chgnet", "pbe"), ("chgnet-host", "pbe"), ("qe", "pbe"),
                        ("chgnet", "qe"), ("chgnet-host", "qe"), ("chgnet", "chgnet-host")),
         "random": (("chgnet", "qe"), ("chgnet-host", "qe"), ("chgnet", "chgnet-host"),
                    ("chgnet", "qe-default"), ("qe", "qe-default"))}


def _mass_density(structure, volume: float) -> float:
    """g/cm3 of ``structure``'s atoms in ``volume`` Å^3."""
    return float(structure.composition.weight) / volume * 1.66053906660


def _finite(x):
    return float(x) if x is not None and math.isfinite(x) else None


def _row(status: str, b, density, scale, energy, seconds: float, reason: str = "") -> dict:
    ok = status == "OK"
    return {"status": status, "bulk_modulus": _finite(b) if ok else None,
            "density": _finite(density) if ok else None, "scale": _finite(scale),
            "energy_per_atom": _finite(energy), "seconds": round(seconds, 2), "reason": reason}


class InGraph:
    """The in-graph CHGNet oracle (``bulk_modulus``, ``relax: volume``) over ``structures``
    as templates, jitted once: ``self(i)`` is the row of structure ``i``."""

    def __init__(self, structures, min_scale: float, max_scale: float):
        import jax
        import jax.numpy as jnp

        from crystaljax.oracles.chgnet import CHGNetOptions, CHGNetStepOracle
        from crystaljax.templates.core import from_structure

        self.structures = list(structures)
        templates = [from_structure(s, source="chgnet-validation") for s in self.structures]
        self.vocab = sorted({e for t in templates for e in t.species})
        options = CHGNetOptions(relax="volume", min_scale=min_scale, max_scale=max_scale)
        self.oracle = CHGNetStepOracle("bulk_modulus", options, templates, self.vocab)
        width = max(t.num_sites for t in templates)  # padding sites: the empty token
        self.tokens = [[self.vocab.index(e) for e in t.species]
                       + [len(self.vocab)] * (width - t.num_sites) for t in templates]
        self._fn = jax.jit(self.oracle.evaluate)
        self._jnp = jnp

    def __call__(self, i: int) -> dict:
        from crystaljax.oracles.base import Status

        start = time.monotonic()
        found = self._fn(self._jnp.asarray(self.tokens[i], self._jnp.int32), self._jnp.int32(i))
        b, status, scale, energy = (found[k].item() for k in
                                    ("value", "status", "scale", "energy_per_atom"))
        density = _mass_density(self.structures[i], self.structures[i].volume * scale ** 3)
        return _row(Status(int(status)).name, b, density, scale, energy, time.monotonic() - start)


def host_row(oracle, structure) -> dict:
    """Row of the torch host oracle (``bulk_modulus``, ``relax: volume``)."""
    start = time.monotonic()
    r = oracle.evaluate([structure])[0]
    volume = r.extra.get("volume")
    return _row(r.status.name, r.value, _mass_density(structure, volume) if volume else None,
                r.extra.get("scale"),
                r.extra.get("energy_per_atom"), time.monotonic() - start, r.reason)


def qe_row(oracle, structure) -> dict:
    """Row of the QE oracle (``bulk_modulus``, ``recipe.relax: volume``)."""
    start = time.monotonic()
    r = oracle.evaluate([structure])[0]
    row = _row(r.status.name, r.value, r.extra.get("relaxed_density"),
               r.extra.get("lattice_factor"), r.extra.get("energy_per_atom"),
               time.monotonic() - start, r.reason)
    row["scf_runs"] = len(r.extra.get("energies") or [])
    return row


def qe_validation_rows(path: str = "benchmarks/validation.json") -> dict:
    """Our QE values of the validation crystals (B0 of the ±2 % scan at the PBE lattice,
    density after vc-relax), as rows."""
    out = {}
    for name, rows in load_json(Path(path)).items():
        b, d = rows["bulk_modulus"], rows["density"]
        status = "OK" if b["status"] == d["status"] == "OK" else f"{b['status']}/{d['status']}"
        out[name] = _row(status, b["value"], d["value"], None, b["extra"].get("energy_per_atom"),
                         b["seconds"] + d["seconds"])
    return out


def random_decorations(num: int, seed: int = 0, template: str = "rocksalt",
                       vocab: str = "small") -> list[tuple[str, ...]]:
    """``num`` decorations of a prototype template drawn uniformly (with replacement, as an
    agent may) from a vocabulary with ``numpy.random.default_rng(seed)``."""
    from crystaljax.elements import get_vocabulary
    from crystaljax.templates.prototypes import prototype

    symbols, n, rng = get_vocabulary(vocab), prototype(template).num_sites, np.random.default_rng(seed)
    return [tuple(symbols[i] for i in rng.integers(0, len(symbols), n)) for _ in range(num)]


def _host_oracle(min_scale: float, max_scale: float):
    from crystaljax.oracles.chgnet_host import CHGNetHostOracle

    return CHGNetHostOracle("bulk_modulus", {"workers": 0, "min_scale": min_scale,
                                             "max_scale": max_scale, "cache_size": 0})


def run(out: str, num: int = 30, seed: int = 0, template: str = "rocksalt",
        preset: str = "fast", random_scales=(0.7, 1.3), validation_scales=(0.8, 1.3),
        qe: bool = True, check: int = 5, qe_time_limit: float = 900.0) -> dict:
    """Compute what ``out`` lacks (validation set, then the random set's CHGNet rows, then its
    QE rows with ``preset`` one crystal at a time, then ``default``-preset rows of the first
    ``check`` crystals that ``preset`` computed), rewriting ``out`` after each; returns it."""
    from crystaljax.benchmarks.machine import machine_description
    from crystaljax.templates.prototypes import prototype

    path = Path(out)
    data = load_json(path)
    data.setdefault("settings", {}).update(
        date=datetime.date.today().isoformat(), machine=machine_description(),
        property="bulk_modulus and density, relax volume (isotropic E(V) minimum)",
        validation_scales=list(validation_scales), random_scales=list(random_scales),
        random_template=template, random_vocab="small", seed=seed, qe_preset=preset,
        qe_default_check=check, formation_energy="chgnet rows: E/N minus the mean of the "
        "elements' CHGNet references (crystaljax.mlip.references), at the volume minimum",
        qe_validation="benchmarks/validation.json (default preset; B0 of the +-2 % scan at "
                      "the PBE lattice, density after vc-relax)")
    val = data.setdefault("validation", {})
    names = [n for n in REFERENCE if "chgnet-host" not in val.get(n, {})]
    if names:
        structures = [REFERENCE[n].structure() for n in names]
        graph, host = InGraph(structures, *validation_scales), _host_oracle(*validation_scales)
        for i, (name, s) in enumerate(zip(names, structures)):
            ref = REFERENCE[name]
            val[name] = {"pbe": _row("OK", ref.bulk_modulus, _mass_density(s, s.volume), 1.0,
                                     None, 0.0), "chgnet": graph(i), "chgnet-host": host_row(host, s)}
            print(name, val[name]["chgnet"], val[name]["chgnet-host"], flush=True)
            save_json(path, _with_stats(data))
        host.close()
    for name, row in qe_validation_rows().items():
        val[name]["qe"] = row
    rnd = data.setdefault("random", {})
    cell = prototype(template)
    decorations = random_decorations(num, seed, template)
    keys = [f"{i:02d}-{''.join(d)}" for i, d in enumerate(decorations)]
    structures = [cell.to_structure(d) for d in decorations]
    todo = [i for i, k in enumerate(keys) if "chgnet-host" not in rnd.get(k, {})]
    if todo:
        graph, host = InGraph(structures, *random_scales), _host_oracle(*random_scales)
        for i in todo:
            rnd[keys[i]] = {"symbols": list(decorations[i]), "template": template,
                            "formula": structures[i].composition.reduced_formula,
                            "chgnet": graph(i), "chgnet-host": host_row(host, structures[i])}
            print(keys[i], rnd[keys[i]]["chgnet"], rnd[keys[i]]["chgnet-host"], flush=True)
            save_json(path, _with_stats(data))
        host.close()
    _formation_energies(rnd)
    if qe:
        _qe_rows(path, data, keys, structures, preset, "qe", num, random_scales, qe_time_limit)
    if qe and check and preset != "default":
        ok = [k for k in keys if rnd[k].get("qe", {}).get("status") == "OK"][:check]
        _qe_rows(path, data, ok, [structures[keys.index(k)] for k in ok], "default",
                 "qe-default", check, random_scales, qe_time_limit)
    save_json(path, _with_stats(data))
    return data


def _formation_energies(rows: dict) -> None:
    """Add the CHGNet formation energy (eV/atom) to the computed ``chgnet`` rows lacking it."""
    from crystaljax.mlip.references import reference_energies

    todo = [r for r in rows.values()
            if r["chgnet"]["status"] == "OK" and "formation_energy" not in r["chgnet"]]
    refs = reference_energies(sorted({e for r in todo for e in r["symbols"]})) if todo else {}
    for r in todo:
        mu = float(np.mean([refs[e][0] for e in r["symbols"]]))
        r["chgnet"]["formation_energy"] = r["chgnet"]["energy_per_atom"] - mu


def _qe_rows(path, data, keys, structures, preset, column, limit, scales, time_limit):
    """The QE rows ``column`` of the random crystals ``keys`` that lack one (at most
    ``limit`` crystals in all), one at a time."""
    from crystaljax.oracles.qe.oracle import make_qe_oracle

    rnd = data["random"]
    recipe = {"relax": "volume", "relax_range": list(scales)}
    with make_qe_oracle("bulk_modulus", preset=preset, cache_path=None, workers=1, mpi_ranks=1,
                        threads=1, time_limit=time_limit, recipe=recipe) as oracle:
        for key, structure in list(zip(keys, structures))[:limit]:
            if column not in rnd[key]:
                rnd[key][column] = qe_row(oracle, structure)
                print(key, column, rnd[key][column], flush=True)
                save_json(path, _with_stats(data))


def compare(a, b) -> dict:
    """n, MAE, mean relative error (signed, and of |a - b|) of ``a`` against ``b``, Pearson
    r and Spearman rho (None where fewer than 3 pairs, or without scipy)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    out = {"n": int(len(a)), "mae": None, "mean_rel": None, "mean_abs_rel": None,
           "pearson": None, "spearman": None}
    if len(a) == 0:
        return out
    rel = (a - b) / b
    out.update(mae=float(np.mean(np.abs(a - b))), mean_rel=float(np.mean(rel)),
               mean_abs_rel=float(np.mean(np.abs(rel))))
    if len(a) >= 3 and np.std(a) > 0 and np.std(b) > 0:
        out["pearson"] = float(np.corrcoef(a, b)[0, 1])
        try:
            from scipy.stats import spearmanr
        except ImportError:
            return out
        out["spearman"] = float(spearmanr(a, b).statistic)
    return out


def statistics(rows: dict, pairs) -> dict:
    """``"a vs b" -> property -> compare()`` over the crystals where both rows are OK."""
    out = {}
    for a, b in pairs:
        out[f"{a} vs {b}"] = {}
        for prop in PROPS:
            both = [(r[a][prop], r[b][prop]) for r in rows.values()
                    if a in r and b in r and r[a]["status"] == r[b]["status"] == "OK"]
            out[f"{a} vs {b}"][prop] = compare([x for x, _ in both], [y for _, y in both])
    return out


def failures(rows: dict) -> dict:
    """oracle -> status -> count (OK included) over ``rows``."""
    out: dict = {}
    for r in rows.values():
        for oracle in ("chgnet", "chgnet-host", "qe", "qe-default"):
            if oracle in r:
                counts = out.setdefault(oracle, {})
                counts[r[oracle]["status"]] = counts.get(r[oracle]["status"], 0) + 1
    return out


def _with_stats(data: dict) -> dict:
    data["statistics"] = {s: statistics(data.get(s, {}), PAIRS[s]) for s in PAIRS}
    data["statuses"] = {s: failures(data.get(s, {})) for s in PAIRS}
    return data


def markdown(data: dict) -> str:
    """The per-crystal table of the validation set and the statistics tables."""
    lines = ["| crystal | PBE B0 | chgnet B0 | chgnet-host B0 | QE B0 | PBE density | chgnet "
             "density | chgnet-host density | QE density | chgnet scale |", "|---" * 10 + "|"]
    f = lambda x, p=1: "-" if x is None else f"{x:.{p}f}"  # noqa: E731
    for name, r in data.get("validation", {}).items():
        pbe, c, h, q = (r.get(k, {}) for k in ("pbe", "chgnet", "chgnet-host", "qe"))
        lines.append(f"| {name} | {f(pbe.get('bulk_modulus'))} | {f(c.get('bulk_modulus'))} | "
                     f"{f(h.get('bulk_modulus'))} | {f(q.get('bulk_modulus'))} | "
                     f"{f(pbe.get('density'), 3)} | {f(c.get('density'), 3)} | "
                     f"{f(h.get('density'), 3)} | {f(q.get('density'), 3)} | "
                     f"{f(c.get('scale'), 3)} |")
    for s, stats in data.get("statistics", {}).items():
        lines += ["", f"**{s}**", "", "| pair | property | n | MAE | mean rel. error | mean "
                  "abs. rel. error | Pearson r | Spearman rho |", "|---" * 8 + "|"]
        for pair, props in stats.items():
            for prop, c in props.items():
                pct = lambda x: "-" if x is None else f"{100 * x:+.1f} %"  # noqa: E731
                lines.append(f"| {pair} | {prop} | {c['n']} | {f(c['mae'], 3)} | "
                             f"{pct(c['mean_rel'])} | {pct(c['mean_abs_rel'])} | "
                             f"{f(c['pearson'], 3)} | {f(c['spearman'], 3)} |")
    return "\n".join(lines)


__all__ = ["InGraph", "PAIRS", "compare", "failures", "host_row", "markdown", "qe_row",
           "qe_validation_rows", "random_decorations", "run", "statistics"]
