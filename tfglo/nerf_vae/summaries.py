"""NeRF-VAE's TensorBoard image summaries: encode -> novel views, their depth, prior samples.

The scalars (ELBO, reconstruction, KL and its active dimensions, PSNR, posterior std, KL weight)
are the objective's terms, written by the engine's trainer (`tfglo.nerf_vae.objective`).
"""

import os

import numpy as np

from tfglo.geometry import camera as camera_lib
from tfglo.nerf_vae import model as model_lib
from tfglo.nerf_vae import scenes as scenes_lib
from tfglo.utils import images


class NeRFVAEImageSummaries:
    """Image summaries of a NeRF-VAE.

    For the first `num_scenes` training scenes of the dataset: the posterior mean of their first
    `context_views` training views is rendered from their next `num_novel_views` views (training
    views that are not context views, then held-out views):
    - "images/encode_novel_views": `[k, H, (V + 2N) W, 3]` the V context views, then per novel
      view its ground truth and the render;
    - "images/novel_depth": `[k, H, N W, 3]` the renders' depth (viridis, near bright);
    - "images/prior_samples": `[1, H, M W, 3]` M codes from the prior N(0, I) rendered from the
      first scene's first context camera.
    The views are read from the dataset on the first call (only the chief calls it).

    Args:
      dataset_path: the training dataset directory.
      num_scenes: scenes shown (k).
      context_views: context views encoded per scene (V).
      num_novel_views: N.
      prior_samples: M (0: none).
      seed: seed of the prior samples (the same codes at every step).
    """

    def __init__(
        self,
        dataset_path: os.PathLike | str,
        num_scenes: int = 3,
        context_views: int = 4,
        num_novel_views: int = 3,
        prior_samples: int = 4,
        seed: int = 0,
    ):
        self.dataset_path = str(dataset_path)
        self.num_scenes = num_scenes
        self.context_views = context_views
        self.num_novel_views = num_novel_views
        self.prior_samples = prior_samples
        self.seed = seed
        self._scenes = None

    def _load(self) -> dict:
        return scenes_lib.load_scenes(
            self.dataset_path,
            max_objects=self.num_scenes,
            enough_train_views=self.context_views + self.num_novel_views,
        )

    def __call__(self, model) -> dict[str, np.ndarray]:
        if self._scenes is None:
            self._scenes = self._load()
        rows, depth_rows, first_camera = [], [], None
        for scene in self._scenes.values():
            context = scene["train"][: self.context_views]
            if not context:
                continue
            novel = (scene["train"][self.context_views :] + scene["eval"])[: self.num_novel_views]
            latent = model_lib.encode_views(model, context).mean
            row = [v["image"] for v in context]
            depths = []
            for view in novel:
                height, width = view["image"].shape[:2]
                cam = camera_lib.Camera(view["intrinsics"], view["world_to_camera"])
                render = model.render_image(latent, cam, height, width)
                row += [view["image"], np.clip(np.asarray(render["rgb"]), 0.0, 1.0)]
                depth, _ = images.colorize_depth(
                    np.asarray(render["depth"]), np.asarray(render["alpha"])
                )
                depths.append(depth)
            rows.append(np.concatenate(_same_height(row), 1))
            if depths:
                depth_rows.append(np.concatenate(depths, 1))
            if first_camera is None:
                first_camera = context[0]
        out = {}
        if rows and len({r.shape for r in rows}) == 1:
            out["images/encode_novel_views"] = np.stack(rows).astype(np.float32)
        if depth_rows and len({r.shape for r in depth_rows}) == 1:
            out["images/novel_depth"] = np.stack(depth_rows).astype(np.float32)
        if self.prior_samples and first_camera is not None:
            height, width = first_camera["image"].shape[:2]
            cam = camera_lib.Camera(first_camera["intrinsics"], first_camera["world_to_camera"])
            codes = scenes_lib.prior_latents(self.prior_samples, model.latent_dim, self.seed)
            samples = [
                np.clip(np.asarray(model.render_image(code, cam, height, width)["rgb"]), 0, 1)
                for code in codes
            ]
            out["images/prior_samples"] = np.concatenate(samples, 1)[None].astype(np.float32)
        return out


def _same_height(row: list[np.ndarray]) -> list[np.ndarray]:
    """Pads images at the bottom to the row's tallest (context views are the dataset's size)."""
    height = max(image.shape[0] for image in row)
    return [
        np.pad(image, ((0, height - image.shape[0]), (0, 0), (0, 0)), constant_values=1.0)
        for image in row
    ]
