"""Tests of tfglo.losses against hand-computed values."""

import math

import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from tfglo.nerf import config as config_lib
from tfglo.nerf import losses, volume_renderer

HARD_AT_HALF = 0.5 - math.log(2.0) + math.log(1.0 + 1.0 / math.e)


class HardSurfaceLossTest(parameterized.TestCase):
    @parameterized.parameters(0.0, 1.0)
    def test_zero_at_zero_and_one(self, w):
        self.assertAlmostEqual(float(losses.hard_surface_loss(tf.fill([3, 4], w))), 0.0, places=6)

    def test_value_at_half(self):
        got = float(losses.hard_surface_loss(tf.fill([2, 5], 0.5)))
        self.assertAlmostEqual(got, HARD_AT_HALF, places=6)
        self.assertAlmostEqual(got, 0.12011, places=4)

    def test_mean_over_samples(self):
        got = float(losses.hard_surface_loss([[0.0, 0.5], [1.0, 0.5]]))
        self.assertAlmostEqual(got, HARD_AT_HALF / 2.0, places=6)

    def test_positive_between(self):
        w = tf.linspace(0.05, 0.95, 19)
        values = [float(losses.hard_surface_loss(x[None])) for x in w]
        self.assertTrue(all(v > 0.0 for v in values))
        self.assertAlmostEqual(max(values), HARD_AT_HALF, places=6)

    @parameterized.parameters((0.4, -1.0), (0.6, 1.0), (0.1, -1.0), (0.9, 1.0))
    def test_gradient_pushes_away_from_half(self, w, descent_sign):
        # Gradient descent moves w by -grad: down below 0.5, up above it.
        w = tf.Variable([w])
        with tf.GradientTape() as tape:
            loss = losses.hard_surface_loss(w)
        grad = float(tape.gradient(loss, w)[0])
        self.assertEqual(np.sign(-grad), descent_sign)


def _hard(w):
    """The per-sample penalty by its formula, numpy."""
    w = np.asarray(w, np.float64)
    return -np.log(np.exp(-np.abs(w)) + np.exp(-np.abs(1.0 - w))) + math.log(1.0 + 1.0 / math.e)


class HardSurfaceReductionTest(parameterized.TestCase):
    WEIGHTS = [[0.1, 0.2, 0.6, 0.0], [0.5, 0.5, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]

    def test_per_ray_sum_value(self):
        # Sum over each ray's samples, mean over the 3 rays.
        want = np.mean(np.sum(_hard(self.WEIGHTS), -1))
        got = float(losses.hard_surface_loss(self.WEIGHTS, "per_ray_sum"))
        self.assertAlmostEqual(got, want, places=6)
        # Ray 2 is two half weights: 2 x the value at one half; ray 3 is a hard surface: 0.
        rays = [float(losses.hard_surface_loss([w], "per_ray_sum")) for w in self.WEIGHTS]
        self.assertAlmostEqual(rays[1], 2.0 * HARD_AT_HALF, places=6)
        self.assertAlmostEqual(rays[2], 0.0, places=6)

    def test_per_ray_sum_is_samples_times_mean(self):
        got_sum = float(losses.hard_surface_loss(self.WEIGHTS, "per_ray_sum"))
        got_mean = float(losses.hard_surface_loss(self.WEIGHTS, "mean"))
        self.assertAlmostEqual(got_sum, 4.0 * got_mean, places=6)

    def test_per_ray_sum_does_not_fade_with_more_samples(self):
        # A cloud of opacity 0.6 spread evenly over S samples: the per-ray sum tends to the
        # slope at 0 times the opacity (~0.462 x 0.6) for any large S; the mean fades as 1/S.
        slope = (1.0 - 1.0 / math.e) / (1.0 + 1.0 / math.e)
        for samples in (32, 128, 512):
            cloud = tf.fill([1, samples], 0.6 / samples)
            per_ray = float(losses.hard_surface_loss(cloud, "per_ray_sum"))
            self.assertAlmostEqual(per_ray, slope * 0.6, delta=0.01)
            mean = float(losses.hard_surface_loss(cloud, "mean"))
            self.assertAlmostEqual(mean, per_ray / samples, places=6)

    def test_per_ray_sum_gradient(self):
        # d/dw of the per-ray sum averaged over N rays is the penalty's slope / N per sample:
        # tanh(1/2 - w) for 0 < w < 1 (the derivative of -log(e^-w + e^(w-1))): +0.462 at 0,
        # negative above one half.
        weights = tf.Variable(self.WEIGHTS[:1] + [[0.3, 0.3, 0.3, 0.05]])
        with tf.GradientTape() as tape:
            loss = losses.hard_surface_loss(weights, "per_ray_sum")
        grad = tape.gradient(loss, weights).numpy()
        w = weights.numpy()
        inside = (w > 0) & (w < 1)
        np.testing.assert_allclose(grad[inside], np.tanh(0.5 - w[inside]) / 2.0, atol=1e-6)

    def test_per_ray_shape_value(self):
        # Ray 1: all opacity on one sample -> 0. Ray 2: two halves, opacity 1 -> 2 x the value at
        # one half. Ray 3: two quarters, opacity 0.5 -> the same shape, times its opacity 0.5.
        weights = [[0.0, 0.7, 0.0], [0.5, 0.5, 0.0], [0.25, 0.0, 0.25]]
        rays = [float(losses.hard_surface_loss([w], "per_ray_shape")) for w in weights]
        np.testing.assert_allclose(rays, [0.0, 2 * HARD_AT_HALF, HARD_AT_HALF], atol=1e-6)
        got = float(losses.hard_surface_loss(weights, "per_ray_shape"))
        self.assertAlmostEqual(got, np.mean(rays), places=6)
        # Empty rays (misses) give 0, not NaN.
        self.assertEqual(float(losses.hard_surface_loss(tf.zeros([2, 4]), "per_ray_shape")), 0.0)

    def test_per_ray_shape_does_not_push_opacity(self):
        # Scaling a ray's weights leaves its shape alone: the gradient has no component along
        # the weights themselves (sum_i w_i dL/dw_i = 0), unlike the per-ray sum's.
        weights = tf.Variable([[0.05, 0.1, 0.3, 0.1, 0.05], [0.2, 0.2, 0.2, 0.2, 0.1]])
        for reduction, pushes in (("per_ray_shape", False), ("per_ray_sum", True)):
            with tf.GradientTape() as tape:
                loss = losses.hard_surface_loss(weights, reduction)
            along = np.sum(weights.numpy() * tape.gradient(loss, weights).numpy(), -1)
            if pushes:
                self.assertTrue(np.all(along > 0.01), along)
            else:
                np.testing.assert_allclose(along, 0.0, atol=1e-6)

    def test_rejects_unknown_reduction(self):
        with pytest.raises(ValueError, match="reduction"):
            losses.hard_surface_loss(self.WEIGHTS, "sum")


class HardSurfaceDescentTest(parameterized.TestCase):
    """A few gradient steps on the prior alone make a ray's weights harder."""

    def test_weight_vector(self):
        start = np.array([0.05, 0.1, 0.6, 0.1, 0.05], np.float32)
        w = tf.Variable(start[None])
        for _ in range(5):
            with tf.GradientTape() as tape:
                loss = losses.hard_surface_loss(w, "per_ray_sum")
            w.assign_sub(0.1 * tape.gradient(loss, w))
        end = w.numpy()[0]
        self.assertGreater(end[2], start[2] + 0.05)  # the peak above one half rises
        for i in (0, 1, 3, 4):  # the stray small weights fall
            self.assertLess(end[i], start[i] - 0.02)

    def test_shape_reduction_concentrates_a_low_cloud(self):
        # Every weight below one half (where the per-ray sum only lowers them all): the per-ray
        # shape raises the largest and lowers the rest.
        start = np.array([0.05, 0.1, 0.3, 0.1, 0.05], np.float32)
        w = tf.Variable(start[None])
        for _ in range(5):
            with tf.GradientTape() as tape:
                loss = losses.hard_surface_loss(w, "per_ray_shape")
            w.assign_sub(0.02 * tape.gradient(loss, w))
        end = w.numpy()[0]
        self.assertGreater(end[2], start[2] + 0.01)
        np.testing.assert_array_less(end[[0, 1, 3, 4]], start[[0, 1, 3, 4]] - 0.005)

    def test_through_the_compositing_of_densities(self):
        # The weights come from densities (softplus of free parameters) by the renderer's
        # compositing: descent on the prior moves the densities so the largest weight grows
        # and the weights in front of it (a cloud before the surface) shrink.
        z = tf.constant(np.linspace(0.1, 1.9, 8)[None], tf.float32)
        density = np.array([[0.2, 0.5, 1.0, 6.0, 1.0, 0.5, 0.3, 0.2]], np.float32)
        raw = tf.Variable(np.log(np.expm1(density)))

        def weights():
            return volume_renderer.composite(
                z,
                tf.nn.softplus(raw),
                tf.zeros([1, 8, 3]),
                tf.constant([0.0]),
                tf.constant([2.0]),
                tf.constant([True]),
            )["weights"]

        start = weights().numpy()[0]
        self.assertGreater(start.max(), 0.5)
        for _ in range(20):
            with tf.GradientTape() as tape:
                loss = losses.hard_surface_loss(weights(), "per_ray_sum")
            raw.assign_sub(tape.gradient(loss, raw))
        end = weights().numpy()[0]
        self.assertGreater(end.max(), start.max() + 0.05)
        np.testing.assert_array_less(end[:3], start[:3])


class ColorAndMaskLossTest(parameterized.TestCase):
    def test_color_loss_hand_value(self):
        rgb = [[0.0, 0.5, 1.0], [0.2, 0.2, 0.2]]
        target = [[0.0, 0.0, 0.0], [0.2, 0.4, 0.2]]
        # squared errors 0, 0.25, 1, 0, 0.04, 0 -> mean 1.29 / 6
        self.assertAlmostEqual(float(losses.color_loss(rgb, target)), 1.29 / 6.0, places=6)

    def test_mask_loss_hand_value(self):
        got = float(losses.mask_loss([1.0, 0.5, 0.0, 0.9], [1.0, 0.0, 1.0, 1.0]))
        self.assertAlmostEqual(got, (0.0 + 0.25 + 1.0 + 0.01) / 4.0, places=6)

    def test_psnr(self):
        self.assertAlmostEqual(float(losses.psnr(0.01)), 20.0, places=4)
        self.assertAlmostEqual(float(losses.psnr(1e-4)), 40.0, places=4)


class TotalLossTest(parameterized.TestCase):
    def _render_and_batch(self):
        render = {
            "rgb": tf.constant([[0.5, 0.5, 0.5], [1.0, 1.0, 1.0]]),
            "alpha": tf.constant([1.0, 0.5]),
            "weights": tf.constant([[0.5, 0.0], [1.0, 0.0]]),
            "coarse_weights": tf.constant([[0.5, 0.5, 0.0], [0.5, 0.0, 0.0]]),
        }
        batch = {
            "rgb": tf.constant([[0.5, 0.5, 0.5], [0.0, 1.0, 1.0]]),
            "mask": tf.constant([1.0, 1.0]),
        }
        # rgb_mse = 1 / 6, mask = 0.25 / 2; hard (composite) = HARD_AT_HALF / 4 (mean) or / 2
        # (per-ray sum); hard (coarse) = 3 HARD_AT_HALF / 6 (mean) or 3 HARD_AT_HALF / 2.
        return render, batch

    @parameterized.product(
        weights=((0.0, 0.0), (0.1, 0.0), (0.0, 0.01), (0.5, 2.0)),
        reduction_and_samples=(
            ("mean", "composite", HARD_AT_HALF / 4.0),
            ("per_ray_sum", "composite", HARD_AT_HALF / 2.0),
            ("mean", "coarse", HARD_AT_HALF / 2.0),
            ("per_ray_sum", "coarse", 1.5 * HARD_AT_HALF),
            ("per_ray_shape", "composite", 0.0),  # both rays end on one sample
            ("per_ray_shape", "coarse", HARD_AT_HALF),  # (2 H + 0) / 2
        ),
    )
    def test_weighted_sum_and_terms(self, weights, reduction_and_samples):
        mask_weight, hard_weight = weights
        reduction, samples, hard = reduction_and_samples
        render, batch = self._render_and_batch()
        config = config_lib.LossConfig(
            mask_weight=mask_weight,
            hard_surface_weight=hard_weight,
            hard_surface_reduction=reduction,
            hard_surface_samples=samples,
        )
        loss, terms = losses.total_loss(render, batch, config)
        rgb_mse, mask = 1.0 / 6.0, 0.125
        want = rgb_mse + mask_weight * mask + hard_weight * hard
        self.assertAlmostEqual(float(loss), want, places=6)
        self.assertEqual(set(terms), {"rgb_mse", "mask", "hard_surface", "psnr", "total"})
        # Zero-weighted terms are still reported.
        self.assertAlmostEqual(float(terms["rgb_mse"]), rgb_mse, places=6)
        self.assertAlmostEqual(float(terms["mask"]), mask, places=6)
        self.assertAlmostEqual(float(terms["hard_surface"]), hard, places=6)
        self.assertAlmostEqual(float(terms["psnr"]), -10.0 * math.log10(rgb_mse), places=4)
        self.assertAlmostEqual(float(terms["total"]), want, places=6)

    def test_coarse_samples_need_coarse_weights(self):
        render, batch = self._render_and_batch()
        del render["coarse_weights"]
        config = config_lib.LossConfig(hard_surface_samples="coarse")
        with pytest.raises(ValueError, match="coarse_weights"):
            losses.total_loss(render, batch, config)

    @parameterized.named_parameters(
        ("reduction", {"hard_surface_reduction": "sum"}, "hard_surface_reduction"),
        ("samples", {"hard_surface_samples": "fine"}, "hard_surface_samples"),
        ("negative_mask", {"mask_weight": -0.1}, "mask_weight=-0.1"),
        ("negative_hard", {"hard_surface_weight": -1.0}, "hard_surface_weight=-1.0"),
    )
    def test_config_rejects(self, kwargs, message):
        with pytest.raises(ValueError, match=message):
            config_lib.LossConfig(**kwargs)

    def test_mask_needed_only_when_weighted(self):
        render, batch = self._render_and_batch()
        del batch["mask"]
        loss, terms = losses.total_loss(render, batch, config_lib.LossConfig(mask_weight=0.0))
        self.assertAlmostEqual(float(terms["mask"]), 0.0)
        with pytest.raises(ValueError, match='needs a "mask"'):
            losses.total_loss(render, batch, config_lib.LossConfig(mask_weight=0.1))

    @parameterized.parameters("mean", "per_ray_sum")
    def test_works_in_xla(self, reduction):
        render, batch = self._render_and_batch()
        config = config_lib.LossConfig(hard_surface_reduction=reduction)
        eager, _ = losses.total_loss(render, batch, config)
        compiled, _ = tf.function(losses.total_loss, jit_compile=True)(render, batch, config)
        self.assertAlmostEqual(float(eager), float(compiled), places=6)
