"""Tests for `python -m tfglo.lift` and `tfglo.engine.lifting`: a photo to 3D in one command.

- The synthetic class with known cameras: a rendered view of an unseen head (exported as a photo,
  its mask and a tfglo camera file, `tfglo.data.photo_export`) is lifted by a small trained run;
  every output is written and holds what it should.
- Face photos against the run's canonical keypoints: a plain image is skipped with its reason
  while a real face photo is lifted; no liftable photo at all is a non-zero exit.
- Settings and runs that cannot work are refused with a message that says why.
- Slow: a run trained for a few minutes on the 32 shared face photos (flags/demo.cfg, 64 px)
  lifts three of them.

The fast tests share the tiny trained model of `infer_testlib` (trained once per process).
"""

import json
import pathlib
import subprocess
import sys
import tempfile
import types

import infer_testlib
import numpy as np
import pytest
from absl import app
from absl.testing import parameterized
from PIL import Image

from tfglo import lift
from tfglo.data import camera_files, photo_export, photo_import, photos
from tfglo.engine import lifting
from tfglo.geometry import mesh as mesh_lib

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Lifted-view PSNR of the unseen synthetic heads with the tiny model (16 px, 300 training steps):
# measured 20.2 / 20.5 dB after 40 steps from the latent mean (15.5 / 18.8 dB at the mean itself,
# 0 steps); 20 steps give ~19.7 dB. The bar leaves margin for other seeds and machines.
SYNTHETIC_PSNR_BAR = 17.5
FAST_INVERSION = ("--inversion_steps=20", "--inversion_rays=256")
SMALL_OUTPUTS = ("--orbit_frames=3", "--mesh_resolution=32", "--mesh_level=5")

EXPECTED_FILES = (
    "crop.png",
    "mask.png",
    "reconstruction.png",
    "orbit/orbit.gif",
    "orbit/depth.gif",
    "orbit/frame_000.png",
    "orbit/depth_000.npy",
    "mesh.ply",
    "mesh.glb",
    "latent.npy",
    "lift.json",
)


def _plain_image(path: pathlib.Path) -> pathlib.Path:
    """A photo with no face: a smooth grey gradient."""
    ramp = np.linspace(80, 200, 128, dtype=np.float32)
    image = np.stack(np.broadcast_arrays(ramp[None, :], ramp[:, None], 140.0), -1)
    Image.fromarray(image.astype(np.uint8)).save(path)
    return path


def _check_outputs(directory: pathlib.Path, scene_radius: float, num_frames: int) -> dict:
    """Every output of one lifted photo exists and holds what it should; returns lift.json."""
    import trimesh

    for name in EXPECTED_FILES:
        assert (directory / name).is_file(), f"{directory / name} is missing"
    record = json.loads((directory / "lift.json").read_text())
    height, width = record["image_size"]
    with Image.open(directory / "crop.png") as crop:
        assert crop.size == (width, height)
    for gif in ("orbit.gif", "depth.gif"):
        with Image.open(directory / "orbit" / gif) as image:
            assert image.n_frames == num_frames, gif
    latent = np.load(directory / "latent.npy")
    assert latent.shape == (record["latent"]["dim"],)
    assert np.all(np.isfinite(latent))
    camera = record["camera"]
    assert len(camera["intrinsics"]) == 4
    rotation = np.asarray(camera["world_to_camera"])[:, :3]
    assert np.shape(camera["world_to_camera"]) == (3, 4)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-4)
    for stage in ("prepare", "camera", "latent", "reconstruction", "orbit", "mesh", "total"):
        assert record["seconds"][stage] >= 0.0, stage
    assert record["psnr"] == record["reconstruction"]["psnr"]
    # The mesh is non-empty and lies inside the bounding sphere (vertices sit on grid edges, so
    # at most a grid step beyond it).
    mesh_info = record["mesh"]
    assert mesh_info["vertices"] > 0
    step = 2.0 * scene_radius / mesh_info["resolution"]
    assert mesh_info["max_vertex_radius"] <= scene_radius + step
    ply = trimesh.load(directory / "mesh.ply", process=False)
    assert len(ply.vertices) == mesh_info["vertices"]
    assert len(ply.faces) == mesh_info["faces"]
    assert mesh_lib.read_glb_header(directory / "mesh.glb")["_version"] == 2
    return record


class SyntheticLiftTest(infer_testlib.TrainedRunTestCase):
    """Rendered views of unseen synthetic heads, with their known cameras and masks."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        unseen = infer_testlib.write_synthetic(
            f"{cls.run_tmp.name}/unseen", num_objects=2, seed=1000, eval_views=0
        )
        cls.photos = photo_export.export_views(unseen, f"{cls.run_tmp.name}/photos")

    def _lift(self, *args):
        return infer_testlib.run_app(
            lift,
            [
                f"--run_dir={self.run_dir}",
                f"--cameras={self.photos.cameras_file}",
                f"--masks={self.photos.masks_dir}",
                *FAST_INVERSION,
                *SMALL_OUTPUTS,
                *args,
            ],
        )

    def test_exported_views_round_trip_their_cameras(self):
        loaded = camera_files.load(self.photos.cameras_file)
        self.assertEqual(sorted(loaded.cameras), sorted(self.photos.names))
        self.assertEqual(self.photos.object_ids, (0, 1))
        with Image.open(self.photos.images_dir / self.photos.names[0]) as image:
            self.assertEqual(image.size, (infer_testlib.IMAGE_SIZE,) * 2)

    def test_a_rendered_view_with_its_camera_is_lifted(self):
        # The view of an unseen head, and a photo the camera file does not know.
        folder = self.out / "photos"
        folder.mkdir()
        name = self.photos.names[0]
        (folder / name).write_bytes((self.photos.images_dir / name).read_bytes())
        _plain_image(folder / "stray.png")
        summary = self._lift(f"--images={folder}", f"--output={self.out / 'lifted'}")
        self.assertEqual([s["source"] for s in summary["lifted"]], [name])
        self.assertEqual(
            summary["skipped"],
            [
                {
                    "source": "stray.png",
                    "category": "no camera",
                    "reason": f"no camera: stray.png is not in {self.photos.cameras_file}",
                }
            ],
        )
        directory = self.out / "lifted" / pathlib.Path(name).stem
        record = _check_outputs(directory, 1.0, num_frames=3)
        self.assertEqual(record["camera"]["source"], "file")
        self.assertIsNone(record["camera"]["fit_error_px"])
        self.assertTrue(record["mask"].startswith("file:"))
        self.assertEqual(record["latent"]["steps"], 20)
        self.assertIn("test-time optimisation", record["latent"]["method"])
        self.assertGreater(record["psnr"], SYNTHETIC_PSNR_BAR)
        # The camera is the file's, unchanged (a tfglo file is in the run's frame already).
        want = camera_files.load(self.photos.cameras_file).cameras[name]
        np.testing.assert_allclose(
            record["camera"]["world_to_camera"], want.world_to_camera, atol=1e-5
        )
        # The optimisation lowered the loss it started with at the latent mean.
        self.assertGreater(record["latent"]["loss_first"], record["latent"]["loss_last"])
        saved = json.loads((self.out / "lifted" / lifting.SUMMARY_FILE).read_text())
        self.assertEqual(saved["lifted"][0]["directory"], directory.name)
        self.assertEqual(saved["skipped"][0]["category"], "no camera")
        with Image.open(directory / "reconstruction.png") as grid:
            self.assertGreater(grid.size[0], 3 * infer_testlib.IMAGE_SIZE)


class LiftConfigTest(parameterized.TestCase):
    @parameterized.named_parameters(
        ("masks_without_cameras", {"masks": "m"}, "needs cameras"),
        ("cameras_and_landmarks", {"cameras": "c", "landmarks_file": "l"}, "not both"),
        ("tiny_image", {"image_size": 4}, "image_size"),
        ("negative_frames", {"orbit_frames": -1}, "orbit_frames"),
        ("bad_mask", {"mask": "alpha"}, "mask must be"),
        ("bad_alignment", {"cameras_align": "mean"}, "cameras_align"),
    )
    def test_rejects(self, kwargs, message):
        with pytest.raises(ValueError, match=message):
            lifting.LiftConfig(**kwargs)

    @parameterized.named_parameters(
        ("defaults", {}),
        ("known_cameras", {"cameras": "c", "masks": "m", "mask": "none"}),
        ("no_orbit_no_mesh", {"orbit_frames": 0, "make_mesh": False}),
    )
    def test_accepts(self, kwargs):
        config = lifting.LiftConfig(**kwargs)
        for key, value in kwargs.items():
            self.assertEqual(getattr(config, key), value)


class RunMetadataTest(parameterized.TestCase):
    def test_the_run_records_what_lift_needs_from_the_training_data(self):
        from tfglo.engine import run_dir

        metadata = {
            "canonical_keypoints": [[0.0, 0.0, 0.0]] * 5,
            "scene_radius": 1.0,
            "focal_factor": 2.0,
            "crop": {"image_size": 64, "crop_margin": 0.5},
            "fit": {"threshold_px": 1.5},
            "images": [{"source": "a.jpg"}],
        }
        summary = run_dir.dataset_summary(metadata)
        for key in ("canonical_keypoints", "scene_radius", "focal_factor", "crop", "fit"):
            self.assertEqual(summary[key], metadata[key])
        self.assertNotIn("images", summary)

    def test_older_runs_read_the_keypoints_from_the_dataset_directory(self):
        path, _ = infer_testlib.trained()
        run = type("Run", (), {"dataset_metadata": {"scene_radius": 1.0}, "dataset_dir": path})
        metadata = lifting.training_metadata(run)
        self.assertEqual(metadata["scene_radius"], 1.0)
        self.assertIn("synthetic_class", metadata)  # read from the dataset directory

    def test_a_run_without_canonical_keypoints_needs_cameras(self):
        with pytest.raises(lifting.LiftError, match="--cameras"):
            lifting.canonical_keypoints({"scene_radius": 1.0}, "runs/heads")

    def test_missing_images(self):
        with pytest.raises(lifting.LiftError, match="does not exist"):
            lifting.list_inputs("/nonexistent/photos")


def _rotation(degrees_about_y: float, degrees_about_x: float) -> np.ndarray:
    a, b = np.radians(degrees_about_y), np.radians(degrees_about_x)
    about_y = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    about_x = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return about_x @ about_y


class CameraFileTest(parameterized.TestCase):
    """Cameras from a file reach the fit in the run's world: a file in another world (the
    LOLNeRF estimates, turned at training by `camera_file_alignment`) is turned the same way."""

    @parameterized.named_parameters(
        ("tfglo_file_run_without_alignment", "tfglo", False, "run"),
        ("jax3d_file_turned_like_the_training_data", "jax3d", True, "run"),
        ("alignment_off", "tfglo", True, "none"),
    )
    def test_camera_reaches_the_run_world(self, file_format, run_aligned, align):
        holder = tempfile.TemporaryDirectory()
        self.addCleanup(holder.cleanup)
        tmp = pathlib.Path(holder.name)
        _plain_image(tmp / "cat.png")  # 128 x 128
        rotation = _rotation(20.0, -30.0)
        eye = np.array([0.5, -1.0, -4.0])
        forward = -eye / np.linalg.norm(eye)
        right = np.cross([0.0, 1.0, 0.0], forward)
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        r = np.stack([right, down, forward])
        world_to_camera = np.concatenate([r, (-r @ eye)[:, None]], 1)  # in the run's world
        camera = camera_files.FileCamera(np.array([256.0, 256, 64, 64]), world_to_camera, 128, 128)
        # The file holds the camera in its own world: turned back by the training alignment.
        stored = camera_files.rotate_world(camera, rotation.T) if run_aligned else camera
        path = tmp / "cameras.json"
        if file_format == "jax3d":
            camera_files.save_jax3d(path, {"cat.png": stored})
        else:
            camera_files.save_tfglo(path, {"cat.png": stored})
        metadata = {"image_size": [32, 32], "scene_radius": 1.0}
        if run_aligned:
            metadata["camera_file_alignment"] = rotation.tolist()
        run = types.SimpleNamespace(dataset_metadata=metadata, dataset_dir="", run_dir="run")
        config = lifting.LiftConfig(cameras=str(path), cameras_align=align, mask="none")
        with lifting.PhotoPreparer(run, config) as preparer:
            photo = preparer.prepare(tmp / "cat.png")
        self.assertEqual(photo.image.shape, (32, 32, 3))
        np.testing.assert_allclose(photo.intrinsics, [64.0, 64, 16, 16], rtol=1e-6)
        self.assertIsNone(photo.mask)
        want = stored.world_to_camera if align == "none" else world_to_camera
        np.testing.assert_allclose(photo.world_to_camera, want, atol=1e-5)


@pytest.fixture(scope="module")
def face_run(faces_dir, tmp_path_factory):
    """The tiny synthetic-trained model saved as a run of a 4-photo face dataset: the run holds
    that dataset's canonical keypoints, so face photos are fitted against them."""
    base = tmp_path_factory.mktemp("face_run")
    folder = base / "photos"
    folder.mkdir()
    for name in ("img1.jpg", "img3.jpg", "img5.jpg", "img7.jpg"):
        (folder / name).write_bytes((faces_dir / name).read_bytes())
    config = photo_import.PhotoSourceConfig(
        images=str(folder),
        photo=photos.PhotoConfig(image_size=infer_testlib.IMAGE_SIZE),
        log_every=0,
    )
    _, metadata, skipped = photo_import.prepare_images(config)
    assert not skipped, skipped
    _, model = infer_testlib.trained()
    return infer_testlib.save_run(model, base / "data", base / "run", metadata=metadata)


def test_a_photo_without_a_face_is_skipped_while_a_face_is_lifted(face_run, faces_dir, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "img2.jpg").write_bytes((faces_dir / "img2.jpg").read_bytes())
    _plain_image(folder / "plain.png")
    args = [f"--run_dir={face_run}", f"--images={folder}", f"--output={tmp_path / 'out'}"]
    summary = infer_testlib.run_app(
        lift, [*args, "--inversion_steps=5", "--inversion_rays=64", *SMALL_OUTPUTS]
    )
    assert [s["source"] for s in summary["lifted"]] == ["img2.jpg"]
    assert summary["skipped"] == [
        {"source": "plain.png", "category": "no face", "reason": "no face: MediaPipe found no face"}
    ]
    record = json.loads((tmp_path / "out" / "img2" / "lift.json").read_text())
    assert record["camera"]["source"] == "fit"
    assert 0 <= record["camera"]["fit_error_px"] <= record["camera"]["fit_threshold_px"]
    assert record["mask"] == "selfie"
    assert np.shape(record["landmarks"]) == (5, 2)
    assert (tmp_path / "out" / "img2" / "mask.png").is_file()
    assert not (tmp_path / "out" / "plain").exists()


def test_no_liftable_photo_exits_non_zero(face_run, tmp_path):
    plain = _plain_image(tmp_path / "plain.png")
    argv = [f"--run_dir={face_run}", f"--images={plain}", f"--output={tmp_path / 'out'}"]
    with pytest.raises(SystemExit, match="no photo could be lifted .*no face"):
        infer_testlib.run_app(lift, argv)


def test_unusable_inputs_are_usage_errors(face_run, tmp_path):
    plain = _plain_image(tmp_path / "plain.png")
    base = [f"--run_dir={face_run}", f"--output={tmp_path / 'out'}"]
    with pytest.raises(app.UsageError, match="does not exist"):
        infer_testlib.run_app(lift, [*base, f"--images={tmp_path / 'nothing'}"])
    with pytest.raises(app.UsageError, match="needs cameras"):
        infer_testlib.run_app(lift, [*base, f"--images={plain}", f"--masks={tmp_path}"])
    with pytest.raises(app.UsageError, match="--cameras: camera file .* does not exist"):
        infer_testlib.run_app(
            lift, [*base, f"--images={plain}", f"--cameras={tmp_path / 'none.json'}"]
        )
    # Nothing was written for inputs that cannot work.
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------- slow: faces

FACE_PHOTOS = ("img1.jpg", "img2.jpg", "img3.jpg")


@pytest.mark.slow
def test_lift_faces_with_a_run_trained_on_them(faces_dir, tmp_path):
    """prepare + train (flags/demo.cfg, 64 px, a few CPU minutes) on the 32 face photos, then
    lift three of them and a plain image: every output of the three, the plain one skipped."""

    def app_run(module, *args):
        command = [sys.executable, "-m", f"tfglo.{module}", *args]
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    data, run = tmp_path / "data", tmp_path / "run"
    app_run(
        "prepare", "--source=images", f"--images={faces_dir}", "--image_size=64", f"--output={data}"
    )
    app_run(
        "train",
        f"--flagfile={ROOT / 'flags' / 'demo.cfg'}",
        f"--dataset={data}",
        f"--run_dir={run}",
    )
    config = json.loads((run / "config.json").read_text())
    assert len(config["dataset_metadata"]["canonical_keypoints"]) == 5
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in FACE_PHOTOS:
        (photos / name).write_bytes((faces_dir / name).read_bytes())
    _plain_image(photos / "plain.png")
    out = tmp_path / "lifted"
    stdout = app_run(
        "lift", f"--run_dir={run}", f"--images={photos}", f"--output={out}", "--mesh_resolution=128"
    )
    print(stdout)
    summary = json.loads((out / lifting.SUMMARY_FILE).read_text())
    assert [s["source"] for s in summary["lifted"]] == list(FACE_PHOTOS)
    assert [s["source"] for s in summary["skipped"]] == ["plain.png"]
    assert "no face" in stdout
    for name in FACE_PHOTOS:
        record = _check_outputs(out / pathlib.Path(name).stem, 1.0, num_frames=24)
        assert record["image_size"] == [64, 64]
        assert record["camera"]["fit_error_px"] <= record["camera"]["fit_threshold_px"]
        # A code fitted to a photo of the training set reproduces it: measured 25-27 dB.
        assert record["psnr"] > 20.0, record["psnr"]
        print(name, json.dumps({k: record[k] for k in ("psnr", "seconds", "mesh")}))
