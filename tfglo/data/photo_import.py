"""A folder of photos -> training records: detect, crop, landmarks, masks, joint camera fit.

`prepare_images(config)` is the `--source=images` of `tfglo.prepare` (DESIGN.md sections 2, 6;
`tfglo.data.record_sources.images_source`):

1. every regular, non-hidden file of the folder is loaded robustly (`tfglo.data.photos`); files
   that cannot be used are skipped with a reason;
2. MediaPipe's FaceLandmarker finds the faces (`tfglo.pose.landmarks`); with several faces the
   largest is taken and the choice is recorded; a face cut by the photo's border (beyond
   `max_face_cut_fraction`, or any of the 5 keypoints outside the photo) is skipped;
   alternatively `landmarks_file` gives K points per photo for classes MediaPipe cannot detect;
3. a square crop around the face (margin, padding recorded) is resized to `image_size`; the
   landmarks, the 478-point mesh and the face pose go into the record;
4. the selfie segmenter's person confidence on the crop becomes the record's mask;
5. cameras: a joint fit of canonical keypoints and cameras (`tfglo.pose.camera_fit`), outliers
   dropped with their reason; or, with `canonical_from`, a camera-only fit against the canonical
   keypoints of an existing dataset so that new photos live in the same canonical frame; or, with
   `cameras` (a camera file), no detection or fit at all (`tfglo.data.camera_file_import`);
6. the share of each mask's pixels whose rays miss the bounding sphere (`mask_outside_sphere`
   in dataset.json, with a summary line): what the sphere cannot hold falls to the background.

Returns the records (one latent per photo), the dataset.json metadata (canonical keypoints, fit
quality per image, intrinsics policy, scene radius, multi-face choices, padding) and the skipped
list (`{"source", "category", "reason"}`).
"""

import csv
import dataclasses
import io
import json
import os
import pathlib
import tempfile
import time
from typing import Any

import numpy as np
from absl import logging

from tfglo.data import camera_file_import, dataset_dir, photos, records
from tfglo.geometry import camera, sphere_coverage
from tfglo.pose import camera_fit, landmarks
from tfglo.utils import benchmarking

MASK_SOURCES = ("selfie", "full", "none")


class PhotoSourceError(ValueError):
    """The photo source cannot run (missing folder, bad landmarks file, bad canonical dataset)."""


@dataclasses.dataclass(frozen=True)
class PhotoSourceConfig:
    """Settings of the photo source.

    Attributes:
      images: folder of photos (its regular, non-hidden files; subfolders are ignored).
      photo: loading and cropping (`image_size`, `crop_margin`, `pad_mode`, alpha handling).
      landmarker: MediaPipe model files and settings.
      fit: camera-fit settings (`scene_radius`, outlier thresholds, ...).
      focal_factor: fixed intrinsics: fx = fy = focal_factor x image_size, centred principal point.
      canonical_from: a dataset directory whose dataset.json holds `canonical_keypoints`: fit only
        the cameras, against those points.
      landmarks_file: CSV (`name,x1,y1,x2,y2,...`, optional header) or JSON
        (`{name: [[x, y], ...]}`) with K points per photo, in pixels of the upright photo (pixel
        centres at +0.5); replaces MediaPipe detection (then no face mesh or pose, and the fit
        uses no face template unless `fit.face_template` is True).
      landmarks_mask: masks with `landmarks_file`: "none" (no mask), "full" (all foreground) or
        "selfie" (the person segmenter, for people). MediaPipe detection always uses "selfie".
      max_face_cut_fraction: a face whose landmark box leaves the photo by more than this
        fraction of the box side (on any side) is skipped as cut by the border.
      canonical_error_fraction: with `canonical_from`, photos whose reprojection error exceeds
        this fraction of `image_size` (or the source dataset's own outlier threshold, if larger)
        are skipped as fit outliers.
      log_every: log progress every this many photos.
      cameras: per-image cameras from a file instead of detection and fit (then `landmarks_file`
        and `canonical_from` are not used).
    """

    images: str
    photo: photos.PhotoConfig = dataclasses.field(default_factory=photos.PhotoConfig)
    landmarker: landmarks.LandmarkerConfig = dataclasses.field(
        default_factory=landmarks.LandmarkerConfig
    )
    fit: camera_fit.CameraFitConfig = dataclasses.field(default_factory=camera_fit.CameraFitConfig)
    focal_factor: float = 2.0
    canonical_from: str | None = None
    landmarks_file: str | None = None
    landmarks_mask: str = "none"
    max_face_cut_fraction: float = 0.1
    canonical_error_fraction: float = 0.03
    log_every: int = 10
    cameras: camera_file_import.CameraImportConfig | None = None

    def __post_init__(self):
        if self.landmarks_mask not in MASK_SOURCES:
            raise ValueError(
                f"landmarks_mask must be one of {MASK_SOURCES}, got {self.landmarks_mask!r}"
            )
        if not self.focal_factor > 0:
            raise ValueError(f"focal_factor must be > 0, got {self.focal_factor}")


@dataclasses.dataclass
class AnalysedPhoto:
    """A photo that passed detection and cropping, waiting for its camera.

    Attributes:
      name: the photo's file name.
      image: `[S, S, 3]` uint8 crop (S = `PhotoConfig.image_size`).
      landmarks: `[K, 2]` float32 keypoints in crop pixels (pixel centres at +0.5).
      mask: `[S, S]` uint8 foreground mask of the crop, or None.
      face_mesh: `[478, 3]` float32 MediaPipe mesh in crop pixels, or None.
      face_pose: `[4, 4]` MediaPipe facial transformation matrix, or None.
    """

    name: str
    image: np.ndarray
    landmarks: np.ndarray
    mask: np.ndarray | None
    face_mesh: np.ndarray | None
    face_pose: np.ndarray | None


def _skip(skipped: list, name: str, category: str, detail: str = "") -> None:
    reason = f"{category}: {detail}" if detail else category
    skipped.append({"source": name, "category": category, "reason": reason})
    logging.info("skipped %s: %s", name, reason)


def list_photos(folder: os.PathLike | str) -> list[pathlib.Path]:
    """The regular, non-hidden files of a folder (and its broken links), sorted by name.

    Raises:
      PhotoSourceError: the folder does not exist or is not a directory.
    """
    folder = pathlib.Path(folder)
    if not folder.exists():
        raise PhotoSourceError(f"the images folder {folder} does not exist")
    if not folder.is_dir():
        raise PhotoSourceError(f"--images must be a folder of photos, {folder} is not a directory")
    # Broken symbolic links are listed too, so that they are reported ("unreadable"), not lost.
    return sorted(
        p
        for p in folder.iterdir()
        if (p.is_file() or (p.is_symlink() and not p.exists())) and not p.name.startswith(".")
    )


def load_landmarks_file(path: os.PathLike | str) -> dict[str, np.ndarray]:
    """Reads user keypoints: name -> `[K, 2]` pixels (same K for every photo).

    CSV rows are `name,x1,y1,x2,y2,...` (a first row whose second field is not a number is a
    header; blank lines and lines starting with # are ignored). JSON is `{name: [[x, y], ...]}`
    (or flat `[x1, y1, ...]` lists). The file must be UTF-8 text; coordinates finite numbers.

    Raises:
      PhotoSourceError: the file is missing or malformed (the message names the file and the
        line or entry).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise PhotoSourceError(f"landmarks file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise PhotoSourceError(f"landmarks file {path} cannot be read as UTF-8 text: {e}") from e
    table: dict[str, np.ndarray] = {}
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise PhotoSourceError(f"landmarks file {path} is not valid JSON: {e}") from e
        except RecursionError as e:
            raise PhotoSourceError(f"landmarks file {path} is not valid JSON: too deep") from e
        if not isinstance(data, dict):
            raise PhotoSourceError(f"landmarks file {path} must map image names to point lists")
        for name, points in data.items():
            try:
                array = np.asarray(points, np.float64).reshape(-1, 2)
            except (ValueError, TypeError, OverflowError) as e:
                raise PhotoSourceError(f"{path}: entry {name!r} is not a list of (x, y)") from e
            table[str(name)] = array
    else:
        try:
            rows = list(csv.reader(io.StringIO(text, newline="")))
        except csv.Error as e:
            raise PhotoSourceError(f"{path}: not a CSV file: {e}") from e
        for line_number, row in enumerate(rows, 1):
            row = [cell.strip() for cell in row]
            if not row or not row[0] or row[0].startswith("#"):
                continue
            try:
                values = [float(v) for v in row[1:] if v != ""]
            except ValueError as e:
                if line_number == 1 or not table:
                    continue  # a header row
                raise PhotoSourceError(f"{path}:{line_number}: non-numeric coordinate") from e
            if not values or len(values) % 2:
                raise PhotoSourceError(
                    f"{path}:{line_number}: expected name,x1,y1,... with an even number of "
                    f"coordinates, got {len(values)}"
                )
            table[row[0]] = np.asarray(values, np.float64).reshape(-1, 2)
    if not table:
        raise PhotoSourceError(f"landmarks file {path} holds no entries")
    counts = {len(v) for v in table.values()}
    if len(counts) != 1:
        raise PhotoSourceError(
            f"landmarks file {path}: every photo needs the same number of points, got {counts}"
        )
    if counts.pop() < 3:
        raise PhotoSourceError(f"landmarks file {path}: at least 3 points per photo are needed")
    for name, points in table.items():
        if not np.all(np.isfinite(points)):
            raise PhotoSourceError(f"landmarks file {path}: entry {name!r} has non-finite values")
    return table


def _lookup(table: dict[str, np.ndarray], name: str) -> np.ndarray | None:
    if name in table:
        return table[name]
    stem = pathlib.Path(name).stem
    return table.get(stem)


def _face_cut(box, width: int, height: int) -> float:
    """Largest fraction of the box side that lies outside the photo, over the four sides."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0, 1e-6)
    outside = max(-x0, -y0, x1 - width, y1 - height, 0.0)
    return outside / side


def _read_canonical(dataset: str) -> tuple[np.ndarray, dict]:
    try:
        metadata = dataset_dir.read_metadata(dataset)
    except dataset_dir.DatasetError as e:
        raise PhotoSourceError(f"--canonical_from: {e}") from e
    if "canonical_keypoints" not in metadata:
        raise PhotoSourceError(
            f"--canonical_from: {dataset}/dataset.json has no canonical_keypoints (it was not "
            "made by a camera fit)"
        )
    canonical = np.asarray(metadata["canonical_keypoints"], np.float64)
    if canonical.ndim != 2 or canonical.shape[1] != 3 or len(canonical) < 3:
        raise PhotoSourceError(
            f"--canonical_from: canonical_keypoints must be [K, 3] with K >= 3, got "
            f"{canonical.shape}"
        )
    return canonical, metadata


def analyse_photo(path, config, analyzer, table, skipped, info) -> AnalysedPhoto | None:
    """Loads, detects (or looks up), crops and segments one photo, as `prepare_images` does.

    Args:
      path: the photo file.
      config: the source settings (`photo` crop, `max_face_cut_fraction`, `landmarks_mask`).
      analyzer: a `landmarks.FaceAnalyzer` (None only with `table` and no selfie mask).
      table: user keypoints (`load_landmarks_file`) or None for MediaPipe detection.
      skipped: a skipped photo is appended as `{"source", "category", "reason"}`.
      info: `{"multi_face": {}, "padding": {}, "photo_notes": {}}`, filled per photo name.

    Returns:
      The `AnalysedPhoto`, or None when the photo is skipped (see `skipped`).
    """
    name = path.name
    try:
        photo = photos.load_photo(path, config.photo)
    except photos.PhotoError as e:
        _skip(skipped, name, e.reason, e.detail)
        return None
    if photo.notes:
        info["photo_notes"][name] = photo.notes
    height, width = photo.image.shape[:2]
    mesh = pose = None
    if table is not None:
        points = _lookup(table, name)
        if points is None:
            _skip(skipped, name, "no landmarks", f"{name} is not in the landmarks file")
            return None
        # The file's points are in pixels of the photo as stored; a huge JPEG may have been
        # decoded at a reduced size (photos.load_photo).
        points = points * photo.scale
        x0, y0 = points.min(0)
        x1, y1 = points.max(0)
        box = (float(x0), float(y0), float(x1), float(y1))
        keypoints = points
    else:
        detection = analyzer.detect(photo.image)
        if not detection.faces:
            _skip(skipped, name, "no face", "MediaPipe found no face")
            return None
        if detection.num_faces > 1:
            info["multi_face"][name] = detection.choice()
            logging.info("%s: %d faces, taking the largest", name, detection.num_faces)
        face = detection.largest
        box, keypoints, mesh, pose = face.box, face.keypoints, face.mesh, face.pose
    cut = _face_cut(box, width, height)
    outside = (
        (keypoints[:, 0] < 0)
        | (keypoints[:, 1] < 0)
        | (keypoints[:, 0] > width)
        | (keypoints[:, 1] > height)
    )
    if np.any(outside):
        _skip(
            skipped,
            name,
            "face cut by the border",
            f"{int(outside.sum())} of {len(keypoints)} keypoints lie outside the photo",
        )
        return None
    if cut > config.max_face_cut_fraction:
        _skip(
            skipped,
            name,
            "face cut by the border",
            f"{cut:.0%} of the face box lies outside the photo (limit "
            f"{config.max_face_cut_fraction:.0%})",
        )
        return None
    center_x, center_y, side = photos.square_around(box, config.photo.crop_margin)
    crop = photos.crop_square(
        photo.image,
        (center_x, center_y),
        side,
        config.photo.image_size,
        config.photo.pad_mode,
        config.photo.pad_color,
    )
    if crop.padded:
        info["padding"][name] = crop.padding
    mask_source = "selfie" if table is None else config.landmarks_mask
    if mask_source == "selfie":
        confidence = analyzer.segment(crop.image)
        mask = np.round(confidence * 255.0).astype(np.uint8)
    elif mask_source == "full":
        mask = np.full(crop.image.shape[:2], 255, np.uint8)
    else:
        mask = None
    return AnalysedPhoto(
        name=name,
        image=crop.image,
        landmarks=crop.transform.apply(keypoints).astype(np.float32),
        mask=mask,
        face_mesh=None if mesh is None else crop.transform.apply(mesh).astype(np.float32),
        face_pose=None if pose is None else np.asarray(pose, np.float32),
    )


def prepare_images(config: PhotoSourceConfig):
    """Turns a folder of photos into records with fitted cameras.

    Args:
      config: the source settings.

    Returns:
      (records, metadata, skipped): a list of `records.ImageRecord` (split "train", one latent
      per photo, in file-name order), the dataset.json keys, and the skipped photos as
      `{"source": file name, "category": ..., "reason": "category: detail"}`.

    Raises:
      PhotoSourceError: the folder does not exist, the landmarks file or the canonical dataset
        is unusable.
    """
    files = list_photos(config.images)
    if config.cameras is not None:
        return _prepare_with_camera_file(files, config)
    table = load_landmarks_file(config.landmarks_file) if config.landmarks_file else None
    canonical = reference = None
    if config.canonical_from:
        canonical, reference = _read_canonical(config.canonical_from)
    size = config.photo.image_size
    intrinsics = camera.default_intrinsics(size, size, config.focal_factor)
    skipped: list[dict[str, str]] = []
    info: dict[str, dict] = {"multi_face": {}, "padding": {}, "photo_notes": {}}
    pending: list[AnalysedPhoto] = []
    start = time.perf_counter()
    logging.info("preparing %d files from %s", len(files), config.images)
    need_analyzer = table is None or config.landmarks_mask == "selfie"
    analyzer = landmarks.FaceAnalyzer(config.landmarker) if need_analyzer else None
    try:
        for index, path in enumerate(files, 1):
            try:
                item = analyse_photo(path, config, analyzer, table, skipped, info)
            except Exception as e:  # noqa: BLE001 - one bad photo must never end the run
                logging.warning("%s: %s: %s", path.name, type(e).__name__, e)
                _skip(skipped, path.name, "error", f"{type(e).__name__}: {e}")
                item = None
            if item is not None:
                if pending and len(item.landmarks) != len(pending[0].landmarks):
                    _skip(skipped, path.name, "no landmarks", "a different number of keypoints")
                else:
                    pending.append(item)
            if config.log_every and (index % config.log_every == 0 or index == len(files)):
                rate = index / max(time.perf_counter() - start, 1e-9)
                logging.info(
                    "photos: %d/%d analysed (%.1f photos/s), %d kept, %d skipped",
                    index,
                    len(files),
                    rate,
                    len(pending),
                    len(skipped),
                )
    finally:
        if analyzer is not None:
            analyzer.close()

    metadata: dict[str, Any] = {
        "source_kind": "images",
        "images_dir": str(pathlib.Path(config.images).resolve()),
        "num_files": len(files),
        "intrinsics_policy": (
            f"fixed: fx = fy = {config.focal_factor:g} x width, principal point at the image centre"
        ),
        "focal_factor": config.focal_factor,
        "crop": {
            "image_size": size,
            "crop_margin": config.photo.crop_margin,
            "pad_mode": config.photo.pad_mode,
            "pad_color": list(config.photo.pad_color),
            "alpha": config.photo.alpha,
        },
        "landmark_source": "mediapipe" if table is None else f"file:{config.landmarks_file}",
        "mask_source": "selfie" if table is None else config.landmarks_mask,
        "latent_per": "image",
        **info,
    }
    if table is None:
        metadata["keypoint_names"] = list(camera_fit.FACE_KEYPOINT_NAMES)
        metadata["keypoint_face_mesh_indices"] = list(camera_fit.FACE_KEYPOINT_INDICES)
    records_out: list[records.ImageRecord] = []
    if pending:
        points = np.stack([p.landmarks for p in pending]).astype(np.float64)
        names = [p.name for p in pending]
        if canonical is not None:
            cameras, errors, keep, fit_info = _fit_to_canonical(
                points, intrinsics, canonical, reference, config
            )
            scene_radius = float(reference.get("scene_radius", config.fit.scene_radius))
        else:
            fit_config = config.fit
            if table is not None and fit_config.face_template is None:
                # K user points are not the face template's points, even when K happens to be 5.
                fit_config = dataclasses.replace(fit_config, face_template=False)
            result = camera_fit.fit_cameras(points, intrinsics, fit_config)
            cameras, errors, keep = result.world_to_camera, result.errors_px, result.inliers
            canonical = result.canonical_points
            fit_info = {"mode": "joint", **result.summary(names)}
            fit_info["outlier_reasons"] = {
                names[i]: reason for i, reason in result.outlier_reasons.items()
            }
            scene_radius = config.fit.scene_radius
        fit_info["median_error_fraction"] = float(fit_info["median_error_px"]) / size
        for i, item in enumerate(pending):
            if not keep[i]:
                detail = fit_info.get("outlier_reasons", {}).get(item.name, "")
                detail = detail.removeprefix("fit outlier: ") or f"error {errors[i]:.2f} px"
                _skip(skipped, item.name, "fit outlier", detail)
                continue
            records_out.append(
                records.ImageRecord(
                    image=item.image,
                    intrinsics=intrinsics,
                    world_to_camera=np.asarray(cameras[i], np.float32),
                    latent_id=len(records_out),
                    object_id=len(records_out),
                    view_id=0,
                    source=item.name,
                    split="train",
                    mask=item.mask,
                    landmarks=item.landmarks,
                    face_mesh=item.face_mesh,
                    face_pose=item.face_pose,
                )
            )
        metadata["canonical_keypoints"] = np.asarray(canonical, np.float64).round(6).tolist()
        metadata["scene_radius"] = scene_radius
        metadata["fit"] = fit_info
    else:
        metadata["scene_radius"] = config.fit.scene_radius
    return _finish(records_out, metadata, skipped, start)


def _finish(records_out, metadata, skipped, start):
    """Adds the sphere coverage and the skip counts to the metadata, logs the summary."""
    radius = float(metadata["scene_radius"])
    fractions = {
        r.source: sphere_coverage.mask_outside_fraction(
            r.mask, r.intrinsics, r.world_to_camera, radius
        )
        for r in records_out
        if r.mask is not None
    }
    metadata["mask_outside_sphere"] = sphere_coverage.summarise(fractions)
    if fractions:
        logging.info(
            "photos: %s", sphere_coverage.summary_line(metadata["mask_outside_sphere"], radius)
        )
    counts: dict[str, int] = {}
    for entry in skipped:
        counts[entry["category"]] = counts.get(entry["category"], 0) + 1
    metadata["skipped_counts"] = counts
    metadata["seconds"] = round(time.perf_counter() - start, 3)
    logging.info(
        "photos: %d prepared, %d skipped (%s) in %.1f s",
        len(records_out),
        len(skipped),
        ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none",
        time.perf_counter() - start,
    )
    return records_out, metadata, skipped


def _prepare_with_camera_file(files, config: PhotoSourceConfig):
    """`prepare_images` with `config.cameras`: cameras from the file, no detection or fit."""
    skipped: list[dict[str, str]] = []
    start = time.perf_counter()
    logging.info(
        "preparing %d files from %s with cameras from %s",
        len(files),
        config.images,
        config.cameras.cameras_file,
    )
    try:
        records_out, source_metadata = camera_file_import.prepare_with_cameras(
            files,
            config.photo,
            config.landmarker,
            config.cameras,
            lambda name, category, detail: _skip(skipped, name, category, detail),
        )
    except camera_file_import.camera_files.CameraFileError as e:
        raise PhotoSourceError(f"--cameras: {e}") from e
    metadata: dict[str, Any] = {
        "source_kind": "images",
        "images_dir": str(pathlib.Path(config.images).resolve()),
        "num_files": len(files),
        **source_metadata,
    }
    return _finish(records_out, metadata, skipped, start)


def canonical_threshold(config: PhotoSourceConfig, reference: dict) -> float:
    """Reprojection error (pixels of `config.photo.image_size`) above which a camera fitted
    against a dataset's canonical keypoints is an outlier: `canonical_error_fraction` of the
    image size, or the reference dataset's own outlier threshold (scaled), if larger.

    Args:
      config: the source settings.
      reference: the reference dataset's dataset.json (its "fit" and "image_size").
    """
    size = config.photo.image_size
    threshold = config.canonical_error_fraction * size
    reference_fit = reference.get("fit") or {}
    reference_size = (reference.get("image_size") or [size])[0]
    if "threshold_px" in reference_fit:
        threshold = max(threshold, float(reference_fit["threshold_px"]) * size / reference_size)
    return float(threshold)


def _fit_to_canonical(points, intrinsics, canonical, reference, config):
    """Camera-only fit of every photo against a dataset's canonical keypoints."""
    if points.shape[1] != len(canonical):
        raise PhotoSourceError(
            f"--canonical_from has {len(canonical)} canonical keypoints but the photos have "
            f"{points.shape[1]}"
        )
    threshold = canonical_threshold(config, reference)
    cameras, errors = [], []
    for p in points:
        world_to_camera, error = camera_fit.fit_camera_to_canonical(p, intrinsics, canonical)
        cameras.append(world_to_camera)
        errors.append(error)
    errors = np.asarray(errors)
    keep = errors <= threshold
    fit_info = {
        "mode": "canonical_from",
        "canonical_from": str(pathlib.Path(config.canonical_from).resolve()),
        "median_error_px": float(np.median(errors[keep])) if keep.any() else float("nan"),
        "max_error_px": float(np.max(errors[keep])) if keep.any() else float("nan"),
        "threshold_px": float(threshold),
        "outlier_reasons": {},
    }
    return np.stack(cameras), errors, keep, fit_info


def default_faces_dir() -> pathlib.Path:
    """../shared/data/faces beside the checkout (or under $TFGLO_SHARED_DIR)."""
    shared = os.environ.get("TFGLO_SHARED_DIR")
    base = (
        pathlib.Path(shared) if shared else pathlib.Path(__file__).resolve().parents[3] / "shared"
    )
    return base / "data" / "faces"


def benchmark_prepare_photos(peak_gflops: float, max_photos: int | None = None) -> None:
    """Prints `prepare_photos photos_per_s=...` for the whole preparation of the face photos
    (the first `max_photos` of them by name, if given: a temporary folder of links to them)."""
    del peak_gflops  # MediaPipe (TFLite/XNNPACK) and numpy: a ratio to the TF matmul peak is moot
    faces = default_faces_dir()
    if not faces.is_dir():
        benchmarking.report("prepare_photos", skipped=f"no_photos_at:{faces}")
        return
    with tempfile.TemporaryDirectory(prefix="tfglo-bench-photos-") as tmp:
        folder = faces
        if max_photos is not None:
            folder = pathlib.Path(tmp)
            for path in list_photos(faces)[:max_photos]:
                (folder / path.name).symlink_to(path.resolve())
        config = PhotoSourceConfig(images=str(folder), log_every=0)
        start = time.perf_counter()
        prepared, metadata, skipped = prepare_images(config)
        seconds = time.perf_counter() - start
    benchmarking.report(
        "prepare_photos",
        photos=metadata["num_files"],
        prepared=len(prepared),
        skipped=len(skipped),
        seconds=seconds,
        photos_per_s=metadata["num_files"] / seconds,
        median_error_px=metadata.get("fit", {}).get("median_error_px", float("nan")),
        image_size=config.photo.image_size,
    )
