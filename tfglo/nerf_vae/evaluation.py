"""Evaluation of a NeRF-VAE run: novel views from k context views, against a per-scene NeRF.

For every object of a dataset directory (scenes the run trained on, or never saw) and every k of
`SceneEvaluateConfig.context_views`: its first k `split=train` views (by view id) are encoded (the
posterior mean) and its `split=eval` views rendered and scored (`tfglo.engine.metrics`: PSNR,
SSIM, MSE, masked PSNR, mask IoU, depth error where the dataset has depth). Baselines on the same
views:
- `per_scene_nerf`: a NeRF fit from scratch to the same k context views of each object with a
  fixed step budget (`tfglo.nerf_vae.baselines`);
- `inversion`: LOLNeRF-style latent optimisation on the largest k's context views with the
  decoder frozen, started from the prior mean (zeros) and from the encoder's posterior mean
  (`tfglo.nerf_vae.inversion`), the held-out PSNR recorded against steps.

`report.json` (in `output_dir`):
    {"context_views": {"1": {"psnr", "ssim", "mse", ...}, "2": ..., "4": ...},
     "per_scene_nerf": {"1": {... , "fitted_psnr", "seconds"}, ...},
     "inversion": {"context_views": K, "steps": [...], "from_prior_mean": {"psnr": [...]},
                   "from_encoder": {"psnr": [...]}, "prior_mean_final_psnr",
                   "encoder_steps_to_match", "encoder_fraction_to_match"},
     "per_view": [...], "grids": [...], "num_objects", "num_views", "seconds": {...}}
and `grids/object_NNNN.png` per object: one row per held-out view, columns context views (first
row) | ground truth | render per k | depth (largest k) | per-scene NeRF (largest k).

`NeRFVAEFamily.evaluate` calls `evaluate_run`; `python -m tfglo.evaluate --context_views=1,2,4`
reaches it for a NeRF-VAE run.
"""

import dataclasses
import math
import pathlib
import time
from typing import Any

import numpy as np

from tfglo.data import dataset_dir as dataset_dir_lib
from tfglo.engine import evaluation as engine_evaluation
from tfglo.engine import metrics
from tfglo.engine import views as views_lib
from tfglo.geometry import camera as camera_lib
from tfglo.nerf import config as nerf_config
from tfglo.nerf_vae import baselines, inversion
from tfglo.nerf_vae import scenes as scenes_lib
from tfglo.utils import images

REPORT_FILE = engine_evaluation.REPORT_FILE


@dataclasses.dataclass(frozen=True)
class SceneEvaluateConfig:
    """NeRF-VAE's evaluation settings (beside the engine's `EvaluateConfig`).

    Attributes:
      context_views: numbers k of context views encoded per object (its first k training views,
        by view id); every object must have at least the largest k.
      per_scene_nerf: also fit and score the per-scene NeRF baseline for every k.
      per_scene: the per-scene NeRF's budget and optimiser.
      latent_optimization: also run latent optimisation from the prior mean and from the
        encoder's mean (the largest k's context views; `EvaluateConfig.inversion` sets its steps,
        learning rate, rays and mask weight).
      curve_rays: held-out rays per object of the optimisation's PSNR curve (a fixed random
        subset of the held-out views' pixels).
      grids: write a PNG grid per object.
    """

    context_views: tuple[int, ...] = (1, 2, 4)
    per_scene_nerf: bool = True
    per_scene: baselines.PerSceneNeRFConfig = dataclasses.field(
        default_factory=baselines.PerSceneNeRFConfig
    )
    latent_optimization: bool = True
    curve_rays: int = 2048
    grids: bool = True

    def __post_init__(self):
        ks = tuple(int(k) for k in self.context_views)
        object.__setattr__(self, "context_views", ks)
        if not ks or min(ks) < 1:
            raise ValueError(f"context_views must be numbers >= 1, got {list(ks)}")
        if self.curve_rays < 1:
            raise ValueError(f"curve_rays must be >= 1, got {self.curve_rays}")


def _targets(view: dict) -> dict:
    return {
        "image": view["image"],
        "mask": view["mask"],
        "has_mask": view["mask"] is not None,
        "depth": view["depth"],
        "has_depth": view["depth"] is not None,
    }


def _score(render: dict, view: dict) -> dict[str, float]:
    scores = metrics.image_metrics(render, _targets(view))
    scores["mse"] = float(np.mean((render["rgb"] - view["image"]) ** 2))
    return scores


def _render(model, latent, view: dict, chunk_size=None) -> dict[str, np.ndarray]:
    height, width = view["image"].shape[:2]
    cam = camera_lib.make_camera(view["intrinsics"], view["world_to_camera"])
    return views_lib.render_view(model, latent, cam, height, width, chunk_size)


def _check(run, dataset_dir, config, scene_config) -> tuple[dict, list[int]]:
    """Loads and checks the scenes. Returns (scenes, sorted distinct k)."""
    metadata = dataset_dir_lib.read_metadata(dataset_dir)
    engine_evaluation.check_compatible(
        run.model_config,
        getattr(run, "dataset_metadata", None),
        metadata,
        True,
        dataset_dir,
        config.check_canonical,
    )
    scenes = scenes_lib.load_scenes(dataset_dir, max_objects=config.max_objects)
    ks = sorted(set(scene_config.context_views))
    scenes_lib.check_context_counts(scenes, ks[-1], str(dataset_dir))
    split = config.split
    without = [o for o, s in scenes.items() if not s.get(split)]
    if len(without) == len(scenes):
        raise engine_evaluation.EvaluationError(
            f"dataset {dataset_dir} has no {split!r} views to score (NeRF-VAE renders each "
            "object's held-out views from its encoded training views)"
        )
    radius = float(run.model_config.render.scene_radius)
    for scene in scenes.values():
        for view in scene["train"][: ks[-1]] + scene.get(split, []):
            engine_evaluation.check_camera_sees_object(view, radius)
    return {o: s for o, s in scenes.items() if s.get(split)}, ks


def evaluate_run(
    run,
    dataset_dir,
    config: engine_evaluation.EvaluateConfig | None = None,
    scene_config: SceneEvaluateConfig | None = None,
    output_dir=None,
) -> dict[str, Any]:
    """Evaluates a loaded NeRF-VAE run on a dataset directory (module docstring).

    Args:
      run: `tfglo.engine.run_dir.load_run` of a NeRF-VAE run.
      dataset_dir: the dataset to evaluate (multi-view: train views give context, eval views are
        scored).
      config: the engine's settings used here: split (scored views), max_objects,
        max_views_per_object, chunk_size, check_canonical, inversion (latent optimisation).
      scene_config: context views, baselines, curve.
      output_dir: where report.json and grids/ go (nothing is written when None).

    Returns:
      the report dict.

    Raises:
      SceneError: an object has fewer training views than the largest k (names the objects).
      EvaluationError: no views to score, another canonical frame, a camera facing away.
      DatasetError: a missing or malformed dataset directory.
    """
    config = config or engine_evaluation.EvaluateConfig()
    scene_config = scene_config or SceneEvaluateConfig()
    started = time.perf_counter()
    model = run.model
    scenes, ks = _check(run, dataset_dir, config, scene_config)
    seconds: dict[str, float] = {}
    scored = {
        o: s[config.split][: config.max_views_per_object] for o, s in scenes.items()
    }  # object -> views
    report: dict[str, Any] = {
        "run_dir": str(getattr(run, "run_dir", "")),
        "step": int(getattr(run, "step", -1)),
        "dataset": str(dataset_dir),
        "split": config.split,
        "mode": "encode",
        "num_objects": len(scenes),
        "num_views": sum(len(v) for v in scored.values()),
    }

    # Encode k views, render the held-out views.
    tick = time.perf_counter()
    codes: dict[int, dict[int, np.ndarray]] = {}
    renders: dict[tuple, dict] = {}
    per_view, by_k = [], {k: [] for k in ks}
    for k in ks:
        posteriors = scenes_lib.encode_scenes(model, scenes, k, str(dataset_dir))
        codes[k] = {o: p.mean for o, p in posteriors.items()}
        for object_id, views in scored.items():
            for view in views:
                render = _render(model, codes[k][object_id], view, config.chunk_size)
                renders[("vae", k, object_id, view["view_id"])] = render
                scores = _score(render, view)
                by_k[k].append(scores)
                per_view.append(_entry("nerf_vae", k, object_id, view, scores))
    report["context_views"] = {str(k): metrics.summarize(by_k[k]) for k in ks}
    seconds["encode_and_render"] = time.perf_counter() - tick

    if scene_config.per_scene_nerf:
        tick = time.perf_counter()
        report["per_scene_nerf"] = _per_scene_nerf(
            run, scenes, scored, ks, scene_config, config, renders, per_view
        )
        seconds["per_scene_nerf"] = time.perf_counter() - tick

    if scene_config.latent_optimization:
        tick = time.perf_counter()
        report["inversion"] = _latent_optimization(
            model, scenes, scored, ks[-1], codes[ks[-1]], config, scene_config
        )
        seconds["inversion"] = time.perf_counter() - tick

    report["per_view"] = per_view
    report["grids"] = []
    if output_dir is not None and scene_config.grids:
        for object_id, views in scored.items():
            grid = _object_grid(scenes[object_id], views, object_id, ks, renders)
            path = pathlib.Path(output_dir) / "grids" / f"object_{object_id:04d}.png"
            report["grids"].append(str(images.write_png(path, grid)))
    seconds["total"] = time.perf_counter() - started
    report["seconds"] = seconds
    if output_dir is not None:
        engine_evaluation.write_report(output_dir, report)
    return report


def _entry(method: str, k: int, object_id: int, view: dict, scores: dict) -> dict:
    return {
        "method": method,
        "context_views": k,
        "object_id": object_id,
        "view_id": view["view_id"],
        "source": view["source"],
        "metrics": scores,
    }


def _per_scene_nerf(run, scenes, scored, ks, scene_config, config, renders, per_view) -> dict:
    """Fits and scores the per-scene NeRF of every object and k; fills renders and per_view."""
    loss = run.configs.get("loss")
    loss_config = nerf_config.LossConfig(
        mask_weight=float(getattr(loss, "mask_weight", 0.1)),
        hard_surface_weight=float(getattr(loss, "hard_surface_weight", 0.01)),
    )
    out = {}
    nerf = baselines.PerSceneNeRF(run.model_config, loss_config, scene_config.per_scene)
    for k in ks:
        scores_k, fitted, seconds = [], [], 0.0
        for object_id, views in scored.items():
            stats = nerf.fit(scenes_lib.context_views(scenes[object_id], k))
            fitted.append(stats["fitted_psnr"])
            seconds += stats["seconds"]
            for view in views:
                render = _render(nerf.model, nerf.latent, view, config.chunk_size)
                renders[("nerf", k, object_id, view["view_id"])] = render
                scores = _score(render, view)
                scores_k.append(scores)
                per_view.append(_entry("per_scene_nerf", k, object_id, view, scores))
        summary = metrics.summarize(scores_k)
        summary["fitted_psnr"] = float(np.mean(fitted))
        summary["steps"] = scene_config.per_scene.steps
        summary["seconds"] = seconds
        out[str(k)] = summary
    return out


def _latent_optimization(model, scenes, scored, k, encoded, config, scene_config) -> dict:
    """Latent optimisation from the prior mean and from the encoder's mean (module docstring)."""
    ids = sorted(scored)
    context = [inversion.view_rays(scenes_lib.context_views(scenes[o], k)) for o in ids]
    heldout = [inversion.view_rays(scored[o]) for o in ids]
    starts = {
        "from_prior_mean": np.zeros([len(ids), model.latent_dim], np.float32),
        "from_encoder": np.stack([encoded[o] for o in ids]),
    }
    out: dict[str, Any] = {"context_views": k, "num_steps": config.inversion.num_steps}
    curve = inversion.HeldoutPSNR(model, heldout, scene_config.curve_rays, config.inversion.seed)
    for name, initial in starts.items():
        _, stats = inversion.fit_scene_latents(model, context, initial, config.inversion, curve)
        out["steps"] = stats["steps"]
        out[name] = {"psnr": stats["psnr"], "seconds": stats["seconds"]}
    target = out["from_prior_mean"]["psnr"][-1]
    out["prior_mean_final_psnr"] = target
    match = next(
        (s for s, p in zip(out["steps"], out["from_encoder"]["psnr"]) if p >= target), None
    )
    out["encoder_steps_to_match"] = match
    out["encoder_fraction_to_match"] = (
        None if match is None else match / max(1, config.inversion.num_steps)
    )
    return out


def _object_grid(scene, views, object_id, ks, renders) -> np.ndarray:
    k_max = ks[-1]
    context = scenes_lib.context_views(scene, k_max)
    labels = [f"context {i + 1}" for i in range(len(context))] + ["ground truth"]
    labels += [f"k={k}" for k in ks] + [f"depth k={k_max}"]
    has_nerf = ("nerf", k_max, object_id, views[0]["view_id"]) in renders
    if has_nerf:
        labels.append(f"NeRF k={k_max}")
    rows = []
    for index, view in enumerate(views):
        cells = [v["image"] for v in context] if index == 0 else [None] * len(context)
        cells.append(view["image"])
        cells += [renders[("vae", k, object_id, view["view_id"])]["rgb"] for k in ks]
        last = renders[("vae", k_max, object_id, view["view_id"])]
        cells.append(images.colorize_depth(last["depth"], last["alpha"])[0])
        if has_nerf:
            cells.append(renders[("nerf", k_max, object_id, view["view_id"])]["rgb"])
        rows.append(cells)
    return images.image_grid(rows, column_labels=labels)


def format_table(report: dict) -> str:
    """A plain-text summary: PSNR / SSIM per k for NeRF-VAE and the per-scene NeRF, the curve."""
    lines = [f"{'k':>3} {'nerf_vae psnr':>14} {'ssim':>7} {'per-scene psnr':>15} {'ssim':>7}"]
    nerf = report.get("per_scene_nerf", {})
    for k, values in report.get("context_views", {}).items():
        other = nerf.get(k, {})
        lines.append(
            f"{k:>3} {_cell(values.get('psnr'), 14)} {_cell(values.get('ssim'), 7)} "
            f"{_cell(other.get('psnr'), 15)} {_cell(other.get('ssim'), 7)}"
        )
    inv = report.get("inversion")
    if inv:
        lines.append(f"latent optimisation on k={inv['context_views']}, held-out PSNR by step:")
        lines.append("  step   " + " ".join(f"{s:>6d}" for s in inv["steps"]))
        for name in ("from_prior_mean", "from_encoder"):
            lines.append(f"  {name:<16}" + " ".join(f"{p:6.2f}" for p in inv[name]["psnr"]))
    lines.append(f"{report.get('num_views', 0)} views of {report.get('num_objects', 0)} objects")
    return "\n".join(lines)


def _cell(value, width: int) -> str:
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:>{width}.3f}"
    return f"{'-':>{width}}"
