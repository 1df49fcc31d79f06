"""Tests for the billboard baseline: analytic cases of the plane-through-the-origin card."""

import numpy as np
import pytest
from absl.testing import parameterized

from tfglo.engine import baselines
from tfglo.geometry import camera as camera_lib


def _frontal(distance=4.0):
    return np.concatenate([np.eye(3), [[0.0], [0.0], [distance]]], 1).astype(np.float32)


def _orbit(yaw, distance=4.0):
    eye = camera_lib.orbit_eyes(yaw, 0.0, distance)
    return np.asarray(camera_lib.look_at(eye), np.float32)


class BillboardTest(parameterized.TestCase):
    def setUp(self):
        super().setUp()
        rng = np.random.default_rng(0)
        self.image = rng.uniform(size=(12, 10, 3)).astype(np.float32)
        self.intrinsics = camera_lib.default_intrinsics(12, 10)

    @parameterized.named_parameters(("frontal", None), ("yawed", 0.7))
    def test_rendering_into_the_training_camera_reproduces_the_image(self, yaw):
        pose = _frontal() if yaw is None else _orbit(yaw)
        mask = (self.image[..., 0] > 0.5).astype(np.float32)
        out = baselines.render_billboard(
            self.image, self.intrinsics, pose, self.intrinsics, pose, 12, 10, mask=mask
        )
        np.testing.assert_allclose(out["rgb"], self.image, atol=1e-4)
        np.testing.assert_allclose(out["alpha"], mask, atol=1e-4)
        # The card passes through the origin, which is `distance` in front of the camera on axis.
        self.assertTrue(out["on_card"].all())
        np.testing.assert_allclose(out["depth"], 4.0, atol=1e-4)

    def test_closer_camera_magnifies_the_centre(self):
        # Camera at half the distance with the same intrinsics sees the central half of the card,
        # magnified 2x: output pixel (x, y) samples source ((x - cx) / 2 + cx, ...).
        image = np.zeros((8, 8, 3), np.float32)
        image[..., 0] = np.arange(8)[None, :] / 8.0  # red ramps with x
        intrinsics = camera_lib.default_intrinsics(8, 8)
        out = baselines.render_billboard(
            image, intrinsics, _frontal(4.0), intrinsics, _frontal(2.0), 8, 8
        )
        x = np.arange(8) + 0.5
        source_x = (x - 4.0) / 2 + 4.0
        expected = np.clip(source_x - 0.5, 0, 7) / 8.0
        np.testing.assert_allclose(out["rgb"][3, :, 0], expected, atol=1e-5)
        np.testing.assert_allclose(out["depth"], 2.0, atol=1e-5)

    def test_outside_and_behind_get_the_border_median(self):
        image = np.full((8, 8, 3), 0.2, np.float32)
        image[0, :] = image[-1, :] = image[:, 0] = image[:, -1] = (0.1, 0.6, 0.9)
        intrinsics = camera_lib.default_intrinsics(8, 8)
        np.testing.assert_allclose(baselines.border_median(image), (0.1, 0.6, 0.9))
        # Twice the distance: the card covers only the central half of the target image.
        far = baselines.render_billboard(
            image, intrinsics, _frontal(4.0), intrinsics, _frontal(8.0), 8, 8
        )
        self.assertFalse(far["on_card"][0, 0])
        np.testing.assert_allclose(far["rgb"][0, 0], (0.1, 0.6, 0.9), atol=1e-6)
        self.assertEqual(far["alpha"][0, 0], 0.0)
        self.assertEqual(far["depth"][0, 0], 0.0)
        self.assertTrue(far["on_card"][4, 4])
        # A camera at z = +4 looking along +z, away from the card (which is behind it), sees
        # nothing of it.
        away = _frontal(-4.0)
        out = baselines.render_billboard(image, intrinsics, _frontal(), intrinsics, away, 8, 8)
        self.assertFalse(out["on_card"].any())
        np.testing.assert_allclose(out["rgb"], np.broadcast_to((0.1, 0.6, 0.9), (8, 8, 3)))

    def test_edge_on_view_sees_no_card(self):
        intrinsics = camera_lib.default_intrinsics(8, 8)
        out = baselines.render_billboard(
            self.image[:8, :8], intrinsics, _frontal(), intrinsics, _orbit(np.pi / 2), 8, 8
        )
        # Looking along the card's plane: only rays that graze it at a tiny angle could hit it,
        # and those land far outside the training image.
        self.assertLess(out["on_card"].mean(), 0.05)

    def test_bad_inputs(self):
        with pytest.raises(ValueError, match="image must be"):
            baselines.render_billboard(
                np.zeros((4, 4)), self.intrinsics, _frontal(), self.intrinsics, _frontal(), 4, 4
            )
        with pytest.raises(ValueError, match="mask must be"):
            baselines.render_billboard(
                self.image,
                self.intrinsics,
                _frontal(),
                self.intrinsics,
                _frontal(),
                4,
                4,
                mask=np.zeros((3, 3)),
            )
