"""The NeRF-VAE section of `make demo` (`python -m tfglo.demo` calls `run_section`).

Each step is a real run of one of the package's apps in its own process, through the runner the
demo passes in:
1. `tfglo.prepare --synthetic_class=shapes`: training scenes, and scenes never trained on (another
   seed), 8 training + 4 held-out views each;
2. `tfglo.train --model=nerf_vae --flagfile=flags/nerf_vae_demo.cfg`;
3. `tfglo.evaluate --context_views=1,2,4` on the unseen scenes: encoded novel views against a
   per-scene NeRF fit to the same views, and latent optimisation from the prior mean and from the
   encoder's mean;
4. `tfglo.render --mode=sample`: a grid of prior samples; `--mode=orbit`: an encoded unseen scene
   all around.
Outputs go under `<demo output>/nerf_vae/`; the returned dict goes into metrics.json's "nerf_vae".
"""

import json
import pathlib
from collections.abc import Callable

# Sizes of the section: about 4 of the demo's 15 minutes on 2 cores (the LOLNeRF part takes the
# rest). Measured in CPU seconds of each app on a shared machine (see the README).
NUM_SCENES = 128
UNSEEN_SCENES = 3
IMAGE_SIZE = 16
CONTEXT_VIEWS = "1,2,4"
PER_SCENE_STEPS = 100
PER_SCENE_RAYS = 256
INVERSION_STEPS = 32
INVERSION_RAYS = 256
CURVE_RAYS = 512
SAMPLES = 8
TRUNCATION = 0.7
ORBIT_FRAMES = 16


def run_section(
    output: pathlib.Path,
    run_app: Callable[..., float],
    flagfile: str,
    num_scenes: int = NUM_SCENES,
    unseen_scenes: int = UNSEEN_SCENES,
    image_size: int = IMAGE_SIZE,
    extra_train_flags: tuple[str, ...] = (),
    per_scene_steps: int = PER_SCENE_STEPS,
    inversion_steps: int = INVERSION_STEPS,
) -> dict:
    """Runs the section's apps (module docstring) and returns its metrics.

    Args:
      output: the section's directory (created).
      run_app: `(module, *args) -> seconds` runs `python -m tfglo.<module> args...`.
      flagfile: the NeRF-VAE training flagfile.
      num_scenes, unseen_scenes, image_size: the two shapes datasets.
      extra_train_flags: more `tfglo.train` arguments (e.g. "--num_steps=10").
      per_scene_steps: the per-scene NeRF's budget.
      inversion_steps: steps of the latent optimisation curves.

    Returns:
      {"context_views": {k: psnr/ssim/mse}, "per_scene_nerf": {k: ...}, "inversion": {...},
      "vae_minus_per_scene_psnr": {k: dB}, "psnr_rises_with_k", "files", "seconds"}.
    """
    output.mkdir(parents=True, exist_ok=True)
    data, unseen, run = output / "data", output / "unseen", output / "run"
    seconds: dict[str, float] = {}
    for name, path, count, seed in (
        ("prepare", data, num_scenes, 0),
        ("unseen", unseen, unseen_scenes, 1000),
    ):
        seconds[name] = run_app(
            "prepare",
            "--source=synthetic",
            "--synthetic_class=shapes",
            f"--num_objects={count}",
            f"--image_size={image_size}",
            f"--seed={seed}",
            f"--output={path}",
            "--overwrite",
        )
    seconds["train"] = run_app(
        "train",
        "--model=nerf_vae",
        f"--flagfile={flagfile}",
        f"--dataset={data}",
        f"--run_dir={run}",
        *extra_train_flags,
    )
    evaluation = output / "eval_unseen"
    seconds["evaluate"] = run_app(
        "evaluate",
        f"--run_dir={run}",
        f"--dataset={unseen}",
        f"--output={evaluation}",
        f"--context_views={CONTEXT_VIEWS}",
        f"--per_scene_steps={per_scene_steps}",
        f"--per_scene_rays={PER_SCENE_RAYS}",
        f"--inversion_steps={inversion_steps}",
        f"--inversion_rays={INVERSION_RAYS}",
        f"--curve_rays={CURVE_RAYS}",
    )
    renders = output / "renders"
    seconds["render_samples"] = run_app(
        "render",
        f"--run_dir={run}",
        f"--output={renders / 'prior_samples'}",
        "--mode=sample",
        f"--num_samples={SAMPLES}",
        f"--truncation={TRUNCATION}",
        f"--image_size={2 * image_size}",
    )
    seconds["render_orbit"] = run_app(
        "render",
        f"--run_dir={run}",
        f"--output={renders / 'unseen_orbit'}",
        "--mode=orbit",
        f"--context_dataset={unseen}",
        "--objects=0",
        "--context_views=4",
        f"--num_frames={ORBIT_FRAMES}",
        "--yaw_range_deg=-180,180",
        "--pitch_range_deg=25,35",
        f"--image_size={2 * image_size}",
    )
    report = json.loads((evaluation / "report.json").read_text())
    return summarize(report, seconds, output)


def summarize(report: dict, seconds: dict, output: pathlib.Path) -> dict:
    """The section's metrics.json entry from the evaluation report (module docstring)."""
    keep = ("psnr", "ssim", "mse", "masked_psnr", "mask_iou")
    vae = {k: {m: v[m] for m in keep if m in v} for k, v in report["context_views"].items()}
    nerf = {
        k: {m: v[m] for m in (*keep, "fitted_psnr", "steps") if m in v}
        for k, v in report.get("per_scene_nerf", {}).items()
    }
    ks = sorted(vae, key=int)
    inversion = {
        key: report["inversion"][key]
        for key in ("context_views", "steps", "prior_mean_final_psnr", "encoder_steps_to_match")
        if key in report.get("inversion", {})
    }
    for start in ("from_prior_mean", "from_encoder"):
        if start in report.get("inversion", {}):
            inversion[start] = report["inversion"][start]["psnr"]
    metrics = {
        "context_views": vae,
        "per_scene_nerf": nerf,
        "inversion": inversion,
        "vae_minus_per_scene_psnr": {k: vae[k]["psnr"] - nerf[k]["psnr"] for k in ks if k in nerf},
        "psnr_rises_with_k": all(vae[a]["psnr"] < vae[b]["psnr"] for a, b in zip(ks, ks[1:])),
        "files": {
            "eval_grids": str(output / "eval_unseen" / "grids"),
            "prior_samples": str(output / "renders" / "prior_samples" / "samples" / "grid.png"),
            "unseen_orbit": str(output / "renders" / "unseen_orbit" / "object_0000" / "orbit.gif"),
        },
        "seconds": dict(seconds, total=sum(seconds.values())),
    }
    print("\n=== NeRF-VAE on unseen shapes scenes: held-out PSNR from k context views ===")
    for k in ks:
        other = nerf.get(k, {}).get("psnr", float("nan"))
        print(f"  k={k}: NeRF-VAE {vae[k]['psnr']:.2f} dB, per-scene NeRF {other:.2f} dB")
    print(f"  prior samples: {metrics['files']['prior_samples']}")
    return metrics
