"""Measurement tool of issue 15: hardness and off-axis quality of trained runs.

    PYTHONPATH=. python tools/hard_surface_study.py score --run_dir=RUN --dataset=DATA \
        --output=OUT.json
    PYTHONPATH=. python tools/hard_surface_study.py white_heads --output=DIR [--num_objects=64]

`score` renders every held-out view of the run's training identities (full images, the run's
own latent rows) and scores them with `tfglo.engine.metrics`: PSNR, SSIM, masked PSNR, mask IoU,
foreground depth error, hardness (from the renderer's max_weight), and the billboard baseline;
means over all views and per angle bin, both against the canonical frontal yaw and against the
object's training view. One JSON file per run; a one-line summary on stdout.

`white_heads` writes a `transforms.json` data set of synthetic heads on a white background
(RGBA PNGs: the head's exact mask as alpha, so `tfglo.prepare --source=transforms` composites it
on white), the quick stand-in for a white-background class while none ships.
"""

import json
import math
import pathlib
import time

import numpy as np
import tensorflow as tf
from absl import app, flags
from PIL import Image

from tfglo.data.synthetic import heads
from tfglo.engine import baselines, metrics
from tfglo.engine import run_dir as run_dir_lib
from tfglo.engine.evaluation import load_views
from tfglo.engine.views import camera_z_depth
from tfglo.geometry import camera as camera_lib
from tfglo.utils import images

FLAGS = flags.FLAGS
flags.DEFINE_string("run_dir", None, "score: trained run directory.")
flags.DEFINE_string("dataset", None, "score: dataset directory (its eval split is scored).")
flags.DEFINE_string("output", None, "score: JSON file; white_heads: output directory.")
flags.DEFINE_string("grid", None, "score: optional PNG of the first objects' held-out views.")
flags.DEFINE_integer("grid_objects", 3, "score: objects in the grid.")
flags.DEFINE_integer("num_objects", 64, "white_heads: heads.")
flags.DEFINE_integer("image_size", 32, "white_heads: image side, pixels.")
flags.DEFINE_integer("eval_views", 4, "white_heads: held-out views per head.")
flags.DEFINE_float("eval_yaw", 60.0, "white_heads: held-out yaws span +- this, degrees.")

SUMMARY_KEYS = (
    "psnr",
    "ssim",
    "masked_psnr",
    "mask_iou",
    "depth_abs",
    "hard_fraction",
    "max_weight_mean",
    "coarse_hard_fraction",
    "coarse_max_weight_mean",
    "coverage",
)


def render_full(model, latent, view) -> dict:
    """rgb, alpha, depth (camera z) and max_weight of one view, numpy `[H, W, ...]`."""
    height, width = view["image"].shape[:2]
    cam = camera_lib.make_camera(view["intrinsics"], view["world_to_camera"])
    origins, directions = camera_lib.image_rays(cam, height, width)
    origins = tf.reshape(origins, [-1, 3])
    directions = tf.reshape(directions, [-1, 3])
    latents = tf.broadcast_to(tf.constant(latent, tf.float32)[None], [height * width, len(latent)])
    out = _render_rays(model)(origins, directions, latents)
    return {
        "rgb": out["rgb"].numpy().reshape(height, width, 3),
        "alpha": out["alpha"].numpy().reshape(height, width),
        "depth": camera_z_depth(out["depth"].numpy().reshape(height, width), cam, height, width),
        "max_weight": out["max_weight"].numpy().reshape(height, width),
        "coarse_max_weight": out["coarse_max_weight"].numpy().reshape(height, width),
    }


def view_metrics(render, view) -> dict:
    """`metrics.image_metrics` plus the hardness of the coarse (evenly spaced) pass."""
    scores = metrics.image_metrics(render, _targets(view))
    if view["mask"] is not None:
        coarse = metrics.hardness(render["coarse_max_weight"], view["mask"])
        scores.update({f"coarse_{k}": v for k, v in coarse.items()})
        scores["coverage"] = metrics.foreground_coverage(render["alpha"], view["mask"])["coverage"]
    return scores


_RENDERERS = {}


def _render_rays(model):
    if id(model) not in _RENDERERS:

        @tf.function(reduce_retracing=True)
        def render(origins, directions, latents):
            result = model.render_rays(origins, directions, latents, training=False)
            out = {k: result[k] for k in ("rgb", "alpha", "depth", "max_weight")}
            out["coarse_max_weight"] = tf.reduce_max(result["coarse_weights"], -1)
            return out

        _RENDERERS[id(model)] = render
    return _RENDERERS[id(model)]


def _targets(view):
    return {
        "image": view["image"],
        "mask": view["mask"],
        "has_mask": view["mask"] is not None,
        "depth": view["depth"],
        "has_depth": view["depth"] is not None,
    }


def score(run_dir, dataset, output, grid=None, grid_objects=6) -> dict:
    """Scores one run; writes and returns the report (see the module docstring)."""
    start = time.perf_counter()
    run = run_dir_lib.load_run(run_dir)
    model = run.model
    table = np.asarray(model.latent_table.embeddings, np.float32)
    views = load_views(dataset)
    train = sorted((v for v in views if v["split"] == "train"), key=lambda v: v["view_id"])
    held_out = [v for v in views if v["split"] == "eval"]
    sources = {}
    for view in train:
        sources.setdefault(view["object_id"], view)
    model_scores, board_scores, rows = [], [], {}
    for view in held_out:
        render = render_full(model, table[view["latent_id"]], view)
        model_scores.append(view_metrics(render, view))
        source = sources[view["object_id"]]
        height, width = view["image"].shape[:2]
        card = baselines.render_billboard(
            source["image"],
            source["intrinsics"],
            source["world_to_camera"],
            view["intrinsics"],
            view["world_to_camera"],
            height,
            width,
            mask=source["mask"],
        )
        board_scores.append(metrics.image_metrics(card, _targets(view)))
        if view["object_id"] < grid_objects:
            depth, _ = images.colorize_depth(render["depth"], render["alpha"])
            cells = rows.setdefault(view["object_id"], [[], [], [], [], []])
            for cell, image in zip(
                cells, [view["image"], render["rgb"], depth, render["max_weight"], card["rgb"]]
            ):
                cell.append(image)
    # Training views too: reconstruction quality and hardness where the model was fitted.
    train_scores = []
    for view in train:
        render = render_full(model, table[view["latent_id"]], view)
        train_scores.append(view_metrics(render, view))
    report = {"run_dir": str(run_dir), "dataset": str(dataset), "num_views": len(held_out)}
    report["model"] = metrics.summarize(model_scores)
    report["billboard"] = metrics.summarize(board_scores)
    report["train_views"] = metrics.summarize(train_scores)
    for reference in metrics.ANGLE_REFERENCES:
        angles = metrics.view_angles(held_out, reference, train)
        report[f"by_{reference}"] = {
            "model": metrics.summarize_by_angle(model_scores, angles),
            "billboard": metrics.summarize_by_angle(board_scores, angles),
        }
    report["seconds"] = time.perf_counter() - start
    if grid and rows:
        grid_rows = [row for _, object_rows in sorted(rows.items()) for row in object_rows]
        labels = ["truth", "render", "depth", "max w", "board"] * len(rows)
        picture = images.to_float(images.image_grid(grid_rows, row_labels=labels))
        images.write_png(grid, np.kron(picture, np.ones((3, 3, 1))))  # 3x, nearest: visible
    pathlib.Path(output).parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1, default=float)
    return report


def _cell(value) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.3f}"


def summary_line(name: str, report: dict) -> str:
    """One line: overall model metrics, billboard PSNR, per-bin PSNR/SSIM/depth."""
    model = report["model"]
    parts = [f"{name}:"] + [f"{k}={_cell(model.get(k))}" for k in SUMMARY_KEYS]
    parts.append(f"billboard_psnr={_cell(report['billboard'].get('psnr'))}")
    parts.append(f"train_psnr={_cell(report['train_views'].get('psnr'))}")
    for reference in metrics.ANGLE_REFERENCES:
        for label, values in report[f"by_{reference}"]["model"].items():
            parts.append(
                f"{reference}[{label}]={_cell(values.get('psnr'))}/"
                f"{_cell(values.get('ssim'))}/{_cell(values.get('depth_abs'))}"
            )
    return " ".join(parts)


def white_heads(output, num_objects, image_size, eval_views, eval_yaw) -> None:
    """Writes output/transforms.json and output/images/*.png (RGBA, alpha = exact mask)."""
    output = pathlib.Path(output)
    (output / "images").mkdir(parents=True, exist_ok=True)
    config = heads.SyntheticConfig(
        num_objects=num_objects,
        image_size=image_size,
        eval_views_per_object=eval_views,
        yaw_range_deg=(-eval_yaw, eval_yaw),
        seed=0,
    )
    frames = []
    intrinsics = None
    for record in heads.generate(config):
        intrinsics = np.asarray(record.intrinsics, np.float64)
        mask = np.asarray(record.mask, np.float32)
        mask = mask / 255.0 if mask.max() > 1.0 else mask
        rgba = np.concatenate([images.to_float(record.image), mask[..., None]], -1)
        name = f"images/obj{record.object_id:04d}_view{record.view_id:02d}.png"
        Image.fromarray(np.round(255.0 * np.clip(rgba, 0, 1)).astype(np.uint8), "RGBA").save(
            output / name
        )
        world_to_camera = np.eye(4)
        world_to_camera[:3] = np.asarray(record.world_to_camera, np.float64)
        camera_to_world = np.linalg.inv(world_to_camera)
        camera_to_world[:3, 1:3] *= -1.0  # OpenCV camera axes -> OpenGL (y up, looking along -z)
        frames.append(
            {
                "file_path": name,
                "transform_matrix": camera_to_world.tolist(),
                "object_id": int(record.object_id),
                "split": record.split,
            }
        )
    fx, fy, cx, cy = intrinsics
    document = {"fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy, "w": image_size, "h": image_size}
    document["frames"] = frames
    with open(output / "transforms.json", "w", encoding="utf-8") as f:
        json.dump(document, f, indent=1)


def main(argv):
    if len(argv) != 2 or argv[1] not in ("score", "white_heads"):
        raise app.UsageError("usage: hard_surface_study.py score|white_heads --flags")
    if argv[1] == "score":
        report = score(FLAGS.run_dir, FLAGS.dataset, FLAGS.output, FLAGS.grid, FLAGS.grid_objects)
        print(summary_line(pathlib.Path(FLAGS.run_dir).name, report))
    else:
        white_heads(
            FLAGS.output, FLAGS.num_objects, FLAGS.image_size, FLAGS.eval_views, FLAGS.eval_yaw
        )
        print(f"wrote {FLAGS.output}/transforms.json")


if __name__ == "__main__":
    app.run(main)
