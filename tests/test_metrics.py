"""Tests for tfglo.metrics against values computed by hand on tiny image pairs."""

import math

import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from tfglo.engine import metrics


def _pair():
    # 2x2 images: one pixel off by 0.5 in every channel, the rest exact.
    target = np.zeros((2, 2, 3), np.float32)
    prediction = target.copy()
    prediction[0, 0] = 0.5
    return prediction, target


class MetricsTest(parameterized.TestCase):
    def test_psnr_by_hand(self):
        prediction, target = _pair()
        # MSE = (3 * 0.25) / 12 = 0.0625 -> PSNR = 10 log10(16).
        self.assertAlmostEqual(metrics.psnr(prediction, target), 10 * math.log10(16), places=5)
        self.assertEqual(metrics.psnr(target, target), math.inf)
        self.assertAlmostEqual(metrics.psnr(tf.constant(prediction), target), 12.0411998, places=5)

    def test_masked_psnr_only_counts_the_foreground(self):
        prediction, target = _pair()
        mask = np.array([[1.0, 1.0], [0.0, 0.2]], np.float32)
        # Foreground: 2 pixels, MSE = 3 * 0.25 / 6 = 0.125 -> PSNR = 10 log10(8).
        self.assertAlmostEqual(
            metrics.masked_psnr(prediction, target, mask), 10 * math.log10(8), places=5
        )
        self.assertTrue(math.isnan(metrics.masked_psnr(prediction, target, np.zeros((2, 2)))))

    def test_ssim_identical_and_tiny_images(self):
        rng = np.random.default_rng(0)
        image = rng.uniform(size=(6, 6, 3)).astype(np.float32)
        self.assertAlmostEqual(metrics.ssim(image, image), 1.0, places=5)
        self.assertLess(metrics.ssim(image, 1.0 - image), 0.5)

    def test_ssim_matches_tf_image_ssim(self):
        rng = np.random.default_rng(1)
        a = rng.uniform(size=(16, 16, 3)).astype(np.float32)
        b = np.clip(a + rng.normal(scale=0.1, size=a.shape), 0, 1).astype(np.float32)
        expected = float(tf.image.ssim(a, b, max_val=1.0))
        self.assertAlmostEqual(metrics.ssim(a, b), expected, places=6)

    def test_ssim_of_constant_images_by_hand(self):
        # Constant images x = 0.2, y = 0.4: sigma terms vanish, SSIM = (2 mx my + c1)/(mx^2 + my^2
        # + c1) with c1 = (0.01)^2.
        a = np.full((8, 8, 3), 0.2, np.float32)
        b = np.full((8, 8, 3), 0.4, np.float32)
        c1 = 0.01**2
        expected = (2 * 0.2 * 0.4 + c1) / (0.2**2 + 0.4**2 + c1)
        self.assertAlmostEqual(metrics.ssim(a, b), expected, places=4)

    @parameterized.named_parameters(
        ("half", [[1, 1], [0, 0]], [[1, 0], [0, 0]], 0.5),
        ("disjoint", [[1, 0], [0, 0]], [[0, 1], [0, 0]], 0.0),
        ("same", [[0.6, 0], [0, 0.9]], [[1, 0], [0, 1]], 1.0),
        ("threshold", [[0.49, 0.5], [0, 0]], [[1, 1], [0, 0]], 0.5),
        ("both_empty", [[0, 0], [0, 0]], [[0, 0], [0, 0]], 1.0),
    )
    def test_mask_iou(self, alpha, mask, expected):
        self.assertAlmostEqual(metrics.mask_iou(np.array(alpha), np.array(mask)), expected)

    def test_depth_errors_by_hand(self):
        true = np.array([[2.0, 4.0], [0.0, 3.0]])
        predicted = np.array([[1.0, 2.0], [9.0, 2.0]])
        mask = np.array([[1, 1], [1, 0]])
        errors = metrics.depth_errors(predicted, true, mask)
        # Foreground: (0,0) and (0,1) (g = 0 and mask = 0 are excluded).
        self.assertEqual(errors["depth_pixels"], 2)
        self.assertAlmostEqual(errors["depth_abs"], (1.0 + 2.0) / 2)
        # s = (1*2 + 2*4) / (1 + 4) = 2 -> exact.
        self.assertAlmostEqual(errors["depth_scale"], 2.0)
        self.assertAlmostEqual(errors["depth_abs_scaled"], 0.0)

    def test_depth_errors_scale_is_least_squares(self):
        true = np.array([[1.0, 2.0]])
        predicted = np.array([[1.0, 1.0]])
        errors = metrics.depth_errors(predicted, true)
        self.assertAlmostEqual(errors["depth_scale"], 1.5)
        self.assertAlmostEqual(errors["depth_abs_scaled"], 0.5)
        self.assertTrue(math.isnan(metrics.depth_errors(predicted, np.zeros((1, 2)))["depth_abs"]))

    def test_shape_mismatch_is_rejected(self):
        with pytest.raises(ValueError, match="shapes differ"):
            metrics.psnr(np.zeros((2, 2, 3)), np.zeros((2, 3, 3)))
        with pytest.raises(ValueError, match="mask_iou: shapes differ"):
            metrics.mask_iou(np.zeros((2, 2)), np.zeros((3, 2)))

    def test_image_metrics_and_summary(self):
        prediction, target = _pair()
        view = metrics.image_metrics(
            {"rgb": prediction, "alpha": np.ones((2, 2)), "depth": np.full((2, 2), 2.0)},
            {
                "image": target,
                "mask": np.array([[1.0, 1.0], [0.0, 0.0]]),
                "has_mask": True,
                "depth": np.array([[1.0, 1.0], [0.0, 0.0]]),
                "has_depth": True,
            },
        )
        self.assertAlmostEqual(view["psnr"], 10 * math.log10(16), places=5)
        self.assertAlmostEqual(view["masked_psnr"], 10 * math.log10(8), places=5)
        self.assertAlmostEqual(view["mask_iou"], 0.5)
        self.assertAlmostEqual(view["depth_abs"], 1.0)
        self.assertAlmostEqual(view["depth_abs_scaled"], 0.0)
        no_depth = metrics.image_metrics(
            {"rgb": prediction, "depth": np.ones((2, 2))},
            {"image": target, "depth": np.zeros((2, 2)), "has_depth": False},
        )
        self.assertNotIn("depth_abs", no_depth)
        self.assertNotIn("mask_iou", no_depth)
        summary = metrics.summarize([{"psnr": 10.0, "x": math.nan}, {"psnr": 20.0, "x": 4.0}])
        self.assertEqual(summary["psnr"], 15.0)
        self.assertEqual(summary["x"], 4.0)
        self.assertEqual(summary["x_count"], 1)
