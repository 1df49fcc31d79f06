"""Evaluation of a trained model: held-out-view quality, and that of inverted new objects.

`evaluate_run` scores a loaded run on a dataset directory in one of two modes. Without
`EvaluateConfig.invert`, the dataset's eval split holds held-out views of the run's training
identities: each view is rendered with its own trained code. With `invert`, the dataset holds
objects the run never saw (a synthetic set with another seed, or photos prepared with
`--canonical_from` the training dataset): a code is fitted to each object's TRAIN-split image
(`tfglo.engine.inversion`, network frozen), then its eval views are rendered with that code.

Every view is scored (`tfglo.engine.metrics`): PSNR, SSIM, masked PSNR on the ground-truth
foreground, mask IoU of the rendered opacity, and, where the dataset has ground-truth depth, the
foreground depth error (absolute, and after the best scale; camera z, object units). The billboard
baseline (`tfglo.engine.baselines`: the object's training image on a plane through the origin) is
scored on the same views. `evaluate_run` writes `report.json`, `grids/<object>.png` (ground truth
| render | depth | error | billboard, one row per view) and `latents.npy` when inverting;
`format_table` is the printed summary. `python -m tfglo.evaluate` and the demo call these.
"""

import dataclasses
import json
import math
import pathlib
import time
from typing import Any

import numpy as np
from absl import logging

from tfglo.data import dataset_dir as dataset_dir_lib
from tfglo.engine import baselines, metrics
from tfglo.engine import inversion as inversion_lib
from tfglo.engine import views as views_lib
from tfglo.geometry import camera as camera_lib
from tfglo.utils import images

METRIC_COLUMNS = ("psnr", "ssim", "masked_psnr", "mask_iou", "depth_abs", "depth_abs_scaled")
REPORT_FILE = "report.json"
# Canonical keypoints (unit RMS radius) of two datasets in one frame agree to fitting noise.
CANONICAL_TOLERANCE = 0.05


class EvaluationError(ValueError):
    """The run and the dataset cannot be evaluated together (the message says why)."""


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    """What to evaluate and how.

    Attributes:
      split: the dataset split whose views are scored.
      invert: fit codes to the dataset's train-split images (unseen objects) instead of using
        the run's latent table.
      inversion: settings of the fitting when `invert` is set.
      initial_latents: optional `[D]` or `[K, D]` (row per latent id) start codes of the fitting
        (the table mean when None).
      inversion_batch: images fitted together (memory grows with it).
      max_objects: evaluate only the first this many objects (None: all).
      max_views_per_object: score at most this many views per object (None: all).
      billboard: also score the billboard baseline.
      chunk_size: rays per rendering chunk (None: the model's default).
      check_canonical: refuse a dataset whose canonical frame differs from the run's.
    """

    split: str = "eval"
    invert: bool = False
    inversion: inversion_lib.InversionConfig = dataclasses.field(
        default_factory=inversion_lib.InversionConfig
    )
    initial_latents: Any = None
    inversion_batch: int = 8
    max_objects: int | None = None
    max_views_per_object: int | None = None
    billboard: bool = True
    chunk_size: int | None = None
    check_canonical: bool = True


def load_views(dataset_dir, split: str | None = None) -> list[dict]:
    """Reads a dataset's records as numpy view dicts.

    Returns:
      list of dicts: image `[H, W, 3]` float32 in [0, 1], mask `[H, W]` float32 or None, depth
      `[H, W]` float32 or None (camera z), intrinsics `[4]`, world_to_camera `[3, 4]`, latent_id,
      object_id, view_id, source, split.
    """
    views = []
    for record in dataset_dir_lib.iterate_records(dataset_dir):
        if split is not None and record.split != split:
            continue
        views.append(
            {
                "image": images.to_float(record.image),
                "mask": None if record.mask is None else record.mask.astype(np.float32) / 255.0,
                "depth": record.depth,
                "intrinsics": np.asarray(record.intrinsics, np.float32),
                "world_to_camera": np.asarray(record.world_to_camera, np.float32),
                "latent_id": int(record.latent_id),
                "object_id": int(record.object_id),
                "view_id": int(record.view_id),
                "source": record.source,
                "split": record.split,
            }
        )
    return views


def check_camera_sees_object(view: dict, scene_radius: float) -> None:
    """Raises `EvaluationError` when a view's camera cannot see the bounding sphere.

    The object sits in a sphere of `scene_radius` around the origin; a camera must have the
    origin in front of it and at least one pixel ray that meets the sphere.
    """
    height, width = view["image"].shape[:2]
    cam = camera_lib.make_camera(view["intrinsics"], view["world_to_camera"])
    _, origin_z = camera_lib.project(cam, np.zeros((1, 3), np.float32))
    origins, directions = camera_lib.image_rays(cam, height, width)
    _, _, hit = camera_lib.intersect_sphere(origins, directions, scene_radius)
    if float(np.asarray(origin_z)[0]) <= 0 or not bool(np.asarray(hit).any()):
        raise EvaluationError(
            f"the camera of {view.get('source') or 'a view'} points away from the object: the "
            f"world origin is at camera z = {float(np.asarray(origin_z)[0]):.3g} and "
            f"{int(np.asarray(hit).sum())} of its rays meet the bounding sphere of radius "
            f"{scene_radius}; is the dataset in the run's canonical frame?"
        )


def check_compatible(
    model_config,
    train_metadata: dict | None,
    metadata: dict,
    invert: bool,
    dataset_dir="",
    check_canonical: bool = True,
) -> None:
    """Checks that a dataset can be evaluated with a run.

    Args:
      model_config: the run's `ModelConfig`.
      train_metadata: dataset.json of the run's training data (None: only the table is checked).
      metadata: dataset.json of the dataset to evaluate.
      invert: whether codes are fitted (then the dataset's latent ids need not match the table).
      dataset_dir: for messages.
      check_canonical: also compare the scene radius and canonical keypoints with the training
        data's.

    Raises:
      EvaluationError: without `invert`, the dataset addresses latent rows the table does not
        have; the scene radius or the canonical keypoints differ from the training data's.
    """
    num_latents = int(metadata.get("num_latents") or 0)
    if not invert and num_latents > model_config.num_latents:
        raise EvaluationError(
            f"dataset {dataset_dir} has {num_latents} latent ids but the run's latent table has "
            f"{model_config.num_latents} rows: it is not the run's training data; evaluate "
            "unseen objects with --invert"
        )
    if not check_canonical:
        return
    train_metadata = train_metadata or {}
    radius = metadata.get("scene_radius")
    train_radius = train_metadata.get("scene_radius", model_config.render.scene_radius)
    if radius is not None and not math.isclose(float(radius), float(train_radius), rel_tol=1e-3):
        raise EvaluationError(
            f"dataset {dataset_dir} has scene_radius {radius} but the run was trained with "
            f"{train_radius}: the canonical frames differ"
        )
    keypoints = metadata.get("canonical_keypoints")
    train_keypoints = train_metadata.get("canonical_keypoints")
    if keypoints is not None and train_keypoints is not None:
        keypoints = np.asarray(keypoints, np.float64)
        train_keypoints = np.asarray(train_keypoints, np.float64)
        if keypoints.shape != train_keypoints.shape or (
            np.max(np.abs(keypoints - train_keypoints)) > CANONICAL_TOLERANCE
        ):
            raise EvaluationError(
                f"dataset {dataset_dir} has canonical keypoints that differ from the run's "
                "training data: its cameras are in another canonical frame; prepare it with "
                "--canonical_from=<the training dataset>"
            )


def _group_by_object(views: list[dict]) -> dict[int, list[dict]]:
    groups: dict[int, list[dict]] = {}
    for view in views:
        groups.setdefault(view["object_id"], []).append(view)
    for group in groups.values():
        group.sort(key=lambda v: v["view_id"])
    return dict(sorted(groups.items()))


def _targets(view: dict) -> dict:
    return {
        "image": view["image"],
        "mask": view["mask"],
        "has_mask": view["mask"] is not None,
        "depth": view["depth"],
        "has_depth": view["depth"] is not None,
    }


def fit_latents(
    model, train_views: list[dict], config: EvaluateConfig
) -> tuple[dict[int, np.ndarray], dict]:
    """Inverts each latent id's first train view. Returns ({latent_id: code}, stats)."""
    firsts: dict[int, dict] = {}
    for view in train_views:
        firsts.setdefault(view["latent_id"], view)
    ids = sorted(firsts)
    initial = config.initial_latents
    if initial is not None:
        initial = np.asarray(initial, np.float32)
    codes, per_image, seconds, steps = {}, [], 0.0, 0
    batch = 1 if config.inversion.finetune_weights else max(1, config.inversion_batch)
    for start in range(0, len(ids), batch):
        chunk = [firsts[i] for i in ids[start : start + batch]]
        start_codes = None
        if initial is not None:
            start_codes = initial if initial.ndim == 1 else initial[[v["latent_id"] for v in chunk]]
        masks = None
        if all(v["mask"] is not None for v in chunk):
            masks = np.stack([v["mask"] for v in chunk])
        fitted, stats = inversion_lib.invert(
            model,
            np.stack([v["image"] for v in chunk]),
            np.stack([v["intrinsics"] for v in chunk]),
            np.stack([v["world_to_camera"] for v in chunk]),
            masks=masks,
            config=config.inversion,
            initial_latents=start_codes,
        )
        seconds += stats["seconds"]
        steps = stats["steps"]
        for view, code, value in zip(chunk, fitted, stats["psnr"]):
            codes[view["latent_id"]] = code
            per_image.append(
                {"source": view["source"], "latent_id": view["latent_id"], "psnr": value}
            )
            logging.info("inverted %s: fitted-view PSNR %.2f dB", view["source"], value)
    summary = {
        "num_images": len(per_image),
        "psnr": float(np.mean([p["psnr"] for p in per_image])) if per_image else math.nan,
        "steps": steps,
        "seconds": seconds,
        "seconds_per_image": seconds / max(1, len(per_image)),
        "finetune_weights": config.inversion.finetune_weights,
        "per_image": per_image,
    }
    return codes, summary


def _object_grid(rows: list[dict]) -> np.ndarray:
    labels = ["ground truth", "render", "depth", "error"]
    if any("billboard" in r for r in rows):
        labels.append("billboard")
    grid_rows = []
    for row in rows:
        render = row["render"]
        depth, _ = images.colorize_depth(render["depth"], render["alpha"])
        cells = [
            row["image"],
            render["rgb"],
            depth,
            images.error_image(render["rgb"], row["image"]),
        ]
        if "billboard" in labels:
            cells.append(row.get("billboard"))
        grid_rows.append(cells)
    return images.image_grid(grid_rows, column_labels=labels)


def evaluate_model(
    model,
    views: list[dict],
    latent_for,
    config: EvaluateConfig = EvaluateConfig(),
    train_views: list[dict] | None = None,
    output_dir=None,
) -> dict:
    """Scores a model (and the billboard) on views.

    Args:
      model: a LOLNeRF (anything `render_image` accepts).
      views: `load_views` dicts to score.
      latent_for: callable view -> `[D]` code (e.g. the table row of its latent id).
      config: evaluation settings.
      train_views: training views of the same objects (the billboard's source images).
      output_dir: where to write `grids/<object>.png` (nothing is written when None).

    Returns:
      dict with "model" and "billboard" summaries (means over views; see `metrics.summarize`:
      PSNR, SSIM, depth error, mask IoU, hardness (hard_fraction: foreground rays whose largest
      sample weight exceeds 0.5; max_weight_mean), coverage (share of the mask the foreground
      covers)), "by_angle" (the same per angle bin, see `_by_angle`), "warnings" (the coverage
      warning when the split has collapsed), "per_view" (source, object_id, view_id, model
      metrics, billboard metrics), "num_views", "num_objects", "grids" (paths), "seconds".
    """
    start = time.perf_counter()
    sources = baselines.billboard_sources(train_views or [])
    groups = _group_by_object(views)
    if config.max_objects is not None:
        groups = dict(list(groups.items())[: config.max_objects])
    per_view, model_scores, billboard_scores, grids, scored = [], [], [], [], []
    for object_id, group in groups.items():
        if config.max_views_per_object is not None:
            group = group[: config.max_views_per_object]
        rows = []
        for view in group:
            height, width = view["image"].shape[:2]
            cam = camera_lib.make_camera(view["intrinsics"], view["world_to_camera"])
            render = views_lib.render_view(
                model, latent_for(view), cam, height, width, config.chunk_size
            )
            targets = _targets(view)
            scores = metrics.image_metrics(render, targets)
            if targets.get("has_mask") and targets.get("mask") is not None:
                scores["coverage"] = metrics.foreground_coverage(render["alpha"], targets["mask"])[
                    "coverage"
                ]
            entry = {
                "source": view["source"],
                "object_id": object_id,
                "view_id": view["view_id"],
                "latent_id": view["latent_id"],
                "model": scores,
            }
            row = {"image": view["image"], "render": render}
            source = sources.get(object_id)
            if config.billboard and source is not None:
                card = baselines.render_billboard_view(source, view)
                entry["billboard"] = metrics.image_metrics(card, _targets(view))
                billboard_scores.append(entry["billboard"])
                row["billboard"] = card["rgb"]
            model_scores.append(scores)
            per_view.append(entry)
            scored.append(view)
            rows.append(row)
        if output_dir is not None and rows:
            path = pathlib.Path(output_dir) / "grids" / f"object_{object_id:04d}.png"
            grids.append(str(images.write_png(path, _object_grid(rows))))
    model_summary = metrics.summarize(model_scores)
    warning = metrics.coverage_warning(model_summary.get("coverage", math.nan))
    return {
        "num_views": len(per_view),
        "num_objects": len(groups),
        "model": model_summary,
        "billboard": metrics.summarize(billboard_scores) if billboard_scores else {},
        "by_angle": _by_angle(per_view, scored, train_views or []),
        "warnings": [warning] if warning else [],
        "per_view": per_view,
        "grids": grids,
        "seconds": time.perf_counter() - start,
    }


def _by_angle(per_view: list[dict], views: list[dict], train_views: list[dict]) -> dict:
    """Per angle bin of the scored views (`metrics.summarize_by_angle`), for the model and the
    billboard: {reference: {"model": {bin: summary}, "billboard": {...}}}. "training_view":
    the angle between a view's camera and its object's training camera (any class);
    "canonical": |yaw| from the canonical frontal camera (faces, the synthetic heads)."""
    out = {}
    for reference in metrics.ANGLE_REFERENCES:
        angles = metrics.view_angles(views, reference, train_views)
        if not any(math.isfinite(a) for a in angles):
            continue
        table = {"model": metrics.summarize_by_angle([p["model"] for p in per_view], angles)}
        with_card = [(p["billboard"], a) for p, a in zip(per_view, angles) if "billboard" in p]
        if with_card:
            table["billboard"] = metrics.summarize_by_angle(
                [c for c, _ in with_card], [a for _, a in with_card]
            )
        out[reference] = table
    return out


def evaluate_billboard(dataset_dir, config: EvaluateConfig = EvaluateConfig()) -> dict:
    """Scores only the billboard baseline on a dataset's views (no model needed).

    Each object's first train view is pasted on its plane and rendered into the object's
    `config.split` views.

    Returns:
      dict with "billboard" (means, see `metrics.summarize`), "per_view", "num_views",
      "num_objects".
    """
    all_views = load_views(dataset_dir)
    sources = baselines.billboard_sources(
        v for v in sorted(all_views, key=lambda v: v["view_id"]) if v["split"] == "train"
    )
    groups = _group_by_object([v for v in all_views if v["split"] == config.split])
    if config.max_objects is not None:
        groups = dict(list(groups.items())[: config.max_objects])
    per_view = []
    for object_id, group in groups.items():
        source = sources.get(object_id)
        if source is None:
            continue
        for view in group[: config.max_views_per_object]:
            card = baselines.render_billboard_view(source, view)
            per_view.append(
                {
                    "source": view["source"],
                    "object_id": object_id,
                    "view_id": view["view_id"],
                    "billboard": metrics.image_metrics(card, _targets(view)),
                }
            )
    return {
        "num_views": len(per_view),
        "num_objects": len({p["object_id"] for p in per_view}),
        "billboard": metrics.summarize([p["billboard"] for p in per_view]),
        "per_view": per_view,
    }


def _run_metadata(run) -> dict | None:
    for name in ("dataset_metadata", "metadata"):
        value = getattr(run, name, None)
        if isinstance(value, dict):
            return value
    return None


def evaluate_run(run, dataset_dir, config: EvaluateConfig = EvaluateConfig(), output_dir=None):
    """Evaluates a loaded run (`tfglo.engine.run_dir.load_run`) on a dataset directory.

    Args:
      run: has `model` (LOLNeRF), `model_config`; optionally `dataset_metadata` (dataset.json of
        its training data), `step`, `run_dir`.
      dataset_dir: dataset to evaluate (see the module docstring for the two modes).
      config: evaluation settings.
      output_dir: where report.json, grids and latents.npy go (nothing written when None).

    Returns:
      The report dict (also written to `output_dir/report.json`).

    Raises:
      EvaluationError: the dataset does not fit the run (latent ids, canonical frame), a camera
        points away from the object, or the split is empty.
      dataset_dir.DatasetError: the dataset directory is missing or malformed.
    """
    model = run.model
    model_config = run.model_config
    metadata = dataset_dir_lib.read_metadata(dataset_dir)
    check_compatible(
        model_config,
        _run_metadata(run),
        metadata,
        config.invert,
        dataset_dir,
        config.check_canonical,
    )
    all_views = load_views(dataset_dir)
    views = [v for v in all_views if v["split"] == config.split]
    train_views = [v for v in all_views if v["split"] == "train"]
    if not views:
        hint = " (single-view photos: evaluate the fitted views with --split=train)"
        raise EvaluationError(
            f"dataset {dataset_dir} has no {config.split!r} views to evaluate"
            + (hint if config.invert and train_views else "")
        )
    if config.invert and config.initial_latents is not None:
        _check_initial_latents(
            config.initial_latents, model_config.latent_dim, {v["latent_id"] for v in train_views}
        )
    radius = float(model_config.render.scene_radius)
    for view in views + train_views:
        check_camera_sees_object(view, radius)
    if config.max_objects is not None:
        keep = sorted({v["object_id"] for v in views})[: config.max_objects]
        views = [v for v in views if v["object_id"] in keep]
        train_views = [v for v in train_views if v["object_id"] in keep]
    table = _latent_table(model)
    report: dict[str, Any] = {
        "run_dir": str(getattr(run, "run_dir", "")),
        "step": int(getattr(run, "step", -1)),
        "dataset": str(dataset_dir),
        "split": config.split,
        "mode": "inverted" if config.invert else "training_identities",
    }

    if config.invert:
        if not train_views:
            raise EvaluationError(f"--invert needs train-split images in {dataset_dir}")
        if config.inversion.finetune_weights:
            result, inversion_summary, codes = _evaluate_finetuned(
                model, views, train_views, config, output_dir
            )
        else:
            codes, inversion_summary = fit_latents(model, train_views, config)
            missing = sorted({v["latent_id"] for v in views} - set(codes))
            if missing:
                raise EvaluationError(
                    f"latent ids {missing} of {dataset_dir} have eval views but no train image "
                    "to invert"
                )
            result = evaluate_model(
                model, views, lambda v: codes[v["latent_id"]], config, train_views, output_dir
            )
        report["inversion"] = inversion_summary
        if output_dir is not None:
            rows = max(codes) + 1
            saved = np.tile(table.mean(0, keepdims=True), [rows, 1])
            for latent_id, code in codes.items():
                saved[latent_id] = code
            path = pathlib.Path(output_dir) / "latents.npy"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, saved.astype(np.float32))
            report["latents_file"] = str(path)
    else:
        result = evaluate_model(
            model, views, lambda v: table[v["latent_id"]], config, train_views, output_dir
        )
    report.update(result)
    if output_dir is not None:
        write_report(output_dir, report)
    return report


def _check_initial_latents(initial, latent_dim: int, latent_ids: set[int]) -> None:
    shape = np.shape(initial)
    rows_needed = max(latent_ids, default=-1) + 1
    if len(shape) == 1 and shape[0] == latent_dim:
        return
    if len(shape) == 2 and shape[1] == latent_dim and shape[0] >= rows_needed:
        return
    raise EvaluationError(
        f"initial latents of shape {shape} do not fit this run: expected [{latent_dim}] or "
        f"[K >= {rows_needed}, {latent_dim}] (one row per latent id of the dataset)"
    )


def _evaluate_finetuned(model, views, train_views, config, output_dir):
    """Fine-tuning changes the network: fit, score and restore the weights one object at a time."""
    saved = [v.numpy() for v in model.network_variables]
    codes, summaries, results = {}, [], []
    try:
        for object_id in sorted({v["object_id"] for v in views}):
            own = [v for v in train_views if v["object_id"] == object_id]
            if not own:
                raise EvaluationError(f"object {object_id} has eval views but no train image")
            fitted, summary = fit_latents(model, own[:1], config)
            codes.update(fitted)
            summaries.append(summary)
            results.append(
                evaluate_model(
                    model,
                    [v for v in views if v["object_id"] == object_id],
                    lambda v, fitted=fitted: fitted[v["latent_id"]],
                    config,
                    own,
                    output_dir,
                )
            )
            for variable, value in zip(model.network_variables, saved):
                variable.assign(value)
    finally:
        for variable, value in zip(model.network_variables, saved):
            variable.assign(value)
    per_view = [p for r in results for p in r["per_view"]]
    merged = {
        "num_views": len(per_view),
        "num_objects": len(results),
        "model": metrics.summarize([p["model"] for p in per_view]),
        "billboard": metrics.summarize([p["billboard"] for p in per_view if "billboard" in p]),
        "per_view": per_view,
        "grids": [g for r in results for g in r["grids"]],
        "seconds": sum(r["seconds"] for r in results),
    }
    per_image = [p for s in summaries for p in s["per_image"]]
    inversion_summary = {
        "num_images": len(per_image),
        "psnr": float(np.mean([p["psnr"] for p in per_image])) if per_image else math.nan,
        "steps": summaries[0]["steps"] if summaries else 0,
        "seconds": sum(s["seconds"] for s in summaries),
        "finetune_weights": True,
        "per_image": per_image,
    }
    return merged, inversion_summary, codes


def _json_safe(value):
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def write_report(output_dir, report: dict) -> pathlib.Path:
    """Writes `report.json` (NaN as null, inf as "inf"). Returns its path."""
    path = pathlib.Path(output_dir) / REPORT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(_json_safe(report), f, indent=1)
    return path


def format_table(report: dict) -> str:
    """A plain-text table of the model's and the billboard's mean metrics."""
    header = f"{'method':<12}" + "".join(f"{name:>18}" for name in METRIC_COLUMNS)
    lines = [header, "-" * len(header)]
    for method in ("model", "billboard"):
        values = report.get(method) or {}
        if not values:
            continue
        cells = []
        for name in METRIC_COLUMNS:
            value = values.get(name)
            cells.append(f"{value:>18.4f}" if isinstance(value, float) else f"{'-':>18}")
        lines.append(f"{method:<12}" + "".join(cells))
    if "inversion" in report:
        inv = report["inversion"]
        lines.append(
            f"inversion: {inv['num_images']} images, fitted-view PSNR {inv['psnr']:.2f} dB, "
            f"{inv['steps']} steps, {inv['seconds']:.1f} s"
        )
    hard = (report.get("model") or {}).get("hard_fraction")
    if isinstance(hard, float):
        lines.append(
            f"hardness: {hard:.3f} of foreground rays have a sample weight > 0.5; mean largest "
            f"weight {report['model'].get('max_weight_mean', math.nan):.3f}; foreground coverage "
            f"{report['model'].get('coverage', math.nan):.3f}"
        )
    lines.extend(format_angle_table(report))
    lines.append(f"{report.get('num_views', 0)} views of {report.get('num_objects', 0)} objects")
    for warning in report.get("warnings") or []:
        lines.append(f"WARNING: {warning}")
    return "\n".join(lines)


def format_angle_table(report: dict, reference: str = "training_view") -> list[str]:
    """Lines of the per-angle table (`report["by_angle"][reference]`): views, then PSNR, SSIM
    and depth error of the model and of the billboard per bin; [] without it."""
    table = (report.get("by_angle") or {}).get(reference)
    if not table:
        return []
    what = "angle to the training view" if reference == "training_view" else "|yaw|"
    lines = [f"by {what} (deg): views | model PSNR SSIM depth_abs | billboard PSNR SSIM depth_abs"]

    def cells(summary):
        return " ".join(f"{summary.get(k, math.nan):7.3f}" for k in ("psnr", "ssim", "depth_abs"))

    for label, model in table["model"].items():
        card = (table.get("billboard") or {}).get(label, {})
        lines.append(f"  {label:>8}: {model['num_views']:4d} | {cells(model)} | {cells(card)}")
    return lines


def _latent_table(model) -> np.ndarray:
    """The trained codes `[M, D]` of the run's identities (a latent-table model's table)."""
    return np.asarray(model.latent_table.embeddings, np.float32)
