"""Tests of tfglo.losses against hand-computed values."""

import math

import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from tfglo.nerf import config as config_lib
from tfglo.nerf import losses

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
        }
        batch = {
            "rgb": tf.constant([[0.5, 0.5, 0.5], [0.0, 1.0, 1.0]]),
            "mask": tf.constant([1.0, 1.0]),
        }
        # rgb_mse = 1 / 6, mask = 0.25 / 2, hard = HARD_AT_HALF / 4.
        return render, batch

    @parameterized.parameters((0.0, 0.0), (0.1, 0.0), (0.0, 0.01), (0.5, 2.0))
    def test_weighted_sum_and_terms(self, mask_weight, hard_weight):
        render, batch = self._render_and_batch()
        config = config_lib.LossConfig(mask_weight=mask_weight, hard_surface_weight=hard_weight)
        loss, terms = losses.total_loss(render, batch, config)
        rgb_mse, mask, hard = 1.0 / 6.0, 0.125, HARD_AT_HALF / 4.0
        want = rgb_mse + mask_weight * mask + hard_weight * hard
        self.assertAlmostEqual(float(loss), want, places=6)
        self.assertEqual(set(terms), {"rgb_mse", "mask", "hard_surface", "psnr", "total"})
        # Zero-weighted terms are still reported.
        self.assertAlmostEqual(float(terms["rgb_mse"]), rgb_mse, places=6)
        self.assertAlmostEqual(float(terms["mask"]), mask, places=6)
        self.assertAlmostEqual(float(terms["hard_surface"]), hard, places=6)
        self.assertAlmostEqual(float(terms["psnr"]), -10.0 * math.log10(rgb_mse), places=4)
        self.assertAlmostEqual(float(terms["total"]), want, places=6)

    def test_mask_needed_only_when_weighted(self):
        render, batch = self._render_and_batch()
        del batch["mask"]
        loss, terms = losses.total_loss(render, batch, config_lib.LossConfig(mask_weight=0.0))
        self.assertAlmostEqual(float(terms["mask"]), 0.0)
        with pytest.raises(ValueError, match='needs a "mask"'):
            losses.total_loss(render, batch, config_lib.LossConfig(mask_weight=0.1))

    def test_works_in_xla(self):
        render, batch = self._render_and_batch()
        config = config_lib.LossConfig()
        eager, _ = losses.total_loss(render, batch, config)
        compiled, _ = tf.function(losses.total_loss, jit_compile=True)(render, batch, config)
        self.assertAlmostEqual(float(eager), float(compiled), places=6)
