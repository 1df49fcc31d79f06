"""The NeRF-VAE objective: the negative ELBO of scene batches, KL warm-up and free bits.

Per scene s with latent posterior q = N(mu_s, diag(sigma_s^2)) from its context views:

    ELBO_s = log p(target pixels of s | z) - KL(q || N(0, I)),   z ~ q (one reparameterised draw)

log p is a Gaussian of fixed standard deviation `likelihood_scale` (sRGB units) per colour
channel around the rendered colour. A batch holds R rays per scene drawn uniformly (with
replacement) from the P pixels of its T target views (`target_pixels` = T x H x W), so

    log p(target pixels | z) ~= (P / R) sum_r sum_c log N(x_rc | render_rc, scale^2)

is an unbiased estimate of the log-likelihood of the scene's WHOLE target images: the weight of
the KL against the pixels is the same at any ray batch (DESIGN.md section 6). The training loss
is the negative ELBO with the KL weighted by the warm-up schedule and floored by free bits, per
colour value (divided by 3 P, a scale for the optimiser that changes no balance):

    loss = mean_s (-log p_s + w(step) sum_d max(KL_sd, free_bits)) / (3 P)
           + (mask_weight MSE(alpha, mask) + hard_surface_weight L_hard) / (2 scale^2)

The mask and hard-surface terms (`tfglo.nerf.losses`) are weighted against the colour term
exactly as in LOLNeRF: the per-value negative log-likelihood is MSE(rgb) / (2 scale^2) plus a
constant, so dividing LOLNeRF's extra terms by 2 scale^2 keeps their ratio to the colour MSE.
The reported terms are per scene in nats (elbo, reconstruction, kl), plus the colour MSE (PSNR),
the number of active latent dimensions and the posterior standard deviation.
"""

import math

import tensorflow as tf

from tfglo.nerf import losses
from tfglo.nerf_vae import config as config_lib
from tfglo.nerf_vae import posterior as posterior_lib

_HALF_LOG_TWO_PI = 0.5 * math.log(2.0 * math.pi)


def gaussian_log_likelihood(x, mean, scale) -> tf.Tensor:
    """log N(x | mean, scale^2) elementwise, nats.

    Args:
      x: targets (any shape).
      mean: predictions (broadcastable to x).
      scale: the standard deviation, > 0 (Python float or tensor).
    """
    x = tf.convert_to_tensor(x, tf.float32)
    mean = tf.convert_to_tensor(mean, tf.float32)
    scale = tf.convert_to_tensor(scale, tf.float32)
    return -0.5 * tf.square((x - mean) / scale) - tf.math.log(scale) - _HALF_LOG_TWO_PI


def whole_image_log_likelihood(log_likelihood, target_pixels) -> tf.Tensor:
    """Per-scene log-likelihood of its whole target images from R drawn rays.

    Args:
      log_likelihood: `[B, R, C]` per ray and channel (nats).
      target_pixels: `[B]` pixels P of each scene's target views.

    Returns:
      `[B]`: (P / R) x the sum over rays and channels.
    """
    log_likelihood = tf.convert_to_tensor(log_likelihood, tf.float32)
    rays = tf.cast(tf.shape(log_likelihood)[1], tf.float32)
    scale = tf.cast(target_pixels, tf.float32) / rays
    return scale * tf.reduce_sum(log_likelihood, axis=[1, 2])


def kl_weight(step, config: config_lib.ObjectiveConfig) -> tf.Tensor:
    """The KL weight at `step`: rises linearly from 0 to `kl_weight` over `kl_warmup_steps`."""
    if config.kl_warmup_steps == 0:
        return tf.constant(config.kl_weight, tf.float32)
    ramp = tf.cast(step, tf.float32) / float(config.kl_warmup_steps)
    return config.kl_weight * tf.clip_by_value(ramp, 0.0, 1.0)


def scene_objective(
    render: dict,
    batch: dict,
    config: config_lib.ObjectiveConfig,
    step=0,
) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """The training loss of one (replica's) scene batch and its named terms.

    Args:
      render: `NeRFVAE.call` output: rgb `[B * R, 3]`, alpha `[B * R]`, weights `[B * R, S]`,
        posterior_mean and posterior_log_variance `[B, D]`.
      batch: the scene batch: rgb `[B, R, 3]` targets, target_pixels `[B]`, mask `[B, R]`
        (needed when mask_weight > 0).
      config: the objective's settings.
      step: the training step (int scalar; the KL warm-up).

    Returns:
      (loss, terms): the scalar loss (module docstring; a mean over scenes, so a mean over the
      replica's rays as the trainer expects) and scalars "total" (= loss), "elbo",
      "reconstruction" (-log p), "kl" (nats per scene, the unweighted ELBO's terms),
      "kl_weight", "kl_active_dims" (dimensions per scene whose KL > active_threshold),
      "posterior_std" (mean over scenes and dimensions), "rgb_mse", "psnr", "mask",
      "hard_surface".

    Raises:
      ValueError: mask_weight > 0 and the batch has no "mask".
    """
    if "mask" not in batch and config.mask_weight > 0:
        raise ValueError('mask_weight > 0 needs a "mask" [B, R] entry in the batch')
    targets = tf.convert_to_tensor(batch["rgb"], tf.float32)  # [B, R, 3]
    rgb = tf.reshape(render["rgb"], tf.shape(targets))
    posterior = posterior_lib.Gaussian(render["posterior_mean"], render["posterior_log_variance"])
    log_likelihood = whole_image_log_likelihood(
        gaussian_log_likelihood(targets, rgb, config.likelihood_scale), batch["target_pixels"]
    )  # [B]
    kl_dims = posterior_lib.kl_to_standard_normal(posterior)  # [B, D]
    kl = tf.reduce_sum(kl_dims, -1)
    penalty = tf.reduce_sum(posterior_lib.free_bits(kl_dims, config.free_bits), -1)
    weight = kl_weight(step, config)
    values = 3.0 * tf.cast(batch["target_pixels"], tf.float32)
    loss = tf.reduce_mean((-log_likelihood + weight * penalty) / values)

    rgb_mse = losses.color_loss(rgb, targets)
    if "mask" in batch:
        mask = losses.mask_loss(render["alpha"], tf.reshape(batch["mask"], [-1]))
    else:
        mask = tf.zeros([], tf.float32)
    hard = losses.hard_surface_loss(render["weights"])
    extra = tf.zeros([], tf.float32)
    if config.mask_weight:
        extra += config.mask_weight * mask
    if config.hard_surface_weight:
        extra += config.hard_surface_weight * hard
    loss += extra / (2.0 * config.likelihood_scale**2)
    active = tf.cast(kl_dims > config.active_threshold, tf.float32)
    terms = {
        "total": loss,
        "elbo": tf.reduce_mean(log_likelihood - kl),
        "reconstruction": -tf.reduce_mean(log_likelihood),
        "kl": tf.reduce_mean(kl),
        "kl_weight": weight,
        "kl_active_dims": tf.reduce_mean(tf.reduce_sum(active, -1)),
        "posterior_std": tf.reduce_mean(posterior.stddev),
        "rgb_mse": rgb_mse,
        "psnr": losses.psnr(rgb_mse),
        "mask": mask,
        "hard_surface": hard,
    }
    return loss, terms
