"""Novel views of a trained model: framing, orbit cameras, whole-image renders, frames and GIFs.

`ViewConfig` says how views are framed (image size, camera distance, focal factor, orbit ranges);
`default_view` frames them like the training data. `render_view` renders one latent code from one
camera in fixed-size ray chunks (memory flat in the image size) and reports depth as camera z, the
datasets' convention; `render_orbit` / `render_strip` render along an orbit or one code per frame
from one camera; `write_frames` and `strip_images` turn renders into PNGs, raw depth, and GIFs.

Nothing here knows a model family: a model is anything `inversion.render_whole_image` renders, and
a latent code is a `[D]` array (where codes come from is the family's business, e.g.
`tfglo.lolnerf.identities`). `python -m tfglo.render` and the export app call these.
"""

import dataclasses
import math
import pathlib

import numpy as np
import tensorflow as tf
from absl import logging

from tfglo.data import dataset_dir as dataset_dir_lib
from tfglo.engine import inversion
from tfglo.geometry import camera as camera_lib
from tfglo.nerf import accelerated_renderer
from tfglo.nerf import config as nerf_config
from tfglo.utils import configs, images

DEFAULT_CAMERA_DISTANCE = 4.5
DEFAULT_FOCAL_FACTOR = 2.0

# The rendering apps' flags for the `RenderConfig` fields of `nerf_config.INFERENCE_RENDER_FIELDS`
# (--accelerate / --noaccelerate, --occupancy_resolution, ...): named as the fields, default None
# = the run's config.json; `render_overrides` turns their values into `load_run`'s overrides.
RENDER_FLAG_NAMING = configs.FlagNames(
    skip=tuple(
        field.name
        for field in dataclasses.fields(nerf_config.RenderConfig)
        if field.name not in nerf_config.INFERENCE_RENDER_FIELDS
    )
)
RENDER_FLAG_DEFAULTS = {
    name: "the run's config.json" for name in nerf_config.INFERENCE_RENDER_FIELDS
}


def render_overrides(flag_spec: configs.ConfigFlags, values, key: str = "render") -> dict:
    """The `RenderConfig` fields an app's flags set (those left at None are not overrides)."""
    return dict(flag_spec.field_values(values, key))


def check_render_settings(model) -> None:
    """Raises ValueError (naming the setting) if the model's accelerated settings are invalid."""
    render_config = getattr(getattr(model, "config", None), "render", None)
    if render_config is not None and render_config.accelerate:
        accelerated_renderer.check_config(render_config)


@dataclasses.dataclass(frozen=True)
class ViewConfig:
    """How novel views are framed.

    Attributes:
      image_size: square output side, pixels.
      camera_distance: camera distance from the origin, object units.
      focal_factor: focal length = focal_factor x image width (the training data's ratio keeps
        the object's framing at any resolution).
      yaw_range_deg: (min, max) yaw of an orbit, degrees.
      pitch_range_deg: (min, max) pitch of an orbit (one sine period, so a GIF loops), degrees.
      chunk_size: rays per rendering chunk (None: the model's default).
    """

    image_size: int = 64
    camera_distance: float = DEFAULT_CAMERA_DISTANCE
    focal_factor: float = DEFAULT_FOCAL_FACTOR
    yaw_range_deg: tuple[float, float] = (-35.0, 35.0)
    pitch_range_deg: tuple[float, float] = (-10.0, 10.0)
    chunk_size: int | None = None

    def __post_init__(self):
        if self.image_size < 1:
            raise ValueError(f"image_size must be >= 1, got {self.image_size}")
        if not self.camera_distance > 0:
            raise ValueError(f"camera_distance must be > 0, got {self.camera_distance}")
        if not self.focal_factor > 0:
            raise ValueError(f"focal_factor must be > 0, got {self.focal_factor}")


def default_view(metadata: dict | None, dataset_dir=None, **overrides) -> ViewConfig:
    """A `ViewConfig` that frames objects like the training data.

    Camera distance and focal factor come from, in order: `overrides`; a synthetic dataset's
    `synthetic_config`; `camera_distance` / `focal_factor` keys of dataset.json; the training
    cameras of `dataset_dir` (median distance and fx / width); the package defaults.

    Args:
      metadata: the training dataset's dataset.json dict (or None).
      dataset_dir: optional training dataset directory to read cameras from.
      **overrides: ViewConfig fields; None values are ignored.
    """
    metadata = metadata or {}
    found = {}
    synthetic = metadata.get("synthetic_config") or {}
    for key in ("camera_distance", "focal_factor"):
        if key in synthetic:
            found[key] = float(synthetic[key])
        elif key in metadata:
            found[key] = float(metadata[key])
    if len(found) < 2 and dataset_dir is not None and pathlib.Path(dataset_dir).is_dir():
        distances, factors = [], []
        try:
            for record in dataset_dir_lib.iterate_records(dataset_dir):
                if record.split != "train":
                    continue
                centre = camera_lib.camera_center(record.world_to_camera)
                distances.append(float(np.linalg.norm(centre)))
                factors.append(float(record.intrinsics[0]) / record.width)
                if len(distances) >= 64:
                    break
        except dataset_dir_lib.DatasetError as e:
            logging.warning("could not read training cameras from %s: %s", dataset_dir, e)
        if distances:
            found.setdefault("camera_distance", float(np.median(distances)))
            found.setdefault("focal_factor", float(np.median(factors)))
    if "image_size" not in overrides or overrides["image_size"] is None:
        size = metadata.get("image_size")
        if size:
            found["image_size"] = int(size[0])
    found.update({k: v for k, v in overrides.items() if v is not None})
    return ViewConfig(**found)


def view_camera(view: ViewConfig, yaw: float = 0.0, pitch: float = 0.0) -> camera_lib.Camera:
    """The camera of one orbit position (radians), looking at the origin."""
    intrinsics = camera_lib.default_intrinsics(view.image_size, view.image_size, view.focal_factor)
    eye = camera_lib.orbit_eyes(yaw, pitch, view.camera_distance)
    return camera_lib.Camera(tf.constant(intrinsics), camera_lib.look_at(eye))


def orbit_cameras(view: ViewConfig, num_frames: int) -> list[camera_lib.Camera]:
    """Cameras along the orbit path of `camera.orbit_cameras` (yaw sweep, pitch sine)."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    poses = camera_lib.orbit_cameras(
        num_frames,
        view.camera_distance,
        yaw_range=tuple(math.radians(v) for v in view.yaw_range_deg),
        pitch_range=tuple(math.radians(v) for v in view.pitch_range_deg),
    )
    intrinsics = tf.constant(
        camera_lib.default_intrinsics(view.image_size, view.image_size, view.focal_factor)
    )
    return [camera_lib.Camera(intrinsics, poses[i]) for i in range(num_frames)]


def camera_z_depth(distance, camera: camera_lib.Camera, height: int, width: int) -> np.ndarray:
    """Converts depth along unit rays `[H, W]` into camera-z depth `[H, W]` (the datasets' kind).

    z = t (d . forward), with d the unit ray of each pixel and forward the optical axis.
    """
    _, directions = camera_lib.image_rays(camera, height, width)
    forward = tf.convert_to_tensor(camera.world_to_camera, tf.float32)[2, :3]
    cosine = np.asarray(tf.reduce_sum(directions * forward, -1))
    return np.asarray(distance, np.float32) * cosine


def render_view(
    model, latent, camera: camera_lib.Camera, height: int, width: int, chunk_size=None
) -> dict[str, np.ndarray]:
    """Renders one view as numpy: rgb `[H, W, 3]`, alpha `[H, W]`, depth `[H, W]` (camera z),
    and max_weight `[H, W]` where the renderer gives it (the exact one).

    The renderer's depth is the expected distance along each unit ray; it is converted to camera
    z here, the convention of the datasets' ground-truth depth.
    """
    out = inversion.render_whole_image(model, latent, camera, height, width, chunk_size)
    view = {
        "rgb": np.asarray(out["rgb"], np.float32),
        "alpha": np.asarray(out["alpha"], np.float32),
        "depth": camera_z_depth(out["depth"], camera, height, width),
    }
    if "max_weight" in out:
        view["max_weight"] = np.asarray(out["max_weight"], np.float32)
    return view


def render_orbit(model, latent, view: ViewConfig, num_frames: int) -> list[dict]:
    """Renders one code along the orbit path: a list of `render_view` dicts."""
    size = view.image_size
    return [
        render_view(model, latent, cam, size, size, view.chunk_size)
        for cam in orbit_cameras(view, num_frames)
    ]


def write_frames(
    output_dir, frames: list[dict], gif_name: str = "orbit.gif", fps: float = 12.0, bounce=False
) -> dict:
    """Writes rendered frames: PNGs, colour-mapped and raw depth, alpha, and GIFs.

    One depth range (over every frame's foreground) keeps colours comparable across frames.

    Args:
      output_dir: directory (created).
      frames: `render_view` dicts.
      gif_name: name of the colour GIF; depth.gif and alpha.gif sit beside it.
      fps: GIF frame rate.
      bounce: play the GIFs forwards then backwards (an interpolation returns to its start).

    Returns:
      dict with "gif", "depth_gif", "alpha_gif", "frames" (PNG paths) and "depth_range".
    """
    output_dir = pathlib.Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    depth_all = np.concatenate([f["depth"].reshape(-1) for f in frames])
    alpha_all = np.concatenate([f["alpha"].reshape(-1) for f in frames])
    near, far = images.depth_range(depth_all[None], alpha_all[None])
    colour, depth_images, alpha_images, paths = [], [], [], []
    for i, frame in enumerate(frames):
        depth_image, _ = images.colorize_depth(
            frame["depth"], frame["alpha"], depth_min=near, depth_max=far
        )
        paths.append(str(images.write_png(output_dir / f"frame_{i:03d}.png", frame["rgb"])))
        images.write_png(output_dir / f"depth_{i:03d}.png", depth_image)
        images.save_depth(output_dir / f"depth_{i:03d}.npy", frame["depth"])
        images.write_png(output_dir / f"alpha_{i:03d}.png", frame["alpha"])
        colour.append(frame["rgb"])
        depth_images.append(depth_image)
        alpha_images.append(frame["alpha"])

    def sequence(items):
        return items + items[-2:0:-1] if bounce and len(items) > 2 else items

    stem = gif_name[:-4] if gif_name.endswith(".gif") else gif_name
    gif = images.write_gif(output_dir / f"{stem}.gif", sequence(colour), fps=fps)
    depth_gif = images.write_gif(output_dir / "depth.gif", sequence(depth_images), fps=fps)
    alpha_gif = images.write_gif(output_dir / "alpha.gif", sequence(alpha_images), fps=fps)
    return {
        "gif": str(gif),
        "depth_gif": str(depth_gif),
        "alpha_gif": str(alpha_gif),
        "frames": paths,
        "depth_range": [near, far],
    }


def render_strip(model, codes, view: ViewConfig, yaw: float = 0.0) -> list[dict]:
    """Renders each code from one camera (frontal by default): a list of `render_view` dicts."""
    cam = view_camera(view, yaw=yaw)
    size = view.image_size
    return [render_view(model, code, cam, size, size, view.chunk_size) for code in codes]


def strip_images(frames: list[dict], labels=None) -> tuple[np.ndarray, np.ndarray]:
    """One-row grids of the colour and depth images of frames. Returns (colour, depth)."""
    colour = images.image_grid([[f["rgb"] for f in frames]], column_labels=labels)
    depth_all = np.concatenate([f["depth"].reshape(-1) for f in frames])[None]
    alpha_all = np.concatenate([f["alpha"].reshape(-1) for f in frames])[None]
    near, far = images.depth_range(depth_all, alpha_all)
    depth = images.image_grid(
        [
            [
                images.colorize_depth(f["depth"], f["alpha"], depth_min=near, depth_max=far)[0]
                for f in frames
            ]
        ],
        column_labels=labels,
    )
    return colour, depth


def write_strip(output_dir, frames: list[dict], name: str = "strip", labels=None) -> dict:
    """Writes `strip_images` of frames as `<name>.png` and `depth_<name>.png`. Returns the paths."""
    colour, depth = strip_images(frames, labels)
    output_dir = pathlib.Path(output_dir)
    return {
        "colour": str(images.write_png(output_dir / f"{name}.png", colour)),
        "depth": str(images.write_png(output_dir / f"depth_{name}.png", depth)),
    }


def write_images(output_dir, frames: list[dict], stem: str = "sample") -> list[str]:
    """Writes each frame alone: `<stem>_NNN.png`, `depth_NNN.png` (its own depth range) and the
    raw camera-z depth `depth_NNN.npy`. Returns the colour PNG paths."""
    output_dir = pathlib.Path(output_dir)
    paths = []
    for i, frame in enumerate(frames):
        paths.append(str(images.write_png(output_dir / f"{stem}_{i:03d}.png", frame["rgb"])))
        depth_image, _ = images.colorize_depth(frame["depth"], frame["alpha"])
        images.write_png(output_dir / f"depth_{i:03d}.png", depth_image)
        images.save_depth(output_dir / f"depth_{i:03d}.npy", frame["depth"])
    return paths
