"""LOLNeRF's TensorBoard summaries: images (reconstructions, novel views, depth, alpha) and
held-out scores (`LOLNeRFEvalSummaries`).

The engine's `Trainer` is generic (`tfglo.engine.trainer`); `tfglo.lolnerf.family` tells it what
LOLNeRF trains (variable groups, loss, ray batches) and hands it `LOLNeRFImageSummaries`.
"""

import os
from typing import Any

import numpy as np
import tensorflow as tf

from tfglo.data import dataset_dir, pipeline
from tfglo.engine import metrics
from tfglo.geometry import camera as camera_lib

# Depth is shown where the foreground is at least this opaque (the render app's mask).
ALPHA_THRESHOLD = 0.5


class LOLNeRFImageSummaries:
    """Image summaries of a LOLNeRF: reconstructions, novel views, depth, foreground alpha.

    For the first `num_images` training images of the dataset (each its own identity):
    - "images/reconstruction": `[k, H, 2W, 3]` ground truth | render from the training camera;
    - "images/novel_views": `[k, H, V*W, 3]` renders from V cameras on a yaw orbit at the
      training camera's distance, yaw in [-yaw, yaw] (radians), looking at the origin;
    - "images/depth": `[k, H, (1+V)*W, 1]` depth of the training view and the novel views,
      normalised to [0, 1] over the bounding sphere's depth range [distance - r, distance + r]
      with near bright, and pixels without a surface (alpha < 0.5) black;
    - "images/alpha": `[k, H, (1+V)*W, 1]` foreground opacity of the same views.
    The images are read from the dataset on the first call (only the chief calls it).

    Args:
      dataset_path: the training dataset directory.
      num_images: identities shown (k).
      num_novel_views: V.
      yaw: half the yaw range of the novel views, radians.
      scene_radius: bounding-sphere radius r, object units.
    """

    def __init__(
        self,
        dataset_path: os.PathLike | str,
        num_images: int = 3,
        num_novel_views: int = 3,
        yaw: float = 0.5,
        scene_radius: float = 1.0,
    ):
        self.dataset_path = str(dataset_path)
        self.num_images = num_images
        self.num_novel_views = num_novel_views
        self.yaw = yaw
        self.scene_radius = scene_radius
        self._views = None

    def _load(self) -> list[dict[str, Any]]:
        views = []
        for features in pipeline.eval_dataset(self.dataset_path, split="train").take(
            self.num_images
        ):
            views.append(
                {
                    "image": features["image"].numpy(),
                    "intrinsics": features["intrinsics"].numpy(),
                    "world_to_camera": features["world_to_camera"].numpy(),
                    "latent_id": int(features["latent_id"].numpy()),
                }
            )
        return views

    def _depth(self, depth, alpha, distance) -> np.ndarray:
        near = distance - self.scene_radius
        scaled = 1.0 - (np.asarray(depth) - near) / (2.0 * self.scene_radius)
        # Expected depth is divided by the opacity: where the foreground is faint it is noise
        # ("handles" beside the object), so pixels below alpha 0.5 are black, as in the render
        # app's depth images.
        solid = (np.asarray(depth) > 0) & (np.asarray(alpha) >= ALPHA_THRESHOLD)
        return np.where(solid, np.clip(scaled, 0.0, 1.0), 0.0)

    def __call__(self, model) -> dict[str, np.ndarray]:
        if self._views is None:
            self._views = self._load()
        table = tf.convert_to_tensor(model.latent_table.embeddings)
        rows = {"reconstruction": [], "novel_views": [], "depth": [], "alpha": []}
        yaws = np.linspace(-self.yaw, self.yaw, self.num_novel_views, dtype=np.float32)
        for view in self._views:
            height, width = view["image"].shape[:2]
            latent = table[view["latent_id"]]
            intrinsics = tf.constant(view["intrinsics"])
            distance = float(np.linalg.norm(camera_lib.camera_center(view["world_to_camera"])))
            cameras = [view["world_to_camera"]]
            if self.num_novel_views:
                eyes = camera_lib.orbit_eyes(
                    yaws, np.zeros_like(yaws), np.full_like(yaws, distance)
                )
                cameras += list(camera_lib.look_at(eyes).numpy())
            renders = [
                model.render_image(
                    latent, camera_lib.Camera(intrinsics, tf.constant(w2c)), height, width
                )
                for w2c in cameras
            ]
            rgb = [np.clip(r["rgb"].numpy(), 0.0, 1.0) for r in renders]
            rows["reconstruction"].append(np.concatenate([view["image"], rgb[0]], 1))
            if self.num_novel_views:
                rows["novel_views"].append(np.concatenate(rgb[1:], 1))
            rows["depth"].append(
                np.concatenate(
                    [
                        self._depth(r["depth"].numpy(), r["alpha"].numpy(), distance)
                        for r in renders
                    ],
                    1,
                )
            )
            rows["alpha"].append(np.concatenate([r["alpha"].numpy() for r in renders], 1))
        out = {}
        for name, images in rows.items():
            if images:
                stacked = np.stack(images).astype(np.float32)
                if stacked.ndim == 3:
                    stacked = stacked[..., None]
                out[f"images/{name}"] = np.clip(stacked, 0.0, 1.0)
        return out


class LOLNeRFEvalSummaries:
    """Held-out scores of a LOLNeRF for TensorBoard: the first `num_views` eval-split views of
    trained identities (their latent-table rows), rendered whole.

    Returns {"eval/psnr", "eval/ssim", "eval/mask_iou", "eval/coverage", "eval/hard_fraction",
    "eval/max_weight_mean", "eval/depth_abs"}: means over the views of `engine.metrics`
    (entries a view lacks, e.g. depth, are left out). The views are read on the first call.

    Args:
      dataset_path: the training dataset directory (its eval split).
      num_views: views scored.
    """

    def __init__(self, dataset_path: os.PathLike | str, num_views: int = 4):
        self.dataset_path = str(dataset_path)
        self.num_views = num_views
        self._views = None

    def _load(self) -> list[dict[str, Any]]:
        views = []
        for features in pipeline.eval_dataset(self.dataset_path, split="eval").take(self.num_views):
            view = {k: features[k].numpy() for k in ("image", "intrinsics", "world_to_camera")}
            view["latent_id"] = int(features["latent_id"].numpy())
            for key in ("mask", "depth"):
                has = features.get(f"has_{key}")
                if key in features and (has is None or bool(has.numpy())):
                    view[key] = np.squeeze(features[key].numpy())
            views.append(view)
        return views

    def __call__(self, model) -> dict[str, float]:
        from tfglo.engine import views as views_lib

        if self._views is None:
            self._views = self._load()
        table = np.asarray(model.latent_table.embeddings, np.float32)
        scores = []
        for view in self._views:
            height, width = view["image"].shape[:2]
            camera = camera_lib.Camera(
                tf.constant(view["intrinsics"]), tf.constant(view["world_to_camera"])
            )
            render = views_lib.render_view(model, table[view["latent_id"]], camera, height, width)
            target = {"image": view["image"], "mask": view.get("mask"), "depth": view.get("depth")}
            target["has_mask"] = target["mask"] is not None
            target["has_depth"] = target["depth"] is not None
            score = metrics.image_metrics(render, target)
            if target["has_mask"]:
                score["coverage"] = metrics.foreground_coverage(render["alpha"], target["mask"])[
                    "coverage"
                ]
            scores.append(score)
        summary = metrics.summarize(scores)
        keys = (
            "psnr",
            "ssim",
            "mask_iou",
            "coverage",
            "hard_fraction",
            "max_weight_mean",
            "depth_abs",
        )
        return {f"eval/{k}": summary[k] for k in keys if k in summary}


def has_eval_split(dataset_path: os.PathLike | str) -> bool:
    """Whether the dataset directory has eval-split images (dataset.json's splits)."""
    splits = dataset_dir.read_metadata(dataset_path).get("splits") or {}
    return bool(splits.get("eval"))
