"""Quantum ESPRESSO host oracle: options, pseudopotentials, pw.x inputs, runs, parsing, recipes."""

from crystaljax.oracles.qe.options import QEOptions
from crystaljax.oracles.qe.oracle import QEOracle, make_qe_oracle

__all__ = ["QEOptions", "QEOracle", "make_qe_oracle"]
