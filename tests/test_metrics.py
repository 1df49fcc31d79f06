"""Tests for tfglo.metrics against values computed by hand on tiny image pairs."""

import math

import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from tfglo.engine import metrics
from tfglo.geometry import camera as camera_lib


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


class HardnessTest(parameterized.TestCase):
    def test_by_hand(self):
        max_weight = np.array([[0.9, 0.4], [0.6, 0.95]])
        mask = np.array([[1.0, 1.0], [1.0, 0.0]])  # (1, 1) is background: not counted
        got = metrics.hardness(max_weight, mask)
        # Foreground 0.9, 0.4, 0.6: two of three above 0.5, mean 1.9 / 3.
        self.assertAlmostEqual(got["hard_fraction"], 2.0 / 3.0)
        self.assertAlmostEqual(got["max_weight_mean"], 1.9 / 3.0)

    def test_exactly_half_is_not_hard(self):
        got = metrics.hardness(np.array([0.5, 0.51]), np.ones(2))
        self.assertAlmostEqual(got["hard_fraction"], 0.5)

    def test_no_foreground_is_nan_and_shapes_must_match(self):
        got = metrics.hardness(np.ones((2, 2)), np.zeros((2, 2)))
        self.assertTrue(math.isnan(got["hard_fraction"]))
        self.assertTrue(math.isnan(got["max_weight_mean"]))
        with pytest.raises(ValueError, match="hardness: shapes differ"):
            metrics.hardness(np.ones((2, 2)), np.ones((2, 3)))

    def test_image_metrics_reports_it_with_a_mask(self):
        prediction, target = _pair()
        rendered = {"rgb": prediction, "max_weight": np.array([[1.0, 0.2], [0.0, 0.0]])}
        view = metrics.image_metrics(
            rendered, {"image": target, "mask": np.array([[1.0, 1.0], [0.0, 0.0]])}
        )
        self.assertAlmostEqual(view["hard_fraction"], 0.5)
        self.assertAlmostEqual(view["max_weight_mean"], 0.6)
        self.assertNotIn("hard_fraction", metrics.image_metrics(rendered, {"image": target}))


def _pose(yaw_deg, pitch_deg, distance=4.0):
    eye = camera_lib.orbit_eyes(np.radians(yaw_deg), np.radians(pitch_deg), distance)
    return camera_lib.look_at(eye).numpy()


class ViewAngleTest(parameterized.TestCase):
    @parameterized.parameters(
        (0.0, 0.0), (25.0, 0.0), (-35.0, 10.0), (80.0, -12.0), (150.0, 5.0), (-170.0, 0.0)
    )
    def test_canonical_yaw_of_orbit_cameras(self, yaw, pitch):
        pose = _pose(yaw, pitch)
        self.assertAlmostEqual(metrics.canonical_yaw_deg(pose), yaw, places=3)

    def test_camera_center(self):
        pose = _pose(30.0, 0.0, distance=3.0)
        want = [3.0 * math.sin(math.radians(30)), 0.0, -3.0 * math.cos(math.radians(30))]
        np.testing.assert_allclose(metrics.camera_center(pose), want, atol=1e-5)

    @parameterized.parameters(
        (10.0, 0.0, 40.0, 0.0, 30.0),  # yaw apart: the yaw difference
        (-20.0, 0.0, 20.0, 0.0, 40.0),
        (0.0, 0.0, 0.0, 15.0, 15.0),  # pitch apart: the pitch difference
        (0.0, 0.0, 180.0, 0.0, 180.0),  # opposite sides
        (170.0, 0.0, -170.0, 0.0, 20.0),  # across the back, not 340
    )
    def test_view_angle(self, yaw_a, pitch_a, yaw_b, pitch_b, want):
        got = metrics.view_angle_deg(_pose(yaw_a, pitch_a), _pose(yaw_b, pitch_b, 2.5))
        self.assertAlmostEqual(got, want, places=2)

    def test_view_angle_mixes_yaw_and_pitch(self):
        # Two cameras 30 deg apart in yaw at 30 deg pitch: the great-circle angle, not 30.
        got = metrics.view_angle_deg(_pose(0.0, 30.0), _pose(30.0, 30.0))
        a, b = np.radians(30.0), np.radians(30.0)
        want = math.degrees(math.acos(math.cos(a) ** 2 * math.cos(b) + math.sin(a) ** 2))
        self.assertAlmostEqual(got, want, places=2)

    @parameterized.parameters(
        (0.0, "0-10"),
        (10.0, "0-10"),
        (-10.0004, "0-10"),  # float32 cameras: a hair above an edge stays on it
        (10.5, "10-20"),
        (-35.0, "20-35"),
        (35.2, "35-60"),
        (90.0, "60-90"),
        (179.0, "90-180"),
        (math.nan, None),
    )
    def test_angle_bin(self, angle, label):
        self.assertEqual(metrics.angle_bin(angle), label)

    def test_angle_bin_custom_edges(self):
        self.assertEqual(metrics.angle_bin(5.0, (0, 2.5, 5)), "2.5-5")
        self.assertIsNone(metrics.angle_bin(6.0, (0, 2.5, 5)))
        with pytest.raises(ValueError, match="increase"):
            metrics.angle_bin(1.0, (0, 10, 10))

    def test_summarize_by_angle(self):
        per_view = [
            {"psnr": 30.0, "depth_abs": 0.1},
            {"psnr": 20.0, "depth_abs": 0.3},
            {"psnr": 24.0, "depth_abs": math.nan},
            {"psnr": 10.0},
        ]
        got = metrics.summarize_by_angle(per_view, [-5.0, 8.0, 34.0, 200.0])
        self.assertEqual(list(got), ["0-10", "20-35"])  # empty bins and 200 deg left out
        self.assertEqual(got["0-10"]["num_views"], 2)
        self.assertAlmostEqual(got["0-10"]["psnr"], 25.0)
        self.assertAlmostEqual(got["0-10"]["depth_abs"], 0.2)
        self.assertAlmostEqual(got["0-10"]["angle_mean_deg"], 6.5)
        self.assertEqual(got["20-35"]["psnr"], 24.0)
        self.assertTrue(math.isnan(got["20-35"]["depth_abs"]))
        with pytest.raises(ValueError, match="4 views but 3 angles"):
            metrics.summarize_by_angle(per_view, [1.0, 2.0, 3.0])

    def test_view_angles_references(self):
        train = [
            {"object_id": 0, "world_to_camera": _pose(30.0, 0.0)},
            {"object_id": 1, "world_to_camera": _pose(-20.0, 0.0)},
            {"object_id": 0, "world_to_camera": _pose(0.0, 0.0)},  # not the first: ignored
        ]
        views = [
            {"object_id": 0, "world_to_camera": _pose(-10.0, 0.0)},
            {"object_id": 1, "world_to_camera": _pose(25.0, 0.0)},
            {"object_id": 2, "world_to_camera": _pose(5.0, 0.0)},  # no training view
        ]
        relative = metrics.view_angles(views, "training_view", train)
        np.testing.assert_allclose(relative[:2], [40.0, 45.0], atol=1e-2)
        self.assertTrue(math.isnan(relative[2]))
        canonical = metrics.view_angles(views, "canonical")
        np.testing.assert_allclose(canonical, [-10.0, 25.0, 5.0], atol=1e-3)
        with pytest.raises(ValueError, match="angle reference"):
            metrics.view_angles(views, "frontal")


class CoverageTest(parameterized.TestCase):
    def test_by_hand(self):
        alpha = np.array([[1.0, 0.5], [0.2, 0.0]])
        mask = np.array([[1.0, 1.0], [0.0, 0.0]])
        got = metrics.foreground_coverage(alpha, mask)
        self.assertAlmostEqual(got["coverage"], 0.75)  # (1 + 0.5) / 2
        self.assertAlmostEqual(got["alpha_mean"], 1.7 / 4.0)
        self.assertAlmostEqual(got["mask_mean"], 0.5)
        self.assertAlmostEqual(got["opacity_ratio"], 1.7 / 2.0)

    def test_no_mask(self):
        got = metrics.foreground_coverage(np.ones(3), np.zeros(3))
        self.assertTrue(math.isnan(got["coverage"]))
        self.assertIsNone(metrics.coverage_warning(got["coverage"]))

    @parameterized.parameters((0.1, True), (0.49, True), (0.5, False), (0.95, False))
    def test_warning(self, coverage, warns):
        message = metrics.coverage_warning(coverage)
        self.assertEqual(message is not None, warns)
        if warns:
            self.assertIn(f"{coverage:.0%}", message)
            self.assertIn("--mask_weight", message)
