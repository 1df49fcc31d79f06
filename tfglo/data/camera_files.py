"""Per-image cameras from a file: tfglo's JSON schema and the LOLNeRF authors' camera estimates.

`load(path)` reads either format (told apart by its content) and converts, once, here, to the
package convention (`tfglo.geometry.camera`: intrinsics (fx, fy, cx, cy) in pixels with pixel
centres at +0.5, OpenCV world-to-camera [R | t], +x right, +y down, +z forward). Every problem is
a `CameraFileError` naming the file and the entry.

**tfglo's schema** (`"format": "tfglo-cameras"`, version 1), keyed by image file name (a name
without its extension also matches):

    {
      "format": "tfglo-cameras",
      "version": 1,
      "scene_radius": 1.0,                      # optional: radius of the bounding sphere
      "images": {
        "0001.png": {
          "width": 256, "height": 256,          # pixels the intrinsics refer to
          "fx": 512.0, "fy": 512.0, "cx": 128.0, "cy": 128.0,
          "world_to_camera": [[r00, r01, r02, t0], [r10, r11, r12, t1], [r20, r21, r22, t2]],
          "object_id": 0                        # optional: images of one object share a latent
        }
      }
    }

`world_to_camera` maps world points to camera coordinates, x_cam = R x_world + t (a 4th row
[0, 0, 0, 1] is accepted). R must be a rotation (orthonormal, det +1, to 1e-3).

**The LOLNeRF camera estimates** (google-research/jax3d, `projects/generative/nerf/glo_nerf/
data/*_camera_estimates.json`, released for AFHQ cats and dogs, CelebA-HQ and FFHQ): a JSON
object keyed by image file name, each `{"camera": {...}, "identity": int}` with the camera of
jax3d's `nerf/camera.py`:

- `orientation` `[3, 3]`: world-to-camera rotation (its rows are the camera axes in world
  coordinates); `position` `[3]`: the camera centre in world coordinates. Camera-space points
  are `orientation @ (x - position)`, and the camera axes are OpenCV's (their `project` divides
  x and y by +z and adds the principal point; image y grows downwards).
- `focal_length` `[1]` (pixels), `pixel_aspect_ratio` `[1]` (fy = focal * ratio), `skew` `[1]`,
  `principal_point` `[2]` (x, y pixels), `image_size` `[2]` as (width, height); pixel centres are
  at +0.5 (their `generate_pixel_grid`), as in tfglo.
- `identity`: the subject's index (the released files give every image its own).

So R = orientation, t = -orientation @ position, fx = focal, fy = focal * pixel_aspect_ratio,
(cx, cy) = principal_point. tfglo's pinhole has no skew: a non-zero skew (or distortion) is
refused. Their world has +y up and the cameras on the +z side, looking down at the subject
(~35 degrees of elevation on average in the AFHQ file); `align="mean_camera"` (the default for
this format) rotates the world about the origin so that the average camera is tfglo's frontal
camera (identity rotation, on the -z axis, world +y down), as the face camera fit does. A global
rotation changes no ray relative to the scene. The subject lies inside their ray interval of
length 4 around the origin (`interval_length`, near = |o| - 2, far = |o| + 2), so the scene
radius of this format is 2.0.
"""

import dataclasses
import json
import os
import pathlib

import numpy as np

FORMAT_NAME = "tfglo-cameras"
FORMAT_VERSION = 1
FORMATS = ("tfglo", "jax3d")
ALIGNMENTS = ("none", "mean_camera")
# Half of jax3d GLO-NeRF's `interval_length` (4.0): the sphere their rays are sampled in.
JAX3D_SCENE_RADIUS = 2.0
_ROTATION_TOLERANCE = 1e-3
_SKEW_TOLERANCE = 1e-6
# Largest magnitude accepted for a value that becomes float32 (intrinsics, matrices), and the
# largest image side in pixels: beyond them the float32 records overflow.
_VALUE_LIMIT = 1e30
_MAX_SIDE = 2**31 - 1


class CameraFileError(ValueError):
    """A camera file cannot be used (the message names the file and the entry)."""


@dataclasses.dataclass(frozen=True)
class FileCamera:
    """One image's camera, in the package convention.

    Attributes:
      intrinsics: `[4]` float64 (fx, fy, cx, cy), pixels of an image of `width` x `height`.
      world_to_camera: `[3, 4]` float64 OpenCV [R | t].
      width, height: the image size the intrinsics refer to, pixels.
      object_id: images that share it share a latent; None: the image is its own object.
    """

    intrinsics: np.ndarray
    world_to_camera: np.ndarray
    width: int
    height: int
    object_id: int | None = None

    def scaled_to(self, width: int, height: int) -> "FileCamera":
        """The same camera for the image resized to `width` x `height` (pixel edges kept)."""
        sx, sy = width / self.width, height / self.height
        fx, fy, cx, cy = self.intrinsics
        return dataclasses.replace(
            self,
            intrinsics=np.array([fx * sx, fy * sy, cx * sx, cy * sy], np.float64),
            width=int(width),
            height=int(height),
        )


@dataclasses.dataclass(frozen=True)
class CameraFile:
    """A loaded camera file.

    Attributes:
      path: the file.
      format: "tfglo" or "jax3d".
      cameras: file name -> `FileCamera`.
      scene_radius: the bounding-sphere radius the file states or its format implies, or None.
      alignment: the world rotation applied (`[3, 3]`, x_new = Q x_file), identity if none.
    """

    path: str
    format: str
    cameras: dict[str, FileCamera]
    scene_radius: float | None
    alignment: np.ndarray

    def lookup(self, name: str) -> FileCamera | None:
        """The camera of an image file name, or of its name without extension; None if absent."""
        if name in self.cameras:
            return self.cameras[name]
        stem = pathlib.PurePath(name).stem
        if stem in self.cameras:
            return self.cameras[stem]
        return self._stems().get(stem)

    def _stems(self) -> dict[str, FileCamera]:
        stems: dict[str, FileCamera] = {}
        for key, value in self.cameras.items():
            stems.setdefault(pathlib.PurePath(key).stem, value)
        return stems


def _error(path, entry, message) -> CameraFileError:
    where = f"{path}" if entry is None else f"{path}: entry {entry!r}"
    return CameraFileError(f"{where}: {message}")


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _array(path, entry, value, shape, what) -> np.ndarray:
    try:
        array = np.asarray(value, np.float64)
    except (TypeError, ValueError, OverflowError) as e:
        raise _error(path, entry, f"{what} must be numbers of shape {list(shape)}") from e
    if array.shape != tuple(shape):
        raise _error(path, entry, f"{what} must have shape {list(shape)}, got {list(array.shape)}")
    if not np.all(np.isfinite(array)):
        raise _error(path, entry, f"{what} has non-finite values")
    if np.any(np.abs(array) > _VALUE_LIMIT):
        raise _error(path, entry, f"{what} has values beyond {_VALUE_LIMIT:g} in magnitude")
    return array


def _scalar(path, entry, value, what) -> float:
    if isinstance(value, list) and len(value) == 1:  # jax3d stores scalars as [x]
        value = value[0]
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _error(path, entry, f"{what} must be a number, got {_shown(value)}")
    try:
        number = float(value)
    except OverflowError:  # an int beyond float64
        number = float("inf")
    if not np.isfinite(number):
        raise _error(path, entry, f"{what} is not finite")
    if abs(number) > _VALUE_LIMIT:
        raise _error(path, entry, f"{what} is beyond {_VALUE_LIMIT:g} in magnitude")
    return number


def _size(path, entry, value, what) -> int:
    whole = isinstance(value, int) or (
        isinstance(value, float) and np.isfinite(value) and value.is_integer()
    )
    if isinstance(value, bool) or not whole:
        raise _error(path, entry, f"{what} must be a whole number of pixels, got {_shown(value)}")
    if not 1 <= value <= _MAX_SIDE:
        raise _error(path, entry, f"{what} must be >= 1 and <= {_MAX_SIDE}, got {_shown(value)}")
    return int(value)


def _check_rotation(path, entry, rotation, what):
    error = float(np.max(np.abs(rotation @ rotation.T - np.eye(3))))
    if error > _ROTATION_TOLERANCE:
        raise _error(path, entry, f"{what} is not a rotation (|R R^T - I| = {error:.3g})")
    det = float(np.linalg.det(rotation))
    if det < 0:
        raise _error(path, entry, f"{what} is a reflection (det {det:.3f}), not a rotation")


def _object_id(path, entry, value, what) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise _error(path, entry, f"{what} must be an integer >= 0 (int64), got {_shown(value)}")
    return int(value)


def _check_keys(path, entry, item, required, optional):
    if not isinstance(item, dict):
        raise _error(path, entry, f"must be an object, got {type(item).__name__}")
    missing = [k for k in required if k not in item]
    if missing:
        raise _error(path, entry, f"missing {', '.join(missing)}")
    unknown = sorted(set(item) - set(required) - set(optional))
    if unknown:
        raise _error(path, entry, f"unknown keys {', '.join(unknown)}")


_TFGLO_REQUIRED = ("width", "height", "fx", "fy", "cx", "cy", "world_to_camera")


def _parse_tfglo(path, data) -> tuple[dict[str, FileCamera], float | None]:
    _check_keys(path, None, data, ("format", "version", "images"), ("scene_radius", "comment"))
    if data["version"] != FORMAT_VERSION:
        raise _error(path, None, f"version {data['version']!r} is not supported (only 1)")
    scene_radius = None
    if data.get("scene_radius") is not None:
        scene_radius = _scalar(path, None, data["scene_radius"], "scene_radius")
        if scene_radius <= 0:
            raise _error(path, None, f"scene_radius must be > 0, got {scene_radius}")
    images = data["images"]
    if not isinstance(images, dict):
        raise _error(path, None, "images must be an object keyed by image file name")
    cameras = {}
    for name, item in images.items():
        _check_keys(path, name, item, _TFGLO_REQUIRED, ("object_id",))
        width = _size(path, name, item["width"], "width")
        height = _size(path, name, item["height"], "height")
        fx, fy, cx, cy = (_scalar(path, name, item[k], k) for k in ("fx", "fy", "cx", "cy"))
        if fx <= 0 or fy <= 0:
            raise _error(path, name, f"focal lengths must be > 0, got fx={fx}, fy={fy}")
        value = item["world_to_camera"]
        rows = 4 if isinstance(value, list) and len(value) == 4 else 3
        world_to_camera = _array(path, name, item["world_to_camera"], (rows, 4), "world_to_camera")
        if rows == 4:
            if not np.allclose(world_to_camera[3], [0, 0, 0, 1], atol=1e-6):
                raise _error(path, name, "world_to_camera's 4th row must be [0, 0, 0, 1]")
            world_to_camera = world_to_camera[:3]
        _check_rotation(path, name, world_to_camera[:, :3], "world_to_camera's rotation")
        cameras[str(name)] = FileCamera(
            intrinsics=np.array([fx, fy, cx, cy], np.float64),
            world_to_camera=world_to_camera,
            width=width,
            height=height,
            object_id=_object_id(path, name, item.get("object_id"), "object_id"),
        )
    return cameras, scene_radius


_JAX3D_REQUIRED = ("orientation", "position", "focal_length", "principal_point", "image_size")
_JAX3D_OPTIONAL = ("skew", "pixel_aspect_ratio", "radial_distortion", "tangential_distortion")


def _parse_jax3d(path, data) -> dict[str, FileCamera]:
    cameras = {}
    for name, item in data.items():
        _check_keys(path, name, item, ("camera",), ("identity",))
        camera = item["camera"]
        _check_keys(path, name, camera, _JAX3D_REQUIRED, _JAX3D_OPTIONAL)
        orientation = _array(path, name, camera["orientation"], (3, 3), "orientation")
        _check_rotation(path, name, orientation, "orientation")
        position = _array(path, name, camera["position"], (3,), "position")
        focal = _scalar(path, name, camera["focal_length"], "focal_length")
        ratio = _scalar(path, name, camera.get("pixel_aspect_ratio", 1.0), "pixel_aspect_ratio")
        skew = _scalar(path, name, camera.get("skew", 0.0), "skew")
        if focal <= 0 or ratio <= 0:
            raise _error(
                path, name, f"focal_length and pixel_aspect_ratio must be > 0, got {focal}, {ratio}"
            )
        if abs(skew) > _SKEW_TOLERANCE * focal:
            raise _error(path, name, f"skew {skew} is not supported (tfglo cameras have no skew)")
        for key in ("radial_distortion", "tangential_distortion"):
            if key not in camera:
                continue
            try:
                coefficients = np.asarray(camera[key], np.float64)
            except (TypeError, ValueError, OverflowError) as e:
                raise _error(path, name, f"{key} must be a list of numbers") from e
            if np.any(coefficients != 0):
                raise _error(path, name, f"{key} is not supported (tfglo cameras are pinholes)")
        principal = _array(path, name, camera["principal_point"], (2,), "principal_point")
        size = camera["image_size"]
        if not isinstance(size, list) or len(size) != 2:
            raise _error(path, name, f"image_size must be [width, height], got {size!r}")
        width = _size(path, name, size[0], "image_size width")
        height = _size(path, name, size[1], "image_size height")
        cameras[str(name)] = FileCamera(
            intrinsics=np.array([focal, focal * ratio, principal[0], principal[1]], np.float64),
            world_to_camera=np.concatenate([orientation, -(orientation @ position)[:, None]], 1),
            width=width,
            height=height,
            object_id=_object_id(path, name, item.get("identity"), "identity"),
        )
    return cameras


def detect_format(data) -> str | None:
    """ "tfglo", "jax3d" or None, from a parsed JSON document."""
    if isinstance(data, dict) and data.get("format") == FORMAT_NAME:
        return "tfglo"
    if isinstance(data, dict) and data:
        first = next(iter(data.values()))
        if isinstance(first, dict) and "camera" in first:
            return "jax3d"
    return None


def mean_camera_alignment(cameras: dict[str, FileCamera]) -> np.ndarray:
    """The world rotation Q `[3, 3]` (x_new = Q x) that makes the average camera the identity.

    Q is the chordal L2 mean of the cameras' rotations (the SVD projection of their average):
    after it, the mean camera looks along +z with image-down along +y, tfglo's frontal view.
    """
    rotations = np.stack([c.world_to_camera[:, :3] for c in cameras.values()])
    u, _, vt = np.linalg.svd(rotations.mean(0))
    fix = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    return u @ fix @ vt


def rotate_world(camera: FileCamera, rotation: np.ndarray) -> FileCamera:
    """The camera after the world turns by `rotation` about the origin (x_new = Q x).

    x_cam = R x + t = (R Q^T) x_new + t, so R' = R Q^T and t is unchanged.
    """
    world_to_camera = camera.world_to_camera.copy()
    world_to_camera[:, :3] = world_to_camera[:, :3] @ rotation.T
    return dataclasses.replace(camera, world_to_camera=world_to_camera)


def load(path: os.PathLike | str, align: str | None = None) -> CameraFile:
    """Reads a camera file of either format into package-convention cameras.

    Args:
      path: a tfglo-cameras JSON or a LOLNeRF camera-estimates JSON.
      align: "none" or "mean_camera" (rotate the world so the average camera is the identity);
        None: "none" for tfglo files (already in the package's frame), "mean_camera" for jax3d.

    Returns:
      A `CameraFile`.

    Raises:
      CameraFileError: the file is missing, not JSON, of an unknown format, or an entry is
        malformed (the message names the file and the entry).
    """
    path = pathlib.Path(path)
    if align is not None and align not in ALIGNMENTS:
        raise CameraFileError(f"align must be one of {ALIGNMENTS}, got {align!r}")
    if not path.is_file():
        raise CameraFileError(f"camera file {path} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CameraFileError(f"camera file {path} is not valid JSON: {e}") from e
    except RecursionError as e:
        raise CameraFileError(f"camera file {path} is not valid JSON: nested too deeply") from e
    kind = detect_format(data)
    if kind is None:
        raise CameraFileError(
            f"camera file {path}: unknown format (expected a tfglo-cameras document with "
            f'"format": "{FORMAT_NAME}", or LOLNeRF camera estimates keyed by file name with '
            '{"camera": {...}, "identity": N} entries)'
        )
    if kind == "tfglo":
        cameras, scene_radius = _parse_tfglo(path, data)
    else:
        cameras, scene_radius = _parse_jax3d(path, data), JAX3D_SCENE_RADIUS
    if not cameras:
        raise CameraFileError(f"camera file {path} holds no cameras")
    align = align or ("mean_camera" if kind == "jax3d" else "none")
    alignment = np.eye(3)
    if align == "mean_camera":
        alignment = mean_camera_alignment(cameras)
        cameras = {name: rotate_world(c, alignment) for name, c in cameras.items()}
    return CameraFile(str(path), kind, cameras, scene_radius, alignment)


def save_tfglo(
    path: os.PathLike | str, cameras: dict[str, FileCamera], scene_radius: float | None = None
) -> pathlib.Path:
    """Writes cameras in tfglo's schema (see the module docstring)."""
    images = {}
    for name, camera in cameras.items():
        fx, fy, cx, cy = (float(v) for v in camera.intrinsics)
        entry = {"width": int(camera.width), "height": int(camera.height)}
        entry.update(fx=fx, fy=fy, cx=cx, cy=cy)
        entry["world_to_camera"] = np.asarray(camera.world_to_camera, np.float64).tolist()
        if camera.object_id is not None:
            entry["object_id"] = int(camera.object_id)
        images[name] = entry
    document = {"format": FORMAT_NAME, "version": FORMAT_VERSION}
    if scene_radius is not None:
        document["scene_radius"] = float(scene_radius)
    document["images"] = images
    path = pathlib.Path(path)
    path.write_text(json.dumps(document, indent=1), encoding="utf-8")
    return path


def to_jax3d(camera: FileCamera) -> dict:
    """One camera as a LOLNeRF camera-estimates entry (the inverse of the import's conversion).

    Their camera has one focal length and a pixel aspect ratio: fy = focal * ratio.
    """
    fx, fy, cx, cy = (float(v) for v in camera.intrinsics)
    rotation = np.asarray(camera.world_to_camera[:, :3], np.float64)
    translation = np.asarray(camera.world_to_camera[:, 3], np.float64)
    entry = {
        "camera": {
            "orientation": rotation.tolist(),
            "position": (-(rotation.T @ translation)).tolist(),
            "focal_length": [fx],
            "principal_point": [cx, cy],
            "image_size": [int(camera.width), int(camera.height)],
            "skew": [0.0],
            "pixel_aspect_ratio": [fy / fx],
        }
    }
    if camera.object_id is not None:
        entry["identity"] = int(camera.object_id)
    return entry


def save_jax3d(path: os.PathLike | str, cameras: dict[str, FileCamera]) -> pathlib.Path:
    """Writes cameras as LOLNeRF camera estimates (world frame as given: no alignment undone)."""
    document = {name: to_jax3d(camera) for name, camera in cameras.items()}
    path = pathlib.Path(path)
    path.write_text(json.dumps(document), encoding="utf-8")
    return path
