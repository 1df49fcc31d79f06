"""The NeRF-VAE model: view encoder -> posterior over the scene latent -> conditioned NeRF decoder.

A batch of scenes (`tfglo.data.scene_batches`) goes in: per scene V context views with their
cameras, and R target rays. The encoder (`tfglo.nerf_vae.encoder`) maps every context view to a
diagonal Gaussian; `tfglo.nerf_vae.posterior.combine` makes one per scene (the average of the
views' parameters, or their product); the scene latent is a reparameterised sample of it in
training and its mean otherwise. The decoder is the shared conditioned NeRF of `tfglo.nerf` with
no copy: `ForegroundField`, `BackgroundField` (or a constant background colour, e.g. the
dataset's `constant_background`) and the `VolumeRenderer`, exactly as LOLNeRF uses them, so the
foreground/background split, the mask loss and the hard-surface loss apply unchanged
(`tfglo.nerf_vae.objective`).

`render_rays(origins, directions, latents)` and `render_image(latent, camera, h, w)` have
LOLNeRF's signatures, so the engine's views, evaluation helpers and serving module render a
NeRF-VAE like any other camera-conditioned NeRF. `train_step_flops` counts the FLOPs of a
training step (encoder convolutions + field MLPs) for the benchmark's ratio to the matmul peak.
"""

import keras
import numpy as np
import tensorflow as tf

from tfglo.data import scene_batches
from tfglo.geometry import camera as camera_lib
from tfglo.nerf import fields, image_renderer
from tfglo.nerf.volume_renderer import VolumeRenderer
from tfglo.nerf_vae import config as config_lib
from tfglo.nerf_vae import encoder as encoder_lib
from tfglo.nerf_vae import posterior as posterior_lib


class NeRFVAE(keras.Model):
    """Encoder + conditioned fields + volume renderer (module docstring).

    Sub-layers: `encoder` (`Encoder`), `foreground` (`ForegroundField`), `background`
    (`BackgroundField`, or None when `config.background.enabled` is False: the renderer then uses
    the constant `config.render.background_color`), `renderer` (`VolumeRenderer`, no weights).

    Args:
      config: the `NeRFVAEConfig` (kept as `self.config`).
    """

    def __init__(self, config: config_lib.NeRFVAEConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.encoder = encoder_lib.Encoder(config.encoder, name="encoder")
        self.foreground = fields.ForegroundField(config.foreground, name="foreground")
        if config.background.enabled:
            self.background = fields.BackgroundField(config.background, name="background")
        else:
            self.background = None
        self.renderer = VolumeRenderer(config.render, name="renderer")
        self._image_renderers = {}

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def build(self, input_shape=None):
        """Creates the decoder's variables from the config (`build_all` adds the encoder's)."""
        del input_shape
        if not self.foreground.built:
            self.foreground.build((None, None, 3), (None, self.latent_dim))
        if self.background is not None and not self.background.built:
            self.background.build((None, 3), (None, self.latent_dim))
        self.built = True

    def build_all(self) -> None:
        """Creates every variable and checks encoder and decoder end to end on dummy inputs.

        Call once, under `strategy.scope()` when distributing, before making optimisers or
        restoring a checkpoint.
        """
        self.build()
        self.encoder.build_all()
        self.render_rays(
            tf.constant([[0.0, 0.0, -3.0]]),
            tf.constant([[0.0, 0.0, 1.0]]),
            tf.zeros([1, self.latent_dim]),
        )

    @property
    def encoder_variables(self) -> list:
        """Trainable variables of the encoder (the "encoder" optimiser's)."""
        return list(self.encoder.trainable_variables)

    @property
    def decoder_variables(self) -> list:
        """Trainable variables of the fields (the "decoder" optimiser's)."""
        variables = list(self.foreground.trainable_variables)
        if self.background is not None:
            variables += list(self.background.trainable_variables)
        return variables

    @property
    def network_variables(self) -> list:
        """The decoder's variables (what test-time fine-tuning would move; LOLNeRF's name)."""
        return self.decoder_variables

    def posterior(
        self, images, intrinsics, world_to_camera, mask=None, training=False
    ) -> posterior_lib.Gaussian:
        """The Gaussian over each scene's latent from its context views.

        Args:
          images: `[B, V, S, S, 3]` context views in [0, 1], S = `config.encoder.image_size`.
          intrinsics: `[B, V, 4]` (fx, fy, cx, cy of the S x S views, pixels) or `[B, V, 3, 3]`.
          world_to_camera: `[B, V, 3, 4]`.
          mask: optional `[B, V]` bool, the valid views (scenes with fewer than V views).
          training: normalisation in training mode.

        Returns:
          a `posterior.Gaussian` with mean and log_variance `[B, D]`.
        """
        mean, log_variance = self.encoder.encode_views(
            images, intrinsics, world_to_camera, training=training
        )
        return posterior_lib.combine(mean, log_variance, mask, method=self.config.combine)

    def render_rays(self, origins, directions, latents, training=False, seed=None) -> dict:
        """Renders rays with given latent codes (LOLNeRF's signature).

        Args:
          origins: `[N, 3]` ray origins, object units.
          directions: `[N, 3]` unit directions.
          latents: `[N, D]` per-ray latent codes.
          training: jitter the samples (when `config.render.perturb`).
          seed: optional `[2]` int seed of that jitter.

        Returns:
          the renderer's dict: rgb `[N, 3]`, rgb_foreground, alpha `[N]`, depth `[N]`, weights
          `[N, S]`, z_values, hit, coarse_weights, coarse_z_values.
        """
        return self.renderer.render_rays(
            self.foreground,
            self.background,
            origins,
            directions,
            latents,
            training=bool(training),
            seed=seed,
        )

    def call(self, batch: dict, training=False, seed=None, noise=None) -> dict:
        """Encodes each scene's context views and renders its target rays.

        Args:
          batch: a scene batch: context_images `[B, V, S, S, 3]`, context_intrinsics
            `[B, V, 4]`, context_world_to_camera `[B, V, 3, 4]`, origins `[B, R, 3]`,
            directions `[B, R, 3]` (other keys are ignored); optionally context_mask `[B, V]`.
          training: sample the latent (else its posterior mean) and jitter the samples.
          seed: `[2]` int seed of the jitter and, without `noise`, of the latent noise
            (required when training).
          noise: optional `[B, D]` standard normal noise of the latent samples (e.g.
            `scene_noise`, keyed per scene so it does not depend on how a batch is split over
            replicas).

        Returns:
          the renderer's dict over the B x R rays flattened scene-major (rgb `[B * R, 3]`,
          alpha `[B * R]`, weights `[B * R, S]`, ...), plus posterior_mean and
          posterior_log_variance `[B, D]` and latents `[B, D]` (the codes rendered).

        Raises:
          ValueError: training without a seed.
        """
        posterior = self.posterior(
            batch["context_images"],
            batch["context_intrinsics"],
            batch["context_world_to_camera"],
            batch.get("context_mask"),
            training=training,
        )
        latent_seed = render_seed = None
        if training:
            if seed is None:
                raise ValueError("a training forward pass samples the latent: pass a seed [2]")
            seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int32), 2)
            latent_seed, render_seed = seeds[0], seeds[1]
        if training and noise is not None:
            latents = posterior_lib.reparameterize(posterior, noise)
        else:
            latents = posterior_lib.latent(posterior, training, latent_seed)
        origins = tf.convert_to_tensor(batch["origins"], tf.float32)
        directions = tf.convert_to_tensor(batch["directions"], tf.float32)
        num_rays = tf.shape(origins)[1]
        render = self.render_rays(
            tf.reshape(origins, [-1, 3]),
            tf.reshape(directions, [-1, 3]),
            tf.repeat(latents, num_rays, axis=0),
            training=training,
            seed=render_seed,
        )
        render["posterior_mean"] = posterior.mean
        render["posterior_log_variance"] = posterior.log_variance
        render["latents"] = latents
        return render

    def render_image(
        self, latent, camera: camera_lib.Camera, height: int, width: int, chunk_size=None
    ) -> dict:
        """Renders one image in fixed-size ray chunks (`tfglo.nerf.image_renderer`).

        Args:
          latent: `[D]` latent code.
          camera: an unbatched `Camera`.
          height: image height, pixels.
          width: image width, pixels.
          chunk_size: rays per chunk (default `config.render.chunk_size`).

        Returns:
          dict: rgb `[H, W, 3]`, depth `[H, W]` (along the ray), alpha `[H, W]`.
        """
        key = chunk_size or self.config.render.chunk_size
        if key not in self._image_renderers:
            self._image_renderers[key] = image_renderer.ImageRenderer(self, key)
        return self._image_renderers[key](latent, camera, height, width)


def scene_noise(keys, seed, step, latent_dim: int) -> tf.Tensor:
    """Standard normal noise `[B, D]`, one draw per scene keyed by (seed, step, its key).

    The latent sample of a scene then depends on the scene and the step only, not on the replica
    that holds it, so a step on several replicas equals the step on one device.

    Args:
      keys: `[B]` int per-scene keys (e.g. object ids).
      seed: int scalar, the run's seed.
      step: int scalar, the training step.
      latent_dim: D.
    """
    base = tf.stack([tf.cast(seed, tf.int32), tf.cast(step, tf.int32)])

    def draw(key):
        key_seed = tf.random.experimental.stateless_fold_in(base, tf.cast(key, tf.int32))
        return tf.random.stateless_normal([latent_dim], seed=key_seed)

    return tf.map_fn(draw, tf.convert_to_tensor(keys), fn_output_signature=tf.float32)


def context_inputs(model: NeRFVAE, views: list[dict]) -> dict[str, np.ndarray]:
    """One scene's context views as encoder inputs, resized to the encoder's size.

    Views of another size are resized (bilinear, antialiased) and their intrinsics scaled per
    axis, as the training scene batches do, so the rays of a resized view are the original's.

    Args:
      model: the NeRF-VAE (its `config.encoder.image_size`).
      views: dicts with image `[H, W, 3]` in [0, 1], intrinsics `[4]`, world_to_camera `[3, 4]`
        (e.g. `tfglo.engine.evaluation.load_views`), all of one size.

    Returns:
      images `[1, V, S, S, 3]`, intrinsics `[1, V, 4]`, world_to_camera `[1, V, 3, 4]` float32.

    Raises:
      ValueError: no view, views of different sizes, or an image that is not `[H, W, 3]`.
    """
    if not views:
        raise ValueError("encoding needs at least one context view")
    shapes = {tuple(np.shape(v["image"])) for v in views}
    if len(shapes) != 1 or len(next(iter(shapes))) != 3 or next(iter(shapes))[-1] != 3:
        raise ValueError(
            f"context views must be [H, W, 3] images of one size, got shapes {sorted(shapes)}"
        )
    height, width = next(iter(shapes))[:2]
    size = model.config.encoder.image_size
    images = np.stack([np.asarray(v["image"], np.float32) for v in views])
    intrinsics = np.stack([np.asarray(v["intrinsics"], np.float32).reshape(4) for v in views])
    if (height, width) != (size, size):
        images = tf.image.resize(images, [size, size], method="bilinear", antialias=True)
        images = np.clip(np.asarray(images), 0.0, 1.0)
        intrinsics = np.asarray(
            scene_batches.scaled_intrinsics(intrinsics, height, width, size, size)
        )
    world_to_camera = np.stack(
        [np.asarray(v["world_to_camera"], np.float32).reshape(3, 4) for v in views]
    )
    return {
        "images": images[None].astype(np.float32),
        "intrinsics": intrinsics[None].astype(np.float32),
        "world_to_camera": world_to_camera[None],
    }


def encode_views(model: NeRFVAE, views: list[dict]) -> posterior_lib.Gaussian:
    """The posterior `[D]` of one scene from its context views (`context_inputs`; eval mode)."""
    inputs = context_inputs(model, views)
    posterior = model.posterior(
        inputs["images"], inputs["intrinsics"], inputs["world_to_camera"], training=False
    )
    return posterior_lib.Gaussian(
        np.asarray(posterior.mean)[0], np.asarray(posterior.log_variance)[0]
    )


def train_step_flops(model: NeRFVAE, scenes: int, context_views: int, target_rays: int) -> float:
    """FLOPs of one training step: encoder convolutions + field MLPs, forward + backward = 3x.

    2 FLOPs per multiply-add. Encoder: `encoder_multiply_adds` per context view. Decoder: the
    foreground on every coarse and fine sample (plus its per-ray latent rows per pass), the
    background once per ray, as `tfglo.lolnerf.model.train_step_flops` counts them.
    """
    config = model.config
    encoder = encoder_lib.encoder_multiply_adds(config.encoder) * scenes * context_views
    per_sample, per_ray = fields.foreground_multiply_adds(config.foreground, model.latent_dim)
    calls = 1 + int(config.render.num_fine > 0)
    samples = config.render.num_coarse + config.render.num_fine
    rays = scenes * target_rays
    decoder = rays * (samples * per_sample + calls * per_ray)
    if config.background.enabled:
        decoder += rays * fields.background_multiply_adds(config.background, model.latent_dim)
    return 3.0 * 2.0 * (encoder + decoder)
