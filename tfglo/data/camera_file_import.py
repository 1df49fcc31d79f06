"""A folder of photos with known cameras (a camera file) -> training records.

`prepare_with_cameras(config, files)` is `tfglo.prepare --source=images --cameras=FILE`: each
photo takes its camera from the file (`tfglo.data.camera_files`) instead of a landmark fit, so
no face detection runs and any class works (the LOLNeRF authors' AFHQ / CelebA-HQ / FFHQ camera
estimates, or a user's own calibrated cameras). The whole photo is used, as the file's camera
saw it: it is resized (not cropped) so that its width is `image_size`, and the intrinsics are
scaled from the file's image size to that. Masks come from MediaPipe's selfie segmenter (people),
or are all-foreground or absent (`cameras_mask`). Images that share an `object_id` (jax3d:
`identity`) share a latent.

Skipped, with a reason: photos with no camera in the file, whose aspect ratio differs from the
camera's image size (by more than 1 %), or whose output size differs from the first photo's.
"""

import dataclasses
import time
from typing import Any

import numpy as np
from PIL import Image

from tfglo.data import camera_files, photos, records
from tfglo.pose import landmarks

MASK_SOURCES = ("selfie", "full", "none")
_ASPECT_TOLERANCE = 0.01


@dataclasses.dataclass(frozen=True)
class CameraImportConfig:
    """Settings of photos with known cameras.

    Attributes:
      cameras_file: the camera file (tfglo-cameras JSON or LOLNeRF camera estimates).
      align: world alignment ("none", "mean_camera"; None: the format's default, see
        `camera_files.load`).
      mask: "selfie" (MediaPipe person segmenter), "full" (all foreground) or "none".
      scene_radius: bounding-sphere radius; None: the file's (tfglo: "scene_radius", jax3d: 2.0),
        else 1.0.
    """

    cameras_file: str
    align: str | None = None
    mask: str = "selfie"
    scene_radius: float | None = None

    def __post_init__(self):
        if self.mask not in MASK_SOURCES:
            raise ValueError(f"cameras mask must be one of {MASK_SOURCES}, got {self.mask!r}")
        if self.scene_radius is not None and not self.scene_radius > 0:
            raise ValueError(f"scene_radius must be > 0, got {self.scene_radius}")


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    if image.shape[1] == width and image.shape[0] == height:
        return image
    resized = Image.fromarray(image).resize(
        (width, height), Image.Resampling.LANCZOS, reducing_gap=3.0
    )
    return np.asarray(resized, np.uint8)


def load_with_camera(
    path, camera: camera_files.FileCamera, photo_config: photos.PhotoConfig
) -> tuple[np.ndarray, camera_files.FileCamera, list[str]]:
    """Loads one photo whose camera is known and resizes it, with its camera, to the output width.

    Args:
      path: the photo file.
      camera: its camera from the file (for the file's image size).
      photo_config: loading settings; `image_size` is the output width.

    Returns:
      (image `[H, W, 3]` uint8 with W = `image_size`, the camera scaled to it, loading notes).

    Raises:
      photos.PhotoError: the photo cannot be loaded ("not an image", ...) or its aspect ratio
        differs from the camera's image size ("camera size mismatch").
    """
    photo = photos.load_photo(path, photo_config)
    photo_aspect = photo.width / photo.height
    camera_aspect = camera.width / camera.height
    if abs(photo_aspect / camera_aspect - 1.0) > _ASPECT_TOLERANCE:
        raise photos.PhotoError(
            "camera size mismatch",
            f"the photo is {photo.width}x{photo.height} but its camera is for "
            f"{camera.width}x{camera.height}",
        )
    width = photo_config.image_size
    height = max(1, round(width * photo.height / photo.width))
    image = _resize(photo.image, width, height)
    return image, camera.scaled_to(width, height), list(photo.notes)


def prepare_with_cameras(
    files, photo_config: photos.PhotoConfig, landmarker_config, config: CameraImportConfig, skip
):
    """Turns photos with cameras from a file into records.

    Args:
      files: photo paths (sorted).
      photo_config: loading settings; `image_size` is the output width.
      landmarker_config: MediaPipe model files (only the selfie segmenter is used).
      config: the camera file and mask policy.
      skip: `skip(name, category, detail)` records a skipped photo.

    Returns:
      (records, metadata): `records.ImageRecord`s (split "train"; latent per object_id, or per
      photo when the file gives none) and the dataset.json keys of this source.

    Raises:
      CameraFileError: the camera file is missing or malformed.
    """
    camera_file = camera_files.load(config.cameras_file, config.align)
    scene_radius = config.scene_radius or camera_file.scene_radius or 1.0
    analyzer = landmarks.FaceAnalyzer(landmarker_config) if config.mask == "selfie" else None
    out: list[records.ImageRecord] = []
    latent_of_object: dict[Any, int] = {}
    views: dict[int, int] = {}
    photo_notes: dict[str, list[str]] = {}
    size = None
    start = time.perf_counter()
    try:
        for path in files:
            name = path.name
            camera = camera_file.lookup(name)
            if camera is None:
                skip(name, "no camera", f"{name} is not in {config.cameras_file}")
                continue
            try:
                image, scaled, notes = load_with_camera(path, camera, photo_config)
            except photos.PhotoError as e:
                skip(name, e.reason, e.detail)
                continue
            if notes:
                photo_notes[name] = notes
            height, width = image.shape[:2]
            if size is None:
                size = (height, width)
            elif (height, width) != size:
                skip(
                    name,
                    "image size differs",
                    f"{width}x{height}, the dataset's is {size[1]}x{size[0]}",
                )
                continue
            if config.mask == "selfie":
                mask = np.round(analyzer.segment(image) * 255.0).astype(np.uint8)
            elif config.mask == "full":
                mask = np.full(image.shape[:2], 255, np.uint8)
            else:
                mask = None
            key = ("object", camera.object_id) if camera.object_id is not None else ("photo", name)
            latent_id = latent_of_object.setdefault(key, len(latent_of_object))
            views[latent_id] = views.get(latent_id, -1) + 1
            out.append(
                records.ImageRecord(
                    image=image,
                    intrinsics=scaled.intrinsics.astype(np.float32),
                    world_to_camera=scaled.world_to_camera.astype(np.float32),
                    latent_id=latent_id,
                    object_id=latent_id,
                    view_id=views[latent_id],
                    source=name,
                    split="train",
                    mask=mask,
                )
            )
    finally:
        if analyzer is not None:
            analyzer.close()
    metadata = {
        "camera_source": f"file:{config.cameras_file}",
        "camera_file_format": camera_file.format,
        "camera_file_alignment": np.round(camera_file.alignment, 8).tolist(),
        "camera_file_cameras": len(camera_file.cameras),
        "intrinsics_policy": "from the camera file, scaled to the output image size",
        "crop": {"image_size": photo_config.image_size, "crop": "none (whole photo resized)"},
        "landmark_source": "none",
        "mask_source": config.mask,
        "latent_per": "object_id" if any(k[0] == "object" for k in latent_of_object) else "image",
        "scene_radius": float(scene_radius),
        "photo_notes": photo_notes,
        "camera_import_seconds": round(time.perf_counter() - start, 3),
    }
    return out, metadata
