"""Tests for tfglo.render: orbit/interpolation/sampling library functions and the absl app."""

import pathlib
import tempfile

import infer_testlib
import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized
from PIL import Image

from tfglo import render
from tfglo.geometry import camera as camera_lib


class RenderLibraryTest(parameterized.TestCase):
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
        view = render.ViewConfig(
            image_size=12, yaw_range_deg=(-30.0, 30.0), pitch_range_deg=(-10.0, 10.0)
        )
        latent = self.model.latent_table.embeddings[2]
        frames = render.render_orbit(self.model, latent, view, num_frames=3)
        self.assertLen(frames, 3)
        # The middle frame of a symmetric sweep sits at yaw 0 and (sine path) pitch 0.
        direct = render.render_view(self.model, latent, render.view_camera(view, 0.0, 0.0), 12, 12)
        for key in ("rgb", "alpha", "depth"):
            np.testing.assert_allclose(frames[1][key], direct[key], atol=1e-4, err_msg=key)
        self.assertGreater(np.abs(frames[0]["rgb"] - direct["rgb"]).max(), 1e-2)

    def test_depth_is_camera_z_of_the_ray_distance(self):
        intrinsics = np.array([4.0, 4.0, 1.0, 1.0], np.float32)  # 2x2 image, centred
        cam = camera_lib.make_camera(intrinsics, camera_lib.look_at([0.0, 0.0, -3.0]))
        distance = np.full((2, 2), 5.0, np.float32)
        # Every pixel centre is 0.5 px off the axis in x and y: cos = 4 / sqrt(16 + 0.5).
        z = render.camera_z_depth(distance, cam, 2, 2)
        np.testing.assert_allclose(z, 5.0 * 4.0 / np.sqrt(16.5), rtol=1e-6)

    def test_written_frames(self):
        view = render.ViewConfig(image_size=8)
        frames = render.render_orbit(self.model, self.model.latent_table.embeddings[0], view, 4)
        written = render.write_frames(self.tmp / "orbit", frames, fps=5)
        for name in ("frame_003.png", "depth_000.png", "alpha_002.png", "depth.gif", "orbit.gif"):
            self.assertTrue((self.tmp / "orbit" / name).is_file(), name)
        raw = np.load(self.tmp / "orbit" / "depth_001.npy")
        np.testing.assert_array_equal(raw, frames[1]["depth"])
        with Image.open(written["gif"]) as gif:
            self.assertEqual(gif.n_frames, 4)
            self.assertEqual(gif.info["loop"], 0)
        near, far = written["depth_range"]
        self.assertTrue(3.0 < near < far < 6.0, (near, far))  # the object at ~4.5 units

    def test_sampled_gaussian_matches_the_table(self):
        rng = np.random.default_rng(0)
        true_cov = np.array([[1.0, 0.6, 0.0], [0.6, 2.0, -0.3], [0.0, -0.3, 0.5]])
        table = rng.multivariate_normal([1.0, -2.0, 0.5], true_cov, size=400).astype(np.float32)
        codes, mean, cov = render.sample_identities(table, 20000, seed=3, truncation=1.0)
        np.testing.assert_allclose(mean, table.mean(0), atol=1e-5)
        np.testing.assert_allclose(cov, np.cov(table, rowvar=False), atol=1e-4)
        self.assertEqual(codes.shape, (20000, 3))
        np.testing.assert_allclose(codes.mean(0), table.mean(0), atol=0.05)
        np.testing.assert_allclose(np.cov(codes, rowvar=False), cov, atol=0.08)
        half, _, _ = render.sample_identities(table, 20000, seed=3, truncation=0.5)
        np.testing.assert_allclose(np.cov(half, rowvar=False), 0.25 * cov, atol=0.03)
        again, _, _ = render.sample_identities(table, 20000, seed=3, truncation=1.0)
        np.testing.assert_array_equal(codes, again)
        zero, _, _ = render.sample_identities(table, 2, seed=3, truncation=0.0)
        np.testing.assert_allclose(zero, np.broadcast_to(mean, (2, 3)), atol=1e-6)
        with pytest.raises(ValueError, match="truncation must be >= 0"):
            render.sample_identities(table, 2, truncation=-1.0)

    def test_interpolation_and_strip(self):
        table = self.model.latent_table.embeddings.numpy()
        path = render.interpolation_latents(table[0], table[1], 5)
        np.testing.assert_allclose(path[0], table[0])
        np.testing.assert_allclose(path[-1], table[1], atol=1e-6)
        np.testing.assert_allclose(path[2], 0.5 * (table[0] + table[1]), atol=1e-6)
        frames = render.render_strip(self.model, path[:2], render.ViewConfig(image_size=8))
        colour, depth = render.strip_images(frames)
        self.assertEqual(colour.shape[-1], 3)
        self.assertGreater(colour.shape[1], 2 * 8)
        self.assertEqual(depth.shape, colour.shape)

    def test_select_latents(self):
        codes, names = render.select_latents(self.model, [3, 1])
        np.testing.assert_allclose(codes, self.model.latent_table.embeddings.numpy()[[3, 1]])
        self.assertEqual(names, ["id_0003", "id_0001"])
        with pytest.raises(ValueError, match=r"ids \[7\] out of range: the latent table has 4"):
            render.select_latents(self.model, [7])
        path = self.tmp / "codes.npy"
        np.save(path, np.ones((2, 8), np.float32))
        codes, names = render.select_latents(self.model, None, path)
        self.assertEqual(codes.shape, (2, 8))
        self.assertEqual(names, ["latent_0000", "latent_0001"])
        np.save(path, np.ones((2, 5), np.float32))
        with pytest.raises(ValueError, match=r"this run's codes are \[K, 8\]"):
            render.select_latents(self.model, None, path)
        with pytest.raises(ValueError, match="does not exist"):
            render.select_latents(self.model, None, self.tmp / "missing.npy")

    def test_default_view_follows_the_training_data(self):
        metadata = {"image_size": [16, 16], "synthetic_config": {"camera_distance": 3.0}}
        view = render.default_view(metadata, self.path)
        self.assertEqual(view.image_size, 16)
        self.assertEqual(view.camera_distance, 3.0)
        self.assertAlmostEqual(view.focal_factor, 2.0, places=5)  # read from the cameras
        view = render.default_view({}, self.path, image_size=32, camera_distance=None)
        self.assertEqual(view.image_size, 32)
        self.assertAlmostEqual(view.camera_distance, 4.5, places=4)
        with pytest.raises(ValueError, match="image_size must be >= 1"):
            render.ViewConfig(image_size=0)


if __name__ == "__main__":
    tf.test.main()


class RenderAppTest(infer_testlib.TrainedRunTestCase):
    def _app(self, *args):
        return infer_testlib.run_app(render, [f"--run_dir={self.run_dir}", *args])

    def test_orbit(self):
        self._app(
            f"--output={self.out}", "--mode=orbit", "--ids=0,2", "--num_frames=3", "--image_size=8"
        )
        for name in ("id_0000", "id_0002"):
            directory = self.out / name
            self.assertTrue((directory / "orbit.gif").is_file())
            self.assertTrue((directory / "depth_002.npy").is_file())
            with Image.open(directory / "frame_001.png") as frame:
                self.assertEqual(frame.size, (8, 8))
        # The restored table renders like the in-memory model.
        view = render.default_view(None, self.path, image_size=8)
        frames = render.render_orbit(self.model, self.model.latent_table.embeddings[2], view, 3)
        saved = np.load(self.out / "id_0002" / "depth_001.npy")
        np.testing.assert_allclose(saved, frames[1]["depth"], atol=1e-4)

    def test_orbit_of_codes_from_a_file(self):
        codes = self.out / "codes.npy"
        np.save(codes, self.model.latent_table.embeddings.numpy()[:1] * 0.5)
        self._app(f"--output={self.out}", f"--latents={codes}", "--num_frames=2", "--image_size=8")
        self.assertTrue((self.out / "latent_0000" / "orbit.gif").is_file())

    def test_interpolate(self):
        self._app(
            f"--output={self.out}",
            "--mode=interpolate",
            "--ids=1,3",
            "--num_frames=4",
            "--image_size=8",
        )
        directory = self.out / "interpolate_id_0001_id_0003"
        self.assertTrue((directory / "strip.png").is_file())
        self.assertTrue((directory / "depth_strip.png").is_file())
        with Image.open(directory / "interpolate.gif") as gif:
            self.assertEqual(gif.n_frames, 6)  # there and back: 4 + 2
        with pytest.raises(Exception, match="exactly two --ids"):
            self._app(f"--output={self.out}", "--mode=interpolate", "--ids=0,1,2")

    def test_sample(self):
        args = ["--mode=sample", "--num_samples=3", "--seed=5", "--image_size=8"]
        self._app(f"--output={self.out}/a", *args)
        self._app(f"--output={self.out}/b", *args)
        first = np.load(self.out / "a" / "samples" / "latents.npy")
        self.assertEqual(first.shape, (3, 8))
        np.testing.assert_array_equal(first, np.load(self.out / "b" / "samples" / "latents.npy"))
        self.assertTrue((self.out / "a" / "samples" / "grid.png").is_file())
        self.assertTrue((self.out / "a" / "samples" / "depth_002.npy").is_file())

    def test_run_dir_without_checkpoints(self):
        from tfglo.engine import run_dir as run_dir_lib

        empty = infer_testlib.save_run(
            self.model, self.path, self.out / "empty", with_checkpoint=False
        )
        with pytest.raises(run_dir_lib.RunDirError, match="has no checkpoint"):
            infer_testlib.run_app(render, [f"--run_dir={empty}", f"--output={self.out}"])
