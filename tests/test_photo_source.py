"""Tests of the photo source (tfglo.photo_source) and `prepare --source=images`."""

import io
import json
import pathlib
import subprocess

import app_testlib
import numpy as np
import pytest
from absl.testing import parameterized
from PIL import Image
from scipy.spatial.transform import Rotation

from tfglo import prepare
from tfglo.data import dataset_dir, photos
from tfglo.data import photo_import as photo_source
from tfglo.geometry import sphere_coverage
from tfglo.pose import camera_fit

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
GROUP_PHOTOS = {"couple.jpg": 2, "selfie-many-people.jpg": 3}


@pytest.fixture(scope="module")
def faces_prepared(faces_dir):
    """The whole shared face folder through the photo source, once per module."""
    config = photo_source.PhotoSourceConfig(images=str(faces_dir), log_every=0)
    return photo_source.prepare_images(config)


def _face_photo(faces_dir, name="img2.jpg") -> Image.Image:
    return Image.open(faces_dir / name).convert("RGB")


@pytest.fixture(scope="module")
def broken_dir(faces_dir, tmp_path_factory) -> pathlib.Path:
    """A folder of awkward files: what each should become is in EXPECTED_BROKEN."""
    folder = tmp_path_factory.mktemp("broken")
    face = _face_photo(faces_dir)
    jpeg = io.BytesIO()
    face.save(jpeg, format="JPEG")
    (folder / "truncated.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 3])
    (folder / "notes.jpg").write_text("a text file with an image name\n")
    (folder / "README.txt").write_text("not a photo either\n")
    face.convert("L").save(folder / "gray.jpg")
    rgba = face.convert("RGBA")
    rgba.putalpha(Image.new("L", face.size, 255))
    rgba.save(folder / "rgba.png")
    face.convert("CMYK").save(folder / "cmyk.jpg")
    gray16 = np.asarray(face.convert("L"), np.uint16) * 257
    Image.fromarray(gray16).save(folder / "deep16.png")
    Image.new("RGB", (8, 8), (200, 150, 120)).save(folder / "tiny.png")
    huge = Image.new("RGB", (4000, 3000), (128, 128, 128))
    huge.paste(face.resize((face.width * 3, face.height * 3)), (1500, 1000))
    huge.save(folder / "huge.jpg", quality=85)
    noise = np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "noface.png")
    # The left fifth of the face box cut away: MediaPipe still finds the face, past the border.
    face.crop((277, 0, face.width, face.height)).save(folder / "cut.jpg")
    (folder / ".hidden.jpg").write_bytes(jpeg.getvalue())  # hidden: ignored
    (folder / "subfolder").mkdir()  # folders: ignored
    return folder


EXPECTED_BROKEN = {
    "truncated.jpg": "truncated",
    "notes.jpg": "not an image",
    "README.txt": "not an image",
    "tiny.png": "too small",
    "noface.png": "no face",
    "cut.jpg": "face cut by the border",
}
EXPECTED_PREPARED = {"gray.jpg", "rgba.png", "cmyk.jpg", "deep16.png", "huge.jpg"}


@pytest.fixture(scope="module")
def broken_prepared(broken_dir):
    config = photo_source.PhotoSourceConfig(images=str(broken_dir), log_every=0)
    return photo_source.prepare_images(config)


class FacesTest(parameterized.TestCase):
    @pytest.fixture(autouse=True)
    def _inject(self, faces_prepared, faces_dir):
        self.records, self.metadata, self.skipped = faces_prepared
        self.faces_dir = faces_dir

    def test_every_photo_is_prepared(self):
        names = sorted(p.name for p in self.faces_dir.iterdir() if p.is_file())
        self.assertEqual(self.skipped, [])
        self.assertEqual(sorted(r.source for r in self.records), names)
        self.assertEqual([r.latent_id for r in self.records], list(range(len(names))))
        self.assertEqual(self.metadata["num_files"], len(names))
        self.assertEqual(self.metadata["skipped_counts"], {})

    @parameterized.parameters(*GROUP_PHOTOS.items())
    def test_group_photos_take_the_largest_face_and_say_so(self, name, min_faces):
        choice = self.metadata["multi_face"][name]
        self.assertGreaterEqual(choice["num_faces"], min_faces)
        self.assertEqual(choice["chosen"], 0)
        self.assertEqual(choice["areas"], sorted(choice["areas"], reverse=True))
        # The record's crop is centred on the chosen (largest) box.
        record = next(r for r in self.records if r.source == name)
        centre = record.landmarks.mean(0)
        self.assertLess(np.abs(centre - 128.0).max(), 40.0)

    def test_only_group_photos_report_several_faces(self):
        self.assertEqual(set(self.metadata["multi_face"]), set(GROUP_PHOTOS))

    def test_camera_fit_converges(self):
        fit = self.metadata["fit"]
        size = self.metadata["crop"]["image_size"]
        self.assertTrue(fit["converged"])
        self.assertLess(fit["median_error_px"], 0.02 * size)
        self.assertEqual(fit["num_outliers"], 0)
        self.assertTrue(fit["used_face_template"])
        self.assertLen(fit["per_image_error_px"], len(self.records))
        print(f"real faces: median reprojection error {fit['median_error_px']:.2f} px of {size}")

    def test_cameras_reproject_the_canonical_keypoints(self):
        canonical = np.asarray(self.metadata["canonical_keypoints"])
        errors = self.metadata["fit"]["per_image_error_px"]
        for record in self.records:
            w2c = record.world_to_camera.astype(np.float64)
            pixels = camera_fit._project(
                canonical, w2c[None, :, :3], w2c[None, :, 3], record.intrinsics[None]
            )[0]
            rms = np.sqrt(np.mean(np.sum((pixels - record.landmarks) ** 2, -1)))
            self.assertAlmostEqual(rms, errors[record.source], delta=0.01)
            centre = -w2c[:, :3].T @ w2c[:, 3]
            self.assertLess(centre[2], 0.0)  # in front of the face (faces look towards -z)
            self.assertGreater(np.linalg.norm(centre), self.metadata["scene_radius"])

    def test_masked_foreground_fits_the_sphere(self):
        # Head and shoulders lie inside the bounding sphere: almost no mask pixel's ray misses it
        # (with the head-only sphere of before issue 16: 9.1 % on average, every photo over 1 %).
        coverage = self.metadata["mask_outside_sphere"]
        self.assertEqual(set(coverage["per_image"]), {r.source for r in self.records})
        self.assertLess(coverage["mean"], 0.002)
        self.assertLess(coverage["max"], 0.01)
        radius = self.metadata["scene_radius"]
        for record in self.records[:3]:
            fraction = sphere_coverage.mask_outside_fraction(
                record.mask, record.intrinsics, record.world_to_camera, radius
            )
            self.assertAlmostEqual(fraction, coverage["per_image"][record.source], 4)
        # The same masks with a sphere a third the size: the check does see misses.
        small = sphere_coverage.mask_outside_fraction(
            self.records[0].mask,
            self.records[0].intrinsics,
            self.records[0].world_to_camera,
            radius / 3,
        )
        self.assertGreater(small, 0.3)

    def test_landmarks_fall_inside_the_mask(self):
        for record in self.records:
            for x, y in record.landmarks:
                self.assertGreater(record.mask[int(y), int(x)], 127, record.source)

    def test_records_are_complete(self):
        for record in self.records:
            self.assertEqual(record.image.shape, (256, 256, 3))
            self.assertEqual(record.mask.shape, (256, 256))
            self.assertEqual(record.face_mesh.shape, (478, 3))
            self.assertEqual(record.face_pose.shape, (4, 4))
            np.testing.assert_allclose(
                record.landmarks, record.face_mesh[list(camera_fit.FACE_KEYPOINT_INDICES), :2]
            )
            np.testing.assert_allclose(record.intrinsics, [512.0, 512.0, 128.0, 128.0])
            self.assertEqual(record.split, "train")

    def test_metadata(self):
        metadata = self.metadata
        self.assertEqual(np.shape(metadata["canonical_keypoints"]), (5, 3))
        self.assertEqual(metadata["scene_radius"], 1.0)
        self.assertIn("2 x width", metadata["intrinsics_policy"])
        self.assertEqual(metadata["keypoint_face_mesh_indices"], [33, 263, 1, 61, 291])
        self.assertEqual(metadata["landmark_source"], "mediapipe")
        for name, padding in metadata["padding"].items():
            self.assertGreater(padding["fraction"], 0.0, name)
            self.assertEqual(padding["mode"], "edge")
        json.dumps(metadata)  # everything goes into dataset.json


class BrokenFilesTest(parameterized.TestCase):
    @pytest.fixture(autouse=True)
    def _inject(self, broken_prepared):
        self.records, self.metadata, self.skipped = broken_prepared

    def test_every_file_is_prepared_or_listed_with_its_reason(self):
        self.assertEqual({r.source for r in self.records}, EXPECTED_PREPARED)
        reasons = {s["source"]: s["category"] for s in self.skipped}
        self.assertEqual(reasons, EXPECTED_BROKEN)
        self.assertEqual(self.metadata["num_files"], len(EXPECTED_PREPARED | set(EXPECTED_BROKEN)))
        counts = {}
        for category in EXPECTED_BROKEN.values():
            counts[category] = counts.get(category, 0) + 1
        self.assertEqual(self.metadata["skipped_counts"], counts)
        for entry in self.skipped:
            self.assertTrue(entry["reason"].startswith(entry["category"]), entry)

    @parameterized.parameters(
        ("gray.jpg", "L converted to RGB"),
        ("cmyk.jpg", "CMYK converted to RGB"),
        ("rgba.png", "RGBA: composited on white"),
        ("deep16.png", "I;16 scaled to 8 bits"),
    )
    def test_conversions_are_noted(self, name, note):
        self.assertIn(note, self.metadata["photo_notes"][name])

    def test_huge_photo_crop(self):
        record = next(r for r in self.records if r.source == "huge.jpg")
        self.assertEqual(record.image.shape, (256, 256, 3))
        self.assertTrue(np.all((record.landmarks > 0) & (record.landmarks < 256)))


class LandmarksFileTest(parameterized.TestCase):
    """Another class (no faces): keypoints from a file, K = 8, the same fit."""

    @pytest.fixture(autouse=True)
    def _folder(self, tmp_path):
        self.folder = tmp_path / "things"
        self.folder.mkdir()
        rng = np.random.default_rng(4)
        self.points = {}
        shape = rng.normal(0.0, 0.35, (8, 3))
        for i in range(10):
            size = (300, 240)
            pose = Rotation.from_euler(
                "yxz", [rng.uniform(-40, 40), rng.uniform(-20, 20), rng.uniform(-10, 10)], True
            ).as_matrix()
            translation = np.array([0.0, 0.0, 4.0])
            intrinsics = np.array([[600.0, 600.0, size[0] / 2, size[1] / 2]])
            pixels = camera_fit._project(shape, pose[None], translation[None], intrinsics)[0]
            name = f"thing{i}.png"
            Image.new("RGB", size, (40 + 20 * i, 90, 160)).save(self.folder / name)
            self.points[name] = pixels
        Image.new("RGB", (300, 240)).save(self.folder / "unlabelled.png")
        self.tmp_path = tmp_path

    def write_json(self):
        path = self.tmp_path / "points.json"
        path.write_text(json.dumps({k: v.tolist() for k, v in self.points.items()}))
        return path

    def write_csv(self):
        path = self.tmp_path / "points.csv"
        lines = ["name," + ",".join(f"x{i},y{i}" for i in range(8))]
        for name, points in self.points.items():
            lines.append(
                pathlib.Path(name).stem + "," + ",".join(f"{v:.4f}" for v in points.ravel())
            )
        path.write_text("\n".join(lines) + "\n")
        return path

    @parameterized.named_parameters(("json", "json", "none"), ("csv", "csv", "full"))
    def test_other_class_is_fitted_from_the_file(self, kind, mask):
        path = self.write_json() if kind == "json" else self.write_csv()
        config = photo_source.PhotoSourceConfig(
            images=str(self.folder),
            landmarks_file=str(path),
            landmarks_mask=mask,
            photo=photos.PhotoConfig(image_size=64),
            log_every=0,
        )
        records, metadata, skipped = photo_source.prepare_images(config)
        self.assertLen(records, 10)
        self.assertEqual(
            skipped,
            [
                {
                    "source": "unlabelled.png",
                    "category": "no landmarks",
                    "reason": "no landmarks: unlabelled.png is not in the landmarks file",
                }
            ],
        )
        self.assertEqual(np.shape(metadata["canonical_keypoints"]), (8, 3))
        self.assertFalse(metadata["fit"]["used_face_template"])
        self.assertNotIn("keypoint_face_mesh_indices", metadata)
        self.assertLess(metadata["fit"]["median_error_px"], 0.02 * 64)
        for record in records:
            self.assertEqual(record.landmarks.shape, (8, 2))
            self.assertIsNone(record.face_mesh)
            if mask == "none":
                self.assertIsNone(record.mask)
            else:
                self.assertTrue(np.all(record.mask == 255))
        self.assertEqual(metadata["mask_source"], mask)

    @parameterized.named_parameters(
        ("odd", "a,1,2,3\n", r":1: expected name,x1,y1"),
        ("mixed_k", "a,1,2,3,4,5,6\nb,1,2,3,4,5,6,7,8\n", "same number of points"),
        ("too_few", "a,1,2,3,4\n", "at least 3 points"),
        ("bad_value", "a,1,2,3,4,5,6\nb,1,2,x,4,5,6\n", r":2: non-numeric"),
        ("empty", "# nothing\n", "holds no entries"),
    )
    def test_bad_csv(self, text, message):
        path = self.tmp_path / "bad.csv"
        path.write_text(text)
        with pytest.raises(photo_source.PhotoSourceError, match=message):
            photo_source.load_landmarks_file(path)

    def test_five_user_points_are_not_a_face(self):
        self.points = {name: points[:5] for name, points in self.points.items()}
        config = photo_source.PhotoSourceConfig(
            images=str(self.folder), landmarks_file=str(self.write_json()), log_every=0
        )
        records, metadata, _ = photo_source.prepare_images(config)
        self.assertLen(records, 10)
        self.assertFalse(metadata["fit"]["used_face_template"])
        self.assertNotIn("keypoint_names", metadata)

    def test_bad_json_and_missing_file(self):
        path = self.tmp_path / "bad.json"
        path.write_text("[1, 2]")
        with pytest.raises(photo_source.PhotoSourceError, match="must map image names"):
            photo_source.load_landmarks_file(path)
        with pytest.raises(photo_source.PhotoSourceError, match="does not exist"):
            photo_source.load_landmarks_file(self.tmp_path / "nope.csv")

    def test_flat_json_lists(self):
        path = self.tmp_path / "flat.json"
        path.write_text(json.dumps({"a.png": [1, 2, 3, 4, 5, 6]}))
        np.testing.assert_array_equal(
            photo_source.load_landmarks_file(path)["a.png"], [[1, 2], [3, 4], [5, 6]]
        )


class CanonicalFromTest(parameterized.TestCase):
    @pytest.fixture(autouse=True)
    def _inject(self, faces_prepared, faces_dir, tmp_path):
        self.records, self.metadata, _ = faces_prepared
        self.faces_dir = faces_dir
        self.tmp_path = tmp_path

    def write_reference(self, metadata):
        output = self.tmp_path / "reference"
        with dataset_dir.DatasetWriter(output) as writer:
            writer.metadata.update(metadata)
            for record in self.records[:2]:
                writer.write(record)
        return output

    def test_new_photos_get_cameras_in_the_same_frame(self):
        reference = self.write_reference(self.metadata)
        folder = self.tmp_path / "new"
        folder.mkdir()
        names = ["img1.jpg", "img20.jpg", "img53.jpg"]
        for name in names:
            (folder / name).write_bytes((self.faces_dir / name).read_bytes())
        config = photo_source.PhotoSourceConfig(
            images=str(folder), canonical_from=str(reference), log_every=0
        )
        records, metadata, skipped = photo_source.prepare_images(config)
        self.assertEqual(skipped, [])
        self.assertEqual(metadata["fit"]["mode"], "canonical_from")
        self.assertEqual(metadata["canonical_keypoints"], self.metadata["canonical_keypoints"])
        joint = {r.source: r for r in self.records}
        for record in records:
            # The same photo, the same canonical points: about the camera of the joint fit.
            np.testing.assert_allclose(
                record.world_to_camera, joint[record.source].world_to_camera, atol=0.05
            )

    @parameterized.named_parameters(
        ("no_canonical", {"canonical_keypoints": None}, "has no canonical_keypoints"),
        ("bad_shape", {"canonical_keypoints": [[0.0, 1.0]]}, r"must be \[K, 3\]"),
    )
    def test_rejects_bad_reference(self, change, message):
        metadata = dict(self.metadata)
        for key, value in change.items():
            if value is None:
                metadata.pop(key)
            else:
                metadata[key] = value
        reference = self.write_reference(metadata)
        config = photo_source.PhotoSourceConfig(
            images=str(self.faces_dir), canonical_from=str(reference)
        )
        with pytest.raises(photo_source.PhotoSourceError, match=message):
            photo_source.prepare_images(config)

    def test_rejects_missing_reference(self):
        config = photo_source.PhotoSourceConfig(
            images=str(self.faces_dir), canonical_from=str(self.tmp_path / "nothing")
        )
        with pytest.raises(photo_source.PhotoSourceError, match="does not exist"):
            photo_source.prepare_images(config)


class ConfigTest(parameterized.TestCase):
    @parameterized.named_parameters(
        ("mask", {"landmarks_mask": "auto"}, "landmarks_mask must be one of"),
        ("focal", {"focal_factor": 0.0}, "focal_factor must be > 0"),
    )
    def test_rejects(self, kwargs, message):
        with pytest.raises(ValueError, match=message):
            photo_source.PhotoSourceConfig(images=".", **kwargs)

    def test_missing_folder(self):
        with pytest.raises(photo_source.PhotoSourceError, match="does not exist"):
            photo_source.prepare_images(photo_source.PhotoSourceConfig(images="/no/such/dir"))

    def test_face_cut_fraction(self):
        self.assertEqual(photo_source._face_cut((10, 10, 110, 110), 200, 200), 0.0)
        self.assertAlmostEqual(photo_source._face_cut((-25, 10, 75, 110), 200, 200), 0.25)
        self.assertAlmostEqual(photo_source._face_cut((150, 10, 250, 110), 200, 200), 0.5)


def run_prepare(*args) -> subprocess.CompletedProcess:
    return app_testlib.run_module("tfglo.prepare", *args)


class AppTest(parameterized.TestCase):
    @pytest.fixture(autouse=True)
    def _inject(self, broken_dir, tmp_path):
        self.broken_dir = broken_dir
        self.tmp_path = tmp_path

    def test_prepares_the_broken_folder(self):
        output = self.tmp_path / "dataset"
        result = run_prepare(
            "--source=images",
            f"--images={self.broken_dir}",
            f"--output={output}",
            "--image_size=64",
        )
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        self.assertIn(f"wrote {len(EXPECTED_PREPARED)} images", result.stdout)
        self.assertIn(f"skipped {len(EXPECTED_BROKEN)} images", result.stdout)
        for name, category in EXPECTED_BROKEN.items():
            self.assertIn(f"  {name}: {category}", result.stdout)
        self.assertIn("photos: 11/11 analysed", result.stderr)  # progress
        metadata = dataset_dir.read_metadata(output)
        self.assertEqual(metadata["prepare_source"], "images")
        self.assertEqual({s["source"] for s in metadata["skipped"]}, set(EXPECTED_BROKEN))
        self.assertEqual(np.shape(metadata["canonical_keypoints"]), (5, 3))
        recs = list(dataset_dir.iterate_records(output))
        self.assertEqual({r.source for r in recs}, EXPECTED_PREPARED)
        for record in recs:
            self.assertEqual(record.image.shape, (64, 64, 3))
            self.assertEqual(record.mask.shape, (64, 64))
            self.assertEqual(record.face_mesh.shape, (478, 3))

    @parameterized.named_parameters(
        ("missing_folder", "missing", "the images folder .* does not exist"),
        ("nothing_usable", "junk", r"no photo in .* could be prepared \(2 files, 2 skipped"),
    )
    def test_fails_clearly(self, case, message):
        folder = self.tmp_path / "photos"
        if case == "junk":
            folder.mkdir()
            (folder / "a.jpg").write_text("text")
            Image.new("RGB", (8, 8)).save(folder / "b.png")
        output = self.tmp_path / "out"
        result = run_prepare("--source=images", f"--images={folder}", f"--output={output}")
        self.assertEqual(result.returncode, 1)
        self.assertRegex(result.stderr, "prepare: error: " + message)
        self.assertFalse(output.exists())


def test_prepare_module_exposes_the_images_flags():
    flag_values = prepare.flags.FlagValues()
    prepare.define_flags(flag_values)
    for name in (
        "images",
        "canonical_from",
        "landmarks",
        "face_landmarker_model",
        "selfie_segmenter_model",
        "crop_margin",
        "focal_factor",
    ):
        assert name in flag_values, name
