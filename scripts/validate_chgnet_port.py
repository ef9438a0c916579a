"""Validate the JAX port of CHGNet (crystaljax.mlip) against the torch ``chgnet`` package.

Random decorations of prototype templates (``crystaljax.benchmarks.chgnet_port``): energy
(eV/atom), forces (eV/Å) and stress (GPa) of both implementations, errors against the
bounds 1e-4 eV/atom, 1e-3 eV/Å and 0.05 GPa. Writes ``benchmarks/chgnet_port.json`` and
prints a one-line summary.

Usage::

    python scripts/validate_chgnet_port.py [--crystals 50] [--prototypes rocksalt ...] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from crystaljax.benchmarks import chgnet_port  # noqa: E402
from crystaljax.benchmarks.results import ROOT  # noqa: E402
from crystaljax.config import ConfigError  # noqa: E402

MAX_SITES = 16


def default_prototypes() -> list[str]:
    """Every prototype template with at most MAX_SITES sites."""
    from crystaljax.templates.prototypes import list_prototypes, prototype

    return [name for name in list_prototypes() if prototype(name).num_sites <= MAX_SITES]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crystals", type=int, default=50)
    parser.add_argument("--prototypes", nargs="+", default=None,
                        help=f"default: every prototype with at most {MAX_SITES} sites")
    parser.add_argument("--vocab", default="medium", help="small, medium or large")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--displacement", type=float, default=0.05,
                        help="distance (Å) every site is moved in a random direction")
    parser.add_argument("--scale-range", nargs=2, type=float, default=[0.85, 1.15],
                        metavar=("LOW", "HIGH"), help="range of the random isotropic scale")
    parser.add_argument("--no-scale", action="store_true", help="keep every cell at scale 1")
    parser.add_argument("--bulk-modulus", action="store_true", help="instead: volume-relaxed "
                        "B of undisplaced crystals at scale 1 against torch (bound 1 %%)")
    parser.add_argument("--out", default=None, help="default benchmarks/chgnet_port.json "
                        "(benchmarks/chgnet_port_bulk_modulus.json with --bulk-modulus)")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    from crystaljax.elements import VOCABULARIES
    from crystaljax.templates.prototypes import list_prototypes

    if args.vocab not in VOCABULARIES:
        raise ConfigError(f"unknown vocabulary {args.vocab!r}; choose one of {sorted(VOCABULARIES)}")
    unknown = sorted(set(args.prototypes or ()) - set(list_prototypes()))
    if unknown:
        raise ConfigError(f"unknown prototypes {unknown}; known: {', '.join(list_prototypes())}")
    prototypes = args.prototypes or default_prototypes()
    scale_range = None if args.no_scale else tuple(args.scale_range)
    if args.bulk_modulus:
        args.displacement, scale_range = 0.0, None
    crystals = chgnet_port.random_crystals(prototypes, args.crystals, args.vocab, args.seed,
                                           args.displacement, scale_range)
    name = "chgnet_port_bulk_modulus.json" if args.bulk_modulus else "chgnet_port.json"
    args.out = args.out or os.path.join(ROOT, "benchmarks", name)
    result = (chgnet_port.compare_bulk_modulus(crystals) if args.bulk_modulus
              else chgnet_port.compare(crystals))
    chgnet_port.write_json(result, args.out, crystals=args.crystals, prototypes=prototypes,
                           vocab=args.vocab, seed=args.seed, displacement=args.displacement,
                           scale_range=scale_range)
    print(f"wrote {args.out}")
    print(result["summary"] if args.bulk_modulus else chgnet_port.summary_line(result["summary"]))
    return result


if __name__ == "__main__":
    from crystaljax.benchmarks.machine import run_script

    run_script(main)
