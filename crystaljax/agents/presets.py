"""Named agent presets: overrides of the package defaults, selected with ``preset: NAME`` in an
agent config (``agent.preset=crystalgym`` on the command line).

The package defaults are the settings that met the density criterion for every agent
(BENCHMARKS.md, docs/AGENTS.md). ``crystalgym`` restores CrystalGym's CleanRL-style baselines
and their MEGNet (REFERENCE.md, "Their policy network" and "Their RL baselines") for
reproducing the paper:

* every agent: 1 env, 100k env steps (the paper's band-gap runs: 200k, set by those
  configs), the original network (:data:`CRYSTALGYM_NETWORK`);
* DQN: buffer 2000, batch 64, learning_starts 1000, an update every 4 env steps, a hard
  target copy every 500 env steps, constant learning rate 2.5e-4, epsilon 1 -> 0.05 over
  20% of the run;
* "Rainbow": the paper's variant, DQN + double Q + dueling + 3-step returns (no C51, no
  prioritised replay, no noisy nets);
* PPO: 32-step rollouts, 2 minibatches, learning rate 2.5e-4 annealed, entropy 0.01;
* SAC: the replay schedule of DQN, a fixed temperature alpha 0.2, learning rates 3e-4.
  The reference gives no target-network settings for SAC; the preset keeps the earlier
  package's Polyak ones (tau 0.005 every 4 env steps).

``self-imitation`` adds self-imitation learning (docs/AGENTS.md, "Self-imitation") with
the settings that met issue 14's criterion in 3 of 3 seeds on the in-graph CHGNet bulk
modulus, a sparse reward with a narrow target (docs/MLIP.md, "Learning from the in-graph
CHGNet"): PPO imitates its best 5 episodes (25 kept transitions, ``sil_coef`` 1); DQN adds
a stronger lower bound (``sil_coef`` 4 on 64 drawn of 25 kept transitions).

Keys given next to ``preset`` override the preset's values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crystaljax.config import ConfigError

#: CrystalGym's MEGNet (REFERENCE.md): encoders (64, 32), 3 blocks with pre-dense (64, 32)
#: and update MLPs (64, 64, 32), softplus, a dense head, no element features
CRYSTALGYM_NETWORK: dict[str, Any] = {
    "encoder_hidden": [64, 32], "num_blocks": 3, "block_hidden": [64, 32],
    "conv_hidden": [64, 64, 32], "activation": "softplus", "element_features": False,
    "action_head": "dense", "composition_readout": False,
}
_REPLAY = {"total_env_steps": 100_000, "num_envs": 1, "buffer_size": 2000, "batch_size": 64,
           "learning_starts": 1000, "train_frequency": 4, "network": CRYSTALGYM_NETWORK}
_DQN = {**_REPLAY, "learning_rate": 2.5e-4, "learning_rate_end": None,
        "exploration_fraction": 0.2, "target_update_interval": 500, "tau": 1.0}

#: preset name -> agent name -> overrides of that agent's package defaults
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "default": {},  # the package defaults, for every agent
    "crystalgym": {
        "dqn": _DQN,
        "rainbow": {**_DQN, "dueling": True, "n_step": 3, "num_atoms": 1,
                    "prioritised": False, "noisy": False},
        "ppo": {"total_env_steps": 100_000, "num_envs": 1, "num_steps": 32,
                "num_minibatches": 2, "learning_rate": 2.5e-4, "ent_coef": 0.01,
                "network": CRYSTALGYM_NETWORK},
        "sac": {**_REPLAY, "target_update_interval": 4, "tau": 0.005, "autotune": False,
                "alpha_init": 0.2},
    },
    "self-imitation": {
        "dqn": {"sil_coef": 4.0, "sil_capacity": 25, "sil_batch_size": 64},
        "ppo": {"sil_coef": 1.0, "sil_capacity": 25},
    },
}


def list_presets() -> list[str]:
    """Preset names."""
    return sorted(PRESETS)


def split_preset(agent: str, overrides: Mapping[str, Any] | None
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the named preset's overrides for ``agent``, the other overrides): apply the first,
    then the second, to the agent's defaults. ConfigError for an unknown preset name or
    overrides that are not a mapping; the caller's mapping is not changed."""
    if overrides is not None and not isinstance(overrides, Mapping):
        raise ConfigError(f"{agent} config: overrides must be a mapping (or a {agent} config "
                          f"instance), got {overrides!r}")
    values = dict(overrides or {})
    name = values.pop("preset", None)
    if name is None or name == "default":
        return {}, values
    if not isinstance(name, str) or name not in PRESETS:
        raise ConfigError(f"agent.preset: unknown preset {name!r}; choose one of "
                          f"{list_presets()} (a QE preset is env.oracle_options.preset)")
    if agent not in PRESETS[name]:
        raise ConfigError(f"agent.preset: preset {name!r} has no settings for agent {agent!r}")
    return PRESETS[name][agent], values


__all__ = ["CRYSTALGYM_NETWORK", "PRESETS", "list_presets", "split_preset"]
