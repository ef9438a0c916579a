"""The crystal-decoration environment."""

from crystaljax.env.base import Env, EnvBase
from crystaljax.env.config import ConfigError, EnvConfig
from crystaljax.env.env import CrystalEnv
from crystaljax.env.registry import TASKS, list_tasks, make, resolve_config
from crystaljax.env.types import GLOBAL_FEATURES, EnvParams, EnvState, Observation

__all__ = ["ConfigError", "CrystalEnv", "Env", "EnvBase", "EnvConfig", "EnvParams", "EnvState",
           "GLOBAL_FEATURES", "Observation", "TASKS", "list_tasks", "make", "resolve_config"]
