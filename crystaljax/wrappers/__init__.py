"""Adapters around the functional env."""

from crystaljax.wrappers.gymnasium_env import GymnasiumEnv

__all__ = ["GymnasiumEnv"]
