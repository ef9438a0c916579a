"""Orbax checkpoints of an agent's training state (resumable runs)."""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpointer:
    """Saves/restores the AgentState pytree under ``RUN_DIR/checkpoints/<iteration>``."""

    def __init__(self, run_dir: str, max_to_keep: int = 2):
        path = os.path.abspath(os.path.join(run_dir, "checkpoints"))
        self.manager = ocp.CheckpointManager(
            path, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

    def save(self, iteration: int, state: Any) -> None:
        self.manager.save(iteration, args=ocp.args.StandardSave(state))
        self.manager.wait_until_finished()

    def latest(self) -> int | None:
        return self.manager.latest_step()

    def restore(self, like: Any, iteration: int | None = None) -> Any:
        """Restore into the structure (and dtypes) of ``like``; latest by default."""
        step = self.latest() if iteration is None else iteration
        if step is None:
            raise FileNotFoundError("no checkpoint to resume from")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        return self.manager.restore(step, args=ocp.args.StandardRestore(abstract))

    def close(self) -> None:
        self.manager.close()
