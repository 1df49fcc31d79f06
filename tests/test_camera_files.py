"""Tests of camera files (tfglo.data.camera_files) and `prepare --source=images --cameras=FILE`."""

import copy
import json
import pathlib
import tempfile

import app_testlib
import numpy as np
import pytest
from absl.testing import parameterized
from PIL import Image

from tfglo.data import camera_files, dataset_dir
from tfglo.data.synthetic import heads as synthetic
from tfglo.geometry import camera as camera_lib


def _tmp(test) -> pathlib.Path:
    """A fresh directory removed after `test`."""
    directory = tempfile.TemporaryDirectory()
    test.addCleanup(directory.cleanup)
    return pathlib.Path(directory.name)


def _look_at_jax3d(eye, target, focal, size, principal, ratio=1.0):
    """A camera entry in the LOLNeRF estimates' own terms (orientation rows = camera axes)."""
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    forward = (target - eye) / np.linalg.norm(target - eye)
    world_up = np.array([0.0, 1.0, 0.0])  # their world: +y up
    right = np.cross(forward, world_up)  # image +x
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)  # image +y
    orientation = np.stack([right, down, forward])
    return {
        "camera": {
            "orientation": orientation.tolist(),
            "position": eye.tolist(),
            "focal_length": [focal],
            "principal_point": list(principal),
            "image_size": list(size),
            "skew": [0.0],
            "pixel_aspect_ratio": [ratio],
        },
        "identity": 0,
    }


def _jax3d_project(entry, point):
    """The authors' projection, written from their camera model (jax3d nerf/camera.py)."""
    cam = entry["camera"]
    local = np.asarray(cam["orientation"]) @ (np.asarray(point) - np.asarray(cam["position"]))
    x, y = local[0] / local[2], local[1] / local[2]
    focal, ratio, skew = cam["focal_length"][0], cam["pixel_aspect_ratio"][0], cam["skew"][0]
    return np.array(
        [
            focal * x + skew * y + cam["principal_point"][0],
            focal * ratio * y + cam["principal_point"][1],
        ]
    )


def _jax3d_ray(entry, pixel):
    """The authors' ray through a pixel: origin = position, direction = O^T K^-1 pixel."""
    cam = entry["camera"]
    focal, ratio = cam["focal_length"][0], cam["pixel_aspect_ratio"][0]
    y = (pixel[1] - cam["principal_point"][1]) / (focal * ratio)
    x = (pixel[0] - cam["principal_point"][0]) / focal
    direction = np.asarray(cam["orientation"]).T @ np.array([x, y, 1.0])
    return np.asarray(cam["position"]), direction / np.linalg.norm(direction)


AFHQ_LIKE = _look_at_jax3d([1.7, 5.2, 5.0], [0.0, 0.0, 0.0], 512.0, (256, 256), (128.0, 128.0))
WIDE = _look_at_jax3d([-2.0, 1.0, 6.0], [0.1, -0.2, 0.0], 300.0, (320, 240), (161.0, 118.5), 1.1)


class KnownPointTest(parameterized.TestCase):
    """The conversion at the boundary, checked against the authors' camera model on points."""

    @parameterized.named_parameters(("afhq_like", AFHQ_LIKE), ("wide_aspect", WIDE))
    def test_projection_and_ray_round_trip(self, entry):
        path = _tmp(self) / "estimates.json"
        path.write_text(json.dumps({"cat.jpg": entry}))
        loaded = camera_files.load(path, align="none").cameras["cat.jpg"]
        cam = camera_lib.make_camera(loaded.intrinsics, loaded.world_to_camera)
        points = np.array([[0.0, 0.0, 0.0], [0.3, -0.4, 0.5], [-1.0, 0.8, -0.6]])
        pixels, depth = camera_lib.project(cam, points)
        for point, pixel in zip(points, pixels.numpy()):
            np.testing.assert_allclose(pixel, _jax3d_project(entry, point), atol=1e-3)
            origin, direction = _jax3d_ray(entry, pixel)
            o, d = camera_lib.rays_from_pixels(cam, pixel[None])
            np.testing.assert_allclose(o[0], origin, atol=1e-4)
            np.testing.assert_allclose(d[0], direction, atol=1e-5)
            # And the ray goes back through the point (distance from the line).
            offset = point - o[0].numpy()
            miss = np.linalg.norm(offset - np.dot(offset, d[0]) * d[0].numpy())
            self.assertLess(miss, 1e-4)
        self.assertTrue(np.all(depth.numpy() > 0))

    def test_mean_camera_alignment_rotates_the_world_only(self):
        entries = {
            "a.jpg": AFHQ_LIKE,
            "b.jpg": _look_at_jax3d([-1.5, 4.0, 6.0], [0, 0, 0], 512.0, (256, 256), (128, 128)),
        }
        path = _tmp(self) / "estimates.json"
        path.write_text(json.dumps(entries))
        raw = camera_files.load(path, align="none")
        aligned = camera_files.load(path)  # jax3d default: mean_camera
        q = aligned.alignment
        np.testing.assert_allclose(q @ q.T, np.eye(3), atol=1e-9)
        self.assertGreater(np.linalg.det(q), 0)
        point = np.array([[0.2, 0.5, -0.3]])
        for name in entries:
            before = raw.cameras[name]
            after = aligned.cameras[name]
            p0, _ = camera_lib.project(
                camera_lib.make_camera(before.intrinsics, before.world_to_camera), point
            )
            p1, _ = camera_lib.project(
                camera_lib.make_camera(after.intrinsics, after.world_to_camera), point @ q.T
            )
            np.testing.assert_allclose(p0, p1, atol=1e-3)
        # The average camera is now tfglo's frontal one: near identity, on the -z side.
        mean_rotation = camera_files.mean_camera_alignment(aligned.cameras)
        np.testing.assert_allclose(mean_rotation, np.eye(3), atol=1e-6)
        centres = [
            camera_lib.camera_center(c.world_to_camera).numpy() for c in aligned.cameras.values()
        ]
        self.assertTrue(all(c[2] < 0 for c in centres))
        self.assertEqual(aligned.scene_radius, camera_files.JAX3D_SCENE_RADIUS)


def _synthetic_cameras(num_objects=3, image_size=24):
    """Known cameras (and images) of a synthetic dataset: name -> (FileCamera, record)."""
    config = synthetic.SyntheticConfig(
        num_objects=num_objects, image_size=image_size, seed=3, eval_views_per_object=1
    )
    out = {}
    for record in synthetic.generate(config):
        name = f"{record.source.replace('/', '_')}.png"
        out[name] = (
            camera_files.FileCamera(
                intrinsics=np.asarray(record.intrinsics, np.float64),
                world_to_camera=np.asarray(record.world_to_camera, np.float64),
                width=record.width,
                height=record.height,
                object_id=int(record.object_id),
            ),
            record,
        )
    return out


def _rays(intrinsics, world_to_camera, height, width):
    cam = camera_lib.make_camera(intrinsics, world_to_camera)
    origins, directions = camera_lib.image_rays(cam, height, width)
    return origins.numpy(), directions.numpy()


class RoundTripTest(parameterized.TestCase):
    """Known cameras -> file (both formats) -> load: the same rays."""

    @parameterized.named_parameters(("tfglo", "tfglo"), ("jax3d", "jax3d"))
    def test_same_rays(self, kind):
        known = _synthetic_cameras()
        cameras = {name: cam for name, (cam, _) in known.items()}
        path = _tmp(self) / "cameras.json"
        if kind == "tfglo":
            camera_files.save_tfglo(path, cameras, scene_radius=1.0)
        else:
            camera_files.save_jax3d(path, cameras)
        loaded = camera_files.load(path, align="none")
        self.assertEqual(loaded.format, kind)
        self.assertEqual(sorted(loaded.cameras), sorted(cameras))
        for name, (_, record) in known.items():
            got = loaded.cameras[name]
            self.assertEqual((got.width, got.height), (record.width, record.height))
            self.assertEqual(got.object_id, record.object_id)
            o0, d0 = _rays(record.intrinsics, record.world_to_camera, record.height, record.width)
            o1, d1 = _rays(got.intrinsics, got.world_to_camera, got.height, got.width)
            np.testing.assert_allclose(o1, o0, atol=1e-5)
            np.testing.assert_allclose(d1, d0, atol=1e-6)

    def test_lookup_by_stem_and_scaling(self):
        known = _synthetic_cameras(num_objects=1)
        name, (cam, _) = next(iter(known.items()))
        path = _tmp(self) / "cameras.json"
        camera_files.save_tfglo(path, {pathlib.Path(name).stem: cam})
        loaded = camera_files.load(path)
        self.assertIsNotNone(loaded.lookup(name))  # "x.png" finds the entry "x"
        self.assertIsNone(loaded.lookup("other.png"))
        # Resizing keeps every pixel edge on the same ray: the centre pixel of a 2x image
        # corner (1, 1) is the corner pixel's (0.5, 0.5) point scaled.
        double = cam.scaled_to(2 * cam.width, 2 * cam.height)
        c0 = camera_lib.make_camera(cam.intrinsics, cam.world_to_camera)
        c1 = camera_lib.make_camera(double.intrinsics, double.world_to_camera)
        _, d0 = camera_lib.rays_from_pixels(c0, [[3.25, 7.5]])
        _, d1 = camera_lib.rays_from_pixels(c1, [[6.5, 15.0]])
        np.testing.assert_allclose(d0, d1, atol=1e-6)


def _tfglo_doc():
    return {
        "format": "tfglo-cameras",
        "version": 1,
        "images": {
            "a.png": {
                "width": 64,
                "height": 64,
                "fx": 128.0,
                "fy": 128.0,
                "cx": 32.0,
                "cy": 32.0,
                "world_to_camera": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 3]],
            }
        },
    }


def _jax3d_doc():
    return {"b.jpg": copy.deepcopy(AFHQ_LIKE)}


def _set(doc, keys, value):
    target = doc
    for key in keys[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return doc


_DELETE = object()
_IMG = ("images", "a.png")
_CAM = ("b.jpg", "camera")

# (name, document or raw text, expected message fragment)
BAD_FILES = [
    ("not_json", "{not json", "is not valid JSON"),
    ("unknown_format", {"a.png": [1, 2, 3]}, "unknown format"),
    ("empty_tfglo", _set(_tfglo_doc(), ("images",), {}), "holds no cameras"),
    ("bad_version", _set(_tfglo_doc(), ("version",), 7), "version 7 is not supported"),
    ("missing_fx", _set(_tfglo_doc(), (*_IMG, "fx"), _DELETE), "entry 'a.png': missing fx"),
    ("unknown_key", _set(_tfglo_doc(), (*_IMG, "fov"), 1.0), "entry 'a.png': unknown keys fov"),
    ("negative_focal", _set(_tfglo_doc(), (*_IMG, "fy"), -1.0), "focal lengths must be > 0"),
    ("string_cx", _set(_tfglo_doc(), (*_IMG, "cx"), "32"), "cx must be a number"),
    ("zero_width", _set(_tfglo_doc(), (*_IMG, "width"), 0), "width must be >= 1"),
    ("fractional_height", _set(_tfglo_doc(), (*_IMG, "height"), 10.5), "whole number of pixels"),
    (
        "short_matrix",
        _set(_tfglo_doc(), (*_IMG, "world_to_camera"), [[1, 0, 0], [0, 1, 0], [0, 0, 1]]),
        "world_to_camera must have shape [3, 4]",
    ),
    (
        "not_rotation",
        _set(_tfglo_doc(), (*_IMG, "world_to_camera"), [[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 3]]),
        "is not a rotation",
    ),
    (
        "reflection",
        _set(_tfglo_doc(), (*_IMG, "world_to_camera"), [[-1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 3]]),
        "is a reflection",
    ),
    (
        "nan_translation",
        _set(
            _tfglo_doc(), (*_IMG, "world_to_camera"), [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, "x"]]
        ),
        "world_to_camera must be numbers",
    ),
    ("bad_object_id", _set(_tfglo_doc(), (*_IMG, "object_id"), -2), "object_id must be an integer"),
    ("bad_radius", _set(_tfglo_doc(), ("scene_radius",), 0), "scene_radius must be > 0"),
    (
        "jax3d_no_camera",
        {"b.jpg": {"camera": {}, "identity": 0}},
        "entry 'b.jpg': missing orientation",
    ),
    ("jax3d_skew", _set(_jax3d_doc(), (*_CAM, "skew"), [3.0]), "skew 3.0 is not supported"),
    (
        "jax3d_distortion",
        _set(_jax3d_doc(), (*_CAM, "radial_distortion"), [0.1, 0, 0]),
        "radial_distortion is not supported",
    ),
    (
        "jax3d_position",
        _set(_jax3d_doc(), (*_CAM, "position"), [1, 2]),
        "position must have shape [3]",
    ),
    (
        "jax3d_size",
        _set(_jax3d_doc(), (*_CAM, "image_size"), [256]),
        "image_size must be [width, height]",
    ),
    ("jax3d_focal", _set(_jax3d_doc(), (*_CAM, "focal_length"), [0.0]), "must be > 0"),
    (
        "jax3d_identity",
        _set(_jax3d_doc(), ("b.jpg", "identity"), "cat"),
        "identity must be an integer",
    ),
    (
        "jax3d_orientation",
        _set(_jax3d_doc(), (*_CAM, "orientation"), [[1, 0, 0], [0, 1, 0], [0, 0, 0.5]]),
        "orientation is not a rotation",
    ),
]


class MalformedFileTest(parameterized.TestCase):
    @parameterized.named_parameters(*BAD_FILES)
    def test_rejected_with_a_clear_error(self, document, fragment):
        path = _tmp(self) / "cameras.json"
        path.write_text(document if isinstance(document, str) else json.dumps(document))
        with pytest.raises(camera_files.CameraFileError) as info:
            camera_files.load(path)
        self.assertIn(fragment, str(info.value))
        self.assertIn(str(path), str(info.value))  # the message names the file

    def test_missing_file(self):
        with pytest.raises(camera_files.CameraFileError, match="does not exist"):
            camera_files.load("/nonexistent/cameras.json")

    def test_valid_documents_load(self):
        # The two templates of the table above are themselves valid.
        for document in (_tfglo_doc(), _jax3d_doc()):
            path = _tmp(self) / "cameras.json"
            path.write_text(json.dumps(document))
            self.assertLen(camera_files.load(path).cameras, 1)


@pytest.mark.parametrize("kind", ["tfglo", "jax3d"])
def test_prepare_app_with_camera_file_gives_the_known_rays(tmp_path, kind):
    """Synthetic views as photos + their cameras in a file -> prepare -> the same rays."""
    known = _synthetic_cameras(num_objects=3, image_size=32)
    photos_dir = tmp_path / "photos"
    photos_dir.mkdir()
    for name, (_, record) in known.items():
        Image.fromarray(record.image).save(photos_dir / name)
    Image.fromarray(np.zeros([32, 32, 3], np.uint8)).save(photos_dir / "stranger.png")
    cameras = {name: cam for name, (cam, _) in known.items()}
    cameras_path = tmp_path / "cameras.json"
    if kind == "tfglo":
        camera_files.save_tfglo(cameras_path, cameras, scene_radius=1.0)
    else:
        camera_files.save_jax3d(cameras_path, cameras)
    out = tmp_path / "dataset"
    # 64 px output from 32 px files: the intrinsics must scale with the image.
    result = app_testlib.run_module(
        "tfglo.prepare",
        "--source=images",
        f"--images={photos_dir}",
        f"--cameras={cameras_path}",
        "--cameras_align=none",
        "--cameras_mask=full",
        "--image_size=64",
        "--scene_radius=1.0",
        f"--output={out}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "stranger.png: no camera" in result.stdout
    assert "miss the bounding sphere" in result.stdout
    metadata = dataset_dir.read_metadata(out)
    assert metadata["camera_file_format"] == kind
    assert metadata["scene_radius"] == 1.0
    assert set(metadata["mask_outside_sphere"]["per_image"]) == set(known)
    written = {r.source: r for r in dataset_dir.iterate_records(out)}
    assert set(written) == set(known)
    latents = {}
    for name, (_, record) in known.items():
        got = written[name]
        assert (got.height, got.width) == (64, 64)
        # Output pixel (2i + 1, 2j + 1) edges = input pixel (i + 0.5, j + 0.5): compare the rays
        # through the same points of the picture.
        pixels = np.array([[0.5, 0.5], [12.0, 7.25], [31.5, 31.5]])
        o0, d0 = camera_lib.rays_from_pixels(
            camera_lib.make_camera(record.intrinsics, record.world_to_camera), pixels
        )
        o1, d1 = camera_lib.rays_from_pixels(
            camera_lib.make_camera(got.intrinsics, got.world_to_camera), 2.0 * pixels
        )
        np.testing.assert_allclose(o1, o0, atol=1e-5)
        np.testing.assert_allclose(d1, d0, atol=1e-6)
        latents.setdefault(record.object_id, set()).add(got.latent_id)
    # Views of one object share a latent (object_id / identity); objects do not.
    assert all(len(ids) == 1 for ids in latents.values())
    assert len({next(iter(ids)) for ids in latents.values()}) == len(latents)


def test_prepare_app_reports_a_bad_camera_file(tmp_path):
    photos_dir = tmp_path / "photos"
    photos_dir.mkdir()
    Image.fromarray(np.zeros([32, 32, 3], np.uint8)).save(photos_dir / "a.png")
    bad = tmp_path / "cameras.json"
    bad.write_text(json.dumps(_set(_tfglo_doc(), (*_IMG, "fx"), _DELETE)))
    result = app_testlib.run_module(
        "tfglo.prepare",
        "--source=images",
        f"--images={photos_dir}",
        f"--cameras={bad}",
        f"--output={tmp_path / 'out'}",
    )
    assert result.returncode == 1
    assert "entry 'a.png': missing fx" in result.stderr
    assert not (tmp_path / "out" / "dataset.json").exists()


def test_camera_file_photos_get_selfie_masks_from_mediapipe(tmp_path, faces_dir):
    """Real photos with cameras from a file: no detection, the person segmenter's masks."""
    from tfglo.data import camera_file_import, photo_import

    photos_dir = tmp_path / "photos"
    photos_dir.mkdir()
    cameras = {}
    for name in ("img18.jpg", "img2.jpg", "img25.jpg"):  # 640x640, 640x480, 400x400
        photo = Image.open(faces_dir / name).convert("RGB")
        photo.save(photos_dir / name)
        width, height = photo.size
        cameras[name] = camera_files.FileCamera(
            intrinsics=np.array([2.0 * width, 2.0 * width, width / 2, height / 2]),
            world_to_camera=np.array([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 4.0]]),
            width=width,
            height=height,
        )
    cameras_path = camera_files.save_tfglo(tmp_path / "cameras.json", cameras)
    config = photo_import.PhotoSourceConfig(
        images=str(photos_dir),
        log_every=0,
        cameras=camera_file_import.CameraImportConfig(cameras_file=str(cameras_path)),
    )
    prepared, metadata, skipped = photo_import.prepare_images(config)
    # One output size per dataset: the first photo's (256 x 256); the 4:3 photo is skipped.
    assert [(s["source"], s["category"]) for s in skipped] == [("img2.jpg", "image size differs")]
    assert [r.source for r in prepared] == ["img18.jpg", "img25.jpg"]
    assert metadata["mask_source"] == "selfie"
    assert metadata["landmark_source"] == "none"
    for record in prepared:
        assert record.landmarks is None
        assert record.mask.shape == record.image.shape[:2]
        foreground = np.mean(record.mask > 127)
        assert 0.1 < foreground < 0.9, (record.source, foreground)  # a person, not all or nothing
        assert record.width == 256
    assert set(metadata["mask_outside_sphere"]["per_image"]) == {"img18.jpg", "img25.jpg"}
