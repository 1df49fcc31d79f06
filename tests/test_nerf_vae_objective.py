"""The NeRF-VAE objective (tfglo/nerf_vae/objective.py) on known values: the Gaussian pixel
log-likelihood, its rescaling from the drawn rays to whole images, the KL and its warm-up, free
bits, the mask term's balance against the colour term, and the reported terms."""

import math

import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from tfglo.nerf_vae import config as config_lib
from tfglo.nerf_vae import objective

HALF_LOG_TWO_PI = 0.5 * math.log(2 * math.pi)


def _render_and_batch(error=0.1, scenes=2, rays=8, mean=0.0, log_variance=0.0, dim=4, pixels=64):
    """Targets 0.5, renders 0.5 + error everywhere, one posterior for every scene."""
    targets = np.full([scenes, rays, 3], 0.5, np.float32)
    render = {
        "rgb": tf.constant((targets + error).reshape(-1, 3)),
        "alpha": tf.fill([scenes * rays], 0.25),
        "weights": tf.zeros([scenes * rays, 4]),
        "posterior_mean": tf.fill([scenes, dim], float(mean)),
        "posterior_log_variance": tf.fill([scenes, dim], float(log_variance)),
    }
    batch = {
        "rgb": tf.constant(targets),
        "mask": tf.fill([scenes, rays], 0.75),
        "target_pixels": tf.fill([scenes], float(pixels)),
    }
    return render, batch


def test_gaussian_log_likelihood_is_the_normal_density():
    got = objective.gaussian_log_likelihood([0.5, 0.2], [0.3, 0.2], 0.1).numpy()
    want = [-0.5 * 4.0 - math.log(0.1) - HALF_LOG_TWO_PI, -math.log(0.1) - HALF_LOG_TWO_PI]
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_rescaling_gives_the_whole_image_sum_at_any_ray_count():
    # Per-value log-likelihood -1 everywhere: a scene of P pixels has -3 P in total, whatever
    # number of rays stands for it.
    for rays in (1, 8, 100):
        ll = -np.ones([2, rays, 3], np.float32)
        got = objective.whole_image_log_likelihood(ll, [64.0, 10.0]).numpy()
        np.testing.assert_allclose(got, [-192.0, -30.0], rtol=1e-6)


def test_rescaled_sum_is_unbiased_for_random_rays():
    # An "image" of P pixel values; R rays drawn uniformly with replacement: the mean of the
    # rescaled sums over many draws is the whole-image sum.
    rng = np.random.default_rng(0)
    image = rng.normal(size=[500, 3]).astype(np.float32)
    draws = rng.integers(0, 500, size=[4000, 16])
    estimates = objective.whole_image_log_likelihood(image[draws], np.full([4000], 500.0))
    assert abs(float(np.mean(estimates)) - image.sum()) < 0.02 * np.abs(image).sum()


@parameterized.parameters(
    (0, 100, 2.0, 0.0),
    (50, 100, 2.0, 1.0),
    (100, 100, 2.0, 2.0),
    (400, 100, 2.0, 2.0),
    (0, 0, 0.5, 0.5),
    (7, 0, 0.5, 0.5),
)
def test_kl_warmup(step, warmup, weight, expected):
    config = config_lib.ObjectiveConfig(kl_weight=weight, kl_warmup_steps=warmup)
    assert float(objective.kl_weight(tf.constant(step), config)) == pytest.approx(expected)


def test_objective_terms_have_their_known_values():
    scale, error, pixels, dim = 0.1, 0.1, 64, 4
    config = config_lib.ObjectiveConfig(
        likelihood_scale=scale, mask_weight=0.0, hard_surface_weight=0.0
    )
    # Posterior N(1, I): KL = 0.5 per dimension.
    render, batch = _render_and_batch(error, mean=1.0, dim=dim, pixels=pixels)
    loss, terms = objective.scene_objective(render, batch, config, step=10)
    per_value = 0.5 * (error / scale) ** 2 + math.log(scale) + HALF_LOG_TWO_PI  # -log N
    reconstruction = 3 * pixels * per_value
    kl = 0.5 * dim
    assert float(terms["reconstruction"]) == pytest.approx(reconstruction, rel=1e-5)
    assert float(terms["kl"]) == pytest.approx(kl, rel=1e-6)
    assert float(terms["elbo"]) == pytest.approx(-reconstruction - kl, rel=1e-5)
    assert float(loss) == pytest.approx((reconstruction + kl) / (3 * pixels), rel=1e-5)
    assert float(terms["total"]) == float(loss)
    assert float(terms["rgb_mse"]) == pytest.approx(error**2, rel=1e-4)
    assert float(terms["psnr"]) == pytest.approx(20.0, rel=1e-4)
    assert float(terms["kl_active_dims"]) == dim
    assert float(terms["posterior_std"]) == pytest.approx(1.0)


def test_kl_weight_scales_only_the_kl():
    render, batch = _render_and_batch(mean=1.0)
    base = dict(mask_weight=0.0, hard_surface_weight=0.0)
    full, _ = objective.scene_objective(render, batch, config_lib.ObjectiveConfig(**base))
    none, terms = objective.scene_objective(
        render, batch, config_lib.ObjectiveConfig(kl_warmup_steps=10, **base), step=0
    )
    assert float(terms["kl_weight"]) == 0.0
    assert float(full) - float(none) == pytest.approx(0.5 * 4 / (3 * 64), rel=1e-4)
    # The reported ELBO is the true one, whatever the weight.
    assert float(terms["kl"]) == pytest.approx(2.0)


def test_free_bits_floor_the_penalty_and_stop_its_gradient():
    config = config_lib.ObjectiveConfig(free_bits=0.5, mask_weight=0.0, hard_surface_weight=0.0)
    render, batch = _render_and_batch(error=0.0, mean=0.1)  # KL 0.005 per dimension
    mean = tf.Variable(render["posterior_mean"])
    with tf.GradientTape() as tape:
        loss, terms = objective.scene_objective(dict(render, posterior_mean=mean), batch, config)
    reconstruction = 3 * 64 * (math.log(0.1) + HALF_LOG_TWO_PI)
    assert float(loss) == pytest.approx((reconstruction + 4 * 0.5) / (3 * 64), rel=1e-5)
    np.testing.assert_array_equal(tape.gradient(loss, mean).numpy(), 0.0)
    assert float(terms["kl"]) == pytest.approx(4 * 0.005, rel=1e-4)
    assert float(terms["kl_active_dims"]) == 0.0  # 0.005 nats < the 0.01 threshold
    # Without free bits the KL pulls the mean towards 0: d/dmean (0.5 mean^2) / (3 P) per scene,
    # averaged over the 2 scenes.
    no_floor = config_lib.ObjectiveConfig(mask_weight=0.0, hard_surface_weight=0.0)
    with tf.GradientTape() as tape:
        loss, _ = objective.scene_objective(dict(render, posterior_mean=mean), batch, no_floor)
    np.testing.assert_allclose(tape.gradient(loss, mean).numpy(), 0.1 / (3 * 64) / 2, rtol=1e-4)


def test_mask_term_keeps_lolnerfs_ratio_to_the_colour_mse():
    scale = 0.2
    render, batch = _render_and_batch(error=0.0)
    without = config_lib.ObjectiveConfig(
        likelihood_scale=scale, mask_weight=0.0, hard_surface_weight=0.0
    )
    with_mask = config_lib.ObjectiveConfig(
        likelihood_scale=scale, mask_weight=0.4, hard_surface_weight=0.0
    )
    a, _ = objective.scene_objective(render, batch, without)
    b, terms = objective.scene_objective(render, batch, with_mask)
    mask_mse = (0.75 - 0.25) ** 2
    assert float(terms["mask"]) == pytest.approx(mask_mse)
    # The colour term is MSE / (2 scale^2) per value: the mask's weight is relative to it.
    assert float(b) - float(a) == pytest.approx(0.4 * mask_mse / (2 * scale**2), rel=1e-5)


def test_mask_weight_needs_masks():
    render, batch = _render_and_batch()
    del batch["mask"]
    with pytest.raises(ValueError, match="mask"):
        objective.scene_objective(render, batch, config_lib.ObjectiveConfig(mask_weight=0.1))


class ObjectiveConfigTest(parameterized.TestCase):
    @parameterized.named_parameters(
        ("scale", {"likelihood_scale": 0.0}, "likelihood_scale"),
        ("kl", {"kl_weight": -1.0}, "kl_weight"),
        ("warmup", {"kl_warmup_steps": -1}, "kl_warmup_steps"),
        ("free_bits", {"free_bits": -0.1}, "free_bits"),
        ("mask", {"mask_weight": -0.1}, "mask_weight"),
    )
    def test_rejects(self, kwargs, message):
        with self.assertRaisesRegex(ValueError, message):
            config_lib.ObjectiveConfig(**kwargs)
