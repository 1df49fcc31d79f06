"""Exporting a trained run for TF Serving: what `python -m tfglo.export` does with its flags.

`export_config` frames the exported cameras like the run's training data (camera distance,
focal factor: `engine.views.default_view`) and collects the export's metadata; `export_run`
loads the run's newest checkpoint (`engine.run_dir.load_run`), asks its model family for the
serving module (`ModelFamily.serving_module`) and writes it with the engine's export machinery
(`engine.serving.export_version`) at `<export_base>/<model_name>/<version>/`: the next free
version unless one is given, never an existing one, never half-written.
"""

import os
import pathlib
import shutil
import sys
import time

from tfglo.engine import run_dir as run_dir_lib
from tfglo.engine import serving, views
from tfglo.utils import configs


def export_config(run, model_name: str, **overrides) -> tuple[serving.ExportConfig, dict]:
    """The `ExportConfig` and metadata of a run: cameras framed like its training data.

    Args:
      run: a `tfglo.engine.run_dir.load_run` result (family, model, model_config, step, dataset
        metadata).
      model_name: the served model's name.
      **overrides: `ExportConfig` fields (None values are ignored).

    Returns:
      (config, metadata for assets.extra/tfglo_export.json: "model" (the family's name),
      "step", "model_config", "training_image_size", "camera_distance", "focal_factor").
    """
    metadata = getattr(run, "dataset_metadata", None) or {}
    # The camera framing of the training data (distance, focal factor), as the render app uses.
    view = views.default_view(metadata, getattr(run, "dataset_dir", None))
    values = {
        "model_name": model_name,
        "camera_distance": float(view.camera_distance),
        "focal_factor": float(view.focal_factor),
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    config = serving.ExportConfig(**values)
    model_config = getattr(run, "model_config", None) or getattr(run.model, "config", None)
    family = getattr(run, "family", None)
    info = {
        "model": getattr(family, "name", None),
        "step": int(getattr(run, "step", 0) or 0),
        "model_config": configs.to_dict(model_config) if model_config else None,
        "training_image_size": int(view.image_size),
        "camera_distance": config.camera_distance,
        "focal_factor": config.focal_factor,
    }
    return config, info


# A temporary export directory untouched for this long was left by a killed export (a live
# export writes its SavedModel within seconds to minutes).
STALE_SECONDS = 15 * 60


def remove_stale_exports(model_dir: os.PathLike | str, now: float | None = None) -> list[str]:
    """Deletes the temporary directories killed exports left in `<export_base>/<model_name>`.

    `engine.serving.export_version` writes a version into `.tmp-<version>-*` and renames it
    when complete, so a kill never leaves a half-written *version* (TF Serving only loads
    all-digit names), but it leaves the temporary directory. Those with no file modified in
    `STALE_SECONDS` are deleted (a concurrent export's are younger). Returns their names.
    """
    model_dir = pathlib.Path(model_dir)
    now = time.time() if now is None else now
    removed = []
    for path in sorted(model_dir.glob(".tmp-*")) if model_dir.is_dir() else ():
        if not path.is_dir():
            continue
        newest = max(
            (p.stat().st_mtime for p in [path, *path.rglob("*")] if not p.is_symlink()),
            default=0.0,
        )
        if now - newest > STALE_SECONDS:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    return removed


def export_run(
    run_dir,
    export_base,
    model_name: str = "tfglo",
    version: int | None = None,
    command: str | None = None,
    render_overrides: dict | None = None,
    **overrides,
) -> pathlib.Path:
    """Exports a training run's newest checkpoint to `<export_base>/<model_name>/<version>/`.

    Args:
      run_dir: the training run directory (`tfglo.engine.run_dir.load_run`).
      export_base: the directory TF Serving's base path points at, minus the model name.
      model_name: the served model's name.
      version: version number (>= 1); None: the next free one.
      command: the command line, recorded in the export's metadata.
      render_overrides: `RenderConfig` fields replacing the run's (e.g. {"accelerate": False}:
        export the exact renderer); see `run_dir.override_render`.
      **overrides: `serving.ExportConfig` fields (chunk_size, warmup_image_size, ...).

    Returns:
      the version directory written.

    Raises:
      FileExistsError: that version exists already (checked before the run is loaded).
      ValueError: a bad version or model name.
    """
    if version is not None and version < 1:
        raise ValueError(f"version must be >= 1, got {version}")
    if not model_name or "/" in model_name or model_name.startswith("."):
        raise ValueError(f"invalid model name {model_name!r}")
    existing = pathlib.Path(export_base) / model_name / str(version)
    if version is not None and existing.exists():
        # Fail fast, before the (slow) model load; export_version checks again at the end.
        raise FileExistsError(
            f"version {version} already exists at {existing}; versions are never overwritten: "
            "pick another version or leave it out for the next free one"
        )
    for name in remove_stale_exports(pathlib.Path(export_base) / model_name):
        print(f"export: removed {name}, left by an interrupted export", file=sys.stderr)
    run = run_dir_lib.load_run(run_dir, render_overrides=render_overrides)
    views.check_render_settings(run.model)
    config, info = export_config(run, model_name, **overrides)
    info["run_dir"] = str(pathlib.Path(run_dir).resolve())
    if command:
        info["command"] = command
    writer = serving.module_writer(
        lambda export_config: run.family.serving_module(run.model, run.configs, export_config)
    )
    return serving.export_version(writer, export_base, model_name, version, config, metadata=info)
