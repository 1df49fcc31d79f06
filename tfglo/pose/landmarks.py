"""MediaPipe face landmarks and selfie masks (Tasks API only; never `mediapipe.solutions`).

`FaceAnalyzer` owns one `FaceLandmarker` (image mode, several faces, facial transformation
matrices) and one `ImageSegmenter` (selfie segmentation, confidence masks). Use it as a context
manager: the Tasks objects hold native resources and raise at interpreter exit when left open.

    with FaceAnalyzer(LandmarkerConfig()) as analyzer:
        detection = analyzer.detect(image)          # all faces, largest first
        mask = analyzer.segment(crop)               # [S, S] person confidence

Images are numpy arrays decoded by PIL (see `tfglo.data.photos`), wrapped with
`mp.Image(image_format=mp.ImageFormat.SRGB, data=...)` as contiguous uint8 (MediaPipe's own file
decoder fails on some JPEGs that PIL reads).

Landmark coordinates: MediaPipe returns x, y normalised by the image width and height and z in
"roughly the same scale as x" (relative to the face's centre depth, negative towards the camera).
Here they are all converted to pixels of the analysed image: x * W, y * H, z * W, with pixel
centres at +0.5 as in `tfglo.geometry.camera` (MediaPipe's normalised coordinates treat the image as
the continuous square [0, 1]^2, the same convention).
"""

import dataclasses

import numpy as np

from tfglo.data import photos
from tfglo.pose import model_files
from tfglo.pose.camera_fit import FACE_KEYPOINT_INDICES

NUM_FACE_MESH_POINTS = 478


@dataclasses.dataclass(frozen=True)
class LandmarkerConfig:
    """MediaPipe settings.

    Attributes:
      face_landmarker_model: a `.task` file; None: `TFGLO_FACE_LANDMARKER_MODEL` or the bundled
        one (`tfglo.pose.model_files.resolve`).
      selfie_segmenter_model: a `.tflite` file; None: `TFGLO_SELFIE_SEGMENTER_MODEL` or bundled.
      max_faces: how many faces the landmarker may return per photo (> 1 so that group photos
        are noticed and the largest face is chosen deliberately).
      min_detection_confidence: face detector threshold.
      min_presence_confidence: landmark presence threshold.
      max_detection_side: photos are analysed at most this large (longer side, pixels).
      tile_search: when a downscaled photo shows no face, search the full resolution in
        overlapping tiles (small faces in huge photos).
    """

    face_landmarker_model: str | None = None
    selfie_segmenter_model: str | None = None
    max_faces: int = 8
    min_detection_confidence: float = 0.5
    min_presence_confidence: float = 0.5
    max_detection_side: int = 1280
    tile_search: bool = True


@dataclasses.dataclass
class Face:
    """One detected face, in pixels of the image passed to `FaceAnalyzer.detect`.

    Attributes:
      mesh: `[478, 3]` (x, y, z) pixels (z relative depth, negative towards the camera).
      pose: `[4, 4]` MediaPipe facial transformation matrix (canonical face model, centimetres,
        to MediaPipe's camera frame).
    """

    mesh: np.ndarray
    pose: np.ndarray

    @property
    def keypoints(self) -> np.ndarray:
        """`[5, 2]` semantic keypoints (Face Mesh 33, 263, 1, 61, 291), pixels."""
        return self.mesh[list(FACE_KEYPOINT_INDICES), :2]

    @property
    def box(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) bounding box of the 478 points, pixels."""
        x0, y0 = self.mesh[:, :2].min(0)
        x1, y1 = self.mesh[:, :2].max(0)
        return float(x0), float(y0), float(x1), float(y1)

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(0.0, x1 - x0) * max(0.0, y1 - y0)


@dataclasses.dataclass
class Detection:
    """All faces of a photo, largest (by landmark bounding-box area) first.

    Attributes:
      faces: list of `Face`.
      detection_scale: scale of the analysed copy relative to the photo (<= 1; 1 after a
        full-resolution tile search); the faces are already mapped back to photo pixels.
    """

    faces: list[Face]
    detection_scale: float = 1.0

    @property
    def num_faces(self) -> int:
        return len(self.faces)

    @property
    def largest(self) -> Face | None:
        return self.faces[0] if self.faces else None

    def choice(self) -> dict:
        """A JSON-able record of which face was taken and why."""
        return {
            "num_faces": self.num_faces,
            "chosen": 0 if self.faces else None,
            "policy": "largest landmark bounding box",
            "boxes": [[round(v, 1) for v in f.box] for f in self.faces],
            "areas": [round(f.area, 1) for f in self.faces],
        }


def _iou(a, b) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _mp_image(image: np.ndarray):
    import mediapipe as mp  # lazy: importing mediapipe is slow and not needed by most users

    image = np.ascontiguousarray(image, dtype=np.uint8)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must be [H, W, 3] uint8, got {image.shape}")
    return mp.Image(image_format=mp.ImageFormat.SRGB, data=image)


class FaceAnalyzer:
    """MediaPipe FaceLandmarker + ImageSegmenter, as a context manager.

    Either task is created on first use, so a caller that only segments (or only detects) does
    not pay for the other. `close()` (or leaving the `with` block) releases both.
    """

    def __init__(self, config: LandmarkerConfig | None = None):
        self.config = config or LandmarkerConfig()
        # Resolve (and hash-check) the model paths up front: a wrong path fails here, clearly.
        self.face_landmarker_path = model_files.resolve(
            model_files.FACE_LANDMARKER, self.config.face_landmarker_model
        )
        self.selfie_segmenter_path = model_files.resolve(
            model_files.SELFIE_SEGMENTER, self.config.selfie_segmenter_model
        )
        self._landmarker = None
        self._segmenter = None

    def __enter__(self) -> "FaceAnalyzer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def close(self) -> None:
        """Releases the MediaPipe tasks (safe to call twice)."""
        for name in ("_landmarker", "_segmenter"):
            task = getattr(self, name)
            if task is not None:
                task.close()
                setattr(self, name, None)

    def _get_landmarker(self):
        if self._landmarker is None:
            from mediapipe.tasks.python import BaseOptions, vision

            options = vision.FaceLandmarkerOptions(
                base_options=BaseOptions(model_asset_path=str(self.face_landmarker_path)),
                running_mode=vision.RunningMode.IMAGE,
                num_faces=self.config.max_faces,
                min_face_detection_confidence=self.config.min_detection_confidence,
                min_face_presence_confidence=self.config.min_presence_confidence,
                output_face_blendshapes=False,
                output_facial_transformation_matrixes=True,
            )
            self._landmarker = vision.FaceLandmarker.create_from_options(options)
        return self._landmarker

    def _get_segmenter(self):
        if self._segmenter is None:
            from mediapipe.tasks.python import BaseOptions, vision

            options = vision.ImageSegmenterOptions(
                base_options=BaseOptions(model_asset_path=str(self.selfie_segmenter_path)),
                running_mode=vision.RunningMode.IMAGE,
                output_confidence_masks=True,
                output_category_mask=False,
            )
            self._segmenter = vision.ImageSegmenter.create_from_options(options)
        return self._segmenter

    def _detect_faces(self, image: np.ndarray) -> list[Face]:
        """One landmarker pass; faces in pixels of `image`."""
        height, width = image.shape[:2]
        result = self._get_landmarker().detect(_mp_image(image))
        matrices = result.facial_transformation_matrixes or []
        faces = []
        for index, points in enumerate(result.face_landmarks):
            mesh = np.array([[p.x * width, p.y * height, p.z * width] for p in points])
            pose = (
                np.asarray(matrices[index], np.float32)
                if index < len(matrices)
                else np.eye(4, dtype=np.float32)
            )
            faces.append(Face(mesh=mesh, pose=pose))
        return faces

    def _detect_tiles(self, image: np.ndarray) -> list[Face]:
        """Full-resolution search in overlapping tiles, for small faces in huge photos.

        MediaPipe's face detector misses faces narrower than ~10% of the analysed image, so a
        face that is small in a huge photo vanishes in the downscaled copy. Tiles of
        `max_detection_side` with half-tile overlap contain every face up to half a tile wide
        completely; a face seen in several tiles is kept once, from the tile where it lies
        farthest from a cut edge.
        """
        height, width = image.shape[:2]
        side = self.config.max_detection_side

        def starts(length):
            if length <= side:
                return [0]
            positions = list(range(0, length - side, side // 2))
            return positions + [length - side]

        candidates = []
        for top in starts(height):
            for left in starts(width):
                tile = np.ascontiguousarray(image[top : top + side, left : left + side])
                for face in self._detect_faces(tile):
                    x0, y0, x1, y1 = face.box
                    tile_h, tile_w = tile.shape[:2]
                    # Distance to the tile edges that cut the photo (photo borders do not count).
                    margins = [
                        x0 if left > 0 else np.inf,
                        y0 if top > 0 else np.inf,
                        tile_w - x1 if left + tile_w < width else np.inf,
                        tile_h - y1 if top + tile_h < height else np.inf,
                    ]
                    face.mesh[:, 0] += left
                    face.mesh[:, 1] += top
                    candidates.append((min(margins), face))
        candidates.sort(key=lambda c: c[0], reverse=True)
        kept: list[Face] = []
        for _, face in candidates:
            if all(_iou(face.box, other.box) < 0.3 for other in kept):
                kept.append(face)
        return kept

    def detect(self, image: np.ndarray) -> Detection:
        """Finds every face of a photo.

        Args:
          image: `[H, W, 3]` uint8 RGB photo. Photos larger than `max_detection_side` are analysed
            on a downscaled copy (and, when that finds nothing, in full-resolution tiles); the
            landmarks are always in the photo's pixels.

        Returns:
          A `Detection` with the faces sorted by area, largest first (empty when none).
        """
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be [H, W, 3] uint8, got {image.shape} {image.dtype}")
        small, scale = photos.downscale_for_detection(image, self.config.max_detection_side)
        faces = self._detect_faces(small)
        for face in faces:
            face.mesh = face.mesh / scale
        if not faces and scale < 1.0 and self.config.tile_search:
            faces = self._detect_tiles(image)
            scale = 1.0
        for face in faces:
            face.mesh = face.mesh.astype(np.float32)
        faces.sort(key=lambda f: f.area, reverse=True)
        return Detection(faces=faces, detection_scale=scale)

    def segment(self, image: np.ndarray) -> np.ndarray:
        """Person confidence of every pixel, `[H, W]` float32 in [0, 1].

        The selfie models tfglo bundles output one confidence mask (the person). A multi-class
        model (e.g. selfie_multiclass, class 0 = background) gives 1 - background.
        """
        result = self._get_segmenter().segment(_mp_image(image))
        masks = result.confidence_masks
        if not masks:
            raise RuntimeError("the segmenter returned no confidence mask")
        if len(masks) == 1:
            confidence = masks[0].numpy_view()
        else:
            confidence = 1.0 - masks[0].numpy_view()
        confidence = np.asarray(confidence, np.float32).reshape(image.shape[:2])
        return np.clip(confidence, 0.0, 1.0)
