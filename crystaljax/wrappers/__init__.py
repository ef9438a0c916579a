"""Adapters around the functional env: Gymnasium, and vectorised envs with episode statistics."""

from crystaljax.wrappers.episode_stats import BestCrystal, EpisodeStats, VecEnvState, VecEpisodeStats
from crystaljax.wrappers.gymnasium_env import GymnasiumEnv

__all__ = ["BestCrystal", "EpisodeStats", "GymnasiumEnv", "VecEnvState", "VecEpisodeStats"]
