"""The LOLNeRF model: latent table + conditioned foreground/background fields + volume renderer.

`model(batch)` renders a flat batch of rays, each with its image's (or object's) latent id; the
two variable groups (`network_variables`, `latent_variables`) get their own optimisers
(`latents.LazyAdam` updates only the table rows a batch used).

`train_step_flops` counts the field FLOPs of a training step (the benchmarks' denominator; the
benchmarks themselves are in `tfglo.lolnerf.benchmarks`).
"""

import keras
import tensorflow as tf

from tfglo.geometry import camera as camera_lib
from tfglo.lolnerf import config as model_config_lib
from tfglo.lolnerf import latents
from tfglo.nerf import fields, image_renderer
from tfglo.nerf.volume_renderer import VolumeRenderer


class LOLNeRF(keras.Model):
    """Latent-conditioned NeRF with a per-image latent table.

    Sub-layers: `latent_table` (`LatentTable`), `foreground` (`ForegroundField`), `background`
    (`BackgroundField`, or None when `config.background.enabled` is False: the renderer then uses
    the constant `config.render.background_color`), `renderer` (`VolumeRenderer`, no weights).

    Args:
      config: the `ModelConfig` (kept as `self.config`).
    """

    def __init__(self, config: model_config_lib.ModelConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.latent_table = latents.LatentTable(
            config.num_latents, config.latent_dim, config.latent_init_std, name="latent_table"
        )
        # Mixed precision (config.render.precision) is a dtype policy of the fields alone: the
        # latent table, the renderer and the losses stay float32.
        policy = fields.dtype_policy(config.render.precision)
        self.foreground = fields.ForegroundField(config.foreground, name="foreground", dtype=policy)
        if config.background.enabled:
            self.background = fields.BackgroundField(
                config.background, name="background", dtype=policy
            )
        else:
            self.background = None
        self.renderer = VolumeRenderer(config.render, name="renderer")
        self._image_renderers = {}

    def build(self, input_shape=None):
        """Creates every variable from the config alone (no tracing of the renderer)."""
        del input_shape  # Everything follows from the config.
        latent_dim = self.config.latent_dim
        if not self.latent_table.built:
            self.latent_table.build()
        if not self.foreground.built:
            self.foreground.build((None, None, 3), (None, latent_dim))
        if self.background is not None and not self.background.built:
            self.background.build((None, 3), (None, latent_dim))
        self.built = True

    def build_all(self) -> None:
        """Creates all variables and checks the model end to end on a one-ray dummy batch.

        Call once, under `strategy.scope()` when distributing, before making optimisers or
        restoring a checkpoint.
        """
        self.build()
        batch = {
            "origins": tf.constant([[0.0, 0.0, -3.0]]),
            "directions": tf.constant([[0.0, 0.0, 1.0]]),
            "latent_id": tf.zeros([1], tf.int64),
        }
        self(batch, training=False)

    @property
    def network_variables(self) -> list:
        """Trainable variables of the fields (the network optimiser's)."""
        variables = list(self.foreground.trainable_variables)
        if self.background is not None:
            variables += list(self.background.trainable_variables)
        return variables

    @property
    def latent_variables(self) -> list:
        """`[latent_table.embeddings]` (the latent optimiser's; its gradients are sparse)."""
        return [self.latent_table.embeddings]

    def render_rays(self, origins, directions, latents, training=False, seed=None) -> dict:
        """Renders rays with given latent codes.

        Args:
          origins: `[N, 3]` ray origins, object units.
          directions: `[N, 3]` unit directions.
          latents: `[N, D]` per-ray latent codes.
          training: jitter the samples (when `config.render.perturb`).
          seed: optional `[2]` int seed of that jitter (see `VolumeRenderer.render_rays`).

        Returns:
          the renderer's dict: rgb `[N, 3]`, rgb_foreground `[N, 3]`, alpha `[N]`, depth `[N]`,
          weights `[N, S]`, z_values `[N, S]`, hit `[N]` (and the coarse pass's weights/z).
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

    def call(self, batch: dict, training=False, seed=None) -> dict:
        """Renders a batch of rays.

        Args:
          batch: dict with origins `[N, 3]`, directions `[N, 3]` and either latent_id `[N]` int
            (rows of the table) or latents `[N, D]` (bypasses the table, e.g. for inversion or
            sampled codes). Other keys (rgb, mask, ...) are ignored.
          training: jitter the samples (when `config.render.perturb`).
          seed: optional `[2]` int seed of that jitter.

        Returns:
          the render dict of `render_rays`.

        Raises:
          ValueError: the batch has neither "latents" nor "latent_id".
        """
        if "latents" in batch:
            codes = batch["latents"]
        elif "latent_id" in batch:
            codes = self.latent_table(batch["latent_id"])
        else:
            raise ValueError('a batch needs "latent_id" [N] or "latents" [N, D]')
        return self.render_rays(
            batch["origins"], batch["directions"], codes, training=training, seed=seed
        )

    def render_image(
        self, latent, camera: camera_lib.Camera, height: int, width: int, chunk_size=None
    ) -> dict:
        """Renders one image in fixed-size ray chunks (`tfglo.nerf.image_renderer`).

        The chunk function is traced once per chunk size and reused for later images.

        Args:
          latent: `[D]` latent code.
          camera: an unbatched `Camera`.
          height: image height, pixels.
          width: image width, pixels.
          chunk_size: rays per chunk (default `config.render.chunk_size`).

        Returns:
          dict: rgb `[H, W, 3]`, depth `[H, W]`, alpha `[H, W]`.
        """
        key = chunk_size or self.config.render.chunk_size
        if key not in self._image_renderers:
            self._image_renderers[key] = image_renderer.ImageRenderer(self, key)
        return self._image_renderers[key](latent, camera, height, width)


def train_step_flops(model: LOLNeRF, num_rays: int) -> float:
    """FLOPs of one training step's field MLPs: 2 per multiply-add, forward + backward = 3x.

    The foreground runs on every coarse and every fine sample (the union reuses them), the
    background once per ray; both passes are on the gradient path (the union's composite uses
    the coarse samples' values).
    """
    config = model.config
    per_sample, per_ray = model.foreground.multiply_adds()
    calls = 1 + int(config.render.num_fine > 0)
    samples = config.render.num_coarse + config.render.num_fine
    forward = num_rays * (samples * per_sample + calls * per_ray)
    if model.background is not None:
        forward += num_rays * model.background.multiply_adds()
    return 3.0 * 2.0 * forward
