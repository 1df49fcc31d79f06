"""Tests of the NeRF-VAE posterior (tfglo/nerf_vae/posterior.py) against known values."""

import math

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from tfglo.nerf_vae import posterior


def _views(means, variances):
    """Per-view parameters [1, V, D] from lists of per-view values (D = len of each)."""
    mean = np.asarray(means, np.float32)[None]
    log_variance = np.log(np.asarray(variances, np.float32))[None]
    return mean, log_variance


class CombineTest(parameterized.TestCase):
    def test_average_of_two_gaussians(self):
        mean, log_variance = _views([[1.0, -2.0], [3.0, 0.0]], [[1.0, 4.0], [4.0, 1.0]])
        q = posterior.combine(mean, log_variance)
        np.testing.assert_allclose(q.mean, [[2.0, -1.0]], atol=1e-6)
        # The log-variances are averaged: variance = geometric mean of the views' variances.
        np.testing.assert_allclose(np.exp(q.log_variance), [[2.0, 2.0]], rtol=1e-6)

    def test_average_of_identical_views_is_that_view(self):
        mean, log_variance = _views([[0.5, 1.5]] * 4, [[0.3, 2.0]] * 4)
        q = posterior.combine(mean, log_variance)
        np.testing.assert_allclose(q.mean, mean[:, 0], atol=1e-6)
        np.testing.assert_allclose(q.log_variance, log_variance[:, 0], atol=1e-6)

    @parameterized.parameters(1, 2, 4)
    def test_product_of_identical_experts_divides_the_variance(self, views):
        mean, log_variance = _views([[0.5, -1.0]] * views, [[0.8, 3.0]] * views)
        q = posterior.combine(mean, log_variance, method="product")
        np.testing.assert_allclose(q.mean, [[0.5, -1.0]], atol=1e-6)
        np.testing.assert_allclose(np.exp(q.log_variance), [[0.8 / views, 3.0 / views]], rtol=1e-5)

    def test_product_weights_means_by_precision(self):
        # N(0, 1) x N(3, 1/2): precision 1 + 2 = 3, mean (0 * 1 + 3 * 2) / 3 = 2.
        mean, log_variance = _views([[0.0], [3.0]], [[1.0], [0.5]])
        q = posterior.combine(mean, log_variance, method="product")
        np.testing.assert_allclose(q.mean, [[2.0]], atol=1e-6)
        np.testing.assert_allclose(np.exp(q.log_variance), [[1.0 / 3.0]], rtol=1e-6)

    def test_product_with_the_prior_as_an_expert(self):
        # N(m, 1) x N(0, 1) = N(m / 2, 1 / 2).
        mean, log_variance = _views([[4.0, -2.0]], [[1.0, 1.0]])
        q = posterior.combine(mean, log_variance, method="product", include_prior=True)
        np.testing.assert_allclose(q.mean, [[2.0, -1.0]], atol=1e-6)
        np.testing.assert_allclose(np.exp(q.log_variance), [[0.5, 0.5]], rtol=1e-6)

    @parameterized.parameters("average", "product")
    def test_mask_drops_views_even_if_they_hold_nan(self, method):
        # Scene 0: views 0 and 1 valid; scene 1: view 0 only. Padding holds NaN and huge numbers.
        mean = np.array(
            [[[1.0], [3.0], [np.nan]], [[-2.0], [1e30], [np.nan]]], np.float32
        )  # [2, 3, 1]
        log_variance = np.array(
            [[[0.0], [0.0], [np.nan]], [[np.log(0.5)], [50.0], [np.nan]]], np.float32
        )
        mask = np.array([[1, 1, 0], [1, 0, 0]], np.float32)
        mean_t, lv_t = tf.constant(mean), tf.constant(log_variance)
        with tf.GradientTape() as tape:
            tape.watch([mean_t, lv_t])
            q = posterior.combine(mean_t, lv_t, mask, method=method)
            total = tf.reduce_sum(q.mean) + tf.reduce_sum(q.log_variance)
        expected_var0 = 1.0 if method == "average" else 0.5
        np.testing.assert_allclose(q.mean[:, 0], [2.0, -2.0], atol=1e-6)
        np.testing.assert_allclose(np.exp(q.log_variance[:, 0]), [expected_var0, 0.5], rtol=1e-6)
        for gradient in tape.gradient(total, [mean_t, lv_t]):
            gradient = gradient.numpy()
            assert np.isfinite(gradient).all()
            assert (gradient[mask == 0] == 0).all()  # padding gets no gradient

    @parameterized.parameters(
        ("average", False),
        ("product", False),
        ("product", True),
    )
    def test_a_scene_without_views_gets_the_prior(self, method, include_prior):
        mean = tf.constant([[[1.0, 2.0]], [[3.0, 4.0]]])  # [2, 1, 2]
        log_variance = tf.constant([[[-1.0, 0.5]], [[0.2, 0.3]]])
        mask = tf.constant([[True], [False]])
        with tf.GradientTape() as tape:
            tape.watch([mean, log_variance])
            q = posterior.combine(mean, log_variance, mask, method, include_prior)
            total = tf.reduce_sum(q.mean + q.log_variance)
        np.testing.assert_array_equal(q.mean[1], [0.0, 0.0])
        np.testing.assert_array_equal(q.log_variance[1], [0.0, 0.0])
        assert not np.allclose(q.mean[0], 0.0)  # the scene with a view is not the prior
        for gradient in tape.gradient(total, [mean, log_variance]):
            assert np.isfinite(gradient.numpy()).all()

    def test_leading_batch_dims_and_graph_mode(self):
        rng = np.random.default_rng(0)
        mean = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
        log_variance = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
        eager = posterior.combine(mean, log_variance, method="product")
        graph = tf.function(lambda m, v: posterior.combine(m, v, method="product"))(
            mean, log_variance
        )
        assert eager.mean.shape == (2, 3, 5)
        np.testing.assert_allclose(graph.mean, eager.mean, atol=1e-6)
        # Against the textbook formula on one scene.
        precision = np.exp(-log_variance[1, 2]).sum(0)
        np.testing.assert_allclose(
            eager.mean[1, 2], (mean[1, 2] * np.exp(-log_variance[1, 2])).sum(0) / precision, 1e-5
        )
        np.testing.assert_allclose(eager.log_variance[1, 2], -np.log(precision), rtol=1e-5)

    @parameterized.named_parameters(
        ("unknown_method", dict(method="max"), "method must be one of"),
        ("prior_with_average", dict(include_prior=True), "include_prior is for"),
        ("mismatched", dict(log_variance=np.zeros((2, 3, 5))), "same shape"),
        ("mask_shape", dict(mask=np.ones((2, 4), bool)), "mask must be"),
        ("no_view_axis", dict(mean=np.zeros(4), log_variance=np.zeros(4)), r"\[..., V, D\]"),
    )
    def test_rejects(self, overrides, message):
        kwargs = dict(mean=np.zeros((2, 3, 4)), log_variance=np.zeros((2, 3, 4)))
        kwargs.update(overrides)
        with self.assertRaisesRegex(ValueError, message):
            posterior.combine(**kwargs)


class SampleTest(parameterized.TestCase):
    def test_gradient_flows_through_the_sample(self):
        q_mean = tf.constant([[0.5, -1.0, 2.0]])
        q_lv = tf.constant([[0.0, np.log(4.0), -2.0]], tf.float32)
        noise = tf.constant([[1.0, -0.5, 2.0]])
        with tf.GradientTape(persistent=True) as tape:
            tape.watch([q_mean, q_lv])
            z = posterior.reparameterize(posterior.Gaussian(q_mean, q_lv), noise)
        np.testing.assert_allclose(z, [[1.5, -2.0, 2.0 + 2.0 * np.exp(-1.0)]], rtol=1e-6)
        np.testing.assert_allclose(tape.gradient(z, q_mean), np.ones((1, 3)))
        # dz / dlv = 0.5 * std * noise.
        std = np.exp(0.5 * q_lv.numpy())
        np.testing.assert_allclose(tape.gradient(z, q_lv), 0.5 * std * noise.numpy(), rtol=1e-6)

    def test_samples_have_the_posterior_moments(self):
        q = posterior.Gaussian(tf.fill([20000, 2], 1.5), tf.fill([20000, 2], math.log(0.25)))
        z = posterior.sample(q, seed=[3, 4]).numpy()
        np.testing.assert_allclose(z.mean(0), [1.5, 1.5], atol=0.02)
        np.testing.assert_allclose(z.std(0), [0.5, 0.5], atol=0.02)

    def test_sample_is_deterministic_per_seed(self):
        q = posterior.Gaussian(tf.zeros([4, 3]), tf.zeros([4, 3]))
        a = posterior.sample(q, [1, 2])
        np.testing.assert_array_equal(a, posterior.sample(q, [1, 2]))
        assert not np.allclose(a, posterior.sample(q, [1, 3]))

    def test_latent_is_the_mean_at_inference_and_a_sample_in_training(self):
        q = posterior.Gaussian(tf.constant([[1.0, 2.0]]), tf.constant([[0.0, 0.0]]))
        np.testing.assert_array_equal(posterior.latent(q, training=False), [[1.0, 2.0]])
        z = posterior.latent(q, training=True, seed=[5, 6])
        np.testing.assert_array_equal(z, posterior.sample(q, [5, 6]))
        assert not np.allclose(z, q.mean)
        with self.assertRaisesRegex(ValueError, "pass a seed"):
            posterior.latent(q, training=True)

    def test_stddev(self):
        q = posterior.Gaussian(tf.zeros([1]), tf.constant([math.log(9.0)]))
        np.testing.assert_allclose(q.stddev, [3.0], rtol=1e-6)


class KLTest(parameterized.TestCase):
    def test_kl_of_the_prior_is_zero(self):
        kl = posterior.kl_to_standard_normal(posterior.Gaussian(tf.zeros([3, 4]), tf.zeros([3, 4])))
        np.testing.assert_array_equal(kl, np.zeros((3, 4)))

    @parameterized.parameters(
        (1.0, 1.0, 0.5),  # mean shift only: mean^2 / 2
        (0.0, 2.0, 0.5 * (2.0 - 1.0 - math.log(2.0))),
        (-2.0, 0.25, 0.5 * (4.0 + 0.25 - 1.0 - math.log(0.25))),
    )
    def test_known_values(self, mean, variance, expected):
        q = posterior.Gaussian(tf.constant([mean]), tf.constant([math.log(variance)]))
        np.testing.assert_allclose(posterior.kl_to_standard_normal(q), [expected], rtol=1e-6)

    def test_matches_a_monte_carlo_estimate(self):
        # KL = E_q[log q(z) - log p(z)], estimated per dimension from 200000 samples.
        mean, std = np.array([0.7, -1.2], np.float32), np.array([0.6, 1.8], np.float32)
        q = posterior.Gaussian(tf.constant(mean), tf.constant(np.log(std**2)))
        z = np.random.default_rng(0).normal(mean, std, size=(200000, 2))
        log_q = -0.5 * ((z - mean) / std) ** 2 - np.log(std)
        log_p = -0.5 * z**2
        np.testing.assert_allclose(
            posterior.kl_to_standard_normal(q), (log_q - log_p).mean(0), atol=0.02
        )

    def test_free_bits_floor_and_gradient(self):
        kl = tf.constant([0.01, 0.5, 2.0])
        with tf.GradientTape() as tape:
            tape.watch(kl)
            floored = posterior.free_bits(kl, 0.25)
        np.testing.assert_allclose(floored, [0.25, 0.5, 2.0])
        # Below the floor the term is constant: no gradient pushes that dimension's KL down.
        np.testing.assert_array_equal(tape.gradient(floored, kl), [0.0, 1.0, 1.0])
        np.testing.assert_array_equal(posterior.free_bits(kl, 0.0), kl)
        with self.assertRaisesRegex(ValueError, "free-bits floor"):
            posterior.free_bits(kl, -0.1)
