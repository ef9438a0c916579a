"""crystaljax: JAX-native crystal-design RL environments with DFT rewards."""

from crystaljax import properties, rewards, wrappers  # noqa: E402,I001  (after env: wrappers use it)
from crystaljax.env import (
    GLOBAL_FEATURES,
    ConfigError,
    CrystalEnv,
    Env,
    EnvConfig,
    EnvParams,
    EnvState,
    Observation,
    list_tasks,
    make,
)
from crystaljax.graphs import to_graphs_tuple

__version__ = "0.1.0"

__all__ = ["ConfigError", "CrystalEnv", "Env", "EnvConfig", "EnvParams", "EnvState",
           "GLOBAL_FEATURES", "Observation", "list_tasks", "make", "properties", "rewards", "to_graphs_tuple",
           "wrappers", "__version__"]
