"""Oracles: what computes a finished crystal's property (in-graph or on the host)."""

from crystaljax.oracles.base import HostOracle, OracleResult, Status

__all__ = ["HostOracle", "OracleResult", "Status"]
