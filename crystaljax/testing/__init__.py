"""Test helpers that ship with the package: probe envs with known optimal values."""

from crystaljax.testing.probes import OPTIMAL_RETURN, PROBE_KINDS, ProbeEnv, ProbeState

__all__ = ["OPTIMAL_RETURN", "PROBE_KINDS", "ProbeEnv", "ProbeState"]
