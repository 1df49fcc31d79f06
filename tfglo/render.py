"""`python -m tfglo.render`: orbits, interpolations, sampled identities and meshes of a run.

    python -m tfglo.render --run_dir=DIR --output=DIR --mode=orbit --ids=0,1
    python -m tfglo.render --run_dir=DIR --output=DIR --mode=orbit --latents=inverted.npy
    python -m tfglo.render --run_dir=DIR --output=DIR --mode=interpolate --ids=0,3
    python -m tfglo.render --run_dir=DIR --output=DIR --mode=sample --num_samples=8 --seed=1
    python -m tfglo.render --run_dir=DIR --output=DIR --mode=mesh --ids=0,1 --mesh_resolution=128

Codes come from the run's latent table (`--ids`, rows of the table) or from a `.npy` file of
codes `[K, D]` (`--latents`, e.g. the `latents.npy` that `tfglo.evaluate --invert` writes; `--ids`
then picks rows of the file). Views are rendered in fixed-size ray chunks
(`tfglo.engine.views`), so memory does not grow with `--image_size`.

Outputs (under --output):
- orbit: `<name>/frame_NNN.png`, `depth_NNN.png` (viridis, near bright; one depth range for the
  whole orbit), `depth_NNN.npy` (raw float32 camera-z depth, object units), `alpha_NNN.png`,
  `orbit.gif`, `depth.gif`, `alpha.gif`.
- interpolate: `interpolate_A_B/strip.png`, `depth_strip.png`, `interpolate.gif` (there and back),
  and the frames.
- sample: `samples/sample_NNN.png` (+ depth), `samples/grid.png`, `samples/latents.npy`.
- mesh: `<name>/mesh.ply` (package frame) and `<name>/mesh.glb` (glTF, +y up): marching cubes
  of the foreground density inside the run's bounding sphere, vertex colours from the field
  (`tfglo.nerf.mesh_extraction`); prints vertex and face counts and whether it is watertight.

A NeRF-VAE run (config.json names the family) has no latent table: its codes are encoded from
context views, or drawn from its prior:

    python -m tfglo.render --run_dir=DIR --output=DIR --mode=orbit --context_dataset=NEW \
        --objects=0,1 --context_views=4
    python -m tfglo.render --run_dir=DIR --output=DIR --mode=interpolate --objects=0,3
    python -m tfglo.render --run_dir=DIR --output=DIR --mode=sample --truncation=0.7

orbit and interpolate encode objects of `--context_dataset` (default: the run's training data)
from their first `--context_views` training views (`tfglo.nerf_vae.scenes`); sample draws
`--num_samples` codes from the prior N(0, I) scaled by `--truncation`.

The framing flags are the fields of `tfglo.engine.views.ViewConfig`, the mesh flags
(`--mesh_resolution`, `--mesh_level`, `--mesh_chunk_points`, `--mesh_color_offset`) those of
`tfglo.nerf.mesh_extraction.MeshConfig` (derived, see `tfglo.utils.configs`); the rendering and
writing are `tfglo.engine.views` and `tfglo.geometry.mesh`, the codes `tfglo.lolnerf.identities`.
This module only turns flags into calls.

Views are rendered by the accelerated renderer (occupancy grid per code, early ray termination:
`tfglo.nerf.accelerated_renderer`) unless the run's config says otherwise; `--noaccelerate`
renders with the exact brute-force renderer, and `--occupancy_resolution`,
`--termination_threshold`, ... (the `RenderConfig` fields of
`tfglo.nerf.config.INFERENCE_RENDER_FIELDS`) override the run's settings.
"""

from tfglo.utils import tf_logs

tf_logs.quiet_start()

import pathlib
import time

import numpy as np
from absl import app, flags, logging

from tfglo.engine import views
from tfglo.geometry import mesh as mesh_lib
from tfglo.lolnerf import identities
from tfglo.nerf import config as nerf_config
from tfglo.nerf import mesh_extraction
from tfglo.nerf_vae import scenes as nerf_vae_scenes
from tfglo.utils import app as app_utils
from tfglo.utils import configs

FLAGS = flags.FLAGS
MODES = ("orbit", "interpolate", "sample", "mesh")
Flag = configs.Flag
FLAG_SPEC = configs.ConfigFlags(
    "tfglo.render",
    {
        "view": views.ViewConfig,
        "mesh": mesh_extraction.MeshConfig,
        "render": nerf_config.RenderConfig,
    },
    naming={
        mesh_extraction.MeshConfig: configs.FlagNames(prefix="mesh_"),
        nerf_config.RenderConfig: views.RENDER_FLAG_NAMING,
    },
    defaults_from={
        "image_size": "the training image size",
        "camera_distance": "as in training",
        "focal_factor": "as in training",
        **views.RENDER_FLAG_DEFAULTS,
    },
    extra=(
        Flag("run_dir", "string", None, "Trained run directory (checkpoints, config)."),
        Flag("output", "string", None, "Directory for the outputs (created)."),
        Flag("mode", "enum", "orbit", "What to render (see module help).", enum_values=MODES),
        Flag(
            "ids",
            "list",
            None,
            "Rows of the latent table (or of --latents) to render; orbit, mesh: every listed "
            "one (default 0, or every row of --latents); interpolate: exactly two (default 0,1).",
        ),
        Flag("latents", "string", None, ".npy file of codes [K, D] (e.g. from evaluate --invert)."),
        Flag("num_frames", "integer", 24, "Frames of an orbit or interpolation."),
        Flag("num_samples", "integer", 8, "Identities to sample (mode=sample)."),
        Flag("truncation", "float", 0.7, "Sampling: scale of the deviation from the mean code."),
        Flag("seed", "integer", 0, "Sampling seed."),
        Flag("fps", "float", 12.0, "GIF frame rate."),
        Flag(
            "context_dataset",
            "string",
            None,
            "NeRF-VAE: dataset whose objects are encoded (default: the run's training data).",
        ),
        Flag(
            "objects",
            "list",
            None,
            "NeRF-VAE: object ids to encode (orbit: default the first; interpolate: two).",
        ),
        Flag("context_views", "integer", 4, "NeRF-VAE: context views encoded per object."),
    ),
)


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """Defines the app's flags (once; flags another app already defined are shared)."""
    FLAG_SPEC.define(flag_values)


def main(argv, flag_values: flags.FlagValues = FLAGS):
    """Runs the app with parsed flags (`flag_values`: another FlagValues, e.g. in tests)."""
    del argv
    f = flag_values
    if not f.run_dir or not f.output:
        raise app.UsageError("--run_dir and --output are required")
    try:
        framing = FLAG_SPEC.field_values(FLAG_SPEC.values(f), "view")
        mesh_config = FLAG_SPEC.build(FLAG_SPEC.values(f))["mesh"]
        overrides = views.render_overrides(FLAG_SPEC, FLAG_SPEC.values(f))
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    from tfglo.engine import run_dir as run_dir_lib  # the trainer's module; imported when needed

    run = run_dir_lib.load_run(f.run_dir, render_overrides=overrides)
    try:
        views.check_render_settings(run.model)
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    model = run.model
    start = time.perf_counter()
    view = views.default_view(
        getattr(run, "dataset_metadata", None), getattr(run, "dataset_dir", None), **framing
    )
    output = pathlib.Path(f.output)
    output.mkdir(parents=True, exist_ok=True)
    logging.info("rendering %s at %dx%d: %s", f.mode, view.image_size, view.image_size, view)
    ids = [int(i) for i in f.ids] if f.ids else None
    vae = run.family_name == "nerf_vae"  # codes: encoded objects, or the prior
    if vae and f.mode != "sample":
        encoded = nerf_vae_scenes.select_codes(
            model,
            f.context_dataset or run.dataset_dir,
            f.objects,
            f.context_views,
            f.latents,
            default_count=2 if f.mode == "interpolate" else 1,
        )
    if f.mode == "orbit":
        codes, names = encoded if vae else identities.select_latents(model, ids, f.latents)
        for code, name in zip(codes, names):
            frames = views.render_orbit(model, code, view, f.num_frames)
            written = views.write_frames(output / name, frames, fps=f.fps)
            print(f"{name}: {len(frames)} frames, {written['gif']}")
    elif f.mode == "interpolate":
        ids = ids if ids is not None else [0, 1]
        if vae:
            codes, names = encoded
            if len(codes) != 2:
                raise app.UsageError(f"--mode=interpolate needs two --objects, got {names}")
        elif len(ids) != 2:
            raise app.UsageError(f"--mode=interpolate needs exactly two --ids, got {ids}")
        else:
            codes, names = identities.select_latents(model, ids, f.latents)
        path = identities.interpolation_latents(codes[0], codes[1], f.num_frames)
        frames = views.render_strip(model, path, view)
        directory = output / f"interpolate_{names[0]}_{names[1]}"
        written = views.write_frames(directory, frames, "interpolate.gif", fps=f.fps, bounce=True)
        strip = views.write_strip(directory, frames, "strip")
        print(f"interpolation {names[0]} -> {names[1]}: {strip['colour']}")
        print(f"gif: {written['gif']}")
    elif f.mode == "mesh":
        codes, names = encoded if vae else identities.select_latents(model, ids, f.latents)
        radius = float(run.model_config.render.scene_radius)
        for code, name in zip(codes, names):
            mesh = mesh_extraction.extract_mesh(
                run.family.mesh_field(model), code, mesh_config, radius
            )
            facts = mesh_extraction.mesh_summary(mesh, radius)
            if mesh.is_empty:
                print(f"{name}: empty mesh (the density never reaches --mesh_level={f.mesh_level})")
                continue
            (output / name).mkdir(parents=True, exist_ok=True)
            ply = mesh_lib.write_ply(mesh, output / name / "mesh.ply")
            mesh_lib.write_glb(mesh, output / name / "mesh.glb")
            closed = "watertight" if facts["watertight"] else "not watertight"
            print(f"{name}: {facts['vertices']} vertices, {facts['faces']} faces, {closed}: {ply}")
    else:
        if vae:
            codes = nerf_vae_scenes.prior_latents(
                f.num_samples, model.latent_dim, f.seed, f.truncation
            )
        else:
            table = identities.table_latents(model)
            if f.latents:
                table, _ = identities.select_latents(model, None, f.latents)
            codes, _, _ = identities.sample_identities(table, f.num_samples, f.seed, f.truncation)
        frames = views.render_strip(model, codes, view)
        directory = output / "samples"
        views.write_images(directory, frames, "sample")
        grid = views.write_strip(directory, frames, "grid")
        np.save(directory / "latents.npy", codes)
        print(f"{len(codes)} samples (truncation {f.truncation}): {grid['colour']}")
    accelerate = int(bool(getattr(run.model_config.render, "accelerate", False)))
    print(
        f"peak_rss_mib={app_utils.peak_rss_mib():.1f} image_size={view.image_size} "
        f"render_s={time.perf_counter() - start:.2f} accelerate={accelerate}"
    )


def run(argv=None):
    """Entry point: `python -m tfglo.render ...` (or `run([...argv])` from Python)."""
    app_utils.run_app(main, define_flags, argv)


if __name__ == "__main__":
    run()
