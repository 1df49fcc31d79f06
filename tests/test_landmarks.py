"""Tests of the MediaPipe Tasks wrapper (tfglo.landmarks) on the shared face photos."""

import numpy as np
import pytest
from absl.testing import parameterized

from tfglo.data import photos
from tfglo.pose import landmarks, model_files


@pytest.fixture(scope="module")
def analyzer():
    with landmarks.FaceAnalyzer() as face_analyzer:
        yield face_analyzer


class DetectionTest(parameterized.TestCase):
    @pytest.fixture(autouse=True)
    def _inject(self, analyzer, faces_dir):
        # pytest fixtures into a unittest-style class (absl parameterized tables need one).
        self.analyzer = analyzer
        self.faces_dir = faces_dir

    def load(self, name):
        return photos.load_photo(self.faces_dir / name).image

    @parameterized.parameters("img1.jpg", "img2.jpg", "img20.jpg")
    def test_single_face_landmarks(self, name):
        image = self.load(name)
        detection = self.analyzer.detect(image)
        self.assertEqual(detection.num_faces, 1)
        face = detection.largest
        self.assertEqual(face.mesh.shape, (landmarks.NUM_FACE_MESH_POINTS, 3))
        self.assertEqual(face.pose.shape, (4, 4))
        np.testing.assert_allclose(face.pose[3], [0, 0, 0, 1], atol=1e-6)
        height, width = image.shape[:2]
        self.assertTrue(np.all((face.mesh[:, 0] > 0) & (face.mesh[:, 0] < width)))
        self.assertTrue(np.all((face.mesh[:, 1] > 0) & (face.mesh[:, 1] < height)))
        right_eye, left_eye, nose, mouth_right, mouth_left = face.keypoints
        # Face Mesh 33 is the image-left eye corner; the mouth lies below the eyes and the nose.
        self.assertTrue(right_eye[0] < nose[0] < left_eye[0])
        self.assertLess(mouth_right[0], mouth_left[0])
        self.assertTrue(
            max(right_eye[1], left_eye[1]) < nose[1] < min(mouth_right[1], mouth_left[1])
        )
        x0, y0, x1, y1 = face.box
        self.assertTrue(x0 <= right_eye[0] and left_eye[0] <= x1)
        self.assertTrue(y0 <= right_eye[1] and y1 >= nose[1])

    @parameterized.parameters(("couple.jpg", 2), ("selfie-many-people.jpg", 3))
    def test_group_photos_sort_faces_by_size(self, name, min_faces):
        detection = self.analyzer.detect(self.load(name))
        self.assertGreaterEqual(detection.num_faces, min_faces)
        areas = [face.area for face in detection.faces]
        self.assertEqual(areas, sorted(areas, reverse=True))
        choice = detection.choice()
        self.assertEqual(choice["num_faces"], detection.num_faces)
        self.assertEqual(choice["chosen"], 0)
        self.assertEqual(choice["policy"], "largest landmark bounding box")
        self.assertLen(choice["boxes"], detection.num_faces)

    def test_no_face(self):
        noise = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
        detection = self.analyzer.detect(noise)
        self.assertEqual(detection.num_faces, 0)
        self.assertIsNone(detection.largest)
        self.assertIsNone(detection.choice()["chosen"])

    def test_huge_photo_is_analysed_downscaled_in_photo_pixels(self):
        image = self.load("img1.jpg")
        reference = self.analyzer.detect(image).largest.keypoints
        scale = 3  # 1419 x 1920: above the 1280 px analysis limit
        big = np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)
        detection = self.analyzer.detect(big)
        self.assertLess(detection.detection_scale, 1.0)
        eye_distance = np.linalg.norm(reference[1] - reference[0]) * scale
        error = np.linalg.norm(detection.largest.keypoints - reference * scale, axis=-1)
        self.assertLess(error.max(), 0.05 * eye_distance)

    def test_small_face_in_a_huge_photo_is_found_by_tiles(self):
        image = self.load("img2.jpg")
        reference = self.analyzer.detect(image).largest.keypoints
        huge = np.full((3000, 4000, 3), 128, np.uint8)
        huge[1000:1480, 2000:2640] = image  # the face is ~4% of the width: lost at 1280 px
        detection = self.analyzer.detect(huge)
        self.assertEqual(detection.num_faces, 1)
        self.assertEqual(detection.detection_scale, 1.0)
        np.testing.assert_allclose(
            detection.largest.keypoints, reference + [2000.0, 1000.0], atol=2.0
        )
        no_tiles = landmarks.FaceAnalyzer(landmarks.LandmarkerConfig(tile_search=False))
        with no_tiles:
            self.assertEqual(no_tiles.detect(huge).num_faces, 0)

    def test_segmentation_mask_covers_the_face(self):
        image = self.load("img2.jpg")
        face = self.analyzer.detect(image).largest
        center_x, center_y, side = photos.square_around(face.box, 0.5)
        crop = photos.crop_square(image, (center_x, center_y), side, 256)
        mask = self.analyzer.segment(crop.image)
        self.assertEqual(mask.shape, (256, 256))
        self.assertEqual(mask.dtype, np.float32)
        self.assertTrue(0.0 <= mask.min() and mask.max() <= 1.0)
        for x, y in crop.transform.apply(face.keypoints):
            self.assertGreater(mask[int(y), int(x)], 0.5)
        # The top corners of a face crop are mostly background.
        self.assertLess(min(mask[:16, :16].mean(), mask[:16, -16:].mean()), 0.5)

    def test_rejects_bad_images(self):
        with pytest.raises(ValueError, match=r"image must be \[H, W, 3\] uint8"):
            self.analyzer.detect(np.zeros((32, 32), np.uint8))


class ModelFilesTest(parameterized.TestCase):
    @parameterized.named_parameters(
        ("landmarker", {"face_landmarker_model": "/nonexistent/face.task"}),
        ("segmenter", {"selfie_segmenter_model": "/nonexistent/selfie.tflite"}),
    )
    def test_missing_override_fails_clearly(self, kwargs):
        with pytest.raises(model_files.ModelFileError, match="override .* is not a file"):
            landmarks.FaceAnalyzer(landmarks.LandmarkerConfig(**kwargs))

    def test_close_is_idempotent_and_tasks_are_lazy(self):
        analyzer = landmarks.FaceAnalyzer()
        self.assertIsNone(analyzer._landmarker)
        analyzer.segment(np.zeros((64, 64, 3), np.uint8))
        self.assertIsNone(analyzer._landmarker)  # segmenting alone never loads the landmarker
        self.assertIsNotNone(analyzer._segmenter)
        analyzer.close()
        analyzer.close()
        self.assertIsNone(analyzer._segmenter)
