"""Quantum ESPRESSO host oracle: pseudopotentials, pw.x inputs, runs, parsing, recipes."""

from crystaljax.oracles.qe.oracle import QEOracle, make_qe_oracle

__all__ = ["QEOracle", "make_qe_oracle"]
