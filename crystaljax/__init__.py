"""crystaljax: JAX-native crystal-design RL environments with DFT rewards."""

from crystaljax.compilation_cache import enable_compilation_cache, enable_default_compilation_cache

# before anything is compiled: a second run of a config loads its programs from disk
enable_default_compilation_cache()

from crystaljax import properties, rewards, wrappers  # noqa: E402,I001  (after env: wrappers use it)
from crystaljax.env import (  # noqa: E402
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
from crystaljax.graphs import to_graphs_tuple  # noqa: E402

__version__ = "0.1.0"

__all__ = ["ConfigError", "CrystalEnv", "Env", "EnvConfig", "EnvParams", "EnvState",
           "GLOBAL_FEATURES", "Observation", "list_tasks", "make", "properties", "rewards", "to_graphs_tuple",
           "wrappers", "__version__", "enable_compilation_cache"]
