"""`python -m tfglo.evaluate`: held-out-view quality of a trained run, and of inverted new objects.

    python -m tfglo.evaluate --run_dir=RUN --dataset=DATA --output=OUT
    python -m tfglo.evaluate --run_dir=RUN --dataset=UNSEEN --output=OUT --invert

Without `--invert`, the dataset's eval split holds held-out views of the run's training
identities: each view is rendered with its own row of the latent table. With `--invert`, the
dataset holds objects the run never saw (a synthetic set with another seed, or photos prepared
with `--canonical_from` the training dataset): a code is fitted to each object's TRAIN-split image
(`tfglo.engine.inversion`, network frozen), then its eval views are rendered with that code.

Every view is scored: PSNR, SSIM, masked PSNR on the ground-truth foreground, mask IoU of the
rendered opacity, and, where the dataset has ground-truth depth, the foreground depth error
(absolute, and after the best scale; camera z, object units). The billboard baseline (the
object's training image on a plane through the origin) is scored on the same views. Writes
`report.json`, `grids/<object>.png` (ground truth | render | depth | error | billboard, one row
per view), `latents.npy` when inverting, and prints a table.

A NeRF-VAE run (config.json names the family) is evaluated by its family's `evaluate` hook
(`tfglo.nerf_vae.evaluation`): every object's first k train views are encoded, for each k of
`--context_views` (default 1,2,4), and its eval views scored against a per-scene NeRF fit to the
same k views (`--per_scene_steps`) and against latent optimisation from the prior mean and from
the encoder's mean (`--inversion_steps`):

    python -m tfglo.evaluate --run_dir=RUN --dataset=DATA --output=OUT --context_views=1,2,4

The library is `tfglo.engine.evaluation` (`evaluate_run`, `evaluate_model`); the flags are the
fields of its `EvaluateConfig` and of NeRF-VAE's `SceneEvaluateConfig` (derived, see
`tfglo.utils.configs`) and this module only turns them into those.

Views (held-out views, the renders of inverted codes) are rendered by the accelerated renderer
unless the run's config says otherwise; `--noaccelerate` renders them with the exact brute-force
renderer (the render flags are `tfglo.render`'s). Inversion itself fits codes with the
stochastic training renderer.
"""

from tfglo.utils import tf_logs

tf_logs.quiet_start()

import dataclasses
import pathlib

import numpy as np
from absl import app, flags

from tfglo.engine import evaluation, inversion, views
from tfglo.nerf import config as nerf_config
from tfglo.nerf_vae import baselines as nerf_vae_baselines
from tfglo.nerf_vae import evaluation as nerf_vae_evaluation
from tfglo.utils import app as app_utils
from tfglo.utils import configs

FLAGS = flags.FLAGS
FLAG_SPEC = configs.ConfigFlags(
    "tfglo.evaluate",
    {
        "evaluate": evaluation.EvaluateConfig,
        "nerf_vae": nerf_vae_evaluation.SceneEvaluateConfig,
        "render": nerf_config.RenderConfig,
    },
    naming={
        nerf_config.RenderConfig: views.RENDER_FLAG_NAMING,
        nerf_vae_baselines.PerSceneNeRFConfig: configs.FlagNames(prefix="per_scene_"),
        # --init_latents (a .npy file) sets initial_latents, in `config_from_flags`.
        evaluation.EvaluateConfig: configs.FlagNames(skip=("initial_latents",)),
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
    },
    shared=("chunk_size",),
    defaults_from=views.RENDER_FLAG_DEFAULTS,
    extra=(
        configs.Flag("run_dir", "string", None, "Trained run directory (checkpoints, config)."),
        configs.Flag("dataset", "string", None, "Dataset directory to evaluate."),
        configs.Flag("output", "string", None, "Directory for report.json, grids and latents."),
        configs.Flag("init_latents", "string", None, "Inversion: .npy start codes [D] or [K, D]."),
    ),
)


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """Defines the app's flags (once; flags another app already defined are shared)."""
    FLAG_SPEC.define(flag_values)


def config_from_flags(f=FLAGS) -> evaluation.EvaluateConfig:
    """Builds an `EvaluateConfig` from parsed flags (and the --init_latents file)."""
    config = FLAG_SPEC.build(FLAG_SPEC.values(f))["evaluate"]
    if f.init_latents:
        if not pathlib.Path(f.init_latents).is_file():
            raise app.UsageError(f"--init_latents file {f.init_latents} does not exist")
        config = dataclasses.replace(config, initial_latents=np.load(f.init_latents))
    return config


def main(argv, flag_values: flags.FlagValues = FLAGS):
    """Runs the app with parsed flags (`flag_values`: another FlagValues, e.g. in tests)."""
    del argv
    f = flag_values
    if not f.run_dir or not f.dataset or not f.output:
        raise app.UsageError("--run_dir, --dataset and --output are required")
    from tfglo.engine import run_dir as run_dir_lib  # the trainer's module; imported when needed

    config = config_from_flags(f)
    try:
        overrides = views.render_overrides(FLAG_SPEC, FLAG_SPEC.values(f))
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    run = run_dir_lib.load_run(f.run_dir, render_overrides=overrides)
    try:
        views.check_render_settings(run.model)
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    if run.family_name == "nerf_vae":  # encode k context views (tfglo.nerf_vae.evaluation)
        scenes = FLAG_SPEC.build(FLAG_SPEC.values(f))["nerf_vae"]
        report = run.family.evaluate(
            run, f.dataset, config=config, scene_config=scenes, output_dir=f.output
        )
        print(nerf_vae_evaluation.format_table(report))
    else:
        report = evaluation.evaluate_run(run, f.dataset, config, output_dir=f.output)
        print(evaluation.format_table(report))
    print(f"report: {pathlib.Path(f.output) / evaluation.REPORT_FILE}")


def run(argv=None):
    """Entry point: `python -m tfglo.evaluate ...` (or `run([...argv])` from Python)."""
    app_utils.run_app(main, define_flags, argv)


if __name__ == "__main__":
    run()
