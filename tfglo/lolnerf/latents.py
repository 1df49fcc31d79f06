"""The latent table (one code per image or object) and what is done with trained codes.

- `LatentTable`: a `[num_latents, latent_dim]` variable read with `tf.gather`, so a batch's
  gradient is a `tf.IndexedSlices` on the rows it used.
- `LazyAdam`: Adam that, for such sparse gradients, updates only those rows (and their moments).
  Keras' own Adam densifies them: every row's moments decay and every row moves each step, so an
  image's code would keep drifting while that image is not in the batch.
- `fit_gaussian` / `sample_latents`: new identities from a Gaussian fitted to the trained table,
  with a truncation factor; `interpolate`: linear paths between codes.
"""

import keras
import numpy as np
import tensorflow as tf


class LatentTable(keras.layers.Layer):
    """A table of learned latent codes, `[num_latents, latent_dim]`.

    Args:
      num_latents: rows (>= 1).
      latent_dim: columns (>= 1).
      init_std: standard deviation of the normal initialisation; 0 initialises with zeros.

    Raises:
      ValueError: a size < 1 or init_std < 0.
    """

    def __init__(self, num_latents: int, latent_dim: int, init_std: float = 0.01, **kwargs):
        super().__init__(**kwargs)
        if num_latents < 1 or latent_dim < 1:
            raise ValueError(
                f"LatentTable needs num_latents, latent_dim >= 1, got {num_latents}, {latent_dim}"
            )
        if init_std < 0:
            raise ValueError(f"init_std must be >= 0, got {init_std}")
        self.num_latents = int(num_latents)
        self.latent_dim = int(latent_dim)
        self.init_std = float(init_std)

    def build(self, ids_shape=None):
        """Creates `embeddings` (here rather than in __init__, so under the caller's scope)."""
        del ids_shape  # Any integer shape works.
        if self.init_std > 0:
            initializer = keras.initializers.RandomNormal(stddev=self.init_std)
        else:
            initializer = keras.initializers.Zeros()
        self.embeddings = self.add_weight(
            name="embeddings", shape=(self.num_latents, self.latent_dim), initializer=initializer
        )
        self.built = True

    def call(self, ids):
        """Looks up codes.

        Args:
          ids: `[...]` integer row ids in [0, num_latents).

        Returns:
          `[..., latent_dim]` float32 codes.
        """
        # tf.gather on the variable itself (not a dense read of it) keeps the gradient sparse.
        return tf.gather(self.embeddings.value, ids)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_latents=self.num_latents, latent_dim=self.latent_dim, init_std=self.init_std
        )
        return config


class LazyAdam(keras.optimizers.Adam):
    """Adam whose sparse (`tf.IndexedSlices`) updates touch only the rows in the gradient.

    Dense gradients get ordinary Adam. For a sparse gradient the rows' gradients are summed per
    unique index first (a batch has many rays of one image), then those rows' moments and values
    are updated with the usual bias correction at the global step; other rows are left exactly as
    they are. Takes the arguments of `keras.optimizers.Adam` (amsgrad is not supported).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.amsgrad:
            raise ValueError("LazyAdam does not support amsgrad")

    def update_step(self, gradient, variable, learning_rate):
        if not isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        unique, positions = tf.unique(gradient.indices)
        values = tf.math.unsorted_segment_sum(
            tf.cast(gradient.values, dtype), positions, tf.shape(unique)[0]
        )
        lr = tf.cast(learning_rate, dtype)
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        alpha = lr * tf.sqrt(1.0 - tf.pow(beta_2, step)) / (1.0 - tf.pow(beta_1, step))
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        m_rows = beta_1 * tf.gather(m.value, unique) + (1.0 - beta_1) * values
        v_rows = beta_2 * tf.gather(v.value, unique) + (1.0 - beta_2) * tf.square(values)
        self.assign(m, tf.IndexedSlices(m_rows, unique))
        self.assign(v, tf.IndexedSlices(v_rows, unique))
        step_rows = alpha * m_rows / (tf.sqrt(v_rows) + self.epsilon)
        self.assign_sub(variable, tf.IndexedSlices(step_rows, unique))


def _table_array(table) -> tf.Tensor:
    if isinstance(table, LatentTable):
        if not table.built:
            table.build()
        table = table.embeddings
    table = tf.convert_to_tensor(table, tf.float32)
    if table.shape.rank != 2:
        raise ValueError(f"a latent table must be [M, D], got shape {table.shape}")
    return table


def fit_gaussian(table) -> tuple[tf.Tensor, tf.Tensor]:
    """Fits a Gaussian to the rows of a trained latent table.

    Args:
      table: `[M, D]` codes (array, tensor or a `LatentTable`).

    Returns:
      mean `[D]` and covariance `[D, D]` float32 (unbiased, M - 1 in the denominator; zeros
      when M = 1). Computed in float64.
    """
    table = tf.cast(_table_array(table), tf.float64)
    count = tf.shape(table)[0]
    mean = tf.reduce_mean(table, 0)
    centred = table - mean
    denominator = tf.cast(tf.maximum(count - 1, 1), tf.float64)
    covariance = tf.linalg.matmul(centred, centred, transpose_a=True) / denominator
    return tf.cast(mean, tf.float32), tf.cast(covariance, tf.float32)


def sample_latents(mean, covariance, count, seed, truncation=1.0, jitter: float = 1e-6):
    """Draws codes z = mean + truncation * L eps, L L^T = covariance + jitter, eps ~ N(0, I).

    Stateless and graph-friendly (every argument but `jitter` may be a tensor), so it can live
    inside a SavedModel signature; the same seed gives the same codes.

    Args:
      mean: `[D]`.
      covariance: `[D, D]` symmetric positive semi-definite (a table with fewer rows than D
        gives a singular one: the jitter, relative to the mean variance, makes it factorable).
      count: number of codes (scalar int).
      seed: `[2]` int seed of `tf.random.stateless_normal`.
      truncation: scales the deviation from the mean (0: the mean itself; 1: the fitted spread).
      jitter: added to the diagonal, times the mean variance (plus a tiny absolute floor).

    Returns:
      `[count, D]` float32 codes.
    """
    mean = tf.convert_to_tensor(mean, tf.float32)
    covariance = tf.cast(tf.convert_to_tensor(covariance, tf.float32), tf.float64)
    dim = tf.shape(mean)[0]
    scale = tf.reduce_mean(tf.linalg.diag_part(covariance))
    identity = tf.eye(dim, dtype=tf.float64)
    # float64 Cholesky: the jitter then only needs to cover round-off of a singular covariance.
    chol = tf.linalg.cholesky(covariance + (jitter * scale + 1e-12) * identity)
    noise = tf.random.stateless_normal(
        tf.stack([tf.cast(count, tf.int32), dim]), seed=seed, dtype=tf.float64
    )
    deviation = tf.cast(tf.linalg.matmul(noise, chol, transpose_b=True), tf.float32)
    return mean + tf.cast(truncation, tf.float32) * deviation


def interpolate(a, b, steps) -> tf.Tensor:
    """Linear interpolation between two codes, endpoints included.

    Args:
      a: `[D]` start code.
      b: `[D]` end code.
      steps: number of codes (>= 1; 1 gives just `a`).

    Returns:
      `[steps, D]` float32: a + t (b - a) for t = 0, 1/(steps-1), ..., 1.

    Raises:
      ValueError: a Python `steps` < 1.
    """
    if isinstance(steps, (int, np.integer)) and steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    a = tf.convert_to_tensor(a, tf.float32)
    b = tf.convert_to_tensor(b, tf.float32)
    t = tf.linspace(0.0, 1.0, steps)
    return a[None, :] + t[:, None] * (b - a)[None, :]
