"""Procedural stylised heads with full ground truth: the built-in data set (DESIGN.md section 7).

Every head is a handful of analytic ellipsoids in the canonical frame (world +y down, the face
looking towards -z, everything inside the unit sphere): a head, a hair cap (a larger ellipsoid
clipped by a plane, so it covers the top and the back), two ears, two eyes (white sclera, coloured
iris, dark pupil), two eyebrows, a nose and a mouth. Sizes, positions and colours vary per object;
shading is Lambertian plus ambient under a light fixed in the world per object, so the colour of
a surface point does not depend on the view (as the model assumes). The background is an
environment at infinity: a solid colour or a gradient over the world ray direction, per object,
so every view of an object sees the same environment (a latent-conditioned background field
can explain it).

Rendering is the shared exact ray casting of `rendering` / `primitives` (closed-form
ray/ellipsoid intersection, the nearest hit wins) with the orbit cameras of `cameras`.

Per object: `train_views_per_object` training views (the first at a random pose within
+-`train_yaw_spread_deg` / +-`train_pitch_spread_deg`, like the pose spread of a face data set;
more views spread over the yaw / pitch range for multi-view training) and
`eval_views_per_object` held-out views with yaws evenly covering the range. All views of an
object share `latent_id = object_id`. Object k depends only on (seed, k), never on how many
objects or views are generated.

Keypoints (order everywhere): right-eye outer corner (image left in the frontal view, Face Mesh
33), left-eye outer corner (263), nose tip (1), mouth corners (61, 291). They lie on the surface
of the primitives and are visible from the frontal view by construction.
"""

import dataclasses
import functools
from collections.abc import Iterator
from typing import Any

import numpy as np

from tfglo.data import records
from tfglo.data.synthetic import cameras, generation, primitives, rendering, shading
from tfglo.geometry import camera

# The camera helpers that were first written here; callers keep using them from this module.
orbit_pose = cameras.orbit_pose
view_camera = cameras.view_camera
pixel_rays = cameras.pixel_rays
project_points = cameras.project_points

KEYPOINT_NAMES = (
    "right_eye_outer",
    "left_eye_outer",
    "nose_tip",
    "mouth_right",
    "mouth_left",
)
# Face Mesh landmark indices of the keypoints above (the camera fit uses the same five).
KEYPOINT_FACE_MESH_INDICES = (33, 263, 1, 61, 291)

# Primitive names, in the order of the `HeadParams` arrays. "right" is the subject's right: world
# -x, the image left of the frontal view.
PART_NAMES = (
    "head",
    "hair",
    "ear_right",
    "ear_left",
    "sclera_right",
    "sclera_left",
    "iris_right",
    "iris_left",
    "pupil_right",
    "pupil_left",
    "brow_right",
    "brow_left",
    "nose",
    "mouth",
)
_PART = {name: i for i, name in enumerate(PART_NAMES)}

# Largest extent of any primitive from the origin; the object is scaled down to fit.
_MAX_EXTENT = 0.97
# Origins of the orthographic frontal rays that place keypoints (far in front of the face).
_FRONTAL_Z = -10.0

# Palettes in gamma-encoded sRGB; each object picks a random blend of two neighbours.
_SKIN_TONES = np.array(
    [
        [0.98, 0.84, 0.74],
        [0.93, 0.74, 0.61],
        [0.84, 0.63, 0.48],
        [0.70, 0.50, 0.36],
        [0.53, 0.36, 0.25],
        [0.38, 0.25, 0.17],
    ]
)
# Hair: black, dark brown, brown, light brown, blond, auburn, grey (picked, not blended).
_HAIR_COLORS = np.array(
    [
        [0.07, 0.06, 0.05],
        [0.20, 0.12, 0.07],
        [0.36, 0.22, 0.11],
        [0.55, 0.40, 0.24],
        [0.82, 0.68, 0.40],
        [0.58, 0.22, 0.08],
        [0.66, 0.66, 0.64],
    ]
)
_HAIR_WEIGHTS = np.array([0.24, 0.22, 0.18, 0.12, 0.1, 0.06, 0.08])
_IRIS_COLORS = np.array(
    [
        [0.33, 0.19, 0.09],
        [0.20, 0.40, 0.70],
        [0.25, 0.48, 0.28],
        [0.45, 0.52, 0.58],
        [0.50, 0.38, 0.17],
    ]
)
_SCLERA_COLOR = np.array([0.95, 0.95, 0.92])
_PUPIL_COLOR = np.array([0.03, 0.03, 0.03])
_LIP_COLOR = np.array([0.62, 0.22, 0.22])


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Settings of the synthetic data set.

    Attributes:
      num_objects: number of heads (each owns one latent).
      image_size: square image side, pixels.
      seed: base seed; object k is drawn from the stream (seed, k).
      train_views_per_object: training views per object (1: the single-view setting; more: the
        multi-view mode). The first is at a random pose within the training spread below; the
        others are spread over the yaw / pitch range.
      eval_views_per_object: held-out views per object; their yaws cover `yaw_range_deg` evenly
        (endpoints included), their pitches are random in `pitch_range_deg`.
      camera_distance: distance of every camera from the origin, object units (> 1, outside the
        unit sphere that holds the object).
      focal_factor: focal length = focal_factor x image width (pixels), principal point at the
        centre (`camera.default_intrinsics`).
      yaw_range_deg: (min, max) yaw of the held-out and extra training views, degrees (positive
        yaw moves the camera towards +x).
      pitch_range_deg: (min, max) pitch of those views, degrees (positive raises the camera).
      train_yaw_spread_deg: the first training view's yaw is uniform in +- this, degrees. The
        class's 3D shape is learnt from identities seen at different poses (face data sets span
        about +-30 deg of yaw): with near-frontal views only, depth is unconstrained.
      train_pitch_spread_deg: the first training view's pitch is uniform in +- this, degrees.
      vary_lighting: vary the light direction and ambient level per object (else a fixed light).
    """

    num_objects: int = 16
    image_size: int = 64
    seed: int = 0
    train_views_per_object: int = 1
    eval_views_per_object: int = 4
    camera_distance: float = 4.5
    focal_factor: float = 2.0
    yaw_range_deg: tuple[float, float] = (-35.0, 35.0)
    pitch_range_deg: tuple[float, float] = (-15.0, 15.0)
    train_yaw_spread_deg: float = 30.0
    train_pitch_spread_deg: float = 12.0
    vary_lighting: bool = True

    def __post_init__(self):
        if self.num_objects < 1:
            raise ValueError(f"num_objects must be >= 1, got {self.num_objects}")
        if self.image_size < 4:
            raise ValueError(f"image_size must be >= 4 pixels, got {self.image_size}")
        if self.train_views_per_object < 1:
            raise ValueError(
                f"train_views_per_object must be >= 1, got {self.train_views_per_object}"
            )
        if self.eval_views_per_object < 0:
            raise ValueError(
                f"eval_views_per_object must be >= 0, got {self.eval_views_per_object}"
            )
        if not self.camera_distance > 1.0:
            raise ValueError(
                "camera_distance must be > 1 (outside the unit sphere holding the object), got "
                f"{self.camera_distance}"
            )
        if not self.focal_factor > 0.0:
            raise ValueError(f"focal_factor must be > 0, got {self.focal_factor}")
        for name in ("yaw_range_deg", "pitch_range_deg"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"{name} must be (min, max) with min <= max, got {(low, high)}")
        if abs(self.pitch_range_deg[0]) >= 90.0 or abs(self.pitch_range_deg[1]) >= 90.0:
            raise ValueError(
                f"pitch_range_deg must lie inside (-90, 90), got {self.pitch_range_deg}"
            )
        if not 0.0 <= self.train_yaw_spread_deg <= 180.0:
            raise ValueError(
                f"train_yaw_spread_deg must be in [0, 180], got {self.train_yaw_spread_deg}"
            )
        if not 0.0 <= self.train_pitch_spread_deg < 90.0:
            raise ValueError(
                f"train_pitch_spread_deg must be in [0, 90), got {self.train_pitch_spread_deg}"
            )
        # Tuples survive a JSON round trip as lists; keep the dataclass hashable and comparable.
        object.__setattr__(self, "yaw_range_deg", tuple(float(v) for v in self.yaw_range_deg))
        object.__setattr__(self, "pitch_range_deg", tuple(float(v) for v in self.pitch_range_deg))


@dataclasses.dataclass(frozen=True)
class HeadParams:
    """One head: P ellipsoids (named by `PART_NAMES`), its light and its background.

    A point x lies on primitive p when |R_p^T (x - c_p) / r_p| = 1 and, for the clipped hair cap,
    n_p . x >= h_p. Float64 numpy arrays.

    Attributes:
      centers: `[P, 3]` ellipsoid centres, world (object units).
      radii: `[P, 3]` semi-axes along the local axes.
      rotations: `[P, 3, 3]` local-to-world rotations (columns: local axes in world coordinates).
      colors: `[P, 3]` albedo, sRGB in [0, 1].
      clip_normals: `[P, 3]` half-space normals (zero for unclipped primitives).
      clip_offsets: `[P]` half-space offsets h (a point is kept when n . x >= h).
      clipped: `[P]` bool, whether the primitive is clipped (then its inside surface shows too).
      light_direction: `[3]` unit vector towards the light, world.
      ambient: ambient fraction of the lighting in [0, 1].
      background_colors: `[2, 3]` the two colours of the background gradient (equal: solid).
      background_direction: `[3]` unit world direction along which the gradient runs.
      background_spread: gradient half-width in units of the direction cosine.
    """

    centers: np.ndarray
    radii: np.ndarray
    rotations: np.ndarray
    colors: np.ndarray
    clip_normals: np.ndarray
    clip_offsets: np.ndarray
    clipped: np.ndarray
    light_direction: np.ndarray
    ambient: float
    background_colors: np.ndarray
    background_direction: np.ndarray
    background_spread: float

    @property
    def num_primitives(self) -> int:
        return int(self.centers.shape[0])

    def implicit(self, points: np.ndarray) -> np.ndarray:
        """Ellipsoid implicit values |R^T (x - c) / r|^2, `[P, N]` for points `[N, 3]` (1 on the
        surface)."""
        local = np.matmul(points[None] - self.centers[:, None], self.rotations)
        return np.sum((local / self.radii[:, None]) ** 2, -1)

    def inside_clip(self, points: np.ndarray) -> np.ndarray:
        """Whether points `[N, 3]` satisfy each primitive's half-space, `[P, N]` bool."""
        return self.clip_normals @ points.T >= self.clip_offsets[:, None] - 1e-9

    @functools.cached_property
    def primitives(self) -> primitives.Primitives:
        """The head as generic `primitives.Primitives` (all ellipsoids, in `PART_NAMES` order)."""
        count = self.num_primitives
        return primitives.Primitives(
            kinds=np.full(count, primitives.ELLIPSOID),
            centers=self.centers,
            rotations=self.rotations,
            sizes=self.radii,
            colors=self.colors,
            clip_normals=self.clip_normals,
            clip_offsets=self.clip_offsets,
            clipped=self.clipped,
        )

    @property
    def lighting(self) -> shading.Lighting:
        return shading.Lighting(self.light_direction, self.ambient)


def sample_object(rng: np.random.Generator, vary_lighting: bool = True) -> HeadParams:
    """Draws one stylised head.

    Args:
      rng: the object's random stream (e.g. `np.random.default_rng([seed, k, 0])`).
      vary_lighting: vary the light direction and ambient level (else fixed ones).

    Returns:
      `HeadParams`, inside a sphere of radius 0.97 around the origin.
    """
    u = rng.uniform
    prims: dict[str, tuple] = {}  # name -> (centre, radii, rotation, colour)

    skin = shading.blend(rng, _SKIN_TONES, 0.02)
    hair_color = np.clip(
        _HAIR_COLORS[rng.choice(len(_HAIR_COLORS), p=_HAIR_WEIGHTS)] + rng.normal(0.0, 0.03, 3),
        0.0,
        1.0,
    )
    iris_color = shading.blend(rng, _IRIS_COLORS, 0.03)

    head_c = np.array([0.0, u(0.0, 0.08), 0.0])
    head_r = np.array([u(0.52, 0.62), u(0.70, 0.80), u(0.60, 0.70)])
    prims["head"] = (head_c, head_r, np.eye(3), skin)

    def front_z(x, y, inset=0.0):
        # z of the head's front surface at (x, y), moved `inset` into the head (towards +z).
        q = 1.0 - ((x - head_c[0]) / head_r[0]) ** 2 - ((y - head_c[1]) / head_r[1]) ** 2
        return head_c[2] - head_r[2] * np.sqrt(max(q, 0.0)) + inset

    # Ears: at the sides, about eye-to-nose height, slightly behind the middle, flared outwards.
    ear_r = np.array([u(0.06, 0.08), u(0.12, 0.17), u(0.08, 0.11)])
    ear_y, ear_z, ear_flare = head_c[1] + u(0.0, 0.1), u(0.0, 0.1), u(0.1, 0.35)
    for side, sign in (("right", -1.0), ("left", 1.0)):
        center = np.array([sign * head_r[0] * 0.97, ear_y, ear_z])
        prims[f"ear_{side}"] = (center, ear_r, primitives.rotation(y=sign * ear_flare), skin * 0.93)

    # Eyes: a white sclera half sunk into the face, an iris and a pupil bulging at its front.
    eye_x, eye_y = u(0.17, 0.24), head_c[1] + u(-0.16, -0.06)
    sclera_r = np.array([u(0.085, 0.115), u(0.05, 0.075), u(0.06, 0.08)])
    iris_radius = u(0.55, 0.7) * sclera_r[1]
    gaze = np.array([u(-0.2, 0.2), u(-0.15, 0.15)]) * sclera_r[:2]
    for side, sign in (("right", -1.0), ("left", 1.0)):
        x = sign * eye_x
        sclera_c = np.array([x, eye_y, front_z(x, eye_y, 0.45 * sclera_r[2])])
        prims[f"sclera_{side}"] = (sclera_c, sclera_r, np.eye(3), _SCLERA_COLOR)
        front = sclera_c[2] - sclera_r[2]
        iris_c = np.array([x + gaze[0], eye_y + gaze[1], front + 0.6 * iris_radius])
        iris_r = np.array([iris_radius, iris_radius, iris_radius])
        prims[f"iris_{side}"] = (iris_c, iris_r, np.eye(3), iris_color)
        pupil_c = iris_c - np.array([0.0, 0.0, 0.55 * iris_radius])
        prims[f"pupil_{side}"] = (pupil_c, 0.5 * iris_r, np.eye(3), _PUPIL_COLOR)

    # Eyebrows: flat hair-coloured ellipsoids above the eyes, tilted.
    brow_r = np.array([u(0.09, 0.13), u(0.018, 0.03), u(0.035, 0.05)])
    brow_y = eye_y - sclera_r[1] - u(0.04, 0.08)
    brow_tilt = u(-0.25, 0.2)
    for side, sign in (("right", -1.0), ("left", 1.0)):
        x = sign * (eye_x + u(-0.01, 0.02))
        center = np.array([x, brow_y, front_z(x, brow_y, 0.5 * brow_r[2])])
        prims[f"brow_{side}"] = (
            center,
            brow_r,
            primitives.rotation(z=-sign * brow_tilt),
            hair_color * 0.8,
        )

    # Nose: an ellipsoid elongated along y, tilted so its lower end points forwards (-z).
    nose_y = head_c[1] + u(0.02, 0.12)
    nose_r = np.array([u(0.06, 0.09), u(0.11, 0.16), u(0.10, 0.17)])
    nose_c = np.array([0.0, nose_y, front_z(0.0, nose_y, 0.3 * nose_r[2])])
    nose_color = np.clip(skin * np.array([1.0, 0.93, 0.9]), 0.0, 1.0)
    prims["nose"] = (nose_c, nose_r, primitives.rotation(x=-u(0.1, 0.4)), nose_color)

    # Mouth: a flattened dark ellipsoid sunk slightly into the face below the nose.
    mouth_y = nose_y + nose_r[1] + u(0.06, 0.12)
    mouth_r = np.array([u(0.13, 0.2), u(0.025, 0.05), u(0.05, 0.07)])
    mouth_c = np.array([0.0, mouth_y, front_z(0.0, mouth_y, 0.35 * mouth_r[2])])
    lip = np.clip(0.5 * _LIP_COLOR + 0.5 * skin * np.array([0.8, 0.45, 0.45]), 0.0, 1.0)
    prims["mouth"] = (mouth_c, mouth_r, primitives.rotation(x=u(-0.1, 0.1)), lip)

    # Hair: a larger ellipsoid around the head, kept where n . x >= h (top and back); the plane
    # tilts backwards by `hair_angle` and stays above the eyebrows.
    hair_scale = np.array([u(1.05, 1.14), u(1.04, 1.12), u(1.05, 1.15)])
    hair_c = head_c + np.array([0.0, u(-0.05, 0.02), u(0.0, 0.06)])
    hair_r = head_r * hair_scale
    hair_angle = u(0.35, 0.9)
    normal = np.array([0.0, -np.cos(hair_angle), np.sin(hair_angle)])
    brow_top = np.array([0.0, brow_y - 0.06, front_z(0.0, brow_y - 0.06)])
    offset = max(u(0.0, 0.3), float(normal @ brow_top) + 0.04)
    prims["hair"] = (hair_c, hair_r, np.eye(3), hair_color)

    names = PART_NAMES
    centers = np.stack([prims[n][0] for n in names]).astype(np.float64)
    radii = np.stack([prims[n][1] for n in names]).astype(np.float64)
    rotations = np.stack([prims[n][2] for n in names]).astype(np.float64)
    colors = np.stack([prims[n][3] for n in names]).astype(np.float64)
    clip_normals = np.zeros_like(centers)
    clip_offsets = np.full(len(names), -1.0)
    clipped = np.zeros(len(names), bool)
    clip_normals[_PART["hair"]] = normal
    clip_offsets[_PART["hair"]] = offset
    clipped[_PART["hair"]] = True

    # Fit inside the unit sphere: scale the whole object about the origin when needed (the
    # extent |c| + max(r) bounds every point of an ellipsoid).
    extent = float(np.max(np.linalg.norm(centers, axis=-1) + radii.max(-1)))
    if extent > _MAX_EXTENT:
        scale = _MAX_EXTENT / extent
        centers, radii, clip_offsets = centers * scale, radii * scale, clip_offsets * scale

    if vary_lighting:
        light = np.array([u(-0.7, 0.1), u(-0.8, -0.3), -1.0])
        ambient = u(0.3, 0.5)
    else:
        light, ambient = np.array([-0.4, -0.6, -1.0]), 0.4
    light = light / np.linalg.norm(light)

    color_a = shading.random_color(rng)
    solid = rng.uniform() < 0.4
    color_b = color_a if solid else shading.random_color(rng)
    angle = u(-0.6, 0.6)  # gradient mostly vertical, with some tilt
    direction = np.array([np.sin(angle), np.cos(angle), 0.0])

    return HeadParams(
        centers=centers,
        radii=radii,
        rotations=rotations,
        colors=np.clip(colors, 0.0, 1.0),
        clip_normals=clip_normals,
        clip_offsets=clip_offsets,
        clipped=clipped,
        light_direction=light,
        ambient=float(ambient),
        background_colors=np.stack([color_a, color_b]),
        background_direction=direction,
        background_spread=float(u(0.2, 0.35)),
    )


def trace(params: HeadParams, origins, directions) -> dict[str, np.ndarray]:
    """Casts rays at a head: `primitives.trace` of its ellipsoids (primitive indices follow
    `PART_NAMES`)."""
    return primitives.trace(params.primitives, origins, directions)


def shade(params: HeadParams, primitive: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Lambertian + ambient colours `[N, 3]` in [0, 1] of hits (`primitive` >= 0)."""
    return shading.shade(params.colors, primitive, normals, params.lighting)


def background(params: HeadParams, directions: np.ndarray) -> np.ndarray:
    """Environment colour `[N, 3]` of unit world directions `[N, 3]` (solid or gradient)."""
    return shading.gradient_background(
        directions,
        params.background_colors,
        params.background_direction,
        params.background_spread,
    )


def object_keypoints(params: HeadParams) -> np.ndarray:
    """The 5 semantic keypoints of a head, world `[5, 3]` (order of `KEYPOINT_NAMES`).

    The nose tip is the nose's most forward point (towards -z). The eye and mouth corners are
    where orthographic frontal rays (+z) through the outer ends of the sclera and mouth first
    meet the head, so every keypoint lies on a primitive and is visible from the front.
    """
    centers, radii, rot = params.centers, params.radii, params.rotations
    sclera_r, sclera_l = centers[_PART["sclera_right"]], centers[_PART["sclera_left"]]
    mouth = _PART["mouth"]
    # The mouth's x extent in the world (it may be tilted about x, which keeps x unchanged).
    mouth_half = float(np.linalg.norm((rot[mouth] * radii[mouth])[0]))
    xy = np.array(
        [
            [sclera_r[0] - 0.85 * radii[_PART["sclera_right"], 0], sclera_r[1]],
            [sclera_l[0] + 0.85 * radii[_PART["sclera_left"], 0], sclera_l[1]],
            [centers[mouth, 0] - 0.9 * mouth_half, centers[mouth, 1]],
            [centers[mouth, 0] + 0.9 * mouth_half, centers[mouth, 1]],
        ]
    )
    origins = np.concatenate([xy, np.full([4, 1], _FRONTAL_Z)], -1)
    hits = trace(params, origins, np.tile([0.0, 0.0, 1.0], [4, 1]))
    if np.any(hits["primitive"] < 0):
        raise RuntimeError("a frontal keypoint ray missed the head (generator bug)")
    # Support point of the nose ellipsoid in direction v = -z: c + M M^T v / |M^T v|, M = R r.
    nose = _PART["nose"]
    m = rot[nose] * radii[nose]
    v = np.array([0.0, 0.0, -1.0])
    mv = m.T @ v
    tip = centers[nose] + m @ mv / np.linalg.norm(mv)
    eyes, mouth_corners = hits["points"][:2], hits["points"][2:]
    return np.concatenate([eyes, tip[None], mouth_corners], 0)


def render_view(params: HeadParams, cam: camera.Camera, height: int, width: int) -> dict:
    """Renders one view of a head with its ground truth.

    Args:
      params: the head.
      cam: an unbatched `camera.Camera` (tensors or numpy arrays) outside the unit sphere.
      height, width: image size, pixels.

    Returns:
      dict with image `[H, W, 3]` uint8, mask `[H, W]` uint8 (255 on the head, hair and ears
      included), depth `[H, W]` float32 (camera z of the hit, object units; 0 off the object),
      primitive `[H, W]` int32 (index into `PART_NAMES`, -1 on the background), keypoints_3d
      `[5, 3]` float32 (world), landmarks `[5, 2]` float32 (projected keypoints, pixels),
      keypoint_depth `[5]` float32 (camera z), keypoint_visible `[5]` bool (not occluded).
    """
    intrinsics, pose = rendering.check_camera(cam.intrinsics, cam.world_to_camera)
    view = rendering.render_view(
        params.primitives,
        params.lighting,
        lambda directions: background(params, directions),
        intrinsics,
        pose,
        height,
        width,
    )
    origin = cameras.camera_center(pose)

    keypoints = object_keypoints(params)
    landmarks, keypoint_depth = project_points(intrinsics, pose, keypoints)
    # A keypoint is visible when the ray from the camera to it meets nothing before it.
    to_keypoints = keypoints - origin
    distance = np.linalg.norm(to_keypoints, axis=-1)
    first = trace(params, origin, to_keypoints / distance[:, None])["t"]
    visible = first >= distance - 1e-6

    return {
        **view,
        "keypoints_3d": keypoints.astype(np.float32),
        "landmarks": landmarks.astype(np.float32),
        "keypoint_depth": keypoint_depth.astype(np.float32),
        "keypoint_visible": visible,
    }


object_rng = generation.object_rng


def view_angles(config: SyntheticConfig, object_id: int) -> list[tuple[str, float, float]]:
    """(split, yaw, pitch) in radians of every view of an object, training views first."""
    rng = object_rng(config.seed, object_id, 1)
    yaw_lo, yaw_hi = np.radians(config.yaw_range_deg)
    pitch_lo, pitch_hi = np.radians(config.pitch_range_deg)
    yaw_spread = np.radians(config.train_yaw_spread_deg)
    pitch_spread = np.radians(config.train_pitch_spread_deg)
    views = [
        ("train", rng.uniform(-yaw_spread, yaw_spread), rng.uniform(-pitch_spread, pitch_spread))
    ]
    for _ in range(config.train_views_per_object - 1):
        views.append(("train", rng.uniform(yaw_lo, yaw_hi), rng.uniform(pitch_lo, pitch_hi)))
    count = config.eval_views_per_object
    if count == 1:
        yaws = [rng.uniform(yaw_lo, yaw_hi)]
    else:
        yaws = np.linspace(yaw_lo, yaw_hi, count)
    for yaw in yaws:
        views.append(("eval", float(yaw), rng.uniform(pitch_lo, pitch_hi)))
    return [(split, float(yaw), float(pitch)) for split, yaw, pitch in views]


def object_params(config: SyntheticConfig, object_id: int) -> HeadParams:
    """The head of object `object_id` (independent of `num_objects` and of the views)."""
    return sample_object(object_rng(config.seed, object_id, 0), config.vary_lighting)


def generate(config: SyntheticConfig) -> Iterator[records.ImageRecord]:
    """Yields every image of the data set: per object its training views, then its eval views.

    Records carry image, mask, depth, intrinsics, world_to_camera, landmarks `[5, 2]`,
    keypoints_3d `[5, 3]`, latent_id = object_id, view_id, split and a source such as
    "synthetic/obj0003/view01".
    """
    size = config.image_size
    intrinsics = camera.default_intrinsics(size, size, config.focal_factor)
    for object_id in range(config.num_objects):
        params = object_params(config, object_id)
        for view_id, (split, yaw, pitch) in enumerate(view_angles(config, object_id)):
            pose = orbit_pose(yaw, pitch, config.camera_distance).astype(np.float32)
            view = render_view(params, camera.Camera(intrinsics, pose), size, size)
            yield generation.view_record(
                view, intrinsics, pose, object_id, view_id, split, "synthetic"
            )


def dataset_metadata(config: SyntheticConfig) -> dict[str, Any]:
    """dataset.json keys describing a synthetic data set (for `DatasetWriter.metadata`)."""
    metadata = generation.base_metadata("heads", config, constant_background=None)
    metadata["keypoint_names"] = list(KEYPOINT_NAMES)
    metadata["keypoint_face_mesh_indices"] = list(KEYPOINT_FACE_MESH_INDICES)
    return metadata


def benchmark_synthetic(peak_gflops: float, num_objects: int = 20, image_size: int = 64) -> None:
    """Prints `synthetic images_per_s=...` for 5 views of `num_objects` heads (100 images) at
    `image_size` (64) on this process."""
    del peak_gflops  # numpy on one core; a ratio to the TF matmul peak means nothing here
    generation.benchmark_class(
        "synthetic",
        generate,
        SyntheticConfig(num_objects=num_objects, image_size=image_size, eval_views_per_object=4),
        SyntheticConfig(num_objects=1, image_size=8),
        target_images_per_s=50,
    )
