"""Tests for tfglo.images: PNG/GIF round trips, depth colour map, grids, raw depth."""

import tempfile

import numpy as np
import pytest
from absl.testing import parameterized
from PIL import Image

from tfglo.utils import images


class ImagesTest(parameterized.TestCase):
    def setUp(self):
        super().setUp()
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.tmp = tmp.name

    def test_png_round_trip_quantises_to_uint8(self):
        rng = np.random.default_rng(0)
        image = rng.uniform(size=(5, 7, 3)).astype(np.float32)
        path = images.write_png(self.tmp + "/a/b.png", image)
        back = images.read_png(path)
        self.assertEqual(back.shape, (5, 7, 3))
        np.testing.assert_allclose(back, np.round(image * 255) / 255, atol=1e-6)

    @parameterized.named_parameters(
        ("grey", (4, 6), (4, 6)),
        ("grey_channel", (4, 6, 1), (4, 6)),
        ("rgb", (4, 6, 3), (4, 6, 3)),
    )
    def test_to_uint8_shapes_and_clipping(self, shape, expected):
        image = np.full(shape, 2.0, np.float32)
        image.flat[0] = -1.0
        out = images.to_uint8(image)
        self.assertEqual(out.shape, expected)
        self.assertEqual(out.dtype, np.uint8)
        self.assertEqual(out.flat[0], 0)
        self.assertEqual(out.flat[-1], 255)

    def test_to_uint8_rejects_bad_shapes_and_nan(self):
        with pytest.raises(ValueError, match="expected an image"):
            images.to_uint8(np.zeros((2, 2, 4)))
        with pytest.raises(ValueError, match="NaN"):
            images.to_uint8(np.full((2, 2), np.nan))

    def test_gif_loops_and_keeps_frames(self):
        frames = [np.full((8, 8, 3), v, np.float32) for v in (0.0, 0.5, 1.0)]
        path = images.write_gif(self.tmp + "/x.gif", frames, fps=10)
        with Image.open(path) as gif:
            self.assertEqual(gif.n_frames, 3)
            self.assertEqual(gif.info.get("loop"), 0)
            self.assertEqual(gif.info.get("duration"), 100)
            gif.seek(1)
            self.assertAlmostEqual(np.asarray(gif.convert("RGB"))[0, 0, 0], 128, delta=2)

    def test_gif_rejects_mixed_sizes(self):
        with pytest.raises(ValueError, match="one size"):
            images.write_gif(self.tmp + "/unused.gif", [np.zeros((4, 4, 3)), np.zeros((5, 4, 3))])
        with pytest.raises(ValueError, match="at least one"):
            images.write_gif(self.tmp + "/unused.gif", [])

    def test_colormap_end_points_are_viridis(self):
        colors = images.apply_colormap(np.array([0.0, 1.0, 0.5, 2.0]))
        np.testing.assert_allclose(colors[0] * 255, [0x44, 0x01, 0x54], atol=1e-4)
        np.testing.assert_allclose(colors[1] * 255, [0xFD, 0xE7, 0x25], atol=1e-4)
        np.testing.assert_allclose(colors[2] * 255, [0x21, 0x91, 0x8C], atol=1e-4)
        np.testing.assert_allclose(colors[3], colors[1])  # clipped

    def test_colorize_depth_near_is_bright_and_background_kept(self):
        depth = np.array([[1.0, 2.0], [3.0, 0.0]], np.float32)
        image, (near, far) = images.colorize_depth(
            depth, depth_min=1.0, depth_max=3.0, background=(1, 0, 0)
        )
        np.testing.assert_allclose(image[0, 0], images.VIRIDIS[-1], atol=1e-6)
        np.testing.assert_allclose(image[1, 0], images.VIRIDIS[0], atol=1e-6)
        np.testing.assert_allclose(image[1, 1], [1, 0, 0])
        self.assertEqual((near, far), (1.0, 3.0))

    def test_colorize_depth_auto_range_ignores_masked_pixels(self):
        depth = np.array([[1.0, 2.0], [3.0, 100.0]], np.float32)
        mask = np.array([[1, 1], [1, 0]], np.float32)
        _, (near, far) = images.colorize_depth(depth, mask=mask)
        self.assertGreaterEqual(near, 1.0)
        self.assertLessEqual(far, 3.0)
        with pytest.raises(ValueError, match="must exceed"):
            images.colorize_depth(depth, depth_min=2.0, depth_max=1.0)

    def test_depth_npy_is_raw_float32(self):
        depth = np.arange(6, dtype=np.float64).reshape(2, 3) / 7
        path = images.save_depth(self.tmp + "/d.npy", depth)
        back = np.load(path)
        self.assertEqual(back.dtype, np.float32)
        np.testing.assert_allclose(back, depth, rtol=1e-6)

    def test_grid_places_images_and_labels(self):
        a = np.zeros((4, 4, 3), np.float32)
        b = np.ones((4, 6), np.float32) * 0.5
        grid = images.image_grid([[a, b], [None, a]], padding=1, background=1.0)
        self.assertEqual(grid.shape, (1 + 4 + 1 + 4 + 1, 1 + 4 + 1 + 6 + 1, 3))
        np.testing.assert_allclose(grid[1:5, 1:5], 0.0)
        np.testing.assert_allclose(grid[1:5, 6:12], 0.5)
        np.testing.assert_allclose(grid[6:10, 1:5], 1.0)  # empty cell
        labelled = images.image_grid([[a, b]], column_labels=["gt", "render"], row_labels=["x"])
        self.assertGreater(labelled.shape[0], 6)
        self.assertGreater(labelled.shape[1], 13)
        self.assertLess(labelled[: labelled.shape[0] - 6].min(), 0.5)  # text was drawn
        with pytest.raises(ValueError, match="column labels"):
            images.image_grid([[a, b]], column_labels=["one"])

    def test_error_image_zero_error_is_colormap_start(self):
        a = np.full((2, 2, 3), 0.3, np.float32)
        np.testing.assert_allclose(images.error_image(a, a)[0, 0], images.VIRIDIS[0], atol=1e-6)
