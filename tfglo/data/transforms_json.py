"""Known-camera import: `transforms.json` (NeRF / instant-ngp convention) -> `ImageRecord`s.

The file format (as in the NeRF synthetic "blender" scenes and instant-ngp):

    {
      "camera_angle_x": 0.69,            # horizontal field of view, radians
      "frames": [
        {"file_path": "images/r_0.png",  # relative to the JSON file; the extension may be
                                         # missing ("./train/r_0"): .png, .jpg, .jpeg are tried
         "transform_matrix": [[...4...], [...], [...], [0, 0, 0, 1]]},   # camera-to-world
        ...
      ]
    }

`transform_matrix` is camera-to-world in the OpenGL / Blender convention (+x right, +y up, the
camera looks along -z). It is converted once, here, with `camera.opengl_to_opencv` into the
package's world-to-camera OpenCV convention. The world frame itself is kept as it is (its units
and axes: the lego scene is z-up), so `scene_radius` is in the file's units.

Documented extensions (all optional):
- intrinsics `fl_x`, `fl_y`, `cx`, `cy` (pixels) and `w`, `h` (the image size they refer to), at
  the top level or per frame (per frame wins), as instant-ngp writes them; `camera_angle_y` too.
  Precedence: `fl_x` over `camera_angle_x` (fx = 0.5 w / tan(angle_x / 2)), likewise for y; a
  missing fy equals fx (square pixels); `cx`, `cy` default to the image centre (w / 2, h / 2:
  pixel centres are at +0.5, as in COLMAP and instant-ngp). When `w`, `h` differ from the size of
  the image file, the intrinsics are scaled to the file. Lens distortion (`k1`, `k2`, `k3`, `k4`,
  `p1`, `p2`) is not modelled: non-zero values are rejected (undistort the images first).
- per-frame `object_id` (int or string): frames that share it are views of one object and share
  one latent code; absent everywhere: the whole file is one object. Latent ids are assigned in
  order of first appearance; integer object ids are kept as the records' `object_id`.
- per-frame `split`: "train" or "eval". Frames without one are "train", unless the holdout
  options (`eval_every`, `eval_frames`) put them in "eval"; an explicit split always wins.

Masks and background (`TransformsConfig.background`): an image with an alpha channel gets its
alpha as the record's mask (255 = foreground) in every policy. Its RGB is
- "white" (default): composited over white, rgb * a + (1 - a), as the NeRF paper's blender data
  is used (the model's constant background colour defaults to white);
- "black": composited over black, rgb * a;
- "keep": stored as it is in the file (for RGB images whose background is real content).
An image without alpha is stored as it is, with no mask, whatever the policy. When every frame
has alpha and the policy is "white" or "black", every background pixel is that colour:
dataset.json records it as `constant_background` ([1, 1, 1] or [0, 0, 0]; null otherwise), so
a model may composite its foreground on it.

Frames whose image lies outside the folder of the transforms.json file (`../x.png`, an absolute
path, or a symbolic link that leads out) are imported by default, as NeRF tools write such paths
(a transforms.json beside an `images/` folder one level up, colmap2nerf's absolute paths): each is
logged and listed in dataset.json under `frames_outside_folder` (frame index, file_path as
written, the file it resolved to). `TransformsConfig.outside_folder="skip"` skips them instead,
each with its reason in `skipped`, for files from untrusted sources.

Hostile input: every problem with the file, a frame or an image is a `TransformsError` naming
the transforms.json file and the frame (a test fuzzes documents and image bytes). Numbers must be
finite and, where they become float32 (matrices, intrinsics), within float32's range; images
with more than `max_pixels` pixels are refused from their header, before decoding.

Resizing (`image_size`) happens after compositing (area averaging when shrinking, so the stored
colours and mask stay consistent); the intrinsics are scaled per axis, which is exact for a
pinhole camera with pixel centres at +0.5.
"""

import dataclasses
import json
import math
import os
import pathlib
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
from absl import logging
from PIL import Image, UnidentifiedImageError

from tfglo.data import records
from tfglo.geometry import camera
from tfglo.utils import images

BACKGROUNDS = ("white", "black", "keep")
OUTSIDE_FOLDER = ("use", "skip")
# The sRGB colour an alpha image is composited on, per background policy ("keep": none).
COMPOSITE_COLORS = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0)}
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")
_DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")
_INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h", "camera_angle_x", "camera_angle_y")
# Tolerance on R^T R = I for a transform_matrix rotation (files store float32, rounded).
_RIGID_TOLERANCE = 1e-3
# Largest magnitude accepted for a value stored as float32 (matrices, intrinsics).
_FLOAT32_LIMIT = float(np.finfo(np.float32).max) / 16
_INT64 = (-(2**63), 2**63 - 1)


class TransformsError(ValueError):
    """A transforms.json file (or an image it names) is missing, malformed or unsupported."""


@dataclasses.dataclass(frozen=True)
class TransformsConfig:
    """How to import a transforms.json file.

    Attributes:
      background: "white", "black" or "keep": the colour policy for images with alpha (see the
        module docstring).
      image_size: None keeps the files' size; an int resizes to a square (size x size); a pair is
        (height, width). Intrinsics follow.
      eval_every: hold out every k-th frame (file order, frames 0, k, 2k, ...) as "eval"; 0: none.
        NeRF's LLFF convention is 8 (the lego scene: 10 of 80 views held out).
      eval_frames: frames to hold out as "eval", by index in the file or by `file_path` (as
        written, or its name without directory and extension).
      scene_radius: radius of the bounding sphere around the world origin that holds the object,
        in the file's units. The default suits the NeRF synthetic scenes (lego: every foreground
        ray passes within 1.38 of the origin, cameras at 4.03).
      skip_missing: skip frames whose image file is missing (recorded in `skipped`) instead of
        failing.
      outside_folder: frames whose image lies outside the transforms.json folder: "use" them
        (listed in dataset.json's `frames_outside_folder`) or "skip" them (listed in `skipped`).
      max_pixels: images with more pixels are refused from their header (memory bound).
    """

    background: str = "white"
    image_size: int | tuple[int, int] | None = None
    eval_every: int = 0
    eval_frames: tuple[int | str, ...] = ()
    scene_radius: float = 1.5
    skip_missing: bool = False
    outside_folder: str = "use"
    max_pixels: int = 100_000_000

    def __post_init__(self):
        if self.background not in BACKGROUNDS:
            raise ValueError(f"background must be one of {BACKGROUNDS}, got {self.background!r}")
        if self.eval_every < 0:
            raise ValueError(f"eval_every must be >= 0, got {self.eval_every}")
        if not self.scene_radius > 0:
            raise ValueError(f"scene_radius must be > 0, got {self.scene_radius}")
        if self.image_size is not None and min(_size_pair(self.image_size)) <= 0:
            raise ValueError(f"image_size must be positive, got {self.image_size}")
        if self.outside_folder not in OUTSIDE_FOLDER:
            raise ValueError(
                f"outside_folder must be one of {OUTSIDE_FOLDER}, got {self.outside_folder!r}"
            )
        if self.max_pixels < 1:
            raise ValueError(f"max_pixels must be >= 1, got {self.max_pixels}")

    @property
    def output_size(self) -> tuple[int, int] | None:
        """(height, width) of the stored images, or None to keep the files' size."""
        return None if self.image_size is None else _size_pair(self.image_size)


def _size_pair(size) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


@dataclasses.dataclass
class Frame:
    """One validated frame of a transforms.json file (image not loaded yet).

    Attributes:
      index: position in the file's `frames` list.
      file_path: as written in the file.
      image_path: the image file it resolves to.
      image_size: (height, width) of the image file.
      intrinsics: `[4]` (fx, fy, cx, cy) for the image file's size, pixels.
      world_to_camera: `[3, 4]` OpenCV world-to-camera, the file's world units.
      camera_to_world_gl: `[4, 4]` the `transform_matrix` as written.
      object_key: the frame's `object_id` as written (None when absent).
      has_alpha: whether the image file has an alpha channel (or a transparent colour).
      split: "train" or "eval".
      latent_id, object_id, view_id: record ids (see the module docstring).
      transforms_file: the transforms.json file (errors name it).
      outside_folder: whether the image lies outside the transforms.json folder.
    """

    index: int
    file_path: str
    image_path: pathlib.Path
    image_size: tuple[int, int]
    intrinsics: np.ndarray
    world_to_camera: np.ndarray
    camera_to_world_gl: np.ndarray
    object_key: int | str | None
    has_alpha: bool = False
    split: str = "train"
    latent_id: int = 0
    object_id: int = 0
    view_id: int = 0
    transforms_file: pathlib.Path | None = None
    outside_folder: bool = False

    @property
    def where(self) -> str:
        """How errors name the frame: "<transforms.json>: frame <index> (<file_path>)"."""
        return f"{self.transforms_file}: frame {self.index} ({self.file_path})"


def _load_json(path: pathlib.Path) -> dict[str, Any]:
    if not path.is_file():
        raise TransformsError(f"{path}: transforms file does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise TransformsError(f"{path}: not valid JSON: {e}") from e
    except RecursionError as e:
        raise TransformsError(f"{path}: not valid JSON: nested too deeply") from e
    except (OSError, UnicodeDecodeError) as e:
        raise TransformsError(f"{path}: cannot read: {e}") from e
    if not isinstance(data, dict):
        raise TransformsError(f"{path}: must hold a JSON object, got {type(data).__name__}")
    frames = data.get("frames")
    if not isinstance(frames, list) or not frames:
        raise TransformsError(f"{path}: no 'frames' list (or it is empty)")
    return data


def _resolve_image(json_dir: pathlib.Path, file_path: str, where: str) -> pathlib.Path | None:
    """The image a frame's file_path names (extensions tried when it has none), or None."""
    if "\x00" in file_path:
        raise TransformsError(f"{where}: file_path contains a NUL character")
    path = json_dir / file_path
    try:
        if path.is_file():
            return path
        if not path.suffix or path.suffix not in IMAGE_EXTENSIONS:
            for extension in IMAGE_EXTENSIONS:
                candidate = path.with_name(path.name + extension)
                if candidate.is_file():
                    return candidate
    except (OSError, ValueError) as e:  # a name too long, an unusable path
        raise TransformsError(f"{where}: cannot access image {path}: {e}") from e
    return None


def _parse_matrix(value: Any, where: str) -> np.ndarray:
    """Validates a camera-to-world matrix; returns it as `[4, 4]` float64."""
    try:
        matrix = np.array(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as e:
        raise TransformsError(f"{where}: transform_matrix is not a matrix of numbers") from e
    if matrix.shape not in ((4, 4), (3, 4)):
        raise TransformsError(
            f"{where}: transform_matrix must be 4x4 (or 3x4), got shape {matrix.shape}"
        )
    if not np.all(np.isfinite(matrix)):
        raise TransformsError(f"{where}: transform_matrix has non-finite values")
    if np.abs(matrix).max() > _FLOAT32_LIMIT:
        raise TransformsError(f"{where}: transform_matrix has values beyond float32's range")
    if matrix.shape == (4, 4) and not np.allclose(matrix[3], [0, 0, 0, 1], atol=1e-6):
        raise TransformsError(f"{where}: transform_matrix's last row must be [0, 0, 0, 1]")
    rotation = matrix[:3, :3]
    error = np.abs(rotation.T @ rotation - np.eye(3)).max()
    if error > _RIGID_TOLERANCE or np.linalg.det(rotation) <= 0:
        raise TransformsError(
            f"{where}: transform_matrix is not a rigid camera-to-world transform (its rotation "
            f"is not orthonormal with det +1: max |R^T R - I| = {error:.3g}, "
            f"det = {np.linalg.det(rotation):.3g})"
        )
    return np.concatenate([matrix[:3], [[0.0, 0.0, 0.0, 1.0]]], 0)


def _number(value: Any, key: str, where: str) -> float:
    number = None
    if not isinstance(value, bool) and isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:  # an int beyond float64
            number = math.inf
    shown = repr(value) if len(repr(value)) < 40 else repr(value)[:37] + "..."
    if number is None or math.isnan(number):
        raise TransformsError(f"{where}: {key} must be a finite number, got {shown}")
    if abs(number) > _FLOAT32_LIMIT:
        raise TransformsError(
            f"{where}: {key} must be a finite number in float32's range, got {shown}"
        )
    return number


def _intrinsics(
    frame: dict[str, Any], top: dict[str, Any], image_size: tuple[int, int], where: str
) -> np.ndarray:
    """(fx, fy, cx, cy) `[4]` for the image file's size from frame / top-level keys."""
    values = {}
    for key in _INTRINSIC_KEYS + _DISTORTION_KEYS:
        value = frame.get(key, top.get(key))
        if value is not None:
            values[key] = _number(value, key, where)
    distortion = {k: values[k] for k in _DISTORTION_KEYS if values.get(k)}
    if distortion:
        raise TransformsError(
            f"{where}: lens distortion {distortion} is not supported; undistort the images and "
            "write zero coefficients"
        )
    height, width = image_size
    ref_width = values.get("w", float(width))
    ref_height = values.get("h", float(height))
    if ref_width <= 0 or ref_height <= 0:
        raise TransformsError(f"{where}: w and h must be > 0, got {ref_width}, {ref_height}")

    def focal(fl_key, angle_key, size):
        if fl_key in values:
            return values[fl_key]
        if angle_key in values:
            angle = values[angle_key]
            if not 0 < angle < math.pi:
                raise TransformsError(f"{where}: {angle_key} must be in (0, pi), got {angle}")
            return 0.5 * size / math.tan(0.5 * angle)
        return None

    fx = focal("fl_x", "camera_angle_x", ref_width)
    fy = focal("fl_y", "camera_angle_y", ref_height)
    if fx is None and fy is None:
        raise TransformsError(
            f"{where}: no focal length: give camera_angle_x or fl_x (top level or per frame)"
        )
    fx = fy if fx is None else fx
    fy = fx if fy is None else fy
    if fx <= 0 or fy <= 0:
        raise TransformsError(f"{where}: focal lengths must be > 0, got fx={fx}, fy={fy}")
    cx = values.get("cx", 0.5 * ref_width)
    cy = values.get("cy", 0.5 * ref_height)
    scale_x, scale_y = width / ref_width, height / ref_height
    intrinsics = np.array([fx * scale_x, fy * scale_y, cx * scale_x, cy * scale_y], np.float64)
    if not np.all(np.abs(intrinsics) <= _FLOAT32_LIMIT) or not min(intrinsics[:2]) > 0:
        raise TransformsError(
            f"{where}: intrinsics scaled to the {width}x{height} image are out of range: "
            f"{intrinsics.tolist()} (w, h = {ref_width}, {ref_height})"
        )
    return intrinsics


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def _image_header(path: pathlib.Path, where: str, max_pixels: int) -> tuple[tuple[int, int], bool]:
    """(height, width) and whether the image has alpha, from the file's header."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with open(path, "rb") as handle, Image.open(handle) as image:
                width, height = image.size
                has_alpha = _has_alpha(image)
    except Exception as e:  # noqa: BLE001 - decoders raise any type on malformed files
        raise TransformsError(f"{where}: cannot read image {path}: {_describe(e)}") from e
    if min(width, height) < 1 or width * height > max_pixels:
        raise TransformsError(
            f"{where}: image {path} is {width}x{height}: it must have between 1 and "
            f"{max_pixels} pixels"
        )
    return (height, width), has_alpha


def _describe(error: Exception) -> str:
    if isinstance(error, UnidentifiedImageError):
        return "not an image format that PIL reads"
    text = str(error)
    return text if isinstance(error, OSError | ValueError) else f"{type(error).__name__}: {text}"


def _is_outside(image_path: pathlib.Path, json_dir: pathlib.Path) -> bool:
    """Whether an image resolves (links followed) to a place outside the transforms folder."""
    try:
        return not image_path.resolve().is_relative_to(json_dir.resolve())
    except (OSError, RuntimeError):  # a link loop: not inside in any useful sense
        return True


def _holdout_matches(config: TransformsConfig, frames: list[dict], path: pathlib.Path) -> set:
    """Indices of the frames that `eval_frames` names (each name must match a frame)."""
    indices = set()
    for name in config.eval_frames:
        if isinstance(name, int) and not isinstance(name, bool):
            if not 0 <= name < len(frames):
                raise TransformsError(
                    f"{path}: eval frame {name} is out of range (the file has {len(frames)} frames)"
                )
            indices.add(name)
            continue
        found = [
            i
            for i, frame in enumerate(frames)
            if isinstance(frame, dict)
            and name
            in (
                frame.get("file_path"),
                pathlib.PurePosixPath(str(frame.get("file_path"))).stem,
            )
        ]
        if not found:
            raise TransformsError(f"{path}: eval frame {name!r} matches no frame's file_path")
        indices.update(found)
    return indices


def read_transforms(
    path: os.PathLike | str, config: TransformsConfig = TransformsConfig()
) -> tuple[list[Frame], list[dict[str, str]]]:
    """Parses and validates a transforms.json file without decoding any image.

    Args:
      path: the transforms.json file.
      config: import options.

    Returns:
      (frames to import, skipped) where skipped lists `{"source": file_path, "reason": ...}` for
      the frames left out (missing images with `config.skip_missing`).

    Raises:
      TransformsError: the file, a frame or an image is missing or malformed; the message names
        the file (and the frame) and the problem.
    """
    path = pathlib.Path(path)
    data = _load_json(path)
    json_dir = path.parent
    raw_frames = data["frames"]
    holdout = _holdout_matches(config, raw_frames, path)
    has_object = [isinstance(f, dict) and "object_id" in f for f in raw_frames]
    if any(has_object) and not all(has_object):
        missing = has_object.index(False)
        raise TransformsError(
            f"{path}: frame {missing} has no object_id but others do: give it for every frame "
            "or for none"
        )
    frames, skipped, gl_matrices = [], [], []
    for index, raw in enumerate(raw_frames):
        where = f"{path}: frame {index}"
        if not isinstance(raw, dict):
            raise TransformsError(f"{where}: must be a JSON object, got {type(raw).__name__}")
        file_path = raw.get("file_path")
        if not isinstance(file_path, str) or not file_path:
            raise TransformsError(f"{where}: missing 'file_path'")
        where = f"{path}: frame {index} ({file_path})"
        if "transform_matrix" not in raw:
            raise TransformsError(f"{where}: missing 'transform_matrix'")
        matrix = _parse_matrix(raw["transform_matrix"], where)
        split = raw.get("split")
        if split is None:
            split = "eval" if index in holdout else "train"
            if config.eval_every and index % config.eval_every == 0:
                split = "eval"
        elif split not in records.SPLITS:
            raise TransformsError(f"{where}: split must be one of {records.SPLITS}, got {split!r}")
        object_key = raw.get("object_id")
        if object_key is not None and (
            isinstance(object_key, bool)
            or not isinstance(object_key, int | str)
            or (isinstance(object_key, int) and not _INT64[0] <= object_key <= _INT64[1])
        ):
            raise TransformsError(f"{where}: object_id must be an int64 or a string")
        image_path = _resolve_image(json_dir, file_path, where)
        if image_path is None:
            reason = f"image file {json_dir / file_path} does not exist"
            if not config.skip_missing:
                raise TransformsError(f"{where}: {reason}")
            skipped.append({"source": file_path, "reason": reason})
            continue
        outside = _is_outside(image_path, json_dir)
        if outside:
            resolved = image_path.resolve()
            if config.outside_folder == "skip":
                reason = f"image {resolved} lies outside the folder of {path.name} ({json_dir})"
                skipped.append({"source": file_path, "reason": reason})
                logging.warning("%s: skipped: %s", where, reason)
                continue
            logging.warning("%s: image %s lies outside %s; used", where, resolved, json_dir)
        image_size, has_alpha = _image_header(image_path, where, config.max_pixels)
        if config.image_size is None and frames and image_size != frames[0].image_size:
            raise TransformsError(
                f"{where}: image is {image_size[0]}x{image_size[1]} but {frames[0].file_path} is "
                f"{frames[0].image_size[0]}x{frames[0].image_size[1]}: set image_size to resize "
                "all frames to one size"
            )
        frames.append(
            Frame(
                index=index,
                file_path=file_path,
                image_path=image_path,
                image_size=image_size,
                intrinsics=_intrinsics(raw, data, image_size, where),
                world_to_camera=np.zeros((3, 4)),
                camera_to_world_gl=matrix,
                object_key=object_key,
                has_alpha=has_alpha,
                split=split,
                transforms_file=path,
                outside_folder=outside,
            )
        )
        gl_matrices.append(matrix)
    if not frames:
        raise TransformsError(f"{path}: no frame has an image to import")
    # The one conversion at the boundary: OpenGL camera-to-world -> OpenCV world-to-camera.
    world_to_camera = camera.opengl_to_opencv(np.stack(gl_matrices).astype(np.float32)).numpy()
    latents: dict[Any, int] = {}
    views: dict[Any, int] = {}
    for frame, w2c in zip(frames, world_to_camera):
        frame.world_to_camera = w2c
        distance = np.linalg.norm(frame.camera_to_world_gl[:3, 3])
        if distance <= config.scene_radius:
            raise TransformsError(
                f"{path}: frame {frame.index} ({frame.file_path}): the camera is inside the scene "
                f"sphere (distance {distance:.3g} from the origin <= scene_radius "
                f"{config.scene_radius}); choose a smaller scene_radius"
            )
        key = frame.object_key
        frame.latent_id = latents.setdefault(key, len(latents))
        frame.object_id = key if isinstance(key, int) else frame.latent_id
        frame.view_id = views.get(key, 0)
        views[key] = frame.view_id + 1
    return frames, skipped


def _resize(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    height, width = size
    if array.shape[:2] == (height, width):
        return array
    shrinking = height <= array.shape[0] and width <= array.shape[1]
    # Area averaging when shrinking keeps colours and alpha consistent (compositing is linear).
    resample = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(array).resize((width, height), resample))


def load_frame(frame: Frame, config: TransformsConfig = TransformsConfig()) -> records.ImageRecord:
    """Decodes a frame's image, applies the background policy and resizing; returns its record.

    Raises:
      TransformsError: the image cannot be decoded (the message names the transforms.json
        file, the frame and the image).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            # A file object: PIL's memory-mapped path mis-decodes some TIFFs (tfglo.data.photos).
            with open(frame.image_path, "rb") as handle, Image.open(handle) as image:
                if image.size != (frame.image_size[1], frame.image_size[0]):
                    raise ValueError(
                        f"its size changed to {image.size[0]}x{image.size[1]} since it was read"
                    )
                image.load()
                has_alpha = _has_alpha(image)
                pixels = np.asarray(image.convert("RGBA" if has_alpha else "RGB"))
    except Exception as e:  # noqa: BLE001 - decoders raise any type on malformed files
        raise TransformsError(
            f"{frame.where}: cannot decode image {frame.image_path}: {_describe(e)}"
        ) from e
    rgb = pixels[..., :3]
    alpha = pixels[..., 3] if has_alpha else None
    if alpha is not None and config.background != "keep":
        a = alpha[..., None].astype(np.float32) / 255.0
        color = rgb.astype(np.float32) / 255.0 * a
        if config.background == "white":
            color += 1.0 - a
        rgb = images.to_uint8(color)
    intrinsics = frame.intrinsics
    size = config.output_size
    if size is not None:
        height, width = frame.image_size
        scale = np.array([size[1] / width, size[0] / height] * 2)
        intrinsics = intrinsics * scale
        rgb = _resize(rgb, size)
        alpha = None if alpha is None else _resize(alpha, size)
    return records.ImageRecord(
        image=rgb,
        intrinsics=intrinsics.astype(np.float32),
        world_to_camera=frame.world_to_camera.astype(np.float32),
        latent_id=frame.latent_id,
        object_id=frame.object_id,
        view_id=frame.view_id,
        source=frame.file_path,
        split=frame.split,
        mask=alpha,
    )


def constant_background(config: TransformsConfig, frames: list[Frame]) -> list[float] | None:
    """The sRGB colour in [0, 1] of every background pixel of the import, or None when the
    backgrounds are not one known colour (policy "keep", or a frame without alpha)."""
    color = COMPOSITE_COLORS.get(config.background)
    if color is None or not frames or not all(f.has_alpha for f in frames):
        return None
    return list(color)


def dataset_metadata(
    path: os.PathLike | str, config: TransformsConfig, frames: list[Frame]
) -> dict[str, Any]:
    """dataset.json keys describing an import (scene radius, policies, the object table)."""
    return {
        "source_kind": "transforms",
        "transforms_file": str(pathlib.Path(path).resolve()),
        "scene_radius": float(config.scene_radius),
        "intrinsics_policy": "known: from transforms.json (fl_x/fl_y/cx/cy or camera_angle_x)",
        "background": config.background,
        "constant_background": constant_background(config, frames),
        "world_frame": "the transforms.json world; camera axes converted to OpenCV",
        "holdout": {"eval_every": config.eval_every, "eval_frames": list(config.eval_frames)},
        "objects": {str(f.object_key): f.latent_id for f in frames if f.object_key is not None},
        "outside_folder": config.outside_folder,
        "frames_outside_folder": [
            {"frame": f.index, "file_path": f.file_path, "resolved": str(f.image_path.resolve())}
            for f in frames
            if f.outside_folder
        ],
    }


def load(
    path: os.PathLike | str, config: TransformsConfig = TransformsConfig()
) -> tuple[Iterator[records.ImageRecord], dict[str, Any], list[dict[str, str]]]:
    """Imports a transforms.json file.

    Validation (JSON, matrices, intrinsics, image files present) happens before this returns;
    images are decoded lazily by the iterator.

    Returns:
      (records iterator, dataset.json metadata, skipped frames with reasons).

    Raises:
      TransformsError: see `read_transforms` and `load_frame`.
    """
    frames, skipped = read_transforms(path, config)
    iterator = (load_frame(frame, config) for frame in frames)
    return iterator, dataset_metadata(path, config, frames), skipped
