"""The run directory: resolved configuration, checkpoints, TensorBoard logs (DESIGN.md section 2).

Layout:

    run_dir/config.json    model, loss, train and data configurations (`tfglo.config.to_dict`),
                           the dataset's path and a summary of its dataset.json, the flags used
    run_dir/checkpoints/   tf.train.CheckpointManager files, ckpt-<step>.{index,data-*}
    run_dir/tensorboard/   event files

`write_config` writes config.json atomically (a temporary file renamed into place), so a run
killed at any moment leaves either the old or the new file. `load_run` rebuilds the model from
config.json and restores the newest checkpoint, for evaluation, rendering and export.
"""

import dataclasses
import json
import os
import pathlib
import sys
import time
from typing import Any

import tensorflow as tf

from tfglo.data import pipeline
from tfglo.engine import trainer
from tfglo.lolnerf import config as model_config_lib
from tfglo.lolnerf import model as lolnerf
from tfglo.nerf import config as config_lib
from tfglo.utils import configs

CONFIG_FILE = "config.json"
CONFIG_VERSION = 1
# dataset.json keys left out of the summary: per-image and per-file lists (large for big
# collections); their lengths are kept instead.
_LIST_KEYS = ("images", "shards", "skipped")


class RunDirError(ValueError):
    """A run directory is missing, incomplete, or does not match what is asked of it."""


@dataclasses.dataclass
class Run:
    """A trained run, loaded from its directory.

    Attributes:
      run_dir: the run directory.
      model: the `LOLNeRF`, weights and latent table restored from `checkpoint`.
      model_config, loss_config, train_config, data_config: the resolved configurations.
      dataset_dir: the training dataset's path, as given to the trainer.
      dataset_metadata: the training dataset's dataset.json without its per-image lists
        (num_images, num_latents, image_size, scene_radius, canonical_keypoints, ...).
      step: the training step of the checkpoint.
      checkpoint: the restored checkpoint's path prefix.
      flags: the command-line flags the run was started with ({} when not from the app).
    """

    run_dir: pathlib.Path
    model: lolnerf.LOLNeRF
    model_config: model_config_lib.ModelConfig
    loss_config: config_lib.LossConfig
    train_config: trainer.TrainConfig
    data_config: pipeline.RayBatchConfig
    dataset_dir: str
    dataset_metadata: dict[str, Any]
    step: int
    checkpoint: str
    flags: dict[str, Any]

    @property
    def num_latents(self) -> int:
        """Rows of the latent table (training identities)."""
        return int(self.model_config.num_latents)


def config_path(run_dir: os.PathLike | str) -> pathlib.Path:
    """run_dir/config.json."""
    return pathlib.Path(run_dir) / CONFIG_FILE


def dataset_summary(metadata: dict[str, Any]) -> dict[str, Any]:
    """dataset.json without its per-image and per-file lists (their lengths are kept)."""
    summary = {k: v for k, v in metadata.items() if k not in _LIST_KEYS}
    for key in _LIST_KEYS:
        if isinstance(metadata.get(key), list):
            summary[f"num_{key}" if key != "images" else "num_image_entries"] = len(metadata[key])
    return summary


def make_config(
    model_config: model_config_lib.ModelConfig,
    loss_config: config_lib.LossConfig,
    train_config: trainer.TrainConfig,
    data_config: pipeline.RayBatchConfig,
    dataset_dir: os.PathLike | str,
    dataset_metadata: dict[str, Any],
    flags: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON-able contents of config.json."""
    from tfglo import __version__

    return {
        "version": CONFIG_VERSION,
        "tfglo_version": __version__,
        "model": configs.to_dict(model_config),
        "loss": configs.to_dict(loss_config),
        "train": configs.to_dict(train_config),
        "data": configs.to_dict(data_config),
        "dataset_dir": str(dataset_dir),
        "dataset_metadata": dataset_summary(dataset_metadata),
        "flags": dict(flags or {}),
        "command": " ".join(sys.argv),
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_config(run_dir: os.PathLike | str, values: dict[str, Any]) -> pathlib.Path:
    """Writes config.json atomically (temporary file + rename); returns its path."""
    path = config_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{CONFIG_FILE}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(values, f, indent=1, default=_json_default)
        f.write("\n")
    os.replace(tmp, path)
    return path


def _json_default(value):
    # numpy scalars and arrays in dataset.json values or flags.
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def read_config(run_dir: os.PathLike | str) -> dict[str, Any]:
    """Reads and checks config.json.

    Raises:
      RunDirError: the directory or config.json is missing, not JSON, or lacks a section.
    """
    run_dir = pathlib.Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"run directory {run_dir} does not exist")
    path = config_path(run_dir)
    if not path.is_file():
        raise RunDirError(
            f"{path} is missing: {run_dir} is not a tfglo run directory (python -m tfglo.train "
            "writes one)"
        )
    try:
        with open(path, encoding="utf-8") as f:
            values = json.load(f)
    except json.JSONDecodeError as e:
        raise RunDirError(f"{path} is not valid JSON: {e}") from e
    missing = [k for k in ("model", "loss", "train", "data") if k not in values]
    if missing:
        raise RunDirError(f"{path} has no {', '.join(missing)} section")
    return values


def parse_configs(values: dict[str, Any], source: str = CONFIG_FILE):
    """(model, loss, train, data) config objects from config.json contents.

    Raises:
      RunDirError: a section has unknown keys or invalid values (a config.json from another
        version of tfglo, or edited by hand).
    """
    sections = (
        ("model", model_config_lib.ModelConfig),
        ("loss", config_lib.LossConfig),
        ("train", trainer.TrainConfig),
        ("data", pipeline.RayBatchConfig),
    )
    parsed = []
    for key, cls in sections:
        try:
            parsed.append(configs.from_dict(cls, values[key]))
        except (TypeError, ValueError) as e:
            raise RunDirError(
                f"{source}: section {key!r} does not match {cls.__name__}: {e}"
            ) from e
    return tuple(parsed)


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b and not (isinstance(a, list | tuple) and list(a) == list(b or [])):
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def check_resume(run_dir: os.PathLike | str, model_config: model_config_lib.ModelConfig) -> None:
    """Checks that training may continue in `run_dir` with `model_config`.

    A run directory without config.json is new. With one, the model configuration must be the
    same (the checkpoints hold its variables); other settings (steps, learning rates, logging)
    may change on resume.

    Raises:
      RunDirError: config.json exists and its model configuration differs (the message lists
        each differing field).
    """
    if not config_path(run_dir).is_file():
        return
    values = read_config(run_dir)
    differences = _differences(values["model"], configs.to_dict(model_config), "model.")
    if differences:
        raise RunDirError(
            f"{run_dir} holds a run with another model configuration ({'; '.join(differences)}): "
            "use a new --run_dir, or the run's own settings to resume it"
        )


def latest_checkpoint(run_dir: os.PathLike | str) -> str | None:
    """Path prefix of the newest checkpoint in run_dir/checkpoints, or None."""
    return tf.train.latest_checkpoint(str(trainer.checkpoint_dir(run_dir)))


def load_run(run_dir: os.PathLike | str, checkpoint: str | None = None) -> Run:
    """Rebuilds a trained model from config.json and restores its newest checkpoint.

    Only the model (fields and latent table) and the step are restored; the optimisers' state in
    the checkpoint is not needed (`expect_partial`). Every variable of the rebuilt model must be
    found in the checkpoint, so a config.json that does not match the checkpoint is an error, not
    a silently half-initialised model.

    Args:
      run_dir: a run directory written by the trainer.
      checkpoint: a specific checkpoint path prefix (default: the newest).

    Raises:
      RunDirError: no run directory or config.json, no checkpoint, or a config.json that does not
        match the checkpoint.
    """
    run_dir = pathlib.Path(run_dir)
    values = read_config(run_dir)
    model_config, loss_config, train_config, data_config = parse_configs(
        values, str(config_path(run_dir))
    )
    checkpoint = checkpoint or latest_checkpoint(run_dir)
    if checkpoint is None:
        raise RunDirError(
            f"{run_dir} has no checkpoint in {trainer.checkpoint_dir(run_dir)}: train first "
            "(python -m tfglo.train), or wait for the first checkpoint_every steps"
        )
    model = lolnerf.LOLNeRF(model_config)
    model.build_all()
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    try:
        status = tf.train.Checkpoint(model=model, step=step).restore(checkpoint)
        status.expect_partial()
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError) as e:
        raise RunDirError(
            f"checkpoint {checkpoint} does not match the model of {config_path(run_dir)}: {e}"
        ) from e
    except tf.errors.NotFoundError as e:
        raise RunDirError(f"checkpoint {checkpoint} cannot be read: {e.message}") from e
    return Run(
        run_dir=run_dir,
        model=model,
        model_config=model_config,
        loss_config=loss_config,
        train_config=train_config,
        data_config=data_config,
        dataset_dir=str(values.get("dataset_dir", "")),
        dataset_metadata=dict(values.get("dataset_metadata") or {}),
        step=int(step.numpy()),
        checkpoint=checkpoint,
        flags=dict(values.get("flags") or {}),
    )
