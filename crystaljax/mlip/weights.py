"""CHGNet's pretrained weights: found in the installed ``chgnet`` package, converted once.

The ``chgnet`` wheel ships its checkpoints (``chgnet/pretrained/<version>/*.pth.tar``);
nothing is downloaded. The first use converts the checkpoint's ``state_dict`` into a
NumPy ``.npz`` under ``$CRYSTALJAX_CACHE_DIR/chgnet/`` (this needs torch, only then); every
later use loads that file without torch. The file name carries the checkpoint's SHA-256,
so a different wheel converts again.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from importlib import util as importlib_util
from pathlib import Path

import numpy as np

from crystaljax.config import ConfigError
from crystaljax.paths import default_cache_dir

#: checkpoint file of each model version inside the chgnet package (the port implements the
#: 0.3.0 layout; 0.2.0 differs: no layer norms, 9 bases, a 5 Å atom graph)
CHECKPOINTS = {
    "0.3.0": "pretrained/0.3.0/chgnet_0.3.0_e29f68s314m37.pth.tar",
}
DEFAULT_VERSION = "0.3.0"
#: model arguments the JAX port implements (checked against the checkpoint's)
PORTED_ARGS = {"atom_fea_dim": 64, "bond_fea_dim": 64, "angle_fea_dim": 64, "num_radial": 31,
               "num_angular": 31, "n_conv": 4, "atom_graph_cutoff": 6, "bond_graph_cutoff": 3,
               "cutoff_coeff": 8, "mlp_first": True, "is_intensive": True,
               "non_linearity": "silu", "gMLP_norm": "layer", "readout_norm": "layer"}


class WeightsError(ConfigError):
    """The CHGNet weights cannot be found or converted (the message says what to do; a
    ConfigError, so the command line prints it as one line)."""


def checkpoint_path(version: str = DEFAULT_VERSION) -> Path:
    """Path of the bundled checkpoint of ``version`` in the installed ``chgnet`` package."""
    if version not in CHECKPOINTS:
        raise WeightsError(f"unknown CHGNet version {version!r}; choose one of {sorted(CHECKPOINTS)}")
    spec = importlib_util.find_spec("chgnet")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError("the CHGNet weights come from the 'chgnet' package, which is not "
                           "installed: run `make setup` (or pip install 'crystaljax[mlip]')")
    path = Path(list(spec.submodule_search_locations)[0]) / CHECKPOINTS[version]
    if not path.is_file():
        raise WeightsError(f"the installed chgnet package has no checkpoint {path}")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert_checkpoint(source: Path, target: Path) -> dict:
    """Write ``source``'s state_dict as float32 arrays to ``target`` (.npz) and a JSON record
    beside it (model arguments, source hash, seconds); returns the record. Needs torch."""
    try:
        import torch
    except ImportError:
        raise WeightsError("converting the CHGNet checkpoint needs torch once (it is then "
                           "cached): run `make setup`") from None
    start = time.perf_counter()
    state = torch.load(source, map_location="cpu", weights_only=False)["model"]
    arrays = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in state["state_dict"].items()}
    record = {"source": str(source), "sha256": _sha256(source),
              "model_args": {k: v for k, v in state["model_args"].items()
                             if isinstance(v, (int, float, str, bool, list, type(None)))},
              "num_parameters": int(sum(a.size for a in arrays.values())),
              "torch": torch.__version__}
    different = {k: (record["model_args"].get(k), v) for k, v in PORTED_ARGS.items()
                 if record["model_args"].get(k) != v}
    if different:
        raise WeightsError(f"{source.name} is not the CHGNet layout the JAX port implements "
                           f"(checkpoint vs port: {different})")
    target.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(target, lambda path: np.savez(path, **arrays), ".npz")
    record["seconds"] = round(time.perf_counter() - start, 3)
    _atomic_write(target.with_suffix(".json"),
                  lambda path: Path(path).write_text(json.dumps(record, indent=1)), ".json")
    return record


def _atomic_write(target: Path, write, suffix: str) -> None:
    """Write through a temporary file in the same folder and rename it (readers in other
    processes never see a half-written file)."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=suffix)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_weights(version: str = DEFAULT_VERSION, cache_dir: str | Path | None = None
                 ) -> tuple[dict[str, np.ndarray], dict]:
    """(state_dict as float32 NumPy arrays keyed by torch names, record) of ``version``,
    converted on first use into ``cache_dir/chgnet`` (default: the crystaljax cache)."""
    source = checkpoint_path(version)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = folder / "chgnet" / f"chgnet_{version}_{_sha256(source)[:16]}.npz"
    if target.is_file() and target.with_suffix(".json").is_file():
        record = json.loads(target.with_suffix(".json").read_text())
    else:
        record = convert_checkpoint(source, target)
    with np.load(target) as data:
        arrays = {k: data[k] for k in data.files}
    return arrays, record


__all__ = ["CHECKPOINTS", "DEFAULT_VERSION", "WeightsError", "checkpoint_path",
           "convert_checkpoint", "load_weights"]
