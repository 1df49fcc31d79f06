"""`python -m tfglo.lift`: a photo to 3D in one command.

    python -m tfglo.lift --run_dir=RUN --images=PHOTO_OR_DIR --output=OUT
    python -m tfglo.lift --run_dir=RUN --images=DIR --output=OUT --cameras=cameras.json

For each photo: the crop, landmarks, mask and camera fit of the run's training data (against the
run's canonical keypoints; or, with `--cameras`, the photo's camera from a file, for any class),
a latent code (LOLNeRF: test-time optimisation from the latent mean), then into `OUT/<photo>/`:
`crop.png`, `mask.png`, `reconstruction.png` (input | render with its PSNR | depth),
`orbit/orbit.gif` + `orbit/depth.gif` (and the frames), `mesh.ply` + `mesh.glb`, `latent.npy`
and `lift.json` (camera, fit error, steps, PSNR, seconds per stage); `OUT/summary.json` lists
what was lifted and what was skipped and why. A photo without a usable face is reported and
skipped; the exit status is non-zero only when no photo could be lifted.

The flags are the fields of `tfglo.engine.lifting.LiftConfig` (derived, see
`tfglo.utils.configs`): its inversion settings as `--inversion_*`, the mesh's as `--mesh_*`.
The library is `tfglo.engine.lifting`; this module only turns flags into a call.
"""

from tfglo.utils import tf_logs

tf_logs.quiet_start()

from absl import app, flags  # noqa: E402

from tfglo.engine import inversion, lifting
from tfglo.nerf import mesh_extraction
from tfglo.utils import app as app_utils
from tfglo.utils import configs

FLAGS = flags.FLAGS
FLAG_SPEC = configs.ConfigFlags(
    "tfglo.lift",
    {"lift": lifting.LiftConfig},
    naming={
        # The names tfglo.evaluate gives the same settings.
        inversion.InversionConfig: configs.FlagNames(
            prefix="inversion_",
            names={
                "num_steps": "inversion_steps",
                "rays_per_image": "inversion_rays",
                "finetune_weights": "finetune",
                "finetune_learning_rate": "finetune_learning_rate",
                "seed": "seed",
                "chunk_size": "chunk_size",
            },
        ),
        mesh_extraction.MeshConfig: configs.FlagNames(prefix="mesh_"),
    },
    extra=(
        configs.Flag("run_dir", "string", None, "Trained run directory (checkpoints, config)."),
        configs.Flag("images", "string", None, "A photo, or a folder of photos."),
        configs.Flag("output", "string", None, "Directory for one folder per photo (created)."),
    ),
)


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """Defines the app's flags (once; flags another app already defined are shared)."""
    FLAG_SPEC.define(flag_values)


def main(argv, flag_values: flags.FlagValues = FLAGS):
    """Runs the app with parsed flags (`flag_values`: another FlagValues, e.g. in tests)."""
    del argv
    f = flag_values
    if not f.run_dir or not f.images or not f.output:
        raise app.UsageError("--run_dir, --images and --output are required")
    try:
        config = FLAG_SPEC.build(FLAG_SPEC.values(f))["lift"]
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    from tfglo.engine import run_dir as run_dir_lib  # the trainer's module; imported when needed

    run = run_dir_lib.load_run(f.run_dir)
    try:
        summary = lifting.lift_photos(run, f.images, f.output, config)
    except lifting.LiftError as e:
        raise app.UsageError(str(e)) from None
    print(f"peak_rss_mib={app_utils.peak_rss_mib():.1f}")
    if not summary["lifted"]:
        reasons = "; ".join(s["reason"] for s in summary["skipped"][:3])
        raise SystemExit(f"tfglo.lift: no photo could be lifted ({reasons})")
    return summary


def run(argv=None):
    """Entry point: `python -m tfglo.lift ...` (or `run([...argv])` from Python)."""
    app_utils.run_app(_exit_status, define_flags, argv)


def _exit_status(argv) -> int:
    # absl exits with main's return value: the summary dict (for in-process callers) would make
    # the status 1, so the command line gets 0 (the summary is in OUT/summary.json).
    main(argv)
    return 0


if __name__ == "__main__":
    run()
