"""crystaljax: JAX-native crystal-design RL environments with DFT rewards."""

from crystaljax.env import (
    GLOBAL_FEATURES,
    ConfigError,
    CrystalEnv,
    EnvConfig,
    EnvParams,
    EnvState,
    Observation,
    list_tasks,
    make,
)
from crystaljax.graphs import to_graphs_tuple

__version__ = "0.1.0"

__all__ = ["ConfigError", "CrystalEnv", "EnvConfig", "EnvParams", "EnvState", "GLOBAL_FEATURES",
           "Observation", "list_tasks", "make", "to_graphs_tuple", "__version__"]
