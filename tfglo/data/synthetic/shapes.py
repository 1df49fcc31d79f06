"""Procedural scenes of geometric shapes seen from several views: the NeRF-VAE built-in class.

A scene is 1-4 primitives (spheres, boxes, cylinders, cones; `min_primitives`..`max_primitives`)
with random kinds, colours (saturated hues), sizes, orientations (a random turn about the vertical
axis and a tilt up to `max_tilt_deg`) and placements inside the unit sphere (rejection sampling
keeps their bounding spheres apart when it can; after `_PLACEMENT_TRIES` tries the primitive
shrinks, and at last it may overlap). Shading is Lambertian plus ambient under a light from above
fixed in the world per scene. The background is plain: with `background="dataset"` one constant
colour (`background_color`) for the whole data set, recorded in dataset.json as
`constant_background`; with `background="scene"` a random plain colour per scene (then
`constant_background` is null).

Views (multi-view setting): `train_views_per_object` training and `eval_views_per_object`
held-out views per scene, every camera at a uniform random azimuth over the full circle and a
random elevation in `elevation_range_deg` (the upper hemisphere by default), looking at the
origin. All views of a scene share its object id and latent id. Scene k depends only on
(seed, k).
"""

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np

from tfglo.data import records
from tfglo.data.synthetic import cameras, generation, primitives, rendering, shading
from tfglo.geometry import camera

KINDS = ("sphere", "box", "cylinder", "cone")
_KIND_IDS = {
    "sphere": primitives.ELLIPSOID,
    "box": primitives.BOX,
    "cylinder": primitives.CYLINDER,
    "cone": primitives.CONE,
}
BACKGROUNDS = ("dataset", "scene")

# Every primitive lies inside a sphere of this radius around the origin.
_EXTENT = 0.97
_PLACEMENT_TRIES = 40


@dataclasses.dataclass(frozen=True)
class ShapesConfig:
    """Settings of the shapes-scene data set.

    Attributes:
      num_objects: number of scenes (each owns one latent, shared by all its views).
      image_size: square image side, pixels.
      seed: base seed; scene k is drawn from the stream (seed, k).
      train_views_per_object: training views per scene.
      eval_views_per_object: held-out views per scene.
      camera_distance: distance of every camera from the origin, object units (> 1).
      focal_factor: focal length = focal_factor x image width (pixels), principal point at the
        centre.
      elevation_range_deg: (min, max) elevation of every camera above the horizontal plane
        through the origin, degrees (10..60: the upper hemisphere, never straight down).
      min_primitives: fewest primitives in a scene (>= 1).
      max_primitives: most primitives in a scene (uniform count in between).
      kinds: the primitive kinds to draw from (uniformly), a subset of "sphere", "box",
        "cylinder", "cone".
      size_range: (min, max) size of a primitive: a sphere's radius, a box's largest half-extent,
        a cylinder's or cone's radius and half-height are drawn around it, object units.
      max_tilt_deg: largest tilt of a primitive's axis away from the vertical, degrees.
      background: "dataset" (one constant colour, `background_color`) or "scene" (a random
        plain colour per scene).
      background_color: the constant sRGB background in [0, 1] with background="dataset".
      vary_lighting: vary the light direction and ambient level per scene (else a fixed light).
    """

    num_objects: int = 16
    image_size: int = 64
    seed: int = 0
    train_views_per_object: int = 8
    eval_views_per_object: int = 4
    camera_distance: float = 4.5
    focal_factor: float = 2.0
    elevation_range_deg: tuple[float, float] = (10.0, 60.0)
    min_primitives: int = 1
    max_primitives: int = 4
    kinds: tuple[str, ...] = KINDS
    size_range: tuple[float, float] = (0.22, 0.42)
    max_tilt_deg: float = 20.0
    background: str = "dataset"
    background_color: tuple[float, float, float] = (0.85, 0.85, 0.85)
    vary_lighting: bool = True

    def __post_init__(self):
        generation.check_common_fields(self)
        if not 1 <= self.min_primitives <= self.max_primitives:
            raise ValueError(
                "min_primitives and max_primitives must satisfy 1 <= min <= max, got "
                f"{self.min_primitives}, {self.max_primitives}"
            )
        kinds = tuple(self.kinds)
        unknown = sorted(set(kinds) - set(KINDS))
        if not kinds or unknown:
            raise ValueError(f"kinds must be a non-empty subset of {KINDS}, got {kinds}")
        if len(self.size_range) != 2:
            raise ValueError(f"size_range must be (min, max), got {tuple(self.size_range)}")
        low, high = (float(v) for v in self.size_range)
        if not 0.0 < low <= high <= 0.6:
            raise ValueError(
                f"size_range must be (min, max) with 0 < min <= max <= 0.6, got {(low, high)}"
            )
        if not 0.0 <= self.max_tilt_deg <= 90.0:
            raise ValueError(f"max_tilt_deg must be in [0, 90], got {self.max_tilt_deg}")
        if self.background not in BACKGROUNDS:
            raise ValueError(f"background must be one of {BACKGROUNDS}, got {self.background!r}")
        object.__setattr__(self, "kinds", kinds)
        object.__setattr__(self, "size_range", (low, high))

    @property
    def constant_background(self) -> tuple[float, float, float] | None:
        """The data set's constant background colour, or None when it varies per scene."""
        return self.background_color if self.background == "dataset" else None


@dataclasses.dataclass(frozen=True)
class SceneParams:
    """One scene: its primitives, light and background colour.

    Attributes:
      primitives: the solids (1..4).
      kind_names: `[P]` their kinds as `KINDS` names.
      lighting: the light, fixed in the world.
      background_color: `[3]` the scene's plain background, sRGB in [0, 1].
    """

    primitives: primitives.Primitives
    kind_names: tuple[str, ...]
    lighting: shading.Lighting
    background_color: np.ndarray


def _sizes(rng: np.random.Generator, kind: str, size: float) -> np.ndarray:
    """Size parameters (`primitives` conventions) of a primitive of nominal size `size`."""
    u = rng.uniform
    if kind == "sphere":
        return np.full(3, size)
    if kind == "box":
        return size * np.array([u(0.6, 1.0), u(0.6, 1.0), u(0.6, 1.0)])
    radius = size * u(0.6, 1.0)
    return np.array([radius, size * u(0.7, 1.1), radius])  # cylinder, cone


def sample_object(rng: np.random.Generator, config: ShapesConfig) -> SceneParams:
    """Draws one scene.

    Args:
      rng: the scene's random stream (`generation.object_rng(seed, k, 0)`).
      config: the data set's settings (counts, kinds, sizes, tilt, background).

    Returns:
      `SceneParams` with every primitive inside the sphere of radius 0.97 around the origin.
    """
    u = rng.uniform
    count = int(rng.integers(config.min_primitives, config.max_primitives + 1))
    kind_names, centers, rotations, sizes, colors, radii = [], [], [], [], [], []
    max_tilt = np.radians(config.max_tilt_deg)
    for _ in range(count):
        kind = config.kinds[int(rng.integers(len(config.kinds)))]
        nominal = u(*config.size_range)
        turn, tilt, tilt_axis = u(-np.pi, np.pi), u(0.0, max_tilt), u(-np.pi, np.pi)
        rot = (
            primitives.rotation(y=tilt_axis)
            @ primitives.rotation(x=tilt)
            @ (primitives.rotation(y=turn - tilt_axis))
        )
        color = shading.random_color(rng, saturation=(0.45, 0.95), value=(0.45, 0.95))
        for attempt in range(3 * _PLACEMENT_TRIES):
            if attempt and attempt % _PLACEMENT_TRIES == 0:
                nominal *= 0.8  # crowded: try smaller
            size = _sizes(rng, kind, nominal)
            single = primitives.make_primitives(
                [_KIND_IDS[kind]], np.zeros((1, 3)), rot[None], size[None], color[None]
            )
            reach = float(primitives.bounding_radii(single)[0])
            # A uniform point in the ball where the primitive's bounding sphere fits.
            direction = rng.normal(size=3)
            direction /= np.linalg.norm(direction)
            center = direction * (_EXTENT - reach) * u() ** (1.0 / 3.0)
            apart = all(
                np.linalg.norm(center - c) >= reach + r for c, r in zip(centers, radii, strict=True)
            )
            if apart:
                break
        kind_names.append(kind)
        centers.append(center)
        rotations.append(rot)
        sizes.append(size)
        colors.append(color)
        radii.append(reach)
    prims = primitives.make_primitives(
        [_KIND_IDS[k] for k in kind_names], centers, rotations, sizes, colors
    )

    if config.vary_lighting:
        light = np.array([u(-0.7, 0.7), -1.0, u(-0.7, 0.7)])
        ambient = u(0.35, 0.55)
    else:
        light, ambient = np.array([-0.4, -1.0, -0.3]), 0.45
    if config.background == "scene":
        background = shading.random_color(rng, saturation=(0.0, 0.35), value=(0.2, 0.95))
    else:
        background = np.asarray(config.background_color, np.float64)
    return SceneParams(
        primitives=prims,
        kind_names=tuple(kind_names),
        lighting=shading.Lighting(light / np.linalg.norm(light), float(ambient)),
        background_color=background,
    )


def object_params(config: ShapesConfig, object_id: int) -> SceneParams:
    """The scene of object `object_id` (independent of `num_objects` and of the views)."""
    return sample_object(generation.object_rng(config.seed, object_id, 0), config)


def view_angles(config: ShapesConfig, object_id: int) -> list[tuple[str, float, float]]:
    """(split, azimuth, elevation) in radians of every view of a scene, training views first."""
    rng = generation.object_rng(config.seed, object_id, 1)
    low, high = np.radians(config.elevation_range_deg)
    splits = ["train"] * config.train_views_per_object + ["eval"] * config.eval_views_per_object
    return [
        (split, float(rng.uniform(-np.pi, np.pi)), float(rng.uniform(low, high)))
        for split in splits
    ]


def render_view(params: SceneParams, cam: camera.Camera, size: int) -> dict:
    """Renders one square view of a scene on its background (`rendering.render_view`)."""
    return rendering.render_view(
        params.primitives,
        params.lighting,
        params.background_color,
        cam.intrinsics,
        cam.world_to_camera,
        size,
        size,
    )


def generate(config: ShapesConfig) -> Iterator[records.ImageRecord]:
    """Yields every image: per scene its training views, then its held-out views.

    Records carry image, mask, depth, intrinsics, world_to_camera, latent_id = object_id (the
    scene), view_id, split and a source such as "synthetic/shapes/obj0003/view01".
    """
    size = config.image_size
    intrinsics = camera.default_intrinsics(size, size, config.focal_factor)
    for object_id in range(config.num_objects):
        params = object_params(config, object_id)
        for view_id, (split, yaw, pitch) in enumerate(view_angles(config, object_id)):
            pose = cameras.orbit_pose(yaw, pitch, config.camera_distance).astype(np.float32)
            view = render_view(params, camera.Camera(intrinsics, pose), size)
            yield generation.view_record(
                view, intrinsics, pose, object_id, view_id, split, "synthetic/shapes"
            )


def dataset_metadata(config: ShapesConfig) -> dict[str, Any]:
    """dataset.json keys of a shapes data set: `generation.base_metadata` (with
    `constant_background` when background="dataset", else null)."""
    return generation.base_metadata("shapes", config, config.constant_background)


def benchmark_shapes(peak_gflops: float, num_objects: int = 10, image_size: int = 64) -> None:
    """Prints `synthetic_shapes images_per_s=...` for 12 views of `num_objects` scenes (120
    images) at `image_size` (64) on this process."""
    del peak_gflops  # numpy on one core; a ratio to the TF matmul peak means nothing here
    generation.benchmark_class(
        "synthetic_shapes",
        generate,
        ShapesConfig(num_objects=num_objects, image_size=image_size),
        ShapesConfig(num_objects=1, image_size=8, train_views_per_object=1),
        target_images_per_s=50,
    )
