"""The posterior over a scene latent from 1..V context views, its sample, and its KL to the prior.

Every context view of a scene gives a diagonal Gaussian N(mean_v, exp(log_variance_v)) over the
scene latent (`tfglo.nerf_vae.encoder`). `combine` turns the valid views of each scene into one:
- "average" (NeRF-VAE's choice): the average of the views' parameters as the encoder gives them,
  mean and log-variance (so the variance is the geometric mean of the views' variances): one
  view or four identical ones give the same posterior;
- "product" (product of experts): the precision-weighted product of the views' Gaussians,
  precision = sum of precisions, mean = precision-weighted mean; every view adds certainty (V
  identical views divide the variance by V). With `include_prior` the prior N(0, I) is one more
  expert (the product is then defined even for a scene without views).
A `[B, V]` mask marks the valid views of each scene (scenes with fewer views than V). A scene
without any valid view gets the prior N(0, I) (never NaN).

Training samples the latent with the reparameterisation z = mean + exp(log_variance / 2) eps,
eps ~ N(0, I) (so gradients reach the encoder); inference takes the mean. The KL of a diagonal
Gaussian to N(0, I) is per dimension 0.5 (mean^2 + exp(lv) - 1 - lv) nats; free bits (Kingma et
al. 2016) keep a dimension's KL from being pushed below a floor.

All functions are pure and work in float32 on any leading batch shape.
"""

from typing import Literal, NamedTuple

import tensorflow as tf

COMBINE_METHODS = ("average", "product")
# Stands for log(0) in masked log-sum-exp: finite, so gradients stay finite (exp underflows to 0).
_LOG_ZERO = -1e30


class Gaussian(NamedTuple):
    """A diagonal Gaussian (a `tf.nest` structure).

    Attributes:
      mean: `[..., D]`.
      log_variance: `[..., D]` natural log of the variance.
    """

    mean: tf.Tensor
    log_variance: tf.Tensor

    @property
    def stddev(self) -> tf.Tensor:
        """`[..., D]` exp(log_variance / 2)."""
        return tf.exp(0.5 * self.log_variance)


def _check(mean, log_variance, mask):
    mean = tf.convert_to_tensor(mean, tf.float32)
    log_variance = tf.convert_to_tensor(log_variance, tf.float32)
    if mean.shape.rank is not None and mean.shape.rank < 2:
        raise ValueError(f"combine needs per-view parameters [..., V, D], got mean {mean.shape}")
    if not mean.shape.is_compatible_with(log_variance.shape):
        raise ValueError(
            f"mean {mean.shape} and log_variance {log_variance.shape} must have the same shape"
        )
    if mask is None:
        mask = tf.ones(tf.shape(mean)[:-1], tf.bool)
    else:
        mask = tf.convert_to_tensor(mask)
        if not mask.shape.is_compatible_with(mean.shape[:-1]):
            raise ValueError(f"mask must be [..., V] = {mean.shape[:-1]}, got {mask.shape}")
        mask = tf.cast(mask, tf.bool)
    return mean, log_variance, mask


def combine(
    mean,
    log_variance,
    mask=None,
    method: Literal["average", "product"] = "average",
    include_prior: bool = False,
) -> Gaussian:
    """One Gaussian per scene from the Gaussians of its context views.

    Args:
      mean: `[..., V, D]` per-view means.
      log_variance: `[..., V, D]` per-view log-variances.
      mask: `[..., V]` bool (or 0/1): which views are valid; None: all.
      method: "average" (average of the parameters, NeRF-VAE's) or "product" (product of
        experts, precision-weighted).
      include_prior: with "product", multiply in the prior N(0, I) as one more expert.

    Returns:
      A `Gaussian` with mean and log_variance `[..., D]`; N(0, I) for a scene without a valid view
      (and no prior expert).

    Raises:
      ValueError: unknown method, include_prior with "average", or mismatched shapes.
    """
    if method not in COMBINE_METHODS:
        raise ValueError(f"method must be one of {COMBINE_METHODS}, got {method!r}")
    if include_prior and method != "product":
        raise ValueError("include_prior is for method='product' (the prior is one more expert)")
    mean, log_variance, mask = _check(mean, log_variance, mask)
    valid = mask[..., None]  # [..., V, 1]
    # Invalid views are replaced, not multiplied by 0: padding may hold anything, even NaN.
    mean = tf.where(valid, mean, 0.0)
    log_variance = tf.where(valid, log_variance, 0.0)
    count = tf.reduce_sum(tf.cast(valid, tf.float32), -2)  # [..., 1]
    any_view = count > 0.0
    if method == "average":
        combined_mean = tf.math.divide_no_nan(tf.reduce_sum(mean, -2), count)
        combined_lv = tf.math.divide_no_nan(tf.reduce_sum(log_variance, -2), count)
        # No view: divide_no_nan gives 0 and 0, the prior's parameters.
        return Gaussian(combined_mean, combined_lv)
    # Product of experts in log space: log precision = logsumexp_v(-lv_v) over valid views (and
    # the prior's 0); the mean weights are the views' shares of the precision (a softmax).
    log_precisions = tf.where(valid, -log_variance, _LOG_ZERO)
    means = mean
    if include_prior:
        prior_shape = tf.concat([tf.shape(mean)[:-2], [1], tf.shape(mean)[-1:]], 0)
        log_precisions = tf.concat([log_precisions, tf.zeros(prior_shape)], -2)
        means = tf.concat([means, tf.zeros(prior_shape)], -2)
        any_view = tf.ones_like(any_view)
    log_precision = tf.reduce_logsumexp(log_precisions, -2)  # [..., D]
    shares = tf.nn.softmax(log_precisions, axis=-2)
    combined_mean = tf.reduce_sum(shares * means, -2)
    zeros = tf.zeros_like(combined_mean)
    return Gaussian(
        tf.where(any_view, combined_mean, zeros), tf.where(any_view, -log_precision, zeros)
    )


def reparameterize(posterior: Gaussian, noise) -> tf.Tensor:
    """mean + exp(log_variance / 2) * noise, `[..., D]`; gradients flow to both parameters."""
    return posterior.mean + posterior.stddev * tf.convert_to_tensor(noise, tf.float32)


def sample(posterior: Gaussian, seed) -> tf.Tensor:
    """A reparameterised sample `[..., D]`, noise from a stateless normal keyed by `seed` `[2]`."""
    noise = tf.random.stateless_normal(tf.shape(posterior.mean), seed=seed)
    return reparameterize(posterior, noise)


def latent(posterior: Gaussian, training: bool, seed=None) -> tf.Tensor:
    """The scene latent `[..., D]`: a reparameterised sample in training, the mean otherwise.

    Raises:
      ValueError: training without a seed.
    """
    if not training:
        return posterior.mean
    if seed is None:
        raise ValueError("a training latent is a sample: pass a seed [2]")
    return sample(posterior, seed)


def kl_to_standard_normal(posterior: Gaussian) -> tf.Tensor:
    """KL(N(mean, exp(lv)) || N(0, I)) per dimension, `[..., D]`, nats (>= 0).

    0.5 (mean^2 + exp(lv) - 1 - lv); summing over D gives the KL of the whole latent.
    """
    mean, log_variance = posterior.mean, posterior.log_variance
    return 0.5 * (tf.square(mean) + tf.exp(log_variance) - 1.0 - log_variance)


def free_bits(kl, floor: float) -> tf.Tensor:
    """The KL term with free bits: max(kl, floor) elementwise, `[..., D]` (nats).

    Where a dimension's KL is below `floor` the term is the constant floor and its gradient zero,
    so the optimiser stops squeezing information out of that dimension (Kingma et al. 2016, per
    dimension). It is applied per example, not to a batch average, so it does not depend on how
    a batch is split over replicas. floor = 0 returns kl.

    Raises:
      ValueError: floor < 0.
    """
    if floor < 0:
        raise ValueError(f"the free-bits floor must be >= 0 nats, got {floor}")
    kl = tf.convert_to_tensor(kl, tf.float32)
    if floor == 0:
        return kl
    return tf.maximum(kl, floor)
