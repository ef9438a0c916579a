"""The env interface every crystaljax env (and every test env) implements.

Gymnax-style and stateless: the pure functions take and return pytrees and are jittable
and vmappable; the host-side methods report on and release what the env holds (a DFT
process pool, a Dask client, a result cache). Use an env as a context manager to close it.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import jax


@runtime_checkable
class Env(Protocol):
    """What agents, wrappers and the Trainer rely on.

    Attributes:
      num_actions: size of the discrete action space (A).
      max_sites: steps of the longest episode (S); greedy evaluation scans this many.
      can_truncate: False when ``truncated`` is always False (episodes only end by
        termination); agents may then skip valuing final observations for bootstraps.
    """

    num_actions: int
    max_sites: int
    can_truncate: bool

    def reset(self, key: jax.Array, params: Any) -> tuple[Any, Any]:
        """(obs, state) of a new episode (pure)."""

    def step(self, key: jax.Array, state: Any, action: jax.Array, params: Any
             ) -> tuple[Any, Any, jax.Array, jax.Array, jax.Array, dict]:
        """(obs, state, reward, terminated, truncated, info) with auto-reset (pure).
        ``info`` holds ``final_observation``, ``final_state``, ``property``, ``status``."""

    def step_env(self, state: Any, action: jax.Array, params: Any
                 ) -> tuple[Any, Any, jax.Array, jax.Array, jax.Array, dict]:
        """One step without auto-reset (pure); a finished episode stays finished."""

    def observe(self, state: Any, params: Any) -> Any:
        """The observation of a state (pure)."""

    def observation_spec(self) -> Any:
        """Observation pytree whose leaves describe shape, dtype and bounds."""

    def action_spec(self) -> Any:
        """Description of the action: a scalar int32 in [0, num_actions)."""

    def reward_range(self, params: Any) -> tuple[float, float]:
        """(lowest, highest) reward an episode can end with under ``params``."""

    def oracle_stats(self) -> dict:
        """Counters of the property oracle: evaluations, computed, cache_hits, by_status."""

    def oracle_records(self, since: int = 0) -> tuple[list, int]:
        """(host-oracle records made after the first ``since``, the count made so far)."""

    def close(self) -> None:
        """Release what the env holds (process pool, Dask client, cache); idempotent."""


class EnvBase:
    """Defaults of the host-side part of :class:`Env` for envs that hold nothing."""

    #: the safe default; an env whose episodes only terminate sets False
    can_truncate: bool = True

    def oracle_stats(self) -> dict:
        return {"evaluations": 0, "computed": 0, "cache_hits": 0, "by_status": {}}

    def oracle_records(self, since: int = 0) -> tuple[list, int]:
        return [], 0

    def close(self) -> None:
        return None

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


__all__ = ["Env", "EnvBase"]
