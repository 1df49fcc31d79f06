"""`python -m tfglo.export --run_dir=DIR --export_base=DIR [--model_name=tfglo] [--version=N]`.

Exports a trained run (its newest checkpoint) as a SavedModel in the layout TF Serving loads,
`<export_base>/<model_name>/<version>/`, and prints the command that serves it. The version is
the next free integer unless `--version` is given; an existing version is never overwritten. The
SavedModel is written into a hidden temporary directory beside the versions and renamed at the
end, so a failed export never leaves a half version for a running server to pick up. The serving
module comes from the run's model family (`ModelFamily.serving_module`; LOLNeRF's signatures:
`tfglo.lolnerf.serving`); loading the run and framing its cameras is `tfglo.engine.run_export`,
the export machinery, warm-up requests and metadata file are `tfglo.engine.serving`'s. This
module only turns flags into that call.

The render signatures use the accelerated renderer in the graph (an occupancy grid per distinct
latent of a request, early ray termination) unless the run's config says otherwise;
`--noaccelerate` exports the exact brute-force renderer, and the other render flags
(`--occupancy_resolution`, ...: `tfglo.render`'s) override the run's settings.
"""

from tfglo.utils import tf_logs

tf_logs.quiet_start()

import json
import sys

from absl import app, flags

from tfglo.engine import run_export, serving, views
from tfglo.nerf import config as nerf_config
from tfglo.utils import configs

FLAGS = flags.FLAGS
# The export settings are the fields of `serving.ExportConfig` (derived, see tfglo.utils.configs);
# the cameras default to the training data's framing (`run_export.export_config`).
FLAG_SPEC = configs.ConfigFlags(
    "tfglo.export",
    {"export": serving.ExportConfig, "render": nerf_config.RenderConfig},
    naming={nerf_config.RenderConfig: views.RENDER_FLAG_NAMING},
    defaults_from={
        "camera_distance": "as in training",
        "focal_factor": "as in training",
        **views.RENDER_FLAG_DEFAULTS,
    },
    extra=(
        configs.Flag("run_dir", "string", None, "Training run directory (with checkpoints)."),
        configs.Flag(
            "export_base", "string", None, "Directory holding <model_name>/<version>/ SavedModels."
        ),
        configs.Flag(
            "version", "integer", None, "Version (>= 1); default: one more than the largest."
        ),
    ),
)


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """Defines the app's flags (once; flags another app already defined are shared)."""
    FLAG_SPEC.define(flag_values)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    f = FLAGS
    if not f.run_dir or not f.export_base:
        raise app.UsageError("--run_dir and --export_base are required")
    try:
        settings = FLAG_SPEC.field_values(FLAG_SPEC.values(f), "export")
        overrides = views.render_overrides(FLAG_SPEC, FLAG_SPEC.values(f))
        target = run_export.export_run(
            f.run_dir,
            f.export_base,
            version=f.version,
            command=" ".join(sys.argv),
            render_overrides=overrides,
            **settings,
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
    """Console entry point (setup.py: tfglo-export)."""
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
