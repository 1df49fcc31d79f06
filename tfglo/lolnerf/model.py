"""The LOLNeRF model: latent table + conditioned foreground/background fields + volume renderer.

`model(batch)` renders a flat batch of rays, each with its image's (or object's) latent id; the
two variable groups (`network_variables`, `latent_variables`) get their own optimisers
(`latents.LazyAdam` updates only the table rows a batch used).

`benchmark_train_step` measures one training step of the default-size model (see its docstring).
"""

import keras
import numpy as np
import tensorflow as tf

from tfglo.geometry import camera as camera_lib
from tfglo.lolnerf import config as model_config_lib
from tfglo.lolnerf import latents
from tfglo.nerf import config as config_lib
from tfglo.nerf import fields, losses
from tfglo.nerf.volume_renderer import VolumeRenderer
from tfglo.utils import benchmarking


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
        """Renders one image in fixed-size ray chunks (`tfglo.render_image`).

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
        # Lazy: render_image's benchmark imports this module.
        from tfglo.nerf import image_renderer as render_image_lib

        key = chunk_size or self.config.render.chunk_size
        if key not in self._image_renderers:
            self._image_renderers[key] = render_image_lib.ImageRenderer(self, key)
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


def synthetic_ray_batch(num_rays: int, num_latents: int, seed: int = 0) -> dict:
    """A random training batch: rays from 4 units away through the unit sphere, random targets."""
    rng = np.random.default_rng(seed)
    origins = rng.normal(size=(num_rays, 3))
    origins *= 4.0 / np.linalg.norm(origins, axis=-1, keepdims=True)
    targets = rng.uniform(-0.5, 0.5, (num_rays, 3))
    directions = targets - origins
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    return {
        "origins": tf.constant(origins, tf.float32),
        "directions": tf.constant(directions, tf.float32),
        "latent_id": tf.constant(rng.integers(0, num_latents, num_rays), tf.int64),
        "rgb": tf.constant(rng.uniform(size=(num_rays, 3)), tf.float32),
        "mask": tf.constant(rng.uniform(size=num_rays) > 0.5, tf.float32),
    }


def make_train_step(
    model: LOLNeRF,
    loss_config: config_lib.LossConfig,
    network_optimizer: keras.optimizers.Optimizer,
    latent_optimizer: keras.optimizers.Optimizer,
    jit_compile: bool,
):
    """A compiled `step(batch, seed) -> (loss, terms)`: forward, backward, both optimisers."""
    network_variables = model.network_variables
    latent_variables = model.latent_variables
    network_optimizer.build(network_variables)
    latent_optimizer.build(latent_variables)

    def step(batch, seed):
        with tf.GradientTape() as tape:
            render = model(batch, training=True, seed=seed)
            loss, terms = losses.total_loss(render, batch, loss_config)
        grads = tape.gradient(loss, network_variables + latent_variables)
        count = len(network_variables)
        network_optimizer.apply_gradients(zip(grads[:count], network_variables))
        latent_optimizer.apply_gradients(zip(grads[count:], latent_variables))
        return loss, terms

    return tf.function(step, jit_compile=jit_compile)


def benchmark_train_step(
    peak_gflops: float, ray_counts=(1024,), jit_options=(False, True), min_seconds: float = 8.0
) -> None:
    """One training step of the default-size model, with and without XLA; one line per variant.

    Default `ModelConfig` fields (8 x 256 foreground, 64 coarse + 64 fine samples, 4 x 128
    background), a 64-row latent table, default loss weights; Adam on the fields and LazyAdam on
    the table. FLOPs per `train_step_flops`; ratio = achieved FLOP/s / `peak_gflops`.

    1024 rays: larger batches measured no more efficient (ratio flat from 512 to 4096 rays) while
    peak memory grows ~4.5 MB per ray (~19 GB at 4096 rays, both variants in one process).

    The machines here are shared, so each line also carries `nearby_peak_gflops`, the matmul
    peak re-measured just before and after that variant (mean), and `nearby_ratio` against it.
    """
    model_config = model_config_lib.ModelConfig(num_latents=64)
    model = LOLNeRF(model_config)
    model.build_all()
    for num_rays in ray_counts:
        batch = synthetic_ray_batch(num_rays, model_config.num_latents)
        flops = train_step_flops(model, num_rays)
        samples = num_rays * (model_config.render.num_coarse + model_config.render.num_fine)
        for jit in jit_options:
            step = make_train_step(
                model,
                config_lib.LossConfig(),
                keras.optimizers.Adam(5e-4),
                latents.LazyAdam(1e-3),
                jit_compile=jit,
            )
            seed = tf.constant([1, 2], tf.int32)
            step(batch, seed)[0].numpy()  # Trace and compile outside the timing.
            before = benchmarking.matmul_peak_gflops(min_seconds=1.0)
            seconds = benchmarking.time_call(
                lambda step=step, batch=batch, seed=seed: step(batch, seed)[0].numpy(),
                min_seconds=min_seconds,
            )
            nearby_peak = 0.5 * (before + benchmarking.matmul_peak_gflops(min_seconds=1.0))
            gflops = flops / seconds / 1e9
            benchmarking.report(
                "train_step",
                xla=int(jit),
                rays=num_rays,
                seconds=seconds,
                samples_per_s=samples / seconds,
                rays_per_s=num_rays / seconds,
                gflops=gflops,
                matmul_peak_gflops=peak_gflops,
                ratio=gflops / peak_gflops,
                nearby_peak_gflops=nearby_peak,
                nearby_ratio=gflops / nearby_peak,
            )
