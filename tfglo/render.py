"""`python -m tfglo.render`: orbits, interpolations and sampled identities of a trained run.

    python -m tfglo.render --run_dir=DIR --output=DIR --mode=orbit --ids=0,1
    python -m tfglo.render --run_dir=DIR --output=DIR --mode=orbit --latents=inverted.npy
    python -m tfglo.render --run_dir=DIR --output=DIR --mode=interpolate --ids=0,3
    python -m tfglo.render --run_dir=DIR --output=DIR --mode=sample --num_samples=8 --seed=1

Codes come from the run's latent table (`--ids`, rows of the table) or from a `.npy` file of
codes `[K, D]` (`--latents`, e.g. the `latents.npy` that `tfglo.evaluate --invert` writes; `--ids`
then picks rows of the file). Views are rendered in fixed-size ray chunks by
`tfglo.render_image`, so memory does not grow with `--image_size`.

Outputs (under --output):
- orbit: `<name>/frame_NNN.png`, `depth_NNN.png` (viridis, near bright; one depth range for the
  whole orbit), `depth_NNN.npy` (raw float32 camera-z depth, object units), `alpha_NNN.png`,
  `orbit.gif`, `depth.gif`, `alpha.gif`.
- interpolate: `interpolate_A_B/strip.png`, `depth_strip.png`, `interpolate.gif` (there and back),
  and the frames.
- sample: `samples/sample_NNN.png` (+ depth), `samples/grid.png`, `samples/latents.npy`.

The library functions (`render_orbit`, `write_frames`, `interpolation_latents`,
`sample_identities`, `default_view`, ...) are what the demo calls; the app only parses flags.
"""

import dataclasses
import functools
import math
import pathlib

import numpy as np
import tensorflow as tf
from absl import app, flags, logging

from tfglo.data import dataset_dir as dataset_dir_lib
from tfglo.engine import inversion
from tfglo.geometry import camera as camera_lib
from tfglo.lolnerf import latents
from tfglo.utils import app as app_utils
from tfglo.utils import images

DEFAULT_CAMERA_DISTANCE = 4.5
DEFAULT_FOCAL_FACTOR = 2.0


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
    """Renders one view as numpy: rgb `[H, W, 3]`, alpha `[H, W]`, depth `[H, W]` (camera z).

    The renderer's depth is the expected distance along each unit ray; it is converted to camera
    z here, the convention of the datasets' ground-truth depth.
    """
    out = inversion.render_whole_image(model, latent, camera, height, width, chunk_size)
    return {
        "rgb": np.asarray(out["rgb"], np.float32),
        "alpha": np.asarray(out["alpha"], np.float32),
        "depth": camera_z_depth(out["depth"], camera, height, width),
    }


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


def table_latents(model) -> np.ndarray:
    """The model's trained latent table `[M, D]` as numpy."""
    return np.asarray(model.latent_table.embeddings, np.float32)


def select_latents(model, ids=None, latents_file=None) -> tuple[np.ndarray, list[str]]:
    """Codes to render and their names.

    Args:
      model: the trained model (its table is used unless `latents_file` is given).
      ids: row indices (of the table or of the file); all rows of a file / row 0 of the table
        when None.
      latents_file: optional `.npy` file of codes `[K, D]` (or `[D]`).

    Returns:
      (codes `[K, D]`, names such as "id_0003" or "latent_0001").

    Raises:
      ValueError: a file that is not `[K, D]` with the model's D, or an id out of range.
    """
    table = table_latents(model)
    dim = table.shape[1]
    if latents_file is not None:
        path = pathlib.Path(latents_file)
        if not path.is_file():
            raise ValueError(f"latents file {path} does not exist")
        source = np.load(path).astype(np.float32)
        if source.ndim == 1:
            source = source[None]
        if source.ndim != 2 or source.shape[1] != dim:
            raise ValueError(
                f"latents file {path} holds shape {source.shape}; this run's codes are [K, {dim}]"
            )
        prefix = "latent"
    else:
        source, prefix = table, "id"
    if ids is None:
        ids = list(range(len(source))) if latents_file is not None else [0]
    ids = [int(i) for i in ids]
    bad = [i for i in ids if not 0 <= i < len(source)]
    if bad:
        where = f"file {latents_file}" if latents_file is not None else "the latent table"
        raise ValueError(f"ids {bad} out of range: {where} has {len(source)} rows")
    return source[ids], [f"{prefix}_{i:04d}" for i in ids]


def interpolation_latents(latent_a, latent_b, num_frames: int) -> np.ndarray:
    """Linear path `[num_frames, D]` from code a to code b, endpoints included."""
    return np.asarray(latents.interpolate(latent_a, latent_b, num_frames), np.float32)


def sample_identities(
    table, count: int, seed: int = 0, truncation: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """New codes from a Gaussian fitted to a trained latent table.

    Args:
      table: `[M, D]` trained codes.
      count: number of codes.
      seed: integer seed (the same seed gives the same codes).
      truncation: scales the deviation from the mean (0: the mean; 1: the table's spread).

    Returns:
      (codes `[count, D]`, fitted mean `[D]`, fitted covariance `[D, D]`).
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if truncation < 0:
        raise ValueError(f"truncation must be >= 0, got {truncation}")
    mean, covariance = latents.fit_gaussian(table)
    codes = latents.sample_latents(
        mean, covariance, count, tf.constant([seed, 0], tf.int64), truncation
    )
    return np.asarray(codes), np.asarray(mean), np.asarray(covariance)


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


# --------------------------------------------------------------------------------------- app

FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """Defines the app's flags (once; flags another app already defined are shared).

    Flags are defined here rather than at import so that library users (the demo, the evaluate
    app) can import this module without clashing flag definitions.
    """

    define = functools.partial(app_utils.define_flag, flag_values)

    define("string", "run_dir", None, "Trained run directory (checkpoints, config).")
    define("string", "output", None, "Directory for the outputs (created).")
    define(
        "enum",
        "mode",
        "orbit",
        "What to render (see module help).",
        ["orbit", "interpolate", "sample"],
    )
    define(
        "list",
        "ids",
        None,
        "Rows of the latent table (or of --latents) to render; orbit: every listed one (default "
        "0, or every row of --latents); interpolate: exactly two (default 0,1).",
    )
    define(
        "string", "latents", None, ".npy file of codes [K, D] (e.g. from tfglo.evaluate --invert)."
    )
    define("integer", "num_frames", 24, "Frames of an orbit or interpolation.")
    define("integer", "num_samples", 8, "Identities to sample (mode=sample).")
    define("integer", "image_size", None, "Output side, pixels (default: the training image size).")
    define(
        "float", "camera_distance", None, "Camera distance, object units (default: as in training)."
    )
    define("float", "focal_factor", None, "Focal length / image width (default: as in training).")
    define("list", "yaw_range_deg", ["-35", "35"], "Orbit yaw (min,max), degrees.")
    define("list", "pitch_range_deg", ["-10", "10"], "Orbit pitch (min,max), degrees.")
    define("float", "truncation", 0.7, "Sampling: scale of the deviation from the mean code.")
    define("integer", "seed", 0, "Sampling seed.")
    define("integer", "chunk_size", None, "Rays per rendering chunk (default: the model's).")
    define("float", "fps", 12.0, "GIF frame rate.")


def _pair(values, name) -> tuple[float, float]:
    if len(values) != 2:
        raise app.UsageError(f"--{name} needs two comma-separated values, got {values}")
    return float(values[0]), float(values[1])


def main(argv, flag_values: flags.FlagValues = FLAGS):
    """Runs the app with parsed flags (`flag_values`: another FlagValues, e.g. in tests)."""
    del argv
    f = flag_values
    if not f.run_dir or not f.output:
        raise app.UsageError("--run_dir and --output are required")
    from tfglo.engine import run_dir as run_dir_lib  # the trainer's module; imported when needed

    run = run_dir_lib.load_run(f.run_dir)
    model = run.model
    view = default_view(
        getattr(run, "dataset_metadata", None),
        getattr(run, "dataset_dir", None),
        image_size=f.image_size,
        camera_distance=f.camera_distance,
        focal_factor=f.focal_factor,
        yaw_range_deg=_pair(f.yaw_range_deg, "yaw_range_deg"),
        pitch_range_deg=_pair(f.pitch_range_deg, "pitch_range_deg"),
        chunk_size=f.chunk_size,
    )
    output = pathlib.Path(f.output)
    output.mkdir(parents=True, exist_ok=True)
    logging.info("rendering %s at %dx%d: %s", f.mode, view.image_size, view.image_size, view)
    ids = [int(i) for i in f.ids] if f.ids else None
    if f.mode == "orbit":
        codes, names = select_latents(model, ids, f.latents)
        for code, name in zip(codes, names):
            frames = render_orbit(model, code, view, f.num_frames)
            written = write_frames(output / name, frames, fps=f.fps)
            print(f"{name}: {len(frames)} frames, {written['gif']}")
    elif f.mode == "interpolate":
        ids = ids if ids is not None else [0, 1]
        if len(ids) != 2:
            raise app.UsageError(f"--mode=interpolate needs exactly two --ids, got {ids}")
        codes, names = select_latents(model, ids, f.latents)
        path = interpolation_latents(codes[0], codes[1], f.num_frames)
        frames = render_strip(model, path, view)
        directory = output / f"interpolate_{names[0]}_{names[1]}"
        written = write_frames(directory, frames, "interpolate.gif", fps=f.fps, bounce=True)
        colour, depth = strip_images(frames)
        images.write_png(directory / "strip.png", colour)
        images.write_png(directory / "depth_strip.png", depth)
        print(f"interpolation {names[0]} -> {names[1]}: {directory / 'strip.png'}")
        print(f"gif: {written['gif']}")
    else:
        table = table_latents(model)
        if f.latents:
            table, _ = select_latents(model, None, f.latents)
        codes, _, _ = sample_identities(table, f.num_samples, f.seed, f.truncation)
        frames = render_strip(model, codes, view)
        directory = output / "samples"
        for i, frame in enumerate(frames):
            images.write_png(directory / f"sample_{i:03d}.png", frame["rgb"])
            depth_image, _ = images.colorize_depth(frame["depth"], frame["alpha"])
            images.write_png(directory / f"depth_{i:03d}.png", depth_image)
            images.save_depth(directory / f"depth_{i:03d}.npy", frame["depth"])
        colour, depth = strip_images(frames)
        images.write_png(directory / "grid.png", colour)
        images.write_png(directory / "depth_grid.png", depth)
        np.save(directory / "latents.npy", codes)
        print(f"{len(codes)} samples (truncation {f.truncation}): {directory / 'grid.png'}")
    print(f"peak_rss_mib={app_utils.peak_rss_mib():.1f} image_size={view.image_size}")


def run(argv=None):
    """Entry point: `python -m tfglo.render ...` (or `run([...argv])` from Python)."""
    app_utils.run_app(main, define_flags, argv)


if __name__ == "__main__":
    run()
