"""Procedural toy cars on a white background, seen from all around: a second built-in class.

Not heads: a different shape (boxes and cylinders), a constant background, and views over the
whole circle. Every car is a body box, a glass cabin box with a roof slab, four wheels (tyre
cylinders along world x with hub caps), two headlights (ellipsoids at the front, -z) and two
tail lights (boxes at the back, +z), in the canonical frame (world +y down, so the wheels stand
at the bottom; the car's front looks towards -z like a head's face). Proportions (length, width,
body and cabin heights, cabin length and position, wheel size and wheelbase) and the paint colour
vary per car; every car is scaled so that it spans the same bounding sphere (radius
`_EXTENT` around the origin). Shading is Lambertian plus ambient under a light from above fixed
in the world per car. The background is one constant colour (white by default) for the whole
data set, recorded in dataset.json as `constant_background`.

Views (single-view setting, one latent per car): `train_views_per_object` training views at a
uniform random azimuth over the full circle (360 deg) and a random elevation in
`elevation_range_deg`; `eval_views_per_object` held-out views, each at an angle in
`eval_angle_range_deg` (measured at the origin) from the first training view, with an elevation
in the same range, alternately to its right and to its left. Object k depends only on (seed, k).
"""

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np

from tfglo.data import records
from tfglo.data.synthetic import cameras, generation, primitives, rendering, shading
from tfglo.geometry import camera

PART_NAMES = (
    "body",
    "cabin",
    "roof",
    "wheel_front_right",
    "wheel_front_left",
    "wheel_rear_right",
    "wheel_rear_left",
    "hub_front_right",
    "hub_front_left",
    "hub_rear_right",
    "hub_rear_left",
    "headlight_right",
    "headlight_left",
    "taillight_right",
    "taillight_left",
)

# Every car is scaled so that its bounding sphere (an upper bound) has this radius.
_EXTENT = 0.95

# Paint colours (sRGB) and how common they are; a small jitter is added per car.
_PAINTS = np.array(
    [
        [0.90, 0.90, 0.88],  # white
        [0.10, 0.10, 0.11],  # black
        [0.62, 0.63, 0.66],  # silver
        [0.38, 0.39, 0.41],  # grey
        [0.72, 0.09, 0.08],  # red
        [0.13, 0.24, 0.58],  # blue
        [0.14, 0.42, 0.22],  # green
        [0.90, 0.72, 0.12],  # yellow
        [0.88, 0.42, 0.08],  # orange
        [0.45, 0.30, 0.60],  # purple
    ]
)
_PAINT_WEIGHTS = np.array([0.12, 0.1, 0.1, 0.1, 0.14, 0.14, 0.08, 0.08, 0.08, 0.06])
_GLASS = np.array([0.16, 0.21, 0.28])
_TYRE = np.array([0.07, 0.07, 0.07])
_HUB = np.array([0.72, 0.72, 0.74])
_HEADLIGHT = np.array([0.98, 0.94, 0.70])
_TAILLIGHT = np.array([0.80, 0.08, 0.08])


@dataclasses.dataclass(frozen=True)
class CarsConfig:
    """Settings of the toy-car data set.

    Attributes:
      num_objects: number of cars (each owns one latent).
      image_size: square image side, pixels.
      seed: base seed; car k is drawn from the stream (seed, k).
      train_views_per_object: training views per car (1: the single-view setting), each at a
        uniform random azimuth over 360 deg and a random elevation in `elevation_range_deg`.
      eval_views_per_object: held-out views per car, each at an angle in `eval_angle_range_deg`
        from the first training view.
      camera_distance: distance of every camera from the origin, object units (> 1). At 4.0 with
        the default focal factor a car (inside a sphere of radius 0.95) fills most of the image
        and never leaves it.
      focal_factor: focal length = focal_factor x image width (pixels), principal point at the
        centre.
      elevation_range_deg: (min, max) elevation of every camera above the horizontal plane
        through the origin, degrees (positive: above, looking down at the roof).
      eval_angle_range_deg: (min, max) angle between the directions from the origin to the
        first training camera and to each held-out camera, degrees.
      background_color: the constant sRGB background colour in [0, 1] of every image.
      vary_lighting: vary the light direction and ambient level per car (else a fixed light).
    """

    num_objects: int = 16
    image_size: int = 64
    seed: int = 0
    train_views_per_object: int = 1
    eval_views_per_object: int = 2
    camera_distance: float = 4.0
    focal_factor: float = 2.0
    elevation_range_deg: tuple[float, float] = (5.0, 35.0)
    eval_angle_range_deg: tuple[float, float] = (25.0, 60.0)
    background_color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    vary_lighting: bool = True

    def __post_init__(self):
        generation.check_common_fields(self)
        if len(self.eval_angle_range_deg) != 2:
            raise ValueError(
                f"eval_angle_range_deg must be (min, max), got {tuple(self.eval_angle_range_deg)}"
            )
        low, high = self.eval_angle_range_deg
        if not 0.0 <= low <= high <= 180.0:
            raise ValueError(
                f"eval_angle_range_deg must be (min, max) with 0 <= min <= max <= 180, got "
                f"{(low, high)}"
            )
        # A held-out camera at angle a from the training camera, both at elevations in the
        # range, exists when a <= 180 - (e1 + e2) (else it would pass over the pole).
        top = max(abs(e) for e in self.elevation_range_deg)
        if high + 2.0 * top > 180.0:
            raise ValueError(
                f"eval_angle_range_deg max ({high}) + 2 x the largest |elevation| ({top}) must "
                "be <= 180"
            )
        object.__setattr__(
            self, "eval_angle_range_deg", tuple(float(v) for v in self.eval_angle_range_deg)
        )


@dataclasses.dataclass(frozen=True)
class CarParams:
    """One car: its primitives (named by `PART_NAMES`) and its light.

    Attributes:
      primitives: the solids, in `PART_NAMES` order.
      lighting: the light, fixed in the world.
    """

    primitives: primitives.Primitives
    lighting: shading.Lighting


def sample_object(rng: np.random.Generator, vary_lighting: bool = True) -> CarParams:
    """Draws one toy car.

    Args:
      rng: the car's random stream (`generation.object_rng(seed, k, 0)`).
      vary_lighting: vary the light direction and ambient level (else fixed ones).

    Returns:
      `CarParams` whose bounding sphere around the origin has radius 0.95.
    """
    u = rng.uniform
    box, cyl, ell = primitives.BOX, primitives.CYLINDER, primitives.ELLIPSOID
    parts: dict[str, tuple] = {}  # name -> (kind, centre, rotation, sizes, colour)

    paint = _PAINTS[rng.choice(len(_PAINTS), p=_PAINT_WEIGHTS)]
    paint = np.clip(paint + rng.normal(0.0, 0.03, 3), 0.0, 1.0)

    # Dimensions in units of the car's length (scaled into the bounding sphere at the end).
    length = 1.0
    width = u(0.40, 0.50)
    wheel_radius = u(0.09, 0.125)
    wheel_half_width = u(0.045, 0.06)
    clearance = wheel_radius * u(0.5, 0.9)  # ground to the body's underside
    body_height = u(0.14, 0.22)
    cabin_length = u(0.38, 0.68)
    cabin_height = u(0.11, 0.18)
    cabin_width = width * u(0.78, 0.92)
    cabin_shift = u(-0.04, 0.16) * (1.0 - cabin_length)  # towards the back (+z)
    wheelbase_inset = u(0.15, 0.22)

    ground = 0.0  # world y of the ground (down is +y)
    body_y = ground - clearance - 0.5 * body_height
    identity = np.eye(3)
    parts["body"] = (
        box,
        [0.0, body_y, 0.0],
        identity,
        [0.5 * width, 0.5 * body_height, 0.5 * length],
        paint,
    )
    cabin_y = body_y - 0.5 * body_height - 0.5 * cabin_height
    parts["cabin"] = (
        box,
        [0.0, cabin_y, cabin_shift],
        identity,
        [0.5 * cabin_width, 0.5 * cabin_height, 0.5 * cabin_length],
        np.clip(_GLASS + rng.normal(0.0, 0.02, 3), 0.0, 1.0),
    )
    roof_half = 0.06 * cabin_height + 0.004
    parts["roof"] = (
        box,
        [0.0, cabin_y - 0.5 * cabin_height - roof_half + 0.002, cabin_shift],
        identity,
        [0.5 * cabin_width + 0.01, roof_half, 0.5 * cabin_length + 0.01],
        paint,
    )
    # Wheels: cylinders whose local y axis is the world x axis, sticking out of the body a bit.
    axle = primitives.rotation(z=0.5 * np.pi)
    wheel_x = 0.5 * width - 0.6 * wheel_half_width
    wheel_z = 0.5 * length - wheelbase_inset
    for end, z in (("front", -wheel_z), ("rear", wheel_z)):
        for side, sign in (("right", -1.0), ("left", 1.0)):
            center = [sign * wheel_x, ground - wheel_radius, z]
            parts[f"wheel_{end}_{side}"] = (
                cyl,
                center,
                axle,
                [wheel_radius, wheel_half_width, wheel_radius],
                _TYRE,
            )
            parts[f"hub_{end}_{side}"] = (
                cyl,
                center,
                axle,
                [0.55 * wheel_radius, wheel_half_width + 0.008, 0.55 * wheel_radius],
                _HUB,
            )
    # Lights: half sunk into the front and back faces of the body.
    light_x = 0.5 * width * u(0.55, 0.75)
    light_y = body_y - 0.15 * body_height
    for side, sign in (("right", -1.0), ("left", 1.0)):
        parts[f"headlight_{side}"] = (
            ell,
            [sign * light_x, light_y, -0.5 * length],
            identity,
            [0.08 * width, 0.18 * body_height, 0.025],
            _HEADLIGHT,
        )
        parts[f"taillight_{side}"] = (
            box,
            [sign * light_x, light_y, 0.5 * length],
            identity,
            [0.09 * width, 0.12 * body_height, 0.012],
            _TAILLIGHT,
        )

    kinds, centers, rotations, sizes, colors = zip(*(parts[name] for name in PART_NAMES))
    centers = np.asarray(centers, np.float64)
    sizes = np.asarray(sizes, np.float64)
    # Centre the car's vertical extent (roof top to ground) on the origin, then scale it into
    # the bounding sphere.
    top = cabin_y - 0.5 * cabin_height - 2.0 * roof_half
    centers[:, 1] -= 0.5 * (top + ground)
    prims = primitives.make_primitives(kinds, centers, rotations, sizes, colors)
    scale = _EXTENT / float(primitives.bounding_radii(prims).max())
    prims = dataclasses.replace(prims, centers=prims.centers * scale, sizes=prims.sizes * scale)

    if vary_lighting:
        light = np.array([u(-0.6, 0.6), -1.0, u(-0.6, 0.6)])
        ambient = u(0.4, 0.55)
    else:
        light, ambient = np.array([-0.3, -1.0, -0.4]), 0.45
    return CarParams(prims, shading.Lighting(light / np.linalg.norm(light), float(ambient)))


def object_params(config: CarsConfig, object_id: int) -> CarParams:
    """The car of object `object_id` (independent of `num_objects` and of the views)."""
    return sample_object(generation.object_rng(config.seed, object_id, 0), config.vary_lighting)


def view_angles(config: CarsConfig, object_id: int) -> list[tuple[str, float, float]]:
    """(split, azimuth, elevation) in radians of every view of a car, training views first.

    Azimuth is the orbit yaw of `cameras.orbit_pose` in [-pi, pi); elevation its pitch.
    """
    rng = generation.object_rng(config.seed, object_id, 1)
    low, high = np.radians(config.elevation_range_deg)
    views = []
    for _ in range(config.train_views_per_object):
        views.append(("train", rng.uniform(-np.pi, np.pi), rng.uniform(low, high)))
    _, yaw0, pitch0 = views[0]
    angle_low, angle_high = np.radians(config.eval_angle_range_deg)
    for i in range(config.eval_views_per_object):
        angle = rng.uniform(angle_low, angle_high)
        # An elevation that can be reached at this angle, then the azimuth offset that makes the
        # angle exact (spherical law of cosines).
        pitch = rng.uniform(max(low, pitch0 - angle), min(high, pitch0 + angle))
        cos_offset = (np.cos(angle) - np.sin(pitch0) * np.sin(pitch)) / (
            np.cos(pitch0) * np.cos(pitch)
        )
        offset = np.arccos(np.clip(cos_offset, -1.0, 1.0))
        sign = 1.0 if i % 2 == 0 else -1.0
        yaw = (yaw0 + sign * offset + np.pi) % (2.0 * np.pi) - np.pi
        views.append(("eval", yaw, pitch))
    return [(split, float(yaw), float(pitch)) for split, yaw, pitch in views]


def render_view(params: CarParams, config: CarsConfig, cam: camera.Camera, size: int) -> dict:
    """Renders one square view of a car on the constant background (`rendering.render_view`)."""
    return rendering.render_view(
        params.primitives,
        params.lighting,
        np.asarray(config.background_color),
        cam.intrinsics,
        cam.world_to_camera,
        size,
        size,
    )


def generate(config: CarsConfig) -> Iterator[records.ImageRecord]:
    """Yields every image: per car its training views, then its held-out views.

    Records carry image, mask, depth, intrinsics, world_to_camera, latent_id = object_id,
    view_id, split and a source such as "synthetic/cars/obj0003/view01" (no keypoints).
    """
    size = config.image_size
    intrinsics = camera.default_intrinsics(size, size, config.focal_factor)
    for object_id in range(config.num_objects):
        params = object_params(config, object_id)
        for view_id, (split, yaw, pitch) in enumerate(view_angles(config, object_id)):
            pose = cameras.orbit_pose(yaw, pitch, config.camera_distance).astype(np.float32)
            view = render_view(params, config, camera.Camera(intrinsics, pose), size)
            yield generation.view_record(
                view, intrinsics, pose, object_id, view_id, split, "synthetic/cars"
            )


def dataset_metadata(config: CarsConfig) -> dict[str, Any]:
    """dataset.json keys of a car data set: `generation.base_metadata` (with
    `constant_background`) and `part_names`."""
    metadata = generation.base_metadata("cars", config, config.background_color)
    metadata["part_names"] = list(PART_NAMES)
    return metadata


def benchmark_cars(peak_gflops: float, num_objects: int = 20, image_size: int = 64) -> None:
    """Prints `synthetic_cars images_per_s=...` for 3 views of `num_objects` cars (60 images) at
    `image_size` (64) on this process."""
    del peak_gflops  # numpy on one core; a ratio to the TF matmul peak means nothing here
    generation.benchmark_class(
        "synthetic_cars",
        generate,
        CarsConfig(num_objects=num_objects, image_size=image_size, eval_views_per_object=2),
        CarsConfig(num_objects=1, image_size=8),
        target_images_per_s=50,
    )
