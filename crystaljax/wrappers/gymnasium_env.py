"""A `gymnasium.Env` adapter over one crystal env, for CleanRL / Stable-Baselines3 style code."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import jax
import numpy as np
from gymnasium import spaces

from crystaljax.env.env import CrystalEnv
from crystaljax.env.registry import make
from crystaljax.env.types import EnvParams, Observation

_BOOL_FIELDS = ("focus", "node_mask", "edge_mask", "action_mask")


class GymnasiumEnv(gym.Env):
    """One crystal env behind the Gymnasium API, with Dict observations of NumPy arrays.

    Boolean fields (focus, node_mask, edge_mask, action_mask) are int8 0/1
    (``MultiBinary``); ``template_id`` is an int32 array of shape (1,). No auto-reset:
    call ``reset`` after ``terminated``. ``info`` of the last step has ``property``,
    ``status`` and ``formula`` of the finished crystal.

    Args:
      env, params: an env from :func:`crystaljax.make`, or
      task: a task id / config passed to ``make`` together with ``**overrides``.
    """

    metadata = {"render_modes": []}

    def __init__(self, task: Any = "density-perovskite-small-v0", *, env: CrystalEnv | None = None,
                 params: EnvParams | None = None, **overrides):
        if env is None:
            env, params = make(task, **overrides)
        elif params is None:
            raise ValueError("pass params together with env")
        self.env, self.params = env, params
        S, E, V = env.max_sites, env.max_edges, env.num_actions
        spec = env.observation_spec()
        self.observation_space = spaces.Dict({
            "tokens": spaces.Box(0, V, (S,), np.int32),
            "focus": spaces.MultiBinary(S),
            "node_mask": spaces.MultiBinary(S),
            "edge_features": spaces.Box(0.0, 1.0, spec.edge_features.shape, np.float32),
            "distances": spaces.Box(0.0, 1e3, (E,), np.float32),
            "senders": spaces.Box(0, S - 1, (E,), np.int32),
            "receivers": spaces.Box(0, S - 1, (E,), np.int32),
            "edge_mask": spaces.MultiBinary(E),
            "globals": spaces.Box(-1e3, 1e3, spec.globals.shape, np.float32),
            "action_mask": spaces.MultiBinary(V),
            "template_id": spaces.Box(0, max(len(env.templates) - 1, 1), (1,), np.int32),
        })
        self.action_space = spaces.Discrete(V)
        self._reset = jax.jit(env.reset)
        self._step = jax.jit(env.step_env)
        self._state = None
        self._key = jax.random.PRNGKey(0)

    def _to_numpy(self, obs: Observation) -> dict[str, np.ndarray]:
        out = {}
        for name, value in vars(obs).items():
            arr = np.asarray(value)
            if name in _BOOL_FIELDS:
                arr = arr.astype(np.int8)
            elif name == "template_id":
                arr = arr.reshape(1).astype(np.int32)
            out[name] = arr
        return out

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._key = jax.random.PRNGKey(seed)
        self._key, sub = jax.random.split(self._key)
        obs, self._state = self._reset(sub, self.params)
        return self._to_numpy(obs), {}

    def step(self, action):
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        if not (np.ndim(action) == 0 and np.issubdtype(np.asarray(action).dtype, np.integer)
                and 0 <= int(action) < self.env.num_actions):
            raise ValueError(f"action must be an integer in [0, {self.env.num_actions}), got {action!r}")
        obs, self._state, reward, terminated, truncated, info = self._step(
            self._state, int(action), self.params)
        terminated, truncated = bool(terminated), bool(truncated)
        out_info: dict[str, Any] = {}
        if terminated:
            out_info = {"property": float(info["property"]), "status": int(info["status"]),
                        "formula": self.env.to_structure(self._state).composition.reduced_formula}
        return self._to_numpy(obs), float(reward), terminated, truncated, out_info

    @property
    def state(self):
        """The current EnvState (JAX arrays); use ``self.env.to_structure(state)`` to export."""
        return self._state

    def close(self) -> None:
        """Close the wrapped env (its host oracle's pool, client and cache)."""
        self.env.close()
