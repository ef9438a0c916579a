"""Benchmark the QE oracle; writes ``benchmarks/dft.json`` and prints a Markdown table.

Three measurements:

1. wall time per property with the default preset on the three template cells of
   REFERENCE.md. NaSe4 on the a = 4.2748 cell is the original's bulk-modulus
   example; the other two cells carry decorations of elements with cutoffs
   <= 100 Ry (the original's SrHCSe and Na2LiHO examples need 160 and 250 Ry
   for C and O: one SCF iteration of SrHCSe took 190 s here, so a single
   evaluation runs for about an hour on one core);
2. evaluations per hour (density recipe, default preset) of a fixed batch of
   random decorations of the 4-site cell drawn from the small-vocabulary
   elements with cutoffs <= 100 Ry, with 1 worker and with the local pool
   filling all cores (1 MPI rank per worker);
3. cache hit ratio over short simulated training runs on the 5-site cell
   (small vocabulary): a uniformly random policy and a fixed policy with 10%
   random actions. Hits are counted with the cache's canonical structure keys
   (what the cache would answer), so no DFT is needed for this part.

Usage::

    python scripts/bench_dft.py [--skip-throughput] [--batch 4] [--episodes 500]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from pymatgen.core import Lattice, Structure

from crystaljax.oracles.cache import ResultCache
from crystaljax.oracles.executors import LocalPoolExecutor, available_cores
from crystaljax.oracles.qe.oracle import QEOracle
from crystaljax.oracles.qe.presets import DEFAULT_ECUTWFC
from crystaljax.oracles.qe.runner import RunnerConfig

SMALL = "Li Na K Rb Be Ca Mg Sr H C N O P S Se F Cl Br".split()
PEROVSKITE = [(0, 0, 0), (0.5, 0.5, 0.5), (0, 0.5, 0.5), (0.5, 0, 0.5), (0.5, 0.5, 0)]
BCC4 = [(0, 0, 0), (0.5, 0.5, 0), (0, 0.5, 0.5), (0.5, 0, 0.5)]


def cubic5(a: float, species) -> Structure:
    """5-site cubic template (Pm-3m perovskite arrangement), lattice constant ``a`` (Å)."""
    return Structure(Lattice.cubic(a), species, PEROVSKITE)


def cell4(species) -> Structure:
    """4-site cell a = b = c = 5.1693 Å, alpha = beta = gamma = 109.4712 deg."""
    return Structure(Lattice.from_parameters(5.1693, 5.1693, 5.1693, 109.4712, 109.4712,
                                             109.4712), species, BCC4)


#: small-vocabulary elements whose default cutoff is <= 100 Ry
SOFT = [e for e in SMALL if DEFAULT_ECUTWFC[e] <= 100]

CASES = [
    ("4-site, a=5.1693 (SrLiSeBr)", "density", lambda: cell4(["Sr", "Li", "Se", "Br"])),
    ("5-site, a=4.2748 (NaSe4)", "bulk_modulus",
     lambda: cubic5(4.2748, ["Na", "Se", "Se", "Se", "Se"])),
    ("5-site, a=4.5443 (KMgCl3)", "band_gap",
     lambda: cubic5(4.5443, ["K", "Mg", "Cl", "Cl", "Cl"])),
]


def per_property(runner: RunnerConfig, only: list[str] | None = None) -> list[dict]:
    rows = []
    for label, prop, make in CASES:
        if only and prop not in only:
            continue
        oracle = QEOracle(prop, preset="default", cache=None, runner=runner,
                          executor=LocalPoolExecutor(1))
        t0 = time.time()
        result = oracle.evaluate([make()])[0]
        oracle.close()
        rows.append({"cell": label, "property": prop, "value": result.value,
                     "status": result.status.name, "reason": result.reason,
                     "wall_s": round(time.time() - t0, 1),
                     "energy_per_atom": result.extra.get("energy_per_atom"),
                     "b_method": result.extra.get("b_method")})
        print(rows[-1], flush=True)
    return rows


def throughput(runner: RunnerConfig, batch: int, workers: int, seed: int = 0) -> dict:
    rng = random.Random(seed)
    crystals = [cell4([rng.choice(SOFT) for _ in range(4)]) for _ in range(batch)]
    oracle = QEOracle("density", preset="default", cache=None, runner=runner,
                      executor=LocalPoolExecutor(workers))
    t0 = time.time()
    results = oracle.evaluate(crystals)
    wall = time.time() - t0
    oracle.close()
    return {"workers": workers, "batch": batch, "wall_s": round(wall, 1),
            "evaluations_per_hour": round(3600.0 * batch / wall, 1),
            "statuses": [r.status.name for r in results],
            "formulas": [c.composition.formula for c in crystals]}


def hit_ratio(policy: str, episodes: int, seed: int = 0) -> dict:
    rng = random.Random(seed)
    fixed = ["Sr", "Mg", "O", "O", "O"]
    with tempfile.TemporaryDirectory() as tmp:
        cache = ResultCache(Path(tmp) / "c.sqlite")
        seen = set()
        hits = 0
        for _ in range(episodes):
            if policy == "random":
                species = [rng.choice(SMALL) for _ in range(5)]
            else:
                species = [rng.choice(SMALL) if rng.random() < 0.1 else s for s in fixed]
            key = cache.structure_key(cubic5(4.2748, species))
            hits += key in seen
            seen.add(key)
        cache.close()
    return {"policy": policy, "episodes": episodes, "hits": hits,
            "hit_ratio": round(hits / episodes, 3), "distinct_crystals": len(seen)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/dft.json")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--episodes", type=int, default=500)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-properties", action="store_true")
    parser.add_argument("--only", nargs="*", default=None,
                        help="re-measure only these properties (rows of other ones are kept)")
    parser.add_argument("--skip-hit-ratio", action="store_true")
    parser.add_argument("--time-limit", type=float, default=900.0)
    args = parser.parse_args()
    runner = RunnerConfig(time_limit=args.time_limit)
    out = Path(args.out)
    data = json.loads(out.read_text()) if out.exists() else {}
    data["machine"] = {"cores": available_cores(), "mpi_ranks_per_run": 1}
    if not args.skip_hit_ratio or "hit_ratio" not in data:
        data["hit_ratio"] = [hit_ratio("random", args.episodes),
                             hit_ratio("fixed", args.episodes)]
        print(data["hit_ratio"], flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1))
    if not args.skip_properties:
        new = per_property(runner, args.only)
        if args.only:
            kept = [r for r in data.get("per_property", []) if r["property"] not in args.only]
            order = [prop for _, prop, _ in CASES]
            new = sorted(kept + new, key=lambda r: order.index(r["property"]))
        data["per_property"] = new
        out.write_text(json.dumps(data, indent=1))
    if not args.skip_throughput:
        data["throughput"] = []
        for workers in (available_cores(), 1):
            data["throughput"].append(throughput(runner, args.batch, workers))
            print(data["throughput"][-1], flush=True)
            out.write_text(json.dumps(data, indent=1))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1))
    print("| measurement | setting | result |\n|---|---|---|")
    for r in data.get("per_property", []):
        print(f"| {r['property']} wall time | {r['cell']} | {r['wall_s']} s "
              f"({r['value']:.3g}, {r['status']}) |")
    for r in data.get("throughput", []):
        print(f"| evaluations/hour (density) | {r['workers']} worker(s), batch {r['batch']} | "
              f"{r['evaluations_per_hour']} |")
    for r in data["hit_ratio"]:
        print(f"| cache hit ratio | {r['policy']} policy, {r['episodes']} episodes | "
              f"{r['hit_ratio']} |")


if __name__ == "__main__":
    main()
