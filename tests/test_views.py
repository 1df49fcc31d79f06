"""Tests for tfglo.engine.views: orbit cameras, whole-view renders, frames, strips, framing."""

import pathlib
import tempfile

import infer_testlib
import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized
from PIL import Image

from tfglo.engine import views
from tfglo.geometry import camera as camera_lib
from tfglo.lolnerf import identities


class ViewsTest(parameterized.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.path, cls.model = infer_testlib.trained()

    def setUp(self):
        super().setUp()
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.tmp = pathlib.Path(tmp.name)

    def test_orbit_frame_at_yaw_0_equals_a_direct_render(self):
        view = views.ViewConfig(
            image_size=12, yaw_range_deg=(-30.0, 30.0), pitch_range_deg=(-10.0, 10.0)
        )
        latent = self.model.latent_table.embeddings[2]
        frames = views.render_orbit(self.model, latent, view, num_frames=3)
        self.assertLen(frames, 3)
        # The middle frame of a symmetric sweep sits at yaw 0 and (sine path) pitch 0.
        direct = views.render_view(self.model, latent, views.view_camera(view, 0.0, 0.0), 12, 12)
        for key in ("rgb", "alpha", "depth"):
            np.testing.assert_allclose(frames[1][key], direct[key], atol=1e-4, err_msg=key)
        self.assertGreater(np.abs(frames[0]["rgb"] - direct["rgb"]).max(), 1e-2)

    def test_depth_is_camera_z_of_the_ray_distance(self):
        intrinsics = np.array([4.0, 4.0, 1.0, 1.0], np.float32)  # 2x2 image, centred
        cam = camera_lib.make_camera(intrinsics, camera_lib.look_at([0.0, 0.0, -3.0]))
        distance = np.full((2, 2), 5.0, np.float32)
        # Every pixel centre is 0.5 px off the axis in x and y: cos = 4 / sqrt(16 + 0.5).
        z = views.camera_z_depth(distance, cam, 2, 2)
        np.testing.assert_allclose(z, 5.0 * 4.0 / np.sqrt(16.5), rtol=1e-6)

    def test_written_frames(self):
        view = views.ViewConfig(image_size=8)
        frames = views.render_orbit(self.model, self.model.latent_table.embeddings[0], view, 4)
        written = views.write_frames(self.tmp / "orbit", frames, fps=5)
        for name in ("frame_003.png", "depth_000.png", "alpha_002.png", "depth.gif", "orbit.gif"):
            self.assertTrue((self.tmp / "orbit" / name).is_file(), name)
        raw = np.load(self.tmp / "orbit" / "depth_001.npy")
        np.testing.assert_array_equal(raw, frames[1]["depth"])
        with Image.open(written["gif"]) as gif:
            self.assertEqual(gif.n_frames, 4)
            self.assertEqual(gif.info["loop"], 0)
        near, far = written["depth_range"]
        self.assertTrue(3.0 < near < far < 6.0, (near, far))  # the object at ~4.5 units

    def test_interpolation_and_strip(self):
        table = self.model.latent_table.embeddings.numpy()
        path = identities.interpolation_latents(table[0], table[1], 5)
        np.testing.assert_allclose(path[0], table[0])
        np.testing.assert_allclose(path[-1], table[1], atol=1e-6)
        np.testing.assert_allclose(path[2], 0.5 * (table[0] + table[1]), atol=1e-6)
        frames = views.render_strip(self.model, path[:2], views.ViewConfig(image_size=8))
        colour, depth = views.strip_images(frames)
        self.assertEqual(colour.shape[-1], 3)
        self.assertGreater(colour.shape[1], 2 * 8)
        self.assertEqual(depth.shape, colour.shape)

    def test_default_view_follows_the_training_data(self):
        metadata = {"image_size": [16, 16], "synthetic_config": {"camera_distance": 3.0}}
        view = views.default_view(metadata, self.path)
        self.assertEqual(view.image_size, 16)
        self.assertEqual(view.camera_distance, 3.0)
        self.assertAlmostEqual(view.focal_factor, 2.0, places=5)  # read from the cameras
        view = views.default_view({}, self.path, image_size=32, camera_distance=None)
        self.assertEqual(view.image_size, 32)
        self.assertAlmostEqual(view.camera_distance, 4.5, places=4)
        with pytest.raises(ValueError, match="image_size must be >= 1"):
            views.ViewConfig(image_size=0)


if __name__ == "__main__":
    tf.test.main()
