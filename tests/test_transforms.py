"""Tests of the transforms.json import (tfglo.transforms): lego geometry, masks, bad input."""

import json
import math
import pathlib
import shutil
import tempfile

import numpy as np
import pytest
from absl.testing import parameterized
from PIL import Image

from tfglo.data import transforms_json as transforms
from tfglo.geometry import camera

LEGO_SIZE = 200


@pytest.fixture(scope="module")
def lego_json(lego_dir) -> pathlib.Path:
    return lego_dir / "transforms.json"


@pytest.fixture(scope="module")
def lego_frames(lego_json):
    frames, skipped = transforms.read_transforms(lego_json)
    assert skipped == []
    return frames


def _alpha_and_rgb(frame):
    pixels = np.asarray(Image.open(frame.image_path).convert("RGBA"))
    return pixels[..., :3], pixels[..., 3]


def test_lego_origin_projects_to_image_centre(lego_frames):
    assert len(lego_frames) == 80
    cameras = camera.Camera(
        np.stack([f.intrinsics for f in lego_frames]).astype(np.float32),
        np.stack([f.world_to_camera for f in lego_frames]).astype(np.float32),
    )
    pixels, depth = camera.project(cameras, np.zeros([80, 1, 3], np.float32))
    np.testing.assert_allclose(pixels.numpy()[:, 0], LEGO_SIZE / 2, atol=0.5)
    np.testing.assert_allclose(depth.numpy()[:, 0], 4.0311, atol=1e-3)  # in front, at 4.03


def test_lego_known_point_round_trips_through_the_conversion(lego_frames):
    for frame in lego_frames[:5]:
        # A point 2 units in front of the OpenGL camera (looking along -z), right and up.
        point_gl_camera = np.array([0.3, 0.2, -2.0, 1.0])
        point_world = (frame.camera_to_world_gl @ point_gl_camera)[:3]
        cam = camera.Camera(
            frame.intrinsics.astype(np.float32), frame.world_to_camera.astype(np.float32)
        )
        pixels, depth = camera.project(cam, point_world[None].astype(np.float32))
        fx, fy, cx, cy = frame.intrinsics
        # OpenCV camera: x right, y down, z forward => (0.3, -0.2, 2.0).
        np.testing.assert_allclose(
            pixels.numpy()[0], [cx + fx * 0.3 / 2.0, cy - fy * 0.2 / 2.0], atol=1e-3
        )
        np.testing.assert_allclose(depth.numpy()[0], 2.0, atol=1e-5)
        np.testing.assert_allclose(
            camera.camera_center(cam.world_to_camera).numpy(),
            frame.camera_to_world_gl[:3, 3],
            atol=1e-5,
        )


def test_lego_intrinsics_from_camera_angle_x(lego_frames, lego_json):
    angle = json.loads(lego_json.read_text())["camera_angle_x"]
    focal = 0.5 * LEGO_SIZE / math.tan(0.5 * angle)
    np.testing.assert_allclose(lego_frames[0].intrinsics, [focal, focal, 100, 100], rtol=1e-6)


def test_lego_one_object(lego_frames):
    assert {f.latent_id for f in lego_frames} == {0}
    assert {f.object_id for f in lego_frames} == {0}
    assert [f.view_id for f in lego_frames] == list(range(80))
    assert {f.split for f in lego_frames} == {"train"}


@pytest.mark.parametrize("background", ["white", "black", "keep"])
def test_lego_masks_agree_with_alpha(lego_frames, background):
    config = transforms.TransformsConfig(background=background)
    for frame in lego_frames[::27]:
        record = transforms.load_frame(frame, config)
        rgb, alpha = _alpha_and_rgb(frame)
        np.testing.assert_array_equal(record.mask, alpha)
        opaque, empty = alpha == 255, alpha == 0
        assert opaque.sum() > 1000 and empty.sum() > 1000
        np.testing.assert_array_equal(record.image[opaque], rgb[opaque])
        if background == "white":
            assert np.all(record.image[empty] == 255)
        elif background == "black":
            assert np.all(record.image[empty] == 0)
        else:
            np.testing.assert_array_equal(record.image, rgb)
        partial = (alpha > 0) & (alpha < 255)
        if background == "white" and partial.any():
            expected = rgb * (alpha[..., None] / 255.0) + 255.0 * (1 - alpha[..., None] / 255.0)
            np.testing.assert_allclose(record.image[partial], expected[partial], atol=0.51)


def test_lego_scene_radius_holds_every_foreground_ray(lego_frames):
    config = transforms.TransformsConfig()
    lost_with_smaller_sphere = 0
    for frame in lego_frames[::4]:
        cam = camera.Camera(
            frame.intrinsics.astype(np.float32), frame.world_to_camera.astype(np.float32)
        )
        origins, directions = camera.image_rays(cam, LEGO_SIZE, LEGO_SIZE)
        _, alpha = _alpha_and_rgb(frame)
        _, _, hit = camera.intersect_sphere(origins, directions, config.scene_radius)
        assert np.all(hit.numpy()[alpha > 0]), frame.file_path
        _, _, hit_small = camera.intersect_sphere(origins, directions, 1.25)
        lost_with_smaller_sphere += int(np.sum(~hit_small.numpy()[alpha > 0]))
    # The bound is not loose: a sphere of 1.25 loses foreground rays.
    assert lost_with_smaller_sphere > 0


def test_lego_resize_adjusts_intrinsics(lego_json):
    config = transforms.TransformsConfig(image_size=50)
    frames, _ = transforms.read_transforms(lego_json, config)
    record = transforms.load_frame(frames[3], config)
    assert record.image.shape == (50, 50, 3) and record.mask.shape == (50, 50)
    np.testing.assert_allclose(record.intrinsics, frames[3].intrinsics / 4, rtol=1e-6)
    pixels, _ = camera.project(
        camera.Camera(record.intrinsics, record.world_to_camera), np.zeros([1, 3], np.float32)
    )
    np.testing.assert_allclose(pixels.numpy()[0], [25, 25], atol=0.2)
    _, alpha = _alpha_and_rgb(frames[3])
    area_mean = alpha.reshape(50, 4, 50, 4).astype(np.float64).mean((1, 3))
    np.testing.assert_allclose(record.mask, area_mean, atol=1.0)


def test_lego_holdout(lego_json):
    frames, _ = transforms.read_transforms(lego_json, transforms.TransformsConfig(eval_every=8))
    eval_indices = [f.index for f in frames if f.split == "eval"]
    assert eval_indices == list(range(0, 80, 8))
    assert sum(f.split == "train" for f in frames) == 70
    config = transforms.TransformsConfig(eval_frames=("r_3", 5, "images/r_7.png"))
    frames, _ = transforms.read_transforms(lego_json, config)
    eval_names = sorted(f.file_path for f in frames if f.split == "eval")
    assert eval_names == ["images/r_3.png", "images/r_5.png", "images/r_7.png"]


def test_lego_load_metadata(lego_json):
    iterator, metadata, skipped = transforms.load(
        lego_json, transforms.TransformsConfig(image_size=20)
    )
    assert skipped == []
    assert metadata["scene_radius"] == 1.5
    assert metadata["background"] == "white"
    first = next(iterator)
    assert first.image.shape == (20, 20, 3)
    assert first.source == "images/r_0.png"


def _png(path: pathlib.Path, size=(8, 8), alpha=True, value=100):
    pixels = np.full((*size, 4 if alpha else 3), value, np.uint8)
    if alpha:
        pixels[..., 3] = 0
        pixels[2:5, 3:6, 3] = 255
    Image.fromarray(pixels).save(path)


def _pose(distance=4.0):
    """A camera-to-world OpenGL matrix on the +z axis looking at the origin."""
    matrix = np.eye(4)
    matrix[2, 3] = distance
    return matrix.tolist()


class SmallFilesTest(parameterized.TestCase):
    """Hand-made transforms files over tiny images: extensions and bad input."""

    def setUp(self):
        super().setUp()
        self.root = pathlib.Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)
        (self.root / "img").mkdir()
        for name in ("a", "b", "c"):
            _png(self.root / "img" / f"{name}.png")
        _png(self.root / "img" / "rgb.png", alpha=False)
        _png(self.root / "img" / "big.png", size=(9, 8))
        (self.root / "img" / "broken.png").write_text("not a png")

    def _frames(self, names=("a", "b", "c"), **extra):
        return [{"file_path": f"img/{n}.png", "transform_matrix": _pose(), **extra} for n in names]

    def _write(self, data) -> pathlib.Path:
        path = self.root / "transforms.json"
        path.write_text(data if isinstance(data, str) else json.dumps(data))
        return path

    def _read(self, data, **config):
        return transforms.read_transforms(self._write(data), transforms.TransformsConfig(**config))

    def test_extensionless_file_path(self):
        frames, _ = self._read(
            {
                "camera_angle_x": 0.5,
                "frames": [{"file_path": "./img/a", "transform_matrix": _pose()}],
            }
        )
        self.assertEqual(frames[0].image_path, self.root / "img" / "a.png")

    def test_instant_ngp_intrinsics_scaled_to_the_file(self):
        # Intrinsics given for a 16x16 original; the file is 8x8.
        data = {"fl_x": 20.0, "cx": 7.0, "cy": 9.0, "w": 16, "h": 16, "frames": self._frames()}
        frames, _ = self._read(data)
        np.testing.assert_allclose(frames[0].intrinsics, [10.0, 10.0, 3.5, 4.5])

    def test_per_frame_intrinsics_win(self):
        data = {"camera_angle_x": 1.0, "frames": self._frames()}
        data["frames"][1].update(fl_x=12.0, fl_y=14.0, cx=4.5)
        frames, _ = self._read(data)
        np.testing.assert_allclose(frames[1].intrinsics, [12.0, 14.0, 4.5, 4.0])
        focal = 4.0 / math.tan(0.5)
        np.testing.assert_allclose(frames[0].intrinsics, [focal, focal, 4.0, 4.0], rtol=1e-6)

    def test_camera_angle_y_alone(self):
        frames, _ = self._read({"camera_angle_y": 1.0, "frames": self._frames()})
        focal = 4.0 / math.tan(0.5)
        np.testing.assert_allclose(frames[0].intrinsics, [focal, focal, 4.0, 4.0], rtol=1e-6)

    @parameterized.named_parameters(
        ("strings", ["x", "y", "x"], [0, 1, 0], [0, 1, 0]),
        ("ints", [5, 7, 5], [0, 1, 0], [5, 7, 5]),
    )
    def test_object_ids_share_latents(self, keys, latent_ids, object_ids):
        data = {"camera_angle_x": 0.5, "frames": self._frames()}
        for frame, key in zip(data["frames"], keys):
            frame["object_id"] = key
        frames, _ = self._read(data)
        self.assertEqual([f.latent_id for f in frames], latent_ids)
        self.assertEqual([f.object_id for f in frames], object_ids)
        self.assertEqual([f.view_id for f in frames], [0, 0, 1])

    def test_explicit_split_wins_over_holdout(self):
        data = {"camera_angle_x": 0.5, "frames": self._frames()}
        data["frames"][0]["split"] = "train"
        data["frames"][1]["split"] = "eval"
        frames, _ = self._read(data, eval_every=2)
        self.assertEqual([f.split for f in frames], ["train", "eval", "eval"])

    def test_rgb_image_without_alpha_has_no_mask(self):
        data = {"camera_angle_x": 0.5, "frames": self._frames(["rgb"])}
        frames, _ = self._read(data)
        record = transforms.load_frame(frames[0])
        self.assertIsNone(record.mask)
        np.testing.assert_array_equal(record.image, np.full((8, 8, 3), 100))

    @parameterized.named_parameters(
        ("white", "white", ("a", "b"), [1.0, 1.0, 1.0], 255),
        ("black", "black", ("a", "b"), [0.0, 0.0, 0.0], 0),
        ("keep", "keep", ("a", "b"), None, 100),
        ("one_frame_without_alpha", "white", ("a", "rgb"), None, None),
    )
    def test_constant_background(self, background, names, expected, pixel):
        data = {"camera_angle_x": 0.5, "frames": self._frames(names)}
        iterator, metadata, _ = transforms.load(
            self._write(data), transforms.TransformsConfig(background=background)
        )
        self.assertEqual(json.loads(json.dumps(metadata))["constant_background"], expected)
        record = next(iterator)
        if pixel is not None:  # what the background pixels of an alpha image hold
            np.testing.assert_array_equal(record.image[record.mask == 0], pixel)

    def test_skip_missing(self):
        data = {"camera_angle_x": 0.5, "frames": self._frames(["a", "gone", "b"])}
        frames, skipped = self._read(data, skip_missing=True)
        self.assertEqual([f.file_path for f in frames], ["img/a.png", "img/b.png"])
        self.assertEqual([f.view_id for f in frames], [0, 1])
        self.assertLen(skipped, 1)
        self.assertEqual(skipped[0]["source"], "img/gone.png")
        self.assertRegex(skipped[0]["reason"], r"image file .*gone.png does not exist")

    def _bad(self, kind):
        data = {"camera_angle_x": 0.5, "frames": self._frames()}
        frame = data["frames"][1]
        if kind == "bad_json":
            return '{"frames": [', {}
        if kind == "no_frames":
            return {"camera_angle_x": 0.5}, {}
        if kind == "missing_image":
            frame["file_path"] = "img/missing.png"
        elif kind == "matrix_3x3":
            frame["transform_matrix"] = np.eye(3).tolist()
        elif kind == "matrix_text":
            frame["transform_matrix"] = [["a", "b"], [1, 2]]
        elif kind == "matrix_nan":
            frame["transform_matrix"][0][3] = float("nan")
        elif kind == "matrix_scaled":
            frame["transform_matrix"] = (np.array(_pose()) @ np.diag([2.0, 2.0, 2.0, 1.0])).tolist()
        elif kind == "matrix_reflection":
            frame["transform_matrix"] = (np.diag([-1.0, 1, 1, 1]) @ np.array(_pose())).tolist()
        elif kind == "matrix_last_row":
            frame["transform_matrix"][3] = [0, 0, 1, 1]
        elif kind == "no_matrix":
            del frame["transform_matrix"]
        elif kind == "no_file_path":
            del frame["file_path"]
        elif kind == "no_focal":
            del data["camera_angle_x"]
        elif kind == "bad_angle":
            data["camera_angle_x"] = 4.0
        elif kind == "text_focal":
            frame["fl_x"] = "big"
        elif kind == "distortion":
            data["k1"] = 0.1
        elif kind == "bad_split":
            frame["split"] = "test"
        elif kind == "partial_object_ids":
            frame["object_id"] = 3
        elif kind == "mixed_sizes":
            frame["file_path"] = "img/big.png"
        elif kind == "broken_image":
            frame["file_path"] = "img/broken.png"
        elif kind == "camera_inside":
            frame["transform_matrix"] = _pose(distance=1.0)
        elif kind == "unknown_eval_frame":
            return data, {"eval_frames": ("nope",)}
        return data, {}

    @parameterized.named_parameters(
        ("bad_json", "bad_json", r"transforms.json: not valid JSON"),
        ("no_frames", "no_frames", r"transforms.json: no 'frames' list"),
        (
            "missing_image",
            "missing_image",
            r"frame 1 \(img/missing.png\): image file .*missing.png does not exist",
        ),
        (
            "matrix_3x3",
            "matrix_3x3",
            r"frame 1 \(img/b.png\): transform_matrix must be 4x4 .* shape \(3, 3\)",
        ),
        ("matrix_text", "matrix_text", r"frame 1 .*transform_matrix is not a matrix of numbers"),
        ("matrix_nan", "matrix_nan", r"frame 1 .*transform_matrix has non-finite values"),
        ("matrix_scaled", "matrix_scaled", r"frame 1 .*not a rigid camera-to-world transform"),
        (
            "matrix_reflection",
            "matrix_reflection",
            r"frame 1 .*not a rigid camera-to-world transform.*det = -1",
        ),
        ("matrix_last_row", "matrix_last_row", r"frame 1 .*last row must be \[0, 0, 0, 1\]"),
        ("no_matrix", "no_matrix", r"frame 1 \(img/b.png\): missing 'transform_matrix'"),
        ("no_file_path", "no_file_path", r"frame 1: missing 'file_path'"),
        ("no_focal", "no_focal", r"frame 0 .*no focal length: give camera_angle_x or fl_x"),
        ("bad_angle", "bad_angle", r"frame 0 .*camera_angle_x must be in \(0, pi\)"),
        ("text_focal", "text_focal", r"frame 1 .*fl_x must be a finite number, got 'big'"),
        ("distortion", "distortion", r"frame 0 .*lens distortion \{'k1': 0.1\} is not supported"),
        ("bad_split", "bad_split", r"frame 1 .*split must be one of .*'test'"),
        ("partial_object_ids", "partial_object_ids", r"frame 0 has no object_id but others do"),
        (
            "mixed_sizes",
            "mixed_sizes",
            r"frame 1 \(img/big.png\): image is 9x8 but img/a.png is 8x8",
        ),
        (
            "broken_image",
            "broken_image",
            r"frame 1 \(img/broken.png\): cannot read image .*broken.png",
        ),
        ("camera_inside", "camera_inside", r"frame 1 .*camera is inside the scene sphere"),
        ("unknown_eval_frame", "unknown_eval_frame", r"eval frame 'nope' matches no frame"),
    )
    def test_bad_input_names_file_and_problem(self, kind, message):
        data, config = self._bad(kind)
        path = self._write(data)
        with pytest.raises(transforms.TransformsError, match=message) as info:
            transforms.read_transforms(path, transforms.TransformsConfig(**config))
        self.assertIn(str(path), str(info.value))

    def test_missing_transforms_file(self):
        with pytest.raises(transforms.TransformsError, match=r"nope.json: transforms file does"):
            transforms.read_transforms(self.root / "nope.json")

    @parameterized.named_parameters(
        ("background", dict(background="grey"), "background must be one of"),
        ("eval_every", dict(eval_every=-1), "eval_every must be >= 0"),
        ("radius", dict(scene_radius=0.0), "scene_radius must be > 0"),
        ("size", dict(image_size=(0, 4)), "image_size must be positive"),
    )
    def test_bad_config(self, kwargs, message):
        with pytest.raises(ValueError, match=message):
            transforms.TransformsConfig(**kwargs)
