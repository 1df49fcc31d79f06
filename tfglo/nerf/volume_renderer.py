"""Volume rendering of flat ray batches: coarse + importance samples, compositing, background.

Per ray (unit direction, object units):
1. near/far from the bounding sphere (`camera.intersect_sphere`, radius `scene_radius`);
2. coarse pass: `num_coarse` stratified samples in [near, far] through `foreground_fn`;
3. fine pass: `num_fine` importance samples from the coarse weights (positions stop-gradient),
   through the SAME `foreground_fn`;
4. the sorted union of both sample sets (their field values are reused, not recomputed) is
   composited; the foreground goes over the background: rgb = rgb_fg + (1 - alpha) * bg.

Quadrature: sample i stands for the interval between the midpoints to its neighbours; the first
interval starts at `near` and the last ends at `far` (not at infinity), so the intervals tile
[near, far] exactly. Hence a constant density sigma inside the sphere gives exactly
alpha = 1 - exp(-sigma (far - near)), and a ray that leaves the sphere is never made opaque by an
infinite last interval.

Depth is the expected termination distance given termination inside the sphere,
sum_i w_i z_i / alpha (normalised by alpha, so a half-transparent surface still reports its own
distance rather than a distance shrunk towards the camera); rays with alpha <= DEPTH_MIN_ALPHA
(misses, empty space) get depth 0.
"""

from collections.abc import Callable

import keras
import tensorflow as tf

from tfglo.geometry import camera
from tfglo.nerf import sampling
from tfglo.nerf.config import RenderConfig
from tfglo.utils.configs import from_dict, to_dict

# Below this foreground opacity the normalised depth is meaningless (0 / 0): report 0 instead.
DEPTH_MIN_ALPHA = 1e-6

ForegroundFn = Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]
BackgroundFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


def interval_lengths(z_values, near, far) -> tf.Tensor:
    """Lengths of the intervals that the sorted samples stand for, `[..., S]`.

    Interval i runs from the midpoint between samples i-1 and i (or `near`) to the midpoint
    between samples i and i+1 (or `far`); the lengths sum to far - near.

    Args:
      z_values: `[..., S]` sorted distances in [near, far].
      near: `[...]` interval starts.
      far: `[...]` interval ends.
    """
    midpoints = 0.5 * (z_values[..., 1:] + z_values[..., :-1])
    bounds = tf.concat([near[..., None], midpoints, far[..., None]], -1)
    return tf.maximum(bounds[..., 1:] - bounds[..., :-1], 0.0)


def composite(z_values, density, rgb, near, far, hit, deltas=None) -> dict:
    """Alpha-composites samples along rays (front to back).

    alpha_i = 1 - exp(-sigma_i delta_i), transmittance T_i = exp(-sum_{j<i} sigma_j delta_j)
    (from the cumulative optical depth, which is stabler than a product of (1 - alpha_j)),
    w_i = T_i alpha_i.

    Args:
      z_values: `[N, S]` sorted distances in [near, far], object units.
      density: `[N, S]` sigma >= 0, per object unit.
      rgb: `[N, S, 3]` colours in [0, 1].
      near: `[N]`, far `[N]`: the ray's interval inside the sphere.
      hit: `[N]` bool; rays that miss get zero weights.
      deltas: optional `[N, S]` interval lengths to use instead of `interval_lengths(z_values,
        near, far)` (the accelerated renderer's intervals skip empty space).

    Returns:
      dict with weights `[N, S]`, alpha `[N]` (= sum of weights), rgb_foreground `[N, 3]`
      (premultiplied by alpha) and depth `[N]` (normalised, see the module docstring).
    """
    if deltas is None:
        deltas = interval_lengths(z_values, near, far)
    deltas = tf.where(hit[..., None], deltas, tf.zeros_like(deltas))
    optical_depth = tf.maximum(density, 0.0) * deltas
    transmittance = tf.exp(-tf.cumsum(optical_depth, axis=-1, exclusive=True))
    weights = transmittance * (1.0 - tf.exp(-optical_depth))
    alpha = tf.reduce_sum(weights, -1)
    rgb_foreground = tf.reduce_sum(weights[..., None] * rgb, -2)
    opaque_enough = alpha > DEPTH_MIN_ALPHA
    safe_alpha = tf.where(opaque_enough, alpha, tf.ones_like(alpha))
    depth = tf.where(
        opaque_enough, tf.reduce_sum(weights * z_values, -1) / safe_alpha, tf.zeros_like(alpha)
    )
    return {"weights": weights, "alpha": alpha, "rgb_foreground": rgb_foreground, "depth": depth}


class VolumeRenderer(keras.layers.Layer):
    """Renders flat ray batches through a foreground field and a background (no weights).

    Args:
      config: `RenderConfig` (samples per pass, sphere radius, jitter, background colour).
    """

    def __init__(self, config: RenderConfig, **kwargs):
        super().__init__(**kwargs)
        if config.num_coarse < 1:
            raise ValueError(f"num_coarse must be >= 1, got {config.num_coarse}")
        if config.num_fine < 0:
            raise ValueError(f"num_fine must be >= 0, got {config.num_fine}")
        if config.scene_radius <= 0:
            raise ValueError(f"scene_radius must be > 0, got {config.scene_radius}")
        self.config = config
        self.built = True  # weightless

    @property
    def num_samples(self) -> int:
        """S_total, samples per ray of the composited union."""
        return self.config.num_coarse + self.config.num_fine

    def render_rays(
        self,
        foreground_fn: ForegroundFn,
        background_fn: BackgroundFn | None,
        origins,
        directions,
        latents,
        training: bool,
        seed=None,
    ) -> dict:
        """Renders N rays.

        Args:
          foreground_fn: `(points [N, S, 3], latents [N, D]) -> (density [N, S] >= 0,
            rgb [N, S, 3] in [0, 1])`; called twice (coarse, fine) with the same latents.
          background_fn: `(directions [N, 3], latents [N, D]) -> rgb [N, 3]`, or None for the
            constant `config.background_color`.
          origins: `[N, 3]` ray origins, object units.
          directions: `[N, 3]` unit ray directions.
          latents: `[N, D]` per-ray latent codes.
          training: Python bool; with `config.perturb` it jitters the samples.
          seed: optional shape `[2]` integer tensor for the stateless jitter (reproducible runs);
            when None and jittering, a fresh seed is drawn from TensorFlow's (unseeded, stateful)
            random op, so results then differ from call to call. Unused when not jittering.

        Returns:
          dict: rgb `[N, 3]` (foreground over background), rgb_foreground `[N, 3]`
          (premultiplied), alpha `[N]` (foreground opacity), depth `[N]` (expected termination
          distance along the ray, normalised by alpha; 0 where alpha <= DEPTH_MIN_ALPHA, so 0 for
          misses), weights `[N, S_total]` and z_values `[N, S_total]` of the sorted union,
          max_weight `[N]` (the largest of a ray's composite weights: near 1 where one sample
          holds the whole opacity, a hard surface; small for a cloud; 0 for misses),
          hit `[N]` bool, coarse_weights `[N, num_coarse]` and coarse_z_values
          `[N, num_coarse]` of the coarse pass (e.g. for a proposal/coarse loss).
        """
        config = self.config
        origins = tf.convert_to_tensor(origins, tf.float32)
        directions = tf.convert_to_tensor(directions, tf.float32)
        latents = tf.convert_to_tensor(latents, tf.float32)
        near, far, hit = camera.intersect_sphere(origins, directions, config.scene_radius)

        perturb = bool(config.perturb and training)
        coarse_seed = fine_seed = None
        if perturb:
            if seed is None:
                seed = tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32)
            seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int32), 2)
            coarse_seed, fine_seed = seeds[0], seeds[1]

        def evaluate(z_values):
            points = origins[:, None, :] + directions[:, None, :] * z_values[..., None]
            density, rgb = foreground_fn(points, latents)
            return tf.convert_to_tensor(density, tf.float32), tf.convert_to_tensor(rgb, tf.float32)

        z_coarse = sampling.stratified_samples(
            near, far, config.num_coarse, perturb=perturb, seed=coarse_seed
        )
        density_coarse, rgb_coarse = evaluate(z_coarse)
        coarse = composite(z_coarse, density_coarse, rgb_coarse, near, far, hit)

        if config.num_fine > 0:
            # The coarse samples sit one per stratum, so the strata are the pdf's bins.
            edges = sampling.bin_edges(near, far, config.num_coarse)
            z_fine = sampling.importance_samples(
                edges, coarse["weights"], config.num_fine, perturb=perturb, seed=fine_seed
            )
            density_fine, rgb_fine = evaluate(z_fine)
            z_all = tf.concat([z_coarse, z_fine], -1)
            order = tf.argsort(z_all, axis=-1, stable=True)
            z_values = tf.gather(z_all, order, batch_dims=1)
            density = tf.gather(tf.concat([density_coarse, density_fine], -1), order, batch_dims=1)
            rgb = tf.gather(tf.concat([rgb_coarse, rgb_fine], -2), order, batch_dims=1)
            result = composite(z_values, density, rgb, near, far, hit)
        else:
            z_values, result = z_coarse, coarse

        if background_fn is None:
            background = tf.broadcast_to(
                tf.constant(config.background_color, tf.float32), tf.shape(origins)
            )
        else:
            background = tf.convert_to_tensor(background_fn(directions, latents), tf.float32)
        alpha = result["alpha"]
        rgb_out = result["rgb_foreground"] + (1.0 - alpha)[:, None] * background
        return {
            "rgb": rgb_out,
            "rgb_foreground": result["rgb_foreground"],
            "alpha": alpha,
            "depth": result["depth"],
            "weights": result["weights"],
            "max_weight": tf.reduce_max(result["weights"], -1),
            "z_values": z_values,
            "hit": hit,
            "coarse_weights": coarse["weights"],
            "coarse_z_values": z_coarse,
        }

    def get_config(self):
        base = super().get_config()
        base["config"] = to_dict(self.config)
        return base

    @classmethod
    def from_config(cls, values):
        values = dict(values)
        render_config = from_dict(RenderConfig, values.pop("config"))
        return cls(render_config, **values)
