"""A trained NeRF-VAE as a SavedModel for TF Serving: its serving module.

`ServingModule` is the engine's `RenderModule` (`tfglo.engine.serving`: `serving_default` /
`render` of given latents and `orbit_cameras`, with LOLNeRF's inputs and outputs; in-graph
input checks; the Keras 3 variable tracking) plus what NeRF-VAE adds:

- `encode`: images `[B, V, S, S, 3]` float32 in [0, 1] (V context views of each of B scenes, S
  the encoder's image size), intrinsics `[B, V, 3, 3]` (K of the S x S views, pixels),
  world_to_camera `[B, V, 3, 4]` (OpenCV [R | t]) -> mean `[B, D]` and log_variance `[B, D]`
  of the scene posterior (the views' Gaussians combined as in training); the mean is the code
  to render.
- `sample_latents`: count int32, seed int64, truncation float32 -> latents `[count, D]` from the
  prior N(0, I), scaled by truncation (the same signature as LOLNeRF's).

`tfglo.export` writes it through `NeRFVAEFamily.serving_module` with the engine's warm-up
requests (one per signature) and `assets.extra/tfglo_export.json`.
"""

from typing import Any

import numpy as np
import tensorflow as tf

from tfglo.engine import serving as serving_lib
from tfglo.engine.serving import DEFAULT_SIGNATURE, ExportConfig
from tfglo.geometry import camera as camera_lib

# Every signature's inputs: name -> (numpy dtype, rank, shape as documented).
SIGNATURE_INPUTS: serving_lib.SignatureInputs = {
    "render": serving_lib.SIGNATURE_INPUTS["render"],
    "encode": {
        "images": ("float32", 5, "[B, V, S, S, 3]"),
        "intrinsics": ("float32", 4, "[B, V, 3, 3]"),
        "world_to_camera": ("float32", 4, "[B, V, 3, 4]"),
    },
    "sample_latents": {
        "count": ("int32", 0, "[]"),
        "seed": ("int64", 0, "[]"),
        "truncation": ("float32", 0, "[]"),
    },
    "orbit_cameras": serving_lib.SIGNATURE_INPUTS["orbit_cameras"],
}
SIGNATURE_INPUTS[DEFAULT_SIGNATURE] = SIGNATURE_INPUTS["render"]

SIGNATURE_OUTPUTS: dict[str, tuple[str, ...]] = {
    **serving_lib.SIGNATURE_OUTPUTS,
    "encode": ("mean", "log_variance"),
    "sample_latents": ("latents",),
}


class ServingModule(serving_lib.RenderModule):
    """The exported object: NeRF-VAE's renderer, encoder and prior as signatures.

    Args:
      model: a built `tfglo.nerf_vae.model.NeRFVAE`.
      config: an `ExportConfig`.
      default_chunk_size: rays per chunk when `config.chunk_size` is None.
    """

    SIGNATURE_INPUTS = SIGNATURE_INPUTS
    SIGNATURE_OUTPUTS = SIGNATURE_OUTPUTS

    def __init__(self, model, config: ExportConfig, default_chunk_size: int = 4096):
        super().__init__(model, model.latent_dim, config, default_chunk_size)
        self._image_size = int(model.config.encoder.image_size)

    @property
    def image_size(self) -> int:
        """S, the side of the views `encode` takes."""
        return self._image_size

    def signatures(self) -> dict[str, Any]:
        return {
            DEFAULT_SIGNATURE: self.render,
            "render": self.render,
            "encode": self.encode,
            "sample_latents": self.sample_latents,
            "orbit_cameras": self.orbit_cameras,
        }

    def export_info(self) -> dict[str, Any]:
        model_config = self._model.value.config
        return {
            "latent_dim": self.latent_dim,
            "chunk_size": self.chunk_size,
            "encoder_image_size": self.image_size,
            "encoder_cameras": bool(model_config.encoder.cameras),
            "combine": model_config.combine,
        }

    def warmup_inputs(self) -> dict[str, dict[str, Any]]:
        """One request per signature (`render` is `serving_default`'s graph)."""
        engine = super().warmup_inputs()
        camera = self.warmup_camera_inputs()
        size = self._image_size
        intrinsics = camera_lib.intrinsics_matrix(
            camera_lib.default_intrinsics(size, size, self.config.focal_factor)
        ).numpy()
        return {
            DEFAULT_SIGNATURE: engine[DEFAULT_SIGNATURE],
            "encode": {
                "images": np.full([1, 1, size, size, 3], 0.5, np.float32),
                "intrinsics": intrinsics[None, None],
                "world_to_camera": camera["world_to_camera"][None],
            },
            "sample_latents": {"count": 2, "seed": 0, "truncation": 1.0},
            "orbit_cameras": engine["orbit_cameras"],
        }

    def _check_views(self, images, intrinsics, world_to_camera):
        size = self._image_size
        shape = serving_lib.padded_shape(images, 5)
        ok = tf.reduce_all(
            tf.stack(
                [
                    serving_lib.shape_is(images, [None, None, size, size, 3]),
                    shape[0] >= 1,
                    shape[1] >= 1,
                ]
            )
        )
        images = serving_lib.guard(
            images,
            ok,
            f"images must be [B, V, {size}, {size}, 3] float32 in [0, 1] with B, V >= 1 (context "
            f"views at the encoder's image size {size}: resize them and scale their intrinsics)",
            tf.zeros([1, 1, size, size, 3]),
            [None, None, size, size, 3],
        )
        images = tf.debugging.assert_all_finite(images, "images must be finite")
        batch, views = tf.shape(images)[0], tf.shape(images)[1]
        intrinsics = serving_lib.guard(
            intrinsics,
            serving_lib.shape_is(intrinsics, [batch, views, 3, 3]),
            "intrinsics must be [B, V, 3, 3] float32 (pixels of the S x S views), B and V as in "
            "the images",
            tf.eye(3, batch_shape=[batch, views]),
            [None, None, 3, 3],
        )
        world_to_camera = serving_lib.guard(
            world_to_camera,
            serving_lib.shape_is(world_to_camera, [batch, views, 3, 4]),
            "world_to_camera must be [B, V, 3, 4] float32 ([R | t]), B and V as in the images",
            tf.eye(3, 4, batch_shape=[batch, views]),
            [None, None, 3, 4],
        )
        intrinsics = tf.debugging.assert_all_finite(intrinsics, "intrinsics must be finite")
        world_to_camera = tf.debugging.assert_all_finite(
            world_to_camera, "world_to_camera must be finite"
        )
        return images, intrinsics, world_to_camera

    @tf.function(input_signature=serving_lib.input_specs(SIGNATURE_INPUTS, "encode"))
    def encode(self, images, intrinsics, world_to_camera):
        """The posterior (mean, log-variance) `[B, D]` of each scene from its V context views."""
        images, intrinsics, world_to_camera = self._check_views(images, intrinsics, world_to_camera)
        posterior = self._model.value.posterior(images, intrinsics, world_to_camera)
        dim = self._latent_dim
        return {
            "mean": tf.ensure_shape(posterior.mean, [None, dim]),
            "log_variance": tf.ensure_shape(posterior.log_variance, [None, dim]),
        }

    @tf.function(input_signature=serving_lib.input_specs(SIGNATURE_INPUTS, "sample_latents"))
    def sample_latents(self, count, seed, truncation):
        """`count` codes `[count, D]` from N(0, I) times truncation, noise keyed by [seed, 0]."""
        count = serving_lib.check_scalar(count, "count", "int32", 1, self._config.max_count)
        seed = serving_lib.check_scalar(seed, "seed", "int64", fallback=0)
        truncation = serving_lib.check_scalar(truncation, "truncation", "float32", 0.0)
        noise = tf.random.stateless_normal(
            tf.stack([count, self._latent_dim]), seed=tf.stack([seed, tf.constant(0, tf.int64)])
        )
        return {"latents": tf.ensure_shape(truncation * noise, [None, self._latent_dim])}


def serving_module(model, config: ExportConfig) -> ServingModule:
    """The `ServingModule` of a built NeRF-VAE."""
    return ServingModule(model, config, model.config.render.chunk_size)


def coerce_inputs(signature: str, values: dict[str, Any]) -> dict[str, np.ndarray]:
    """`engine.serving.coerce_inputs` for NeRF-VAE's signatures (`SIGNATURE_INPUTS`)."""
    return serving_lib.coerce_inputs(signature, values, SIGNATURE_INPUTS)
