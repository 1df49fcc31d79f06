"""Tests of robust photo loading and square crops (tfglo.photos)."""

import io
import pathlib
import shutil
import tempfile

import numpy as np
import pytest
from absl.testing import parameterized
from PIL import Image

from tfglo.data import photos


def _gradient(width=64, height=48):
    x = np.linspace(0, 255, width)[None, :, None]
    y = np.linspace(0, 255, height)[:, None, None]
    rgb = np.concatenate(
        [np.broadcast_to(x, (height, width, 1)), np.broadcast_to(y, (height, width, 1))]
        + [np.full((height, width, 1), 90.0)],
        -1,
    )
    return rgb.astype(np.uint8)


def _save(path, image: Image.Image, **kwargs):
    image.save(path, **kwargs)
    return path


class LoadTest(parameterized.TestCase):
    def setUp(self):
        super().setUp()
        # tempfile rather than absltest's create_tempfile: that needs absl flags parsed.
        self.folder = pathlib.Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.folder, True)

    def path(self, name: str, content: bytes | None = None) -> str:
        path = self.folder / name
        if content is not None:
            path.write_bytes(content)
        return str(path)

    @parameterized.named_parameters(
        ("rgb_jpeg", "RGB", "x.jpg", ""),
        ("gray", "L", "x.png", "L converted to RGB"),
        ("bilevel", "1", "x.png", "1 converted to RGB"),
        ("palette", "P", "x.png", "P converted to RGB"),
        ("cmyk_jpeg", "CMYK", "x.jpg", "CMYK converted to RGB"),
        ("ycbcr_jpeg", "YCbCr", "x.jpg", ""),
        ("rgba", "RGBA", "x.png", "RGBA: composited on white"),
        ("gray_alpha", "LA", "x.png", "LA: composited on white"),
        ("gray16", "I;16", "x.png", "scaled to 8 bits"),
        ("float_tiff", "F", "x.tiff", "F scaled to 8 bits"),
    )
    def test_any_mode_becomes_rgb(self, mode, name, note):
        path = self.path(name)
        base = Image.fromarray(_gradient())
        if mode == "I;16":
            image = Image.fromarray(np.asarray(base.convert("L"), np.uint16) * 257)
        elif mode == "F":
            image = Image.fromarray(np.asarray(base.convert("L"), np.float32) / 255.0)
        else:
            image = base.convert(mode)
        _save(path, image)
        loaded = photos.load_photo(path)
        self.assertEqual(loaded.image.shape, (48, 64, 3))
        self.assertEqual(loaded.image.dtype, np.uint8)
        self.assertTrue(loaded.image.flags["C_CONTIGUOUS"])
        if note:
            self.assertTrue(any(note in n for n in loaded.notes), loaded.notes)
        # Content survives: brightness still increases left to right (x gradient in red/gray).
        row = loaded.image[24].astype(float).mean(-1)
        self.assertGreater(row[-4:].mean(), row[:4].mean() + 40)

    def test_sixteen_bit_is_scaled_not_clipped(self):
        path = self.path("deep.png")
        values = np.array([[0, 257 * 64, 257 * 128, 65535]] * 40, np.uint16)
        values = np.repeat(values, 10, axis=1)
        Image.fromarray(values).save(path)
        loaded = photos.load_photo(path)
        np.testing.assert_array_equal(loaded.image[0, ::10, 0], [0, 64, 128, 255])

    @parameterized.named_parameters(
        ("white", "white", (255, 255, 255)),
        ("black", "black", (0, 0, 0)),
        ("drop", "drop", (10, 20, 30)),
    )
    def test_alpha_policy(self, alpha, expected):
        path = self.path("alpha.png")
        rgba = np.zeros((40, 40, 4), np.uint8)
        rgba[..., :3] = (10, 20, 30)
        rgba[:, 20:, 3] = 255  # right half opaque, left half transparent
        Image.fromarray(rgba, "RGBA").save(path)
        loaded = photos.load_photo(path, photos.PhotoConfig(alpha=alpha))
        np.testing.assert_array_equal(loaded.image[5, 5], expected)
        np.testing.assert_array_equal(loaded.image[5, 30], (10, 20, 30))

    def test_palette_with_transparency_is_composited(self):
        path = self.path("p.png")
        image = Image.new("P", (40, 40), 1)
        image.putpalette([0, 0, 0, 200, 0, 0] + [0] * 762)
        image.save(path, transparency=1)
        loaded = photos.load_photo(path)
        np.testing.assert_array_equal(loaded.image[0, 0], (255, 255, 255))

    def test_exif_orientation_is_applied(self):
        path = self.path("rotated.jpg")
        image = Image.fromarray(_gradient(64, 48))
        exif = image.getexif()
        exif[0x0112] = 6  # stored sideways: display rotated by 90 degrees clockwise
        image.save(path, exif=exif.tobytes())
        loaded = photos.load_photo(path)
        self.assertEqual(loaded.image.shape, (64, 48, 3))
        self.assertIn("EXIF orientation 6 applied", loaded.notes)

    def test_animated_gif_gives_first_frame(self):
        path = self.path("anim.gif")
        frames = [Image.new("RGB", (40, 40), c) for c in ((250, 0, 0), (0, 0, 250))]
        frames[0].save(path, save_all=True, append_images=frames[1:])
        loaded = photos.load_photo(path)
        self.assertGreater(loaded.image[0, 0, 0], 200)
        self.assertIn("first of 2 frames", loaded.notes)

    def test_rejects_with_reasons(self):
        jpeg = io.BytesIO()
        Image.fromarray(_gradient(200, 200)).save(jpeg, format="JPEG")
        cases = {
            "truncated.jpg": (jpeg.getvalue()[: len(jpeg.getvalue()) // 2], "truncated"),
            "text.jpg": (b"this is not a picture\n" * 20, "not an image"),
            "empty.png": (b"", "not an image"),
        }
        for name, (data, reason) in cases.items():
            path = self.path(name, data)
            with pytest.raises(photos.PhotoError, match=reason) as error:
                photos.load_photo(path)
            self.assertEqual(error.value.reason, reason)
        tiny = self.path("tiny.png")
        Image.new("RGB", (8, 8)).save(tiny)
        with pytest.raises(photos.PhotoError, match=r"too small: 8x8 is below") as error:
            photos.load_photo(tiny)
        with pytest.raises(photos.PhotoError, match="unreadable: no such file"):
            photos.load_photo(self.path("missing.jpg"))
        big = self.path("big.png")
        Image.new("RGB", (300, 300)).save(big)
        with pytest.raises(photos.PhotoError, match="too large"):
            photos.load_photo(big, photos.PhotoConfig(max_pixels=50_000))

    @parameterized.named_parameters(
        ("pad_mode", {"pad_mode": "reflect"}, "pad_mode must be one of"),
        ("alpha", {"alpha": "grey"}, "alpha must be one of"),
        ("size", {"image_size": 4}, "image_size must be >= 8"),
        ("margin", {"crop_margin": -0.1}, "crop_margin must be >= 0"),
    )
    def test_config_rejects(self, kwargs, message):
        with pytest.raises(ValueError, match=message):
            photos.PhotoConfig(**kwargs)


class CropTest(parameterized.TestCase):
    def test_inside_crop_is_an_exact_slice(self):
        image = np.random.default_rng(0).integers(0, 255, (100, 120, 3), dtype=np.uint8)
        crop = photos.crop_square(image, (60.0, 50.0), 40, 40)
        np.testing.assert_array_equal(crop.image, image[30:70, 40:80])
        self.assertFalse(crop.padded)
        self.assertEqual(crop.padding["fraction"], 0.0)
        np.testing.assert_allclose(crop.transform.apply(np.array([[40.0, 30.0]])), [[0.0, 0.0]])

    @parameterized.named_parameters(("edge", "edge"), ("constant", "constant"))
    def test_padding_is_recorded_and_filled(self, mode):
        image = np.full((50, 50, 3), 100, np.uint8)
        image[:, 0] = (200, 10, 10)  # the left column, replicated by edge padding
        crop = photos.crop_square(image, (5.0, 25.0), 30, 30, mode, pad_color=(0, 255, 0))
        self.assertTrue(crop.padded)
        self.assertEqual(
            {k: crop.padding[k] for k in ("left", "top", "right", "bottom")},
            {"left": 10, "top": 0, "right": 0, "bottom": 0},
        )
        self.assertAlmostEqual(crop.padding["fraction"], 10 / 30, 4)
        self.assertEqual(crop.padding["mode"], mode)
        expected = (200, 10, 10) if mode == "edge" else (0, 255, 0)
        np.testing.assert_array_equal(crop.image[15, 3], expected)
        np.testing.assert_array_equal(crop.image[15, 20], (100, 100, 100))

    def test_square_outside_the_photo(self):
        image = np.zeros((40, 40, 3), np.uint8)
        crop = photos.crop_square(image, (500.0, 500.0), 20, 16, "edge", pad_color=(1, 2, 3))
        self.assertEqual(crop.image.shape, (16, 16, 3))
        np.testing.assert_array_equal(crop.image[8, 8], (1, 2, 3))

    def test_landmarks_follow_the_resize(self):
        image = np.zeros((200, 300, 3), np.uint8)
        image[118:122, 178:182] = 255  # a bright dot centred on photo pixel (180, 120)
        crop = photos.crop_square(image, (170.0, 110.0), 100, 50)
        expected = crop.transform.apply(np.array([180.0, 120.0]))
        ys, xs = np.nonzero(crop.image[..., 0] > 60)
        np.testing.assert_allclose([xs.mean() + 0.5, ys.mean() + 0.5], expected, atol=0.6)
        np.testing.assert_allclose(crop.transform.invert(expected), [180.0, 120.0])

    def test_transform_scales_depth_column(self):
        transform = photos.CropTransform(origin=(10.0, 20.0), side=100.0, scale=0.5)
        mapped = transform.apply(np.array([[30.0, 40.0, -8.0]]))
        np.testing.assert_allclose(mapped, [[10.0, 10.0, -4.0]])

    def test_square_around_a_box(self):
        self.assertEqual(photos.square_around((10, 20, 50, 40), 0.5), (30.0, 30.0, 80.0))

    def test_rejects(self):
        image = np.zeros((10, 10, 3), np.uint8)
        with pytest.raises(ValueError, match="pad_mode must be one of"):
            photos.crop_square(image, (5, 5), 4, 4, pad_mode="wrap")
        with pytest.raises(ValueError, match="must be positive"):
            photos.crop_square(image, (5, 5), 0, 4)

    def test_huge_photos_are_downscaled_for_detection(self):
        image = np.zeros((3000, 4000, 3), np.uint8)
        small, scale = photos.downscale_for_detection(image, 1280)
        self.assertEqual(small.shape, (960, 1280, 3))
        self.assertAlmostEqual(scale, 0.32)
        same, one = photos.downscale_for_detection(small, 1280)
        self.assertIs(same, small)
        self.assertEqual(one, 1.0)
