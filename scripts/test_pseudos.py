"""Run ld1.x's transferability test on the default preset's PAW family.

Updates ``benchmarks/pslibrary_transferability.json`` (the elements tested; an element's
earlier set is kept under ``earlier_sets``) and prints the Markdown table of
docs/PSEUDOPOTENTIALS.md (method: ``crystaljax.benchmarks.pseudo_tests``).

Usage::

    python scripts/test_pseudos.py [--elements O Na ...] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from crystaljax.benchmarks import pseudo_tests  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elements", nargs="*", default=None)
    parser.add_argument("--out", default="benchmarks/pslibrary_transferability.json")
    args = parser.parse_args(argv)
    try:
        pseudo_tests.run(args.out, args.elements)
    except ValueError as exc:  # an unreadable results file, an unknown element
        parser.error(str(exc))
    print(pseudo_tests.summary(args.out))


if __name__ == "__main__":
    from crystaljax.benchmarks.machine import run_script

    run_script(main)
