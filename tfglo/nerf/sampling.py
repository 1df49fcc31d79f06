"""Sample positions along rays: stratified samples and importance (inverse-CDF) samples.

Distances `z` are along unit ray directions, in object units, inside each ray's `[near, far]`
(from `camera.intersect_sphere`). Samples lie on the last axis: `near`, `far` `[...]` give
`z` `[..., S]`. Everything is graph- and XLA-friendly (static S, any batch shape).

Jitter is reproducible for a seed within one execution mode: XLA (`jit_compile=True`) draws
different, equally valid numbers than eager/graph TensorFlow for the same seed.

Why not tensorflow-graphics' `math.sampling` ops (checked in tests/test_sampling.py):
- `stratified_1d` draws its jitter with the stateful, unseeded `tf.random.uniform`, so a run
  cannot be reproduced from a seed; ours uses `tf.random.stateless_uniform(seed=...)` and gives
  the deterministic stratum midpoints when not perturbed (evaluation, rendering).
- `inverse_transform_stratified_1d` (and `inverse_transform_sampling_1d`) drop the last pdf bin
  (`pdf[..., :-1]`), so a surface in the last coarse stratum never receives fine samples; they are
  also unseeded. Ours keeps every bin, draws one stratified uniform per sample (sorted outputs,
  lower variance than i.i.d. uniforms) and stops gradients through the positions.
"""

import tensorflow as tf

# Added to every coarse weight before normalising, so a ray with all-zero weights (empty space,
# or a ray that misses the sphere) still gets a valid, uniform pdf instead of 0 / 0.
PDF_PADDING = 1e-5


def _uniform_offsets(shape, perturb: bool, seed) -> tf.Tensor:
    """Offsets in [0, 1) within each stratum: 0.5 (midpoints) or seeded stateless jitter."""
    if not perturb:
        return tf.fill(shape, tf.constant(0.5, tf.float32))
    if seed is None:
        raise ValueError("perturbed sampling needs a seed (a shape [2] integer tensor)")
    return tf.random.stateless_uniform(shape, seed=seed, dtype=tf.float32)


def bin_edges(near, far, num_bins: int) -> tf.Tensor:
    """Returns the edges of `num_bins` equal strata of `[near, far]`, `[..., num_bins + 1]`.

    Args:
      near: `[...]` start of each interval, object units.
      far: `[...]` end of each interval (>= near).
      num_bins: number of strata (static).
    """
    near = tf.convert_to_tensor(near, tf.float32)
    far = tf.convert_to_tensor(far, tf.float32)
    fractions = tf.linspace(0.0, 1.0, num_bins + 1)
    # Written as near + (far - near) * f so the first edge is exactly near and the last exactly far.
    return near[..., None] + (far - near)[..., None] * fractions


def stratified_samples(near, far, num_samples: int, perturb: bool = False, seed=None) -> tf.Tensor:
    """One sample per equal stratum of `[near, far]`.

    Args:
      near: `[...]` start of each interval, object units.
      far: `[...]` end of each interval (>= near).
      num_samples: S, samples per interval (static).
      perturb: jitter each sample uniformly inside its stratum (training); otherwise take the
        stratum midpoints (deterministic).
      seed: shape `[2]` integer seed of the stateless jitter; required when `perturb`.

    Returns:
      `[..., S]` sorted distances, each in `[near, far]`.

    Raises:
      ValueError: `perturb` without a seed, or `num_samples` < 1.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    near = tf.convert_to_tensor(near, tf.float32)
    far = tf.convert_to_tensor(far, tf.float32)
    shape = tf.concat([tf.shape(near), [num_samples]], 0)
    offsets = _uniform_offsets(shape, perturb, seed)
    fractions = (tf.range(num_samples, dtype=tf.float32) + offsets) / num_samples
    z = near[..., None] + (far - near)[..., None] * fractions
    # Rounding could push a sample a hair outside the interval; keep the contract exact.
    return tf.clip_by_value(z, near[..., None], far[..., None])


def importance_samples(
    edges, weights, num_samples: int, perturb: bool = False, seed=None
) -> tf.Tensor:
    """Samples distances from the piecewise-constant pdf given by per-bin weights.

    Bin i spans `[edges[i], edges[i + 1]]` and has probability proportional to
    `weights[i] + PDF_PADDING`; samples come from the inverse CDF at one stratified uniform per
    sample (midpoints `(k + 0.5) / F` when not perturbed), so the output is sorted. No gradient
    flows through the returned positions (nor into `edges` or `weights`).

    Args:
      edges: `[..., B + 1]` sorted bin edges, object units (e.g. `bin_edges(near, far, B)`).
      weights: `[..., B]` non-negative bin weights (e.g. a coarse pass's compositing weights).
      num_samples: F, samples per ray (static).
      perturb: jitter the uniforms inside their strata (training).
      seed: shape `[2]` integer seed of the stateless jitter; required when `perturb`.

    Returns:
      `[..., F]` sorted distances in `[edges[0], edges[-1]]`.

    Raises:
      ValueError: inconsistent static shapes, `num_samples` < 1, or `perturb` without a seed.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    edges = tf.stop_gradient(tf.convert_to_tensor(edges, tf.float32))
    weights = tf.stop_gradient(tf.convert_to_tensor(weights, tf.float32))
    num_bins = weights.shape[-1]
    if num_bins is None or edges.shape[-1] != num_bins + 1:
        raise ValueError(
            f"edges must have one more entry than weights on the last axis, got {edges.shape} "
            f"and {weights.shape}"
        )
    pdf = tf.maximum(weights, 0.0) + PDF_PADDING
    pdf = pdf / tf.reduce_sum(pdf, -1, keepdims=True)
    cdf = tf.minimum(tf.cumsum(pdf, -1), 1.0)
    batch_shape = tf.shape(pdf)[:-1]
    # cdf [..., B + 1] = (0, c_1, ..., c_{B-1}, 1): the end is exactly 1 whatever the rounding.
    cdf = tf.concat(
        [
            tf.zeros(tf.concat([batch_shape, [1]], 0)),
            cdf[..., :-1],
            tf.ones(tf.concat([batch_shape, [1]], 0)),
        ],
        -1,
    )
    shape = tf.concat([batch_shape, [num_samples]], 0)
    u = (tf.range(num_samples, dtype=tf.float32) + _uniform_offsets(shape, perturb, seed)) / (
        num_samples
    )
    # Bin index = number of interior CDF values <= u, in [0, B - 1]. A broadcast comparison
    # rather than tf.searchsorted: it compiles under XLA and B is small (tens of bins).
    index = tf.reduce_sum(tf.cast(cdf[..., None, 1:-1] <= u[..., None], tf.int32), -1)
    batch_dims = index.shape.rank - 1
    cdf_lo = tf.gather(cdf, index, batch_dims=batch_dims)
    cdf_hi = tf.gather(cdf, index + 1, batch_dims=batch_dims)
    edge_lo = tf.gather(edges, index, batch_dims=batch_dims)
    edge_hi = tf.gather(edges, index + 1, batch_dims=batch_dims)
    denominator = cdf_hi - cdf_lo
    # Padding makes every bin's mass > 0; the guard keeps 0 / 0 out should rounding say otherwise.
    safe = tf.where(denominator > 0.0, denominator, tf.ones_like(denominator))
    t = tf.clip_by_value(tf.where(denominator > 0.0, (u - cdf_lo) / safe, 0.5), 0.0, 1.0)
    return tf.stop_gradient(edge_lo + t * (edge_hi - edge_lo))
