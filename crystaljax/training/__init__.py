"""Training runs: ``train(config)`` / ``resume(run_dir)`` write a run directory with the
config, metrics (CSV + TensorBoard), orbax checkpoints, a learning-curve PNG and the best
crystals (CIF + JSON). See :class:`crystaljax.training.run.Trainer`."""

from crystaljax.training.config import RunConfig, TrainSettings, load_run_config
from crystaljax.training.run import Trainer, resume, train

__all__ = ["RunConfig", "TrainSettings", "Trainer", "load_run_config", "resume", "train"]
