"""A photo to 3D in one call: camera, mask, latent, reconstruction, orbit with depth, mesh.

`lift_photos(run, images, output_dir, config)` is `python -m tfglo.lift` (issue 16). For each
photo, in file-name order:

1. **prepare** (`PhotoPreparer`), as the run's training data was prepared (its dataset.json
   summary is in the run's config.json; runs that lack a key fall back to the dataset directory):
   - face photos: MediaPipe landmarks, the square crop around the face with the training crop
     settings (`tfglo.data.photo_import.analyse_photo`), the selfie mask, and a camera fitted
     against the run's canonical keypoints (`pose.camera_fit.fit_camera_to_canonical`, fixed
     intrinsics with the training focal factor), refused as a fit outlier above the threshold
     `prepare --canonical_from` uses;
   - with a camera file (`LiftConfig.cameras`: tfglo's schema or the LOLNeRF camera estimates,
     `tfglo.data.camera_files`): the whole photo resized to the training width with its camera
     (`camera_file_import.load_with_camera`), turned by the world rotation the run's training
     data applied to its own camera file, and a mask from a folder of mask images, MediaPipe's
     selfie segmenter, or none. No face is needed: synthetic heads, cats, anything.
2. **latent**: the model family's `infer_latents` (LOLNeRF: test-time optimisation from the
   latent table's mean, `engine.inversion`; NeRF-VAE: its encoder, optionally refined).
3. **reconstruction**: the photo's own view rendered with the code; PSNR against the crop.
4. **orbit**: frames, depth and GIFs around the origin at the photo camera's distance and focal
   factor (`engine.views`).
5. **mesh**: marching cubes of the foreground density inside the bounding sphere
   (`nerf.mesh_extraction`), vertex colours from the field, `.ply` and `.glb`.

Everything goes into `output_dir/<photo stem>/`: `crop.png`, `mask.png` (when the photo has a
mask), `reconstruction.png` (input | render with its PSNR | depth | opacity), `orbit/`
(`frame_NNN.png`, `depth_NNN.png` / `.npy`, `alpha_NNN.png`, `orbit.gif`, `depth.gif`,
`alpha.gif`), `mesh.ply`, `mesh.glb`, `latent.npy` (`[D]` float32) and `lift.json` (camera
intrinsics and world-to-camera, fit error, optimisation steps, PSNR, mesh counts, seconds per
stage); `output_dir/summary.json` lists the lifted photos and the skipped ones with the reason.
A photo that cannot be lifted (unreadable, no face, face cut by the border, fit outlier, no
camera in the file, a camera that does not see the bounding sphere) is reported and skipped; the
others go on. `log` receives one line per stage per photo.
"""

import dataclasses
import json
import math
import os
import pathlib
import time
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from PIL import Image

from tfglo.data import camera_file_import, camera_files, dataset_dir, photo_import, photos
from tfglo.engine import inversion as inversion_lib
from tfglo.engine import metrics, views
from tfglo.geometry import camera as camera_lib
from tfglo.geometry import mesh as mesh_lib
from tfglo.nerf import mesh_extraction
from tfglo.pose import camera_fit, landmarks
from tfglo.utils import images as images_lib

SUMMARY_FILE = "summary.json"
LIFT_FILE = "lift.json"
_MASK_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class LiftError(ValueError):
    """Lifting cannot start (missing photos, a run without canonical keypoints, a bad file)."""


@dataclasses.dataclass(frozen=True)
class LiftConfig:
    """How photos are lifted to 3D.

    Attributes:
      image_size: width of the image the latent is fitted to, pixels; None: the training data's.
      cameras: a camera file (tfglo-cameras JSON or LOLNeRF camera estimates) with the photos'
        cameras in the run's world: no face detection and no camera fit.
      cameras_align: world rotation of the file's cameras: "run" (the rotation the run's
        training data applied to its own camera file, none if it had none) or "none".
      masks: with --cameras, a folder of masks named like the photos (the same file name, or
        the same stem with an image extension), grey 0..255 = background..foreground.
      mask: masks otherwise: "auto" (as the training data: the selfie segmenter for face photos,
        none where the training masks did not come from photos), "selfie", "full" or "none".
      landmarks_file: keypoints per photo (the CSV / JSON of prepare's --landmarks) for a run
        trained on such keypoints; None: MediaPipe face landmarks.
      max_face_cut_fraction: a face whose box leaves the photo by more than this fraction of its
        side is skipped.
      canonical_error_fraction: a camera fit whose reprojection error exceeds this fraction of
        the image size (or the training fit's outlier threshold, if larger) is skipped.
      landmarker: MediaPipe model files and detection settings.
      inversion: how the latent is fitted (steps, learning rate, rays, mask weight).
      make_mesh: extract the mesh (.ply, .glb).
      mesh: mesh extraction settings (grid resolution, density level, chunk size).
      orbit_frames: frames of the orbit (0: no orbit).
      orbit_size: side of the orbit frames, pixels; None: the fitted image's width.
      yaw_range_deg: (min, max) yaw of the orbit, degrees.
      pitch_range_deg: (min, max) pitch of the orbit, degrees.
      fps: frame rate of the GIFs.
    """

    image_size: int | None = None
    cameras: str | None = None
    cameras_align: Literal["run", "none"] = "run"
    masks: str | None = None
    mask: Literal["auto", "selfie", "full", "none"] = "auto"
    landmarks_file: str | None = None
    max_face_cut_fraction: float = 0.1
    canonical_error_fraction: float = 0.03
    landmarker: landmarks.LandmarkerConfig = dataclasses.field(
        default_factory=landmarks.LandmarkerConfig
    )
    inversion: inversion_lib.InversionConfig = dataclasses.field(
        default_factory=inversion_lib.InversionConfig
    )
    make_mesh: bool = True
    mesh: mesh_extraction.MeshConfig = dataclasses.field(default_factory=mesh_extraction.MeshConfig)
    orbit_frames: int = 24
    orbit_size: int | None = None
    yaw_range_deg: tuple[float, float] = (-35.0, 35.0)
    pitch_range_deg: tuple[float, float] = (-10.0, 10.0)
    fps: float = 12.0

    def __post_init__(self):
        if self.image_size is not None and self.image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {self.image_size}")
        if self.orbit_size is not None and self.orbit_size < 1:
            raise ValueError(f"orbit_size must be >= 1, got {self.orbit_size}")
        if self.orbit_frames < 0:
            raise ValueError(f"orbit_frames must be >= 0, got {self.orbit_frames}")
        if self.masks is not None and self.cameras is None:
            raise ValueError(
                "masks (a folder of mask images) needs cameras: a face photo is cropped around "
                "the face, and its mask comes from the selfie segmenter"
            )
        if self.cameras is not None and self.landmarks_file is not None:
            raise ValueError("give cameras or a landmarks file, not both")
        if self.cameras_align not in ("run", "none"):
            raise ValueError(f"cameras_align must be run or none, got {self.cameras_align!r}")
        if self.mask not in ("auto", "selfie", "full", "none"):
            raise ValueError(f"mask must be auto, selfie, full or none, got {self.mask!r}")


@dataclasses.dataclass
class PreparedPhoto:
    """A photo ready for its latent.

    Attributes:
      name: the photo's file name.
      image: `[H, W, 3]` uint8, the crop (face photos) or the resized photo (camera file).
      mask: `[H, W]` float32 in [0, 1], or None.
      intrinsics: `[4]` float32 (fx, fy, cx, cy), pixels of `image`.
      world_to_camera: `[3, 4]` float32 OpenCV [R | t] in the run's canonical frame.
      camera_source: "fit" (landmarks against the run's canonical keypoints) or "file".
      mask_source: "selfie", "full", "file:<path>" or "none".
      fit_error_px: RMS reprojection error of the fit, pixels (None for file cameras).
      fit_threshold_px: the outlier threshold it was held to (None for file cameras).
      landmarks: `[K, 2]` keypoints in `image` pixels, or None.
      notes: what happened on the way (several faces, padding, conversions).
      seconds: {"prepare": ..., "camera": ...}.
    """

    name: str
    image: np.ndarray
    mask: np.ndarray | None
    intrinsics: np.ndarray
    world_to_camera: np.ndarray
    camera_source: str
    mask_source: str
    fit_error_px: float | None = None
    fit_threshold_px: float | None = None
    landmarks: np.ndarray | None = None
    notes: dict = dataclasses.field(default_factory=dict)
    seconds: dict = dataclasses.field(default_factory=dict)


class SkippedPhotoError(Exception):
    """A photo cannot be lifted; `category` is short ("no face"), `detail` says why."""

    def __init__(self, category: str, detail: str = ""):
        super().__init__(f"{category}: {detail}" if detail else category)
        self.category = category
        self.detail = detail


# ------------------------------------------------------------------------ the run's training data


def training_metadata(run) -> dict[str, Any]:
    """The run's training dataset.json summary (config.json), completed from the dataset directory.

    Runs record the summary when they start (`engine.run_dir.make_config`); keys it lacks (an
    older run) are read from the training dataset directory when it still exists.
    """
    metadata = dict(getattr(run, "dataset_metadata", None) or {})
    directory = getattr(run, "dataset_dir", "")
    if "canonical_keypoints" not in metadata and directory and pathlib.Path(directory).is_dir():
        try:
            stored = dataset_dir.read_metadata(directory)
        except dataset_dir.DatasetError:
            stored = {}
        for key, value in stored.items():
            metadata.setdefault(key, value)
    return metadata


def scene_radius_of(run, metadata: dict) -> float:
    """The run's bounding-sphere radius (its model's render config; else dataset.json's)."""
    render = getattr(getattr(run, "model_config", None), "render", None)
    radius = getattr(render, "scene_radius", None)
    if radius is None:
        radius = metadata.get("scene_radius", 1.0)
    return float(radius)


def canonical_keypoints(metadata: dict, run_dir="the run") -> np.ndarray:
    """The `[K, 3]` canonical keypoints of the training data's camera fit.

    Raises:
      LiftError: there are none (the run was trained with known cameras: give a camera file).
    """
    points = metadata.get("canonical_keypoints")
    if points is None:
        raise LiftError(
            f"{run_dir} was trained on data without canonical keypoints (known cameras, not a "
            "landmark fit), so photos cannot be fitted against them: give the photos' cameras "
            "with --cameras=FILE"
        )
    points = np.asarray(points, np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) < 3:
        raise LiftError(f"{run_dir}: canonical_keypoints must be [K >= 3, 3], got {points.shape}")
    return points


def _training_width(metadata: dict) -> int:
    crop = metadata.get("crop") or {}
    if isinstance(crop.get("image_size"), int):
        return int(crop["image_size"])
    size = metadata.get("image_size")
    if size:
        return int(size[-1])
    return photos.PhotoConfig().image_size


def _photo_config(metadata: dict, image_size: int) -> photos.PhotoConfig:
    crop = metadata.get("crop") or {}
    defaults = photos.PhotoConfig()
    return photos.PhotoConfig(
        image_size=image_size,
        crop_margin=float(crop.get("crop_margin", defaults.crop_margin)),
        pad_mode=str(crop.get("pad_mode", defaults.pad_mode)),
        pad_color=tuple(int(v) for v in crop.get("pad_color", defaults.pad_color)),
        alpha=str(crop.get("alpha", defaults.alpha)),
        # A photo as small as the training images is fine (synthetic views with their cameras).
        min_size=min(defaults.min_size, image_size),
    )


def list_inputs(images) -> list[pathlib.Path]:
    """One photo, or the regular, non-hidden files of a folder (sorted).

    Raises:
      LiftError: the path does not exist, or the folder holds no files.
    """
    path = pathlib.Path(images)
    if path.is_file():
        return [path]
    if not path.exists():
        raise LiftError(f"--images: {path} does not exist")
    files = photo_import.list_photos(path)
    if not files:
        raise LiftError(f"--images: the folder {path} holds no files")
    return files


def _find_mask(folder: pathlib.Path, name: str) -> pathlib.Path | None:
    if (folder / name).is_file():
        return folder / name
    stem = pathlib.PurePath(name).stem
    for extension in _MASK_EXTENSIONS:
        for candidate in (folder / f"{stem}{extension}", folder / f"{stem}_mask{extension}"):
            if candidate.is_file():
                return candidate
    return None


def _load_mask(path: pathlib.Path, height: int, width: int) -> np.ndarray:
    try:
        with Image.open(path) as image:
            grey = image.convert("L")
            if grey.size != (width, height):
                grey = grey.resize((width, height), Image.Resampling.BILINEAR)
            return np.asarray(grey, np.float32) / 255.0
    except OSError as e:
        raise SkippedPhotoError("unreadable mask", f"{path}: {e}") from e


class PhotoPreparer:
    """Prepares photos like the run's training data (see the module docstring, step 1).

    Use as a context manager (it may hold MediaPipe's native models).

    Raises (on construction):
      LiftError: the run has no canonical keypoints and no camera file is given; the camera
        file or landmarks file is unusable.
    """

    def __init__(self, run, config: LiftConfig):
        self.config = config
        self.metadata = training_metadata(run)
        self.size = config.image_size or _training_width(self.metadata)
        self.photo_config = _photo_config(self.metadata, self.size)
        self.camera_file = None
        self.rotation = np.eye(3)
        self.analyzer = None
        trained_mask = self.metadata.get("mask_source")
        if config.cameras is not None:
            try:
                self.camera_file = camera_files.load(config.cameras, "none")
            except camera_files.CameraFileError as e:
                raise LiftError(f"--cameras: {e}") from e
            if config.cameras_align == "run" and self.metadata.get("camera_file_alignment"):
                self.rotation = np.asarray(self.metadata["camera_file_alignment"], np.float64)
            self.mask_source = config.mask
            if self.mask_source == "auto":
                self.mask_source = trained_mask if trained_mask in ("selfie", "full") else "none"
            if config.masks is not None:
                if not pathlib.Path(config.masks).is_dir():
                    raise LiftError(f"--masks: {config.masks} is not a folder")
                self.mask_source = "file"
            need_analyzer = self.mask_source == "selfie"
            self.table = None
        else:
            run_dir = getattr(run, "run_dir", "the run")
            self.canonical = canonical_keypoints(self.metadata, run_dir)
            try:
                self.table = (
                    photo_import.load_landmarks_file(config.landmarks_file)
                    if config.landmarks_file
                    else None
                )
            except photo_import.PhotoSourceError as e:
                raise LiftError(f"--landmarks_file: {e}") from e
            # MediaPipe detection always takes the selfie mask, as prepare does; user keypoints
            # take the training data's mask source.
            landmarks_mask = trained_mask if trained_mask in ("selfie", "full", "none") else "none"
            self.source_config = photo_import.PhotoSourceConfig(
                images=".",
                photo=self.photo_config,
                landmarker=config.landmarker,
                focal_factor=float(self.metadata.get("focal_factor", 2.0)),
                landmarks_mask=landmarks_mask,
                max_face_cut_fraction=config.max_face_cut_fraction,
                canonical_error_fraction=config.canonical_error_fraction,
            )
            self.threshold = photo_import.canonical_threshold(self.source_config, self.metadata)
            self.intrinsics = camera_lib.default_intrinsics(
                self.size, self.size, self.source_config.focal_factor
            )
            self.default_mask = "selfie" if self.table is None else landmarks_mask
            self.mask_source = self.default_mask if config.mask == "auto" else config.mask
            need_analyzer = "selfie" in (self.default_mask, self.mask_source) or self.table is None
            points = len(next(iter(self.table.values()))) if self.table else 5
            if len(self.canonical) != points:
                raise LiftError(
                    f"the run's canonical keypoints are {len(self.canonical)} points but the "
                    f"photos have {points} keypoints "
                    + (
                        "(MediaPipe's face keypoints): give --landmarks_file"
                        if not self.table
                        else f"(in {config.landmarks_file})"
                    )
                )
        if need_analyzer:
            self.analyzer = landmarks.FaceAnalyzer(config.landmarker)

    def close(self) -> None:
        if self.analyzer is not None:
            self.analyzer.close()
            self.analyzer = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def prepare(self, path: pathlib.Path) -> PreparedPhoto:
        """Prepares one photo.

        Raises:
          SkippedPhotoError: the photo cannot be lifted (the category and detail say why).
        """
        try:
            if self.camera_file is not None:
                return self._with_camera_file(path)
            return self._with_fit(path)
        except SkippedPhotoError:
            raise
        except Exception as e:  # noqa: BLE001 - one bad photo must not end the others
            raise SkippedPhotoError("error", f"{type(e).__name__}: {e}") from e

    def _segment(self, image: np.ndarray, source: str) -> np.ndarray | None:
        if source == "selfie":
            return np.asarray(self.analyzer.segment(image), np.float32)
        if source == "full":
            return np.ones(image.shape[:2], np.float32)
        return None

    def _with_fit(self, path: pathlib.Path) -> PreparedPhoto:
        start = time.perf_counter()
        skipped: list[dict] = []
        info: dict[str, dict] = {"multi_face": {}, "padding": {}, "photo_notes": {}}
        item = photo_import.analyse_photo(
            path, self.source_config, self.analyzer, self.table, skipped, info
        )
        if item is None:
            entry = skipped[-1] if skipped else {"category": "error", "reason": "error"}
            detail = entry["reason"].removeprefix(entry["category"]).removeprefix(": ")
            raise SkippedPhotoError(entry["category"], detail)
        mask = None if item.mask is None else item.mask.astype(np.float32) / 255.0
        if self.mask_source != self.default_mask:
            mask = self._segment(item.image, self.mask_source)
        prepared_seconds = time.perf_counter() - start
        start = time.perf_counter()
        world_to_camera, error = camera_fit.fit_camera_to_canonical(
            np.asarray(item.landmarks, np.float64), self.intrinsics, self.canonical
        )
        if not error <= self.threshold:
            raise SkippedPhotoError(
                "fit outlier",
                f"reprojection error {error:.2f} px against the run's canonical keypoints "
                f"(threshold {self.threshold:.2f} px at {self.size} px)",
            )
        notes = {key: value[item.name] for key, value in info.items() if item.name in value}
        return PreparedPhoto(
            name=item.name,
            image=item.image,
            mask=mask,
            intrinsics=np.asarray(self.intrinsics, np.float32),
            world_to_camera=np.asarray(world_to_camera, np.float32),
            camera_source="fit",
            mask_source=self.mask_source,
            fit_error_px=float(error),
            fit_threshold_px=float(self.threshold),
            landmarks=np.asarray(item.landmarks, np.float32),
            notes=notes,
            seconds={"prepare": prepared_seconds, "camera": time.perf_counter() - start},
        )

    def _with_camera_file(self, path: pathlib.Path) -> PreparedPhoto:
        start = time.perf_counter()
        camera = self.camera_file.lookup(path.name)
        if camera is None:
            raise SkippedPhotoError("no camera", f"{path.name} is not in {self.config.cameras}")
        try:
            image, scaled, notes = camera_file_import.load_with_camera(
                path, camera, self.photo_config
            )
        except photos.PhotoError as e:
            raise SkippedPhotoError(e.reason, e.detail) from e
        scaled = camera_files.rotate_world(scaled, self.rotation)
        height, width = image.shape[:2]
        if self.mask_source == "file":
            mask_path = _find_mask(pathlib.Path(self.config.masks), path.name)
            if mask_path is None:
                raise SkippedPhotoError(
                    "no mask", f"{path.name} has no mask in {self.config.masks}"
                )
            mask = _load_mask(mask_path, height, width)
            mask_source = f"file:{mask_path}"
        else:
            mask, mask_source = self._segment(image, self.mask_source), self.mask_source
        return PreparedPhoto(
            name=path.name,
            image=image,
            mask=mask,
            intrinsics=np.asarray(scaled.intrinsics, np.float32),
            world_to_camera=np.asarray(scaled.world_to_camera, np.float32),
            camera_source="file",
            mask_source=mask_source,
            notes={"photo_notes": notes} if notes else {},
            seconds={"prepare": time.perf_counter() - start, "camera": 0.0},
        )


# ----------------------------------------------------------------------------- one photo to 3D


def _restoring_variables(model):
    """Values of every model variable, to undo fine-tuning after a photo."""
    return [(v, v.numpy()) for v in getattr(model, "variables", [])]


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path, values: dict) -> pathlib.Path:
    """Writes JSON (numpy values as lists, NaN as null). Returns the path."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_json_safe(values), indent=1) + "\n", encoding="utf-8")
    return path


def lift_photo(
    run,
    photo: PreparedPhoto,
    output_dir,
    config: LiftConfig,
    scene_radius: float,
    log: Callable[[str], None] = print,
) -> dict:
    """Latent, reconstruction, orbit and mesh of one prepared photo into `output_dir` (created).

    Args:
      run: a loaded run (`engine.run_dir.load_run`): its `model`, `family`, `configs`.
      photo: the prepared photo.
      output_dir: the photo's own output directory.
      config: the lift settings.
      scene_radius: the run's bounding-sphere radius, object units.
      log: receives one line per stage.

    Returns:
      The contents of its lift.json.

    Raises:
      SkippedPhotoError: the camera does not see the object (no latent can be fitted).
    """
    output_dir = pathlib.Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model = run.model
    height, width = photo.image.shape[:2]
    target = images_lib.to_float(photo.image)
    seconds = dict(photo.seconds)
    files: dict[str, str] = {"crop": "crop.png"}
    images_lib.write_png(output_dir / "crop.png", photo.image)
    if photo.mask is not None:
        images_lib.write_png(output_dir / "mask.png", photo.mask)
        files["mask"] = "mask.png"

    start = time.perf_counter()
    saved = _restoring_variables(model) if config.inversion.finetune_weights else []
    try:
        try:
            codes, stats = run.family.infer_latents(
                model,
                run.configs,
                target[None],
                photo.intrinsics[None],
                photo.world_to_camera[None],
                None if photo.mask is None else photo.mask[None],
                config.inversion,
            )
        except ValueError as e:
            raise SkippedPhotoError("no latent", str(e)) from e
        latent = np.asarray(codes, np.float32)[0]
        seconds["latent"] = time.perf_counter() - start
        np.save(output_dir / "latent.npy", latent)
        files["latent"] = "latent.npy"
        log(
            f"latent: {stats.get('method', 'inferred')}, {stats.get('steps', 0)} steps, "
            f"fitted-view PSNR {float(stats['psnr'][0]):.2f} dB ({seconds['latent']:.1f} s)"
        )

        start = time.perf_counter()
        cam = camera_lib.Camera(photo.intrinsics, photo.world_to_camera)
        chunk = config.inversion.chunk_size
        render = views.render_view(model, latent, cam, height, width, chunk)
        scores = metrics.image_metrics(
            render, {"image": target, "mask": photo.mask, "has_mask": photo.mask is not None}
        )
        depth_image, _ = images_lib.colorize_depth(render["depth"], render["alpha"])
        grid = images_lib.image_grid(
            [[_upscale(target), _upscale(render["rgb"]), _upscale(depth_image)]],
            column_labels=["input", f"render {scores['psnr']:.2f} dB", "depth"],
        )
        images_lib.write_png(output_dir / "reconstruction.png", grid)
        files["reconstruction"] = "reconstruction.png"
        seconds["reconstruction"] = time.perf_counter() - start
        log(
            f"reconstruction: PSNR {scores['psnr']:.2f} dB, SSIM {scores['ssim']:.3f}"
            + (
                f", mask IoU {scores['mask_iou']:.3f}"
                if "mask_iou" in scores and math.isfinite(scores["mask_iou"])
                else ""
            )
            + f" ({seconds['reconstruction']:.1f} s)"
        )

        centre = np.asarray(camera_lib.camera_center(photo.world_to_camera), np.float64)
        orbit_view = views.ViewConfig(
            image_size=config.orbit_size or width,
            camera_distance=float(np.linalg.norm(centre)),
            focal_factor=float(photo.intrinsics[0]) / width,
            yaw_range_deg=tuple(config.yaw_range_deg),
            pitch_range_deg=tuple(config.pitch_range_deg),
            chunk_size=chunk,
        )
        orbit: dict[str, Any] = {"frames": 0}
        if config.orbit_frames:
            start = time.perf_counter()
            frames = views.render_orbit(model, latent, orbit_view, config.orbit_frames)
            written = views.write_frames(output_dir / "orbit", frames, fps=config.fps)
            seconds["orbit"] = time.perf_counter() - start
            files.update(
                orbit_gif="orbit/orbit.gif",
                depth_gif="orbit/depth.gif",
                alpha_gif="orbit/alpha.gif",
            )
            orbit = {
                "frames": len(frames),
                "image_size": orbit_view.image_size,
                "camera_distance": orbit_view.camera_distance,
                "focal_factor": orbit_view.focal_factor,
                "yaw_range_deg": list(orbit_view.yaw_range_deg),
                "pitch_range_deg": list(orbit_view.pitch_range_deg),
                "depth_range": list(written.get("depth_range", [])),
            }
            log(
                f"orbit: {len(frames)} frames at {orbit_view.image_size} px, camera distance "
                f"{orbit_view.camera_distance:.2f} ({seconds['orbit']:.1f} s)"
            )

        mesh_info: dict[str, Any] = {}
        if config.make_mesh:
            start = time.perf_counter()
            mesh = mesh_extraction.extract_mesh(
                run.family.mesh_field(model), latent, config.mesh, scene_radius
            )
            mesh_info = mesh_extraction.mesh_summary(mesh, scene_radius)
            mesh_info.update(resolution=config.mesh.resolution, level=config.mesh.level)
            if not mesh.is_empty:
                mesh_lib.write_ply(mesh, output_dir / "mesh.ply")
                mesh_lib.write_glb(mesh, output_dir / "mesh.glb")
                files.update(mesh_ply="mesh.ply", mesh_glb="mesh.glb")
            seconds["mesh"] = time.perf_counter() - start
            if mesh.is_empty:
                log(
                    f"mesh: empty (the density never reaches {config.mesh.level:g}; try a lower "
                    f"--mesh_level) ({seconds['mesh']:.1f} s)"
                )
            else:
                log(
                    f"mesh: {mesh_info['vertices']} vertices, {mesh_info['faces']} faces, "
                    f"{'watertight' if mesh_info['watertight'] else 'not watertight'} "
                    f"({seconds['mesh']:.1f} s)"
                )
    finally:
        for variable, value in saved:
            variable.assign(value)

    record = {
        "source": photo.name,
        "run_dir": str(getattr(run, "run_dir", "")),
        "step": int(getattr(run, "step", -1)),
        "model": getattr(run.family, "name", ""),
        "image_size": [height, width],
        "camera": {
            "source": photo.camera_source,
            "intrinsics": photo.intrinsics.tolist(),
            "world_to_camera": photo.world_to_camera.tolist(),
            "distance": float(np.linalg.norm(centre)),
            "fit_error_px": photo.fit_error_px,
            "fit_threshold_px": photo.fit_threshold_px,
            "scene_radius": scene_radius,
        },
        "landmarks": None if photo.landmarks is None else photo.landmarks.tolist(),
        "mask": photo.mask_source,
        "latent": {
            "dim": int(latent.shape[-1]),
            "norm": float(np.linalg.norm(latent)),
            **{k: (v[0] if k == "psnr" else v) for k, v in stats.items()},
        },
        "psnr": float(scores["psnr"]),
        "reconstruction": scores,
        "orbit": orbit,
        "mesh": mesh_info,
        "notes": photo.notes,
        "seconds": {**seconds, "total": float(sum(seconds.values()))},
        "files": {**files, "lift": LIFT_FILE},
    }
    write_json(output_dir / LIFT_FILE, record)
    return record


def _upscale(image, minimum: int = 128) -> np.ndarray:
    """Nearest-neighbour enlargement of small images so the labelled grid is readable."""
    image = images_lib.to_float(image)
    factor = max(1, int(math.ceil(minimum / max(image.shape[:2]))))
    return np.repeat(np.repeat(image, factor, 0), factor, 1) if factor > 1 else image


def _directory_names(files: list[pathlib.Path]) -> dict[pathlib.Path, str]:
    """Output directory per photo: its stem, or stem_ext when two photos share a stem."""
    stems: dict[str, int] = {}
    for path in files:
        stems[path.stem] = stems.get(path.stem, 0) + 1
    return {p: p.stem if stems[p.stem] == 1 else f"{p.stem}_{p.suffix.lstrip('.')}" for p in files}


def lift_photos(
    run,
    images: os.PathLike | str,
    output_dir: os.PathLike | str,
    config: LiftConfig = LiftConfig(),
    log: Callable[[str], None] = print,
) -> dict:
    """Lifts every photo of `images` (a file or a folder) to 3D (see the module docstring).

    Args:
      run: a loaded run (`engine.run_dir.load_run`).
      images: one photo, or a folder of photos.
      output_dir: where `<photo stem>/` directories and summary.json go (created).
      config: the lift settings.
      log: receives progress lines ("lift [i/n] name: stage: ...").

    Returns:
      The summary (also `output_dir/summary.json`): "lifted" (per photo: name, directory, psnr,
      steps, seconds, mesh vertices), "skipped" (name, category, reason), "seconds".

    Raises:
      LiftError: no photos, or the run and the inputs cannot work together (see
        `PhotoPreparer`).
    """
    begin = time.perf_counter()
    files = list_inputs(images)
    names = _directory_names(files)
    lifted, skipped = [], []
    with PhotoPreparer(run, config) as preparer:
        output_dir = pathlib.Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        radius = scene_radius_of(run, preparer.metadata)
        for index, path in enumerate(files, 1):
            prefix = f"lift [{index}/{len(files)}] {path.name}"
            try:
                photo = preparer.prepare(path)
                camera_line = (
                    f"fit error {photo.fit_error_px:.2f} px"
                    if photo.fit_error_px is not None
                    else f"from {config.cameras}"
                )
                log(
                    f"{prefix}: prepare: {photo.image.shape[1]}x{photo.image.shape[0]} crop, "
                    f"mask {photo.mask_source} ({photo.seconds['prepare']:.1f} s)"
                )
                log(f"{prefix}: camera: {camera_line} ({photo.seconds['camera']:.2f} s)")
                record = lift_photo(
                    run,
                    photo,
                    output_dir / names[path],
                    config,
                    radius,
                    lambda line, prefix=prefix: log(f"{prefix}: {line}"),
                )
            except SkippedPhotoError as e:
                skipped.append({"source": path.name, "category": e.category, "reason": str(e)})
                log(f"{prefix}: skipped: {e}")
                continue
            lifted.append(
                {
                    "source": path.name,
                    "directory": names[path],
                    "psnr": record["psnr"],
                    "steps": record["latent"].get("steps"),
                    "seconds": record["seconds"]["total"],
                    "mesh_vertices": record["mesh"].get("vertices"),
                }
            )
            log(f"{prefix}: done: {output_dir / names[path]} ({record['seconds']['total']:.1f} s)")
    summary = {
        "run_dir": str(getattr(run, "run_dir", "")),
        "images": str(images),
        "lifted": lifted,
        "skipped": skipped,
        "seconds": time.perf_counter() - begin,
    }
    write_json(output_dir / SUMMARY_FILE, summary)
    log(
        f"lift: {len(lifted)} of {len(files)} photos lifted, {len(skipped)} skipped "
        f"({summary['seconds']:.1f} s): {output_dir}"
    )
    return summary


def first_lift_metrics(output_dir: os.PathLike | str) -> dict[str, Any]:
    """The headline numbers of the first photo lifted into `output_dir` (for metrics.json).

    Returns:
      {"source", "psnr" (dB), "steps", "seconds" (per stage), "mesh_vertices", "mesh_faces",
      "mesh_watertight", "directory"}.

    Raises:
      ValueError: summary.json lists no lifted photo.
    """
    output_dir = pathlib.Path(output_dir)
    lifted = json.loads((output_dir / SUMMARY_FILE).read_text())["lifted"]
    if not lifted:
        raise ValueError(f"{output_dir / SUMMARY_FILE} lists no lifted photo")
    directory = output_dir / lifted[0]["directory"]
    record = json.loads((directory / LIFT_FILE).read_text())
    return {
        "source": record["source"],
        "psnr": record["psnr"],
        "steps": record["latent"]["steps"],
        "seconds": record["seconds"],
        "mesh_vertices": record["mesh"]["vertices"],
        "mesh_faces": record["mesh"]["faces"],
        "mesh_watertight": record["mesh"]["watertight"],
        "directory": str(directory),
    }
