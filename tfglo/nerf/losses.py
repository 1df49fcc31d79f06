"""LOLNeRF training losses: colour MSE, mask MSE on foreground opacity, hard-surface prior.

L = MSE(rgb) + mask_weight * MSE(alpha_fg, mask) + hard_surface_weight * L_hard (DESIGN.md 6).
"""

import math

import tensorflow as tf

from tfglo.nerf import config as config_lib

# -log(exp(-|w|) + exp(-|1 - w|)) is smallest, log(1 + 1/e) below zero, at w = 0 and w = 1;
# adding this constant makes the minimum exactly 0.
HARD_SURFACE_OFFSET = math.log(1.0 + math.exp(-1.0))
# "per_ray_shape" divides a ray's weights by its opacity; below this the ray is empty and its
# term (times its opacity) is negligible anyway.
SHAPE_MIN_ALPHA = 1e-4


def color_loss(rgb, target) -> tf.Tensor:
    """Mean squared error over rays and channels.

    Args:
      rgb: `[N, 3]` rendered colours in [0, 1].
      target: `[N, 3]` ground-truth colours in [0, 1].

    Returns:
      scalar float32.
    """
    rgb = tf.convert_to_tensor(rgb, tf.float32)
    target = tf.convert_to_tensor(target, tf.float32)
    return tf.reduce_mean(tf.math.squared_difference(rgb, target))


def mask_loss(alpha, mask) -> tf.Tensor:
    """Mean squared error between foreground opacity and the segmentation mask.

    Args:
      alpha: `[N]` foreground opacity in [0, 1].
      mask: `[N]` mask in [0, 1] (1 on the object).

    Returns:
      scalar float32.
    """
    alpha = tf.convert_to_tensor(alpha, tf.float32)
    mask = tf.convert_to_tensor(mask, tf.float32)
    return tf.reduce_mean(tf.math.squared_difference(alpha, mask))


def hard_surface_penalty(weights) -> tf.Tensor:
    """The hard-surface prior's per-sample penalty, elementwise.

    -log(exp(-|w|) + exp(-|1 - w|)) + log(1 + 1/e): 0 at w = 0 and w = 1, largest at w = 0.5
    (0.5 - log 2 + log(1 + 1/e) ~ 0.1201), a Laplacian mixture negative log-likelihood. Its
    slope is (1 - 1/e) / (1 + 1/e) ~ 0.462 at w = 0+ and changes sign at w = 0.5, so descent
    lowers small weights and raises weights above one half towards 1.

    Args:
      weights: `[...]` compositing weights in [0, 1].

    Returns:
      `[...]` float32 >= 0.
    """
    weights = tf.convert_to_tensor(weights, tf.float32)
    # logsumexp instead of log(exp + exp): same value, stable gradients.
    stacked = tf.stack([-tf.abs(weights), -tf.abs(1.0 - weights)], axis=0)
    return -tf.reduce_logsumexp(stacked, axis=0) + HARD_SURFACE_OFFSET


def hard_surface_loss(weights, reduction: str = "mean") -> tf.Tensor:
    """Hard-surface prior: pushes every sample weight towards 0 or 1 (`hard_surface_penalty`).

    Reductions (`config.HARD_SURFACE_REDUCTIONS`):
    - "mean": the mean over every sample of every ray. With S samples per ray a ray's share is
      1/S, so with S ~ 50 the term is a faint uniform push against opacity (measured: no effect
      at weights up to 0.1).
    - "per_ray_sum": the sum over a ray's samples, averaged over rays: a cloud that spreads an
      opacity a over many small weights costs ~0.462 a, the same opacity on one sample costs 0,
      whatever S is. Below w = 1/2 every weight is pushed down, so it also acts against opacity
      (measured: at 0.1 it made the demo's heads translucent).
    - "per_ray_shape": the per-ray sum of the penalty of w / alpha (alpha = sum of the ray's
      weights: the distribution of where the ray ends), times stop_gradient(alpha) so empty
      rays count little. Scaling a ray's weights leaves it unchanged: it sharpens the
      distribution without pushing opacity down (tfglo's option; not in the paper).

    Args:
      weights: `[N, S]` per-sample compositing weights of N rays (for "mean" any shape works).
      reduction: "mean", "per_ray_sum" or "per_ray_shape".

    Returns:
      scalar float32 >= 0.

    Raises:
      ValueError: an unknown reduction.
    """
    if reduction == "per_ray_shape":
        weights = tf.convert_to_tensor(weights, tf.float32)
        alpha = tf.reduce_sum(weights, axis=-1, keepdims=True)
        shape = weights / tf.maximum(alpha, SHAPE_MIN_ALPHA)
        per_ray = tf.reduce_sum(hard_surface_penalty(shape), axis=-1)
        return tf.reduce_mean(tf.stop_gradient(alpha[..., 0]) * per_ray)
    penalty = hard_surface_penalty(weights)
    if reduction == "mean":
        return tf.reduce_mean(penalty)
    if reduction == "per_ray_sum":
        return tf.reduce_mean(tf.reduce_sum(penalty, axis=-1))
    raise ValueError(
        f"hard-surface reduction must be one of {config_lib.HARD_SURFACE_REDUCTIONS}, got "
        f"{reduction!r}"
    )


def hard_surface_term(render: dict, config: config_lib.LossConfig) -> tf.Tensor:
    """The hard-surface loss of a render as `config` asks: its samples and its reduction.

    Args:
      render: renderer output with "weights" `[N, S]` (the composite) and, for
        `hard_surface_samples="coarse"`, "coarse_weights" `[N, num_coarse]`.
      config: `hard_surface_samples` and `hard_surface_reduction` are read.

    Returns:
      scalar float32 >= 0.
    """
    key = "coarse_weights" if config.hard_surface_samples == "coarse" else "weights"
    if key not in render:
        raise ValueError(
            f'hard_surface_samples={config.hard_surface_samples!r} needs "{key}" in the render'
        )
    return hard_surface_loss(render[key], config.hard_surface_reduction)


def psnr(mse) -> tf.Tensor:
    """Peak signal-to-noise ratio in dB of a mean squared error on [0, 1] images."""
    mse = tf.convert_to_tensor(mse, tf.float32)
    return -10.0 * tf.math.log(tf.maximum(mse, 1e-10)) / math.log(10.0)


def total_loss(
    render: dict, batch: dict, config: config_lib.LossConfig
) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """The weighted training loss and its named terms.

    Terms whose weight is 0 are still computed and reported (for monitoring) but not added.

    Args:
      render: renderer output with "rgb" `[N, 3]`, "alpha" `[N]`, "weights" `[N, S]` (and
        "coarse_weights" when `config.hard_surface_samples` is "coarse").
      batch: ray batch with "rgb" `[N, 3]` and, when `config.mask_weight` > 0, "mask" `[N]`.
      config: the loss weights.

    Returns:
      (loss, terms): scalar loss and a dict of scalars "rgb_mse", "mask", "hard_surface",
      "psnr" (of rgb_mse, dB), "total" (= loss).

    Raises:
      ValueError: mask_weight > 0 and the batch has no "mask".
    """
    if "mask" not in batch and config.mask_weight > 0:
        raise ValueError('mask_weight > 0 needs a "mask" [N] entry in the batch')
    rgb_mse = color_loss(render["rgb"], batch["rgb"])
    if "mask" in batch:
        mask = mask_loss(render["alpha"], batch["mask"])
    else:
        mask = tf.zeros([], tf.float32)
    hard = hard_surface_term(render, config)
    loss = rgb_mse
    if config.mask_weight:
        loss += config.mask_weight * mask
    if config.hard_surface_weight:
        loss += config.hard_surface_weight * hard
    terms = {
        "rgb_mse": rgb_mse,
        "mask": mask,
        "hard_surface": hard,
        "psnr": psnr(rgb_mse),
        "total": loss,
    }
    return loss, terms
