"""`python -m tfglo.export --run_dir=DIR --export_base=DIR [--model_name=tfglo] [--version=N]`.

Exports a trained run (its newest checkpoint) as a SavedModel in the layout TF Serving loads,
`<export_base>/<model_name>/<version>/`, and prints the command that serves it. The version is
the next free integer unless `--version` is given; an existing version is never overwritten. The
SavedModel is written into a hidden temporary directory beside the versions and renamed at the
end, so a failed export never leaves a half version for a running server to pick up. The serving
module comes from the run's model family (`ModelFamily.serving_module`; LOLNeRF's signatures:
`tfglo.lolnerf.serving`); the export machinery, warm-up requests and metadata file are
`tfglo.engine.serving`'s.
"""

import functools
import json
import pathlib
import sys

from absl import app, flags

from tfglo import render
from tfglo.engine import run_dir as run_dir_lib
from tfglo.engine import serving
from tfglo.utils import app as app_utils
from tfglo.utils import configs

FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """Defines the app's flags (once; a flag another app already defined is shared).

    Defined here rather than at import, so library users (e.g. the demo) can import this module
    next to other apps without clashing flag definitions.
    """

    define = functools.partial(app_utils.define_flag, flag_values)

    define("string", "run_dir", None, "Training run directory (with checkpoints).")
    define("string", "export_base", None, "Directory holding <model_name>/<version>/ SavedModels.")
    define("string", "model_name", "tfglo", "TF Serving model name.")
    define(
        "integer", "version", None, "Version (>= 1); default: one more than the largest existing."
    )
    define("integer", "chunk_size", None, "Rays per chunk in the render signatures.")
    define("integer", "parallel_chunks", 1, "Chunks rendered at once (1 keeps memory flat).")
    define("integer", "max_image_size", 4096, "Largest height/width a request may ask for.")
    define("integer", "warmup_image_size", 16, "Image side of the warm-up render requests.")


def export_config(run, model_name: str, **overrides) -> tuple[serving.ExportConfig, dict]:
    """The `ExportConfig` and metadata of a run: cameras framed like its training data.

    Args:
      run: a `tfglo.engine.run_dir.load_run` result (model, model_config, step, dataset metadata).
      model_name: the served model's name.
      **overrides: `ExportConfig` fields (None values are ignored).

    Returns:
      (config, metadata for assets.extra/tfglo_export.json).
    """
    metadata = getattr(run, "dataset_metadata", None) or {}
    # The camera framing of the training data (distance, focal factor), as the render app uses.
    view = render.default_view(metadata, getattr(run, "dataset_dir", None))
    values = {
        "model_name": model_name,
        "camera_distance": float(view.camera_distance),
        "focal_factor": float(view.focal_factor),
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    config = serving.ExportConfig(**values)
    model_config = getattr(run, "model_config", None) or getattr(run.model, "config", None)
    info = {
        "step": int(getattr(run, "step", 0) or 0),
        "model_config": configs.to_dict(model_config) if model_config else None,
        "training_image_size": int(view.image_size),
        "camera_distance": config.camera_distance,
        "focal_factor": config.focal_factor,
    }
    return config, info


def export_run(
    run_dir,
    export_base,
    model_name: str = "tfglo",
    version: int | None = None,
    command: str | None = None,
    **overrides,
) -> pathlib.Path:
    """Exports a training run's newest checkpoint to `<export_base>/<model_name>/<version>/`.

    Args:
      run_dir: the training run directory (`tfglo.engine.run_dir.load_run`).
      export_base: the directory TF Serving's base path points at, minus the model name.
      model_name: the served model's name.
      version: version number (>= 1); None: the next free one.
      command: the command line, recorded in the export's metadata.
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
    run = run_dir_lib.load_run(run_dir)
    config, info = export_config(run, model_name, **overrides)
    info["run_dir"] = str(pathlib.Path(run_dir).resolve())
    if command:
        info["command"] = command
    writer = serving.module_writer(
        lambda export_config: run.family.serving_module(run.model, run.configs, export_config)
    )
    return serving.export_version(writer, export_base, model_name, version, config, metadata=info)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    f = FLAGS
    if not f.run_dir or not f.export_base:
        raise app.UsageError("--run_dir and --export_base are required")
    try:
        target = export_run(
            f.run_dir,
            f.export_base,
            f.model_name,
            f.version,
            command=" ".join(sys.argv),
            chunk_size=f.chunk_size,
            parallel_chunks=f.parallel_chunks,
            max_image_size=f.max_image_size,
            warmup_image_size=f.warmup_image_size,
        )
    except (FileExistsError, ValueError) as e:
        sys.exit(f"error: {e}")
    info = json.loads((target / serving.ASSETS_EXTRA / serving.METADATA_FILE).read_text())
    print(f"exported {f.run_dir} (step {info.get('step')}) to {target}")
    print("serve it with TF Serving (REST on port 8501, gRPC on 8500):")
    print(f"  {serving.serving_command(target.parent, f.model_name)}")
    print("then render an orbit with:")
    print(
        f"  python export/client.py --rest_url=http://localhost:8501 --model_name={f.model_name} "
        f"--radius={info['camera_distance']:g} --focal_factor={info['focal_factor']:g} "
        "--output=/tmp/tfglo_orbit"
    )


def run():
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
