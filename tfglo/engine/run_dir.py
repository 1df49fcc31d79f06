"""The run directory: resolved configuration, checkpoints, TensorBoard logs (DESIGN.md section 2).

Layout:

    run_dir/config.json    the model family ("model": "lolnerf"), its config sections
                           ("configs": {"model": ..., "loss": ..., "train": ..., "data": ...},
                           `tfglo.utils.configs.to_dict`), the dataset's path and a summary of its
                           dataset.json, the flags used
    run_dir/checkpoints/   tf.train.CheckpointManager files, ckpt-<step>.{index,data-*}
    run_dir/tensorboard/   event files

`write_config` writes config.json atomically (a temporary file renamed into place), so a run
killed at any moment leaves either the old or the new file. `load_run` resolves the family named
in config.json (`tfglo.engine.family.get_family`), rebuilds its model from the config sections
and restores the newest checkpoint, for evaluation, rendering and export.

Versions: config.json version 2 (this one) names the family. Version 1 (tfglo before model
families) held the LOLNeRF sections at the top level, "model" being the model config itself;
`read_config` reads it as a "lolnerf" run (the file is left as it is).
"""

import dataclasses
import json
import os
import pathlib
import sys
import time
from typing import Any

import tensorflow as tf

from tfglo.engine import family as family_lib
from tfglo.engine import trainer
from tfglo.utils import configs as configs_lib

CONFIG_FILE = "config.json"
CONFIG_VERSION = 2
# Version 1 held only LOLNeRF runs, with these sections at the top level.
_V1_FAMILY = "lolnerf"
_V1_SECTIONS = ("model", "loss", "train", "data")
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
      family: the `ModelFamily` named in config.json.
      configs: its config sections, name -> config dataclass.
      model: the family's model, its variables restored from `checkpoint`.
      dataset_dir: the training dataset's path, as given to the trainer.
      dataset_metadata: the training dataset's dataset.json without its per-image lists
        (num_images, num_latents, image_size, scene_radius, canonical_keypoints, ...).
      step: the training step of the checkpoint.
      checkpoint: the restored checkpoint's path prefix.
      flags: the command-line flags the run was started with ({} when not from the app).
      values: config.json as read (in the current layout).

    The config sections are also attributes: `model_config`, `loss_config`, `train_config`,
    `data_config` (None when the family has no such section).
    """

    run_dir: pathlib.Path
    family: family_lib.ModelFamily
    configs: dict[str, Any]
    model: Any
    dataset_dir: str
    dataset_metadata: dict[str, Any]
    step: int
    checkpoint: str
    flags: dict[str, Any]
    values: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def family_name(self) -> str:
        return self.family.name

    @property
    def model_config(self):
        return self.configs.get("model")

    @property
    def loss_config(self):
        return self.configs.get("loss")

    @property
    def train_config(self) -> trainer.TrainConfig | None:
        return self.configs.get(family_lib.TRAIN_SECTION)

    @property
    def data_config(self):
        return self.configs.get("data")

    @property
    def metadata(self) -> dict[str, Any]:
        """The training dataset's dataset.json summary (= `dataset_metadata`)."""
        return self.dataset_metadata

    @property
    def num_latents(self) -> int:
        """Rows of the latent table (training identities); 0 for a family without one."""
        return int(getattr(self.model_config, "num_latents", 0) or 0)


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


def _resolve_family(family: "family_lib.ModelFamily | str") -> family_lib.ModelFamily:
    return family_lib.get_family(family) if isinstance(family, str) else family


def make_config(
    family: "family_lib.ModelFamily | str",
    configs: dict[str, Any],
    dataset_dir: os.PathLike | str,
    dataset_metadata: dict[str, Any],
    flags: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON-able contents of config.json.

    Args:
      family: the model family (or its registered name).
      configs: every config section of the family, name -> config dataclass.
      dataset_dir: the training dataset's path.
      dataset_metadata: its dataset.json (summarised: per-image lists become counts).
      flags: the command-line flags, recorded as given.

    Raises:
      ValueError: `configs` does not have exactly the family's sections.
    """
    from tfglo import __version__

    family = _resolve_family(family)
    configs = family.check_configs(configs)
    return {
        "version": CONFIG_VERSION,
        "tfglo_version": __version__,
        "model": family.name,
        "configs": {key: configs_lib.to_dict(value) for key, value in configs.items()},
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


def upgrade_config(values: dict[str, Any], source: str = CONFIG_FILE) -> dict[str, Any]:
    """config.json contents in the current layout (a version-1 file becomes a "lolnerf" run).

    Raises:
      RunDirError: a version newer than this tfglo reads, or sections missing.
    """
    version = values.get("version", 1)
    if not isinstance(version, int) or version > CONFIG_VERSION:
        raise RunDirError(
            f"{source} has version {version!r}; this tfglo reads versions up to "
            f"{CONFIG_VERSION}: use a newer tfglo"
        )
    if version == 1:
        missing = [k for k in _V1_SECTIONS if k not in values]
        if missing:
            raise RunDirError(f"{source} has no {', '.join(missing)} section")
        upgraded = {k: v for k, v in values.items() if k not in _V1_SECTIONS}
        upgraded["model"] = _V1_FAMILY
        upgraded["configs"] = {k: values[k] for k in _V1_SECTIONS}
        upgraded["read_from_version"] = version
        return upgraded
    missing = [k for k in ("model", "configs") if k not in values]
    if missing or not isinstance(values.get("configs"), dict):
        raise RunDirError(
            f"{source} has no {', '.join(missing) or 'configs'} section (or it is not a dict)"
        )
    if not isinstance(values["model"], str):
        raise RunDirError(f'{source}: "model" must name the model family, got {values["model"]!r}')
    return dict(values)


def read_config(run_dir: os.PathLike | str) -> dict[str, Any]:
    """Reads and checks config.json, in the current layout (see `upgrade_config`).

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
    if not isinstance(values, dict):
        raise RunDirError(f"{path} does not hold a JSON object")
    return upgrade_config(values, str(path))


def family_of(values: dict[str, Any], source: str = CONFIG_FILE) -> family_lib.ModelFamily:
    """The model family named by config.json contents (`read_config`'s layout).

    Raises:
      RunDirError: no family of that name is known.
    """
    try:
        return family_lib.get_family(values["model"])
    except (ValueError, TypeError) as e:
        raise RunDirError(f"{source}: {e}") from e


def parse_configs(values: dict[str, Any], source: str = CONFIG_FILE) -> dict[str, Any]:
    """The config objects (section name -> dataclass) of config.json contents (`read_config`).

    Raises:
      RunDirError: the family is unknown, or a section is missing, unknown, has unknown keys or
        invalid values (a config.json from another version of tfglo, or edited by hand).
    """
    family = family_of(values, source)
    sections = values["configs"]
    missing = sorted(set(family.sections) - set(sections))
    unknown = sorted(set(sections) - set(family.sections))
    if missing or unknown:
        raise RunDirError(
            f"{source}: a {family.name} run has config sections {sorted(family.sections)}; "
            f"missing {missing}, unknown {unknown}"
        )
    parsed = {}
    for key, cls in family.sections.items():
        try:
            parsed[key] = configs_lib.from_dict(cls, sections[key])
        except (TypeError, ValueError) as e:
            raise RunDirError(
                f"{source}: section {key!r} does not match {cls.__name__}: {e}"
            ) from e
    return parsed


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b and not (isinstance(a, list | tuple) and list(a) == list(b or [])):
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def check_resume(
    run_dir: os.PathLike | str,
    family: "family_lib.ModelFamily | str",
    configs: dict[str, Any],
) -> None:
    """Checks that training may continue in `run_dir` with `family` and `configs`.

    A run directory without config.json is new. With one, the family and its checkpoint sections
    (`ModelFamily.checkpoint_sections`, e.g. "model") must be the same (the checkpoints hold
    their variables); other settings (steps, learning rates, logging) may change on resume.

    Raises:
      RunDirError: config.json exists and names another family, or its checkpoint sections
        differ (the message lists each differing field).
    """
    if not config_path(run_dir).is_file():
        return
    family = _resolve_family(family)
    values = read_config(run_dir)
    if values["model"] != family.name:
        raise RunDirError(
            f"{run_dir} holds a {values['model']} run, not {family.name}: use a new --run_dir"
        )
    differences = []
    for key in family.checkpoint_sections:
        new = configs_lib.to_dict(configs[key])
        old = values["configs"].get(key, {})
        try:
            # Through the dataclass: fields added since the run was made read as their defaults
            # (a new field's default keeps the old behaviour), so they are no difference.
            old = configs_lib.to_dict(configs_lib.from_dict(type(configs[key]), old))
        except (TypeError, ValueError):
            pass  # an unreadable section: every field is reported below
        differences += _differences(old, new, f"{key}.")
    if differences:
        raise RunDirError(
            f"{run_dir} holds a run with another model configuration ({'; '.join(differences)}): "
            "use a new --run_dir, or the run's own settings to resume it"
        )


def latest_checkpoint(run_dir: os.PathLike | str) -> str | None:
    """Path prefix of the newest complete checkpoint in run_dir/checkpoints, or None (a
    damaged `checkpoint` index is not trusted: `trainer.latest_checkpoint`)."""
    return trainer.latest_checkpoint(trainer.checkpoint_dir(run_dir))


def override_render(configs: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """`configs` with fields of the model section's `render` config replaced.

    For how whole images are rendered (`RenderConfig.accelerate`, the occupancy settings): the
    rendering apps' flags override what config.json recorded at training time.

    Raises:
      RunDirError: overrides for a model section without a render config, or a field it lacks.
    """
    if not overrides:
        return configs
    model_config = configs.get("model")
    render = getattr(model_config, "render", None)
    if render is None:
        raise RunDirError(f"render settings {sorted(overrides)} need a model with a render config")
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(render)})
    if unknown:
        raise RunDirError(f"unknown render settings {unknown}")
    render = dataclasses.replace(render, **overrides)
    return dict(configs, model=dataclasses.replace(model_config, render=render))


def load_run(
    run_dir: os.PathLike | str,
    checkpoint: str | None = None,
    render_overrides: dict[str, Any] | None = None,
) -> Run:
    """Rebuilds a trained model from config.json and restores its newest checkpoint.

    The family named in config.json builds the model from its config sections. Only the model
    and the step are restored; the optimisers' state in the checkpoint is not needed
    (`expect_partial`). Every variable of the rebuilt model must be found in the checkpoint, so a
    config.json that does not match the checkpoint is an error, not a silently half-initialised
    model.

    Args:
      run_dir: a run directory written by the trainer (config.json version 1 or 2).
      checkpoint: a specific checkpoint path prefix (default: the newest).
      render_overrides: `RenderConfig` fields to replace in the model config (how whole images
        are rendered, e.g. {"accelerate": False}); see `override_render`.

    Raises:
      RunDirError: no run directory or config.json, an unknown family, no checkpoint, or a
        config.json that does not match the checkpoint.
    """
    run_dir = pathlib.Path(run_dir)
    source = str(config_path(run_dir))
    values = read_config(run_dir)
    family = family_of(values, source)
    configs = override_render(parse_configs(values, source), render_overrides)
    checkpoint = checkpoint or latest_checkpoint(run_dir)
    if checkpoint is None:
        raise RunDirError(
            f"{run_dir} has no checkpoint in {trainer.checkpoint_dir(run_dir)}: train first "
            "(python -m tfglo.train), or wait for the first checkpoint_every steps"
        )
    model = family.build_model(configs)
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    try:
        status = tf.train.Checkpoint(model=model, step=step).restore(checkpoint)
        status.expect_partial()
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError) as e:
        raise RunDirError(
            f"checkpoint {checkpoint} does not match the model of {source}: {e}"
        ) from e
    except tf.errors.NotFoundError as e:
        raise RunDirError(f"checkpoint {checkpoint} cannot be read: {e.message}") from e
    return Run(
        run_dir=run_dir,
        family=family,
        configs=configs,
        model=model,
        dataset_dir=str(values.get("dataset_dir", "")),
        dataset_metadata=dict(values.get("dataset_metadata") or {}),
        step=int(step.numpy()),
        checkpoint=checkpoint,
        flags=dict(values.get("flags") or {}),
        values=values,
    )
