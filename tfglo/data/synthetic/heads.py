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

Rendering is vectorised numpy ray casting with the closed-form ray/ellipsoid intersection; the
nearest hit wins. The per-pixel rays, camera poses and projections use the package's camera
convention (`tfglo.camera`) re-written in a few lines of numpy for speed; tests cross-check them
against `camera.rays_from_pixels`, `camera.look_at` and `camera.project`.

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
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from tfglo.data import records
from tfglo.geometry import camera
from tfglo.utils import benchmarking

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


def _rotation(x: float = 0.0, y: float = 0.0, z: float = 0.0) -> np.ndarray:
    """Rotation R_z R_y R_x `[3, 3]` from angles about the world axes, radians."""
    cx, sx, cy, sy, cz, sz = np.cos(x), np.sin(x), np.cos(y), np.sin(y), np.cos(z), np.sin(z)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _blend(rng: np.random.Generator, palette: np.ndarray, jitter: float) -> np.ndarray:
    """A random blend of two neighbouring palette colours plus a small jitter, in [0, 1]."""
    i = rng.integers(len(palette) - 1)
    w = rng.uniform()
    color = (1 - w) * palette[i] + w * palette[i + 1]
    return np.clip(color + rng.normal(0.0, jitter, 3), 0.0, 1.0)


def _hsv_color(rng: np.random.Generator) -> np.ndarray:
    """A random colour of moderate saturation (backgrounds), sRGB `[3]`."""
    hue = rng.uniform()
    saturation = rng.uniform(0.1, 0.7)
    value = rng.uniform(0.25, 0.95)
    k = (np.array([5.0, 3.0, 1.0]) + hue * 6.0) % 6.0
    return value - value * saturation * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


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

    skin = _blend(rng, _SKIN_TONES, 0.02)
    hair_color = np.clip(
        _HAIR_COLORS[rng.choice(len(_HAIR_COLORS), p=_HAIR_WEIGHTS)] + rng.normal(0.0, 0.03, 3),
        0.0,
        1.0,
    )
    iris_color = _blend(rng, _IRIS_COLORS, 0.03)

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
        prims[f"ear_{side}"] = (center, ear_r, _rotation(y=sign * ear_flare), skin * 0.93)

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
        prims[f"brow_{side}"] = (center, brow_r, _rotation(z=-sign * brow_tilt), hair_color * 0.8)

    # Nose: an ellipsoid elongated along y, tilted so its lower end points forwards (-z).
    nose_y = head_c[1] + u(0.02, 0.12)
    nose_r = np.array([u(0.06, 0.09), u(0.11, 0.16), u(0.10, 0.17)])
    nose_c = np.array([0.0, nose_y, front_z(0.0, nose_y, 0.3 * nose_r[2])])
    nose_color = np.clip(skin * np.array([1.0, 0.93, 0.9]), 0.0, 1.0)
    prims["nose"] = (nose_c, nose_r, _rotation(x=-u(0.1, 0.4)), nose_color)

    # Mouth: a flattened dark ellipsoid sunk slightly into the face below the nose.
    mouth_y = nose_y + nose_r[1] + u(0.06, 0.12)
    mouth_r = np.array([u(0.13, 0.2), u(0.025, 0.05), u(0.05, 0.07)])
    mouth_c = np.array([0.0, mouth_y, front_z(0.0, mouth_y, 0.35 * mouth_r[2])])
    lip = np.clip(0.5 * _LIP_COLOR + 0.5 * skin * np.array([0.8, 0.45, 0.45]), 0.0, 1.0)
    prims["mouth"] = (mouth_c, mouth_r, _rotation(x=u(-0.1, 0.1)), lip)

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

    color_a = _hsv_color(rng)
    solid = rng.uniform() < 0.4
    color_b = color_a if solid else _hsv_color(rng)
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
    """Casts rays at a head: the nearest hit over all primitives.

    Args:
      params: the head.
      origins: `[3]` (shared) or `[N, 3]` ray origins, world, outside every primitive.
      directions: `[N, 3]` ray directions, world (need not be unit; t is in their units).

    Returns:
      dict with t `[N]` (ray parameter of the hit, inf on a miss), primitive `[N]` int (index
      into `PART_NAMES`, -1 on a miss), points `[N, 3]` and normals `[N, 3]` (unit, facing the
      ray; zeros on a miss).
    """
    origins = np.asarray(origins, np.float64)
    directions = np.asarray(directions, np.float64)
    inv_r = 1.0 / params.radii  # [P, 3]
    rot = params.rotations
    # Map each ray into each ellipsoid's unit-sphere frame: o' = R^T (o - c) / r, d' = R^T d / r.
    if origins.ndim == 1:
        o_local = np.einsum("pi,pij->pj", origins - params.centers, rot)[:, None] * inv_r[:, None]
    else:
        o_local = np.matmul(origins[None] - params.centers[:, None], rot) * inv_r[:, None]
    d_local = np.matmul(directions[None], rot) * inv_r[:, None]  # [P, N, 3]
    a = np.sum(d_local * d_local, -1)
    b = np.sum(o_local * d_local, -1)
    c = np.sum(o_local * o_local, -1) - 1.0
    disc = b * b - a * c
    root = np.sqrt(np.maximum(disc, 0.0))
    t0 = (-b - root) / a
    t1 = (-b + root) / a
    valid = disc > 0.0
    # Half-space test along the ray: n . (o + t d) = n . o + t n . d.
    n_o = (origins @ params.clip_normals.T).T  # [P] or [P, N]
    if n_o.ndim == 1:
        n_o = n_o[:, None]
    n_d = (directions @ params.clip_normals.T).T  # [P, N]
    h = params.clip_offsets[:, None]
    eps = 1e-9
    hit0 = valid & (t0 > eps) & (n_o + t0 * n_d >= h)
    # A clipped primitive is an open shell: where its outer side is cut away, the ray may still
    # meet its inner side (hair seen behind the head near the silhouette).
    hit1 = valid & params.clipped[:, None] & (t1 > eps) & (n_o + t1 * n_d >= h)
    t = np.where(hit0, t0, np.where(hit1, t1, np.inf))  # [P, N]
    primitive = np.argmin(t, 0)
    rays = np.arange(t.shape[1])
    t_hit = t[primitive, rays]
    miss = ~np.isfinite(t_hit)
    primitive = np.where(miss, -1, primitive)
    t_safe = np.where(miss, 0.0, t_hit)
    points = origins + t_safe[:, None] * directions
    # Normal = gradient of the implicit function: R (R^T (x - c) / r^2).
    p = np.maximum(primitive, 0)
    local = np.einsum("ni,nij->nj", points - params.centers[p], rot[p]) * inv_r[p] ** 2
    normals = np.einsum("nij,nj->ni", rot[p], local)
    normals /= np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-12)
    facing = np.sign(-np.sum(normals * directions, -1, keepdims=True))
    normals = np.where(miss[:, None], 0.0, normals * np.where(facing == 0, 1.0, facing))
    return {"t": t_hit, "primitive": primitive, "points": points, "normals": normals}


def shade(params: HeadParams, primitive: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Lambertian + ambient colours `[N, 3]` in [0, 1] of hits (`primitive` >= 0)."""
    lambert = np.maximum(normals @ params.light_direction, 0.0)
    light = params.ambient + (1.0 - params.ambient) * lambert
    return params.colors[np.maximum(primitive, 0)] * light[:, None]


def background(params: HeadParams, directions: np.ndarray) -> np.ndarray:
    """Environment colour `[N, 3]` of unit world directions `[N, 3]` (solid or gradient)."""
    s = directions @ params.background_direction
    w = np.clip(0.5 + 0.5 * s / params.background_spread, 0.0, 1.0)[:, None]
    return (1.0 - w) * params.background_colors[0] + w * params.background_colors[1]


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


def orbit_pose(yaw: float, pitch: float, distance: float) -> np.ndarray:
    """World-to-camera `[3, 4]` (float64) of a camera on the orbit looking at the origin.

    The numpy twin of `camera.look_at(camera.orbit_eyes(yaw, pitch, distance))`: yaw 0, pitch 0
    is the frontal camera at (0, 0, -distance) with identity rotation; positive yaw moves it
    towards +x, positive pitch raises it (towards -y). Angles in radians.
    """
    eye = distance * np.array(
        [np.cos(pitch) * np.sin(yaw), -np.sin(pitch), -np.cos(pitch) * np.cos(yaw)]
    )
    forward = -eye / np.linalg.norm(eye)
    up = np.array([0.0, -1.0, 0.0])
    right = np.cross(-up, forward)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rotation = np.stack([right, down, forward])
    return np.concatenate([rotation, (-rotation @ eye)[:, None]], -1)


def view_camera(
    yaw: float, pitch: float, distance: float, image_size: int, focal_factor: float = 2.0
) -> camera.Camera:
    """A `camera.Camera` (float32 tensors) on the orbit: default intrinsics, `orbit_pose`."""
    return camera.make_camera(
        camera.default_intrinsics(image_size, image_size, focal_factor),
        orbit_pose(yaw, pitch, distance).astype(np.float32),
    )


def pixel_rays(intrinsics, world_to_camera, height: int, width: int):
    """Rays through every pixel centre (numpy twin of `camera.image_rays`).

    Returns:
      origin `[3]` (the camera centre), unit directions `[H * W, 3]`, and the camera z of each
      unit direction `[H * W]` (so a hit at distance t has depth t * z).
    """
    fx, fy, cx, cy = np.asarray(intrinsics, np.float64)
    pose = np.asarray(world_to_camera, np.float64)
    rotation, translation = pose[:, :3], pose[:, 3]
    x, y = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    d_cam = np.stack([(x - cx) / fx, (y - cy) / fy, np.ones_like(x)], -1).reshape(-1, 3)
    d_cam /= np.linalg.norm(d_cam, axis=-1, keepdims=True)
    return -rotation.T @ translation, d_cam @ rotation, d_cam[:, 2]


def project_points(intrinsics, world_to_camera, points) -> tuple[np.ndarray, np.ndarray]:
    """Numpy twin of `camera.project`: pixels `[N, 2]` and camera depth `[N]` of points `[N, 3]`."""
    fx, fy, cx, cy = np.asarray(intrinsics, np.float64)
    pose = np.asarray(world_to_camera, np.float64)
    cam = np.asarray(points, np.float64) @ pose[:, :3].T + pose[:, 3]
    pixels = np.stack([fx * cam[:, 0] / cam[:, 2] + cx, fy * cam[:, 1] / cam[:, 2] + cy], -1)
    return pixels, cam[:, 2]


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
    intrinsics = np.asarray(cam.intrinsics, np.float64)
    pose = np.asarray(cam.world_to_camera, np.float64)
    if intrinsics.shape != (4,) or pose.shape != (3, 4):
        raise ValueError(
            f"render_view needs one unbatched camera, got intrinsics {intrinsics.shape} and "
            f"world_to_camera {pose.shape}"
        )
    origin, directions, z_per_t = pixel_rays(intrinsics, pose, height, width)
    # Only rays that meet the unit sphere can hit the head (it lies inside): trace those alone.
    b = directions @ origin
    candidates = np.flatnonzero(b * b - (origin @ origin - 1.0) > 0.0)
    hits = trace(params, origin, directions[candidates])
    primitive = np.full(len(directions), -1)
    primitive[candidates] = hits["primitive"]
    hit = primitive >= 0
    rgb = background(params, directions)
    rgb[candidates] = np.where(
        hit[candidates, None], shade(params, hits["primitive"], hits["normals"]), rgb[candidates]
    )
    depth = np.zeros(len(directions))
    depth[candidates] = np.where(hits["primitive"] >= 0, hits["t"] * z_per_t[candidates], 0.0)

    keypoints = object_keypoints(params)
    landmarks, keypoint_depth = project_points(intrinsics, pose, keypoints)
    # A keypoint is visible when the ray from the camera to it meets nothing before it.
    to_keypoints = keypoints - origin
    distance = np.linalg.norm(to_keypoints, axis=-1)
    first = trace(params, origin, to_keypoints / distance[:, None])["t"]
    visible = first >= distance - 1e-6

    return {
        "image": np.round(np.clip(rgb, 0.0, 1.0) * 255.0)
        .astype(np.uint8)
        .reshape(height, width, 3),
        "mask": np.where(hit, 255, 0).astype(np.uint8).reshape(height, width),
        "depth": depth.astype(np.float32).reshape(height, width),
        "primitive": primitive.astype(np.int32).reshape(height, width),
        "keypoints_3d": keypoints.astype(np.float32),
        "landmarks": landmarks.astype(np.float32),
        "keypoint_depth": keypoint_depth.astype(np.float32),
        "keypoint_visible": visible,
    }


def object_rng(seed: int, object_id: int, stream: int) -> np.random.Generator:
    """The random stream of one object: 0 for its shape and colours, 1 for its views."""
    return np.random.default_rng([seed, object_id, stream])


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
            yield records.ImageRecord(
                image=view["image"],
                intrinsics=intrinsics,
                world_to_camera=pose,
                latent_id=object_id,
                object_id=object_id,
                view_id=view_id,
                source=f"synthetic/obj{object_id:04d}/view{view_id:02d}",
                split=split,
                mask=view["mask"],
                depth=view["depth"],
                landmarks=view["landmarks"],
                keypoints_3d=view["keypoints_3d"],
            )


def dataset_metadata(config: SyntheticConfig) -> dict[str, Any]:
    """dataset.json keys describing a synthetic data set (for `DatasetWriter.metadata`)."""
    return {
        "scene_radius": 1.0,
        "intrinsics_policy": (
            f"fixed: fx = fy = {config.focal_factor} x width, principal point at the image centre"
        ),
        "source_kind": "synthetic",
        "synthetic_config": dataclasses.asdict(config),
        "keypoint_names": list(KEYPOINT_NAMES),
        "keypoint_face_mesh_indices": list(KEYPOINT_FACE_MESH_INDICES),
        "latent_per": "object",
    }


def benchmark_synthetic(peak_gflops: float) -> None:
    """Prints `synthetic images_per_s=...` for 100 images at 64 x 64 on this process."""
    del peak_gflops  # numpy on one core; a ratio to the TF matmul peak means nothing here
    config = SyntheticConfig(num_objects=20, image_size=64, eval_views_per_object=4)
    next(generate(SyntheticConfig(num_objects=1, image_size=8)))  # warm-up
    start = time.perf_counter()
    count = sum(1 for _ in generate(config))
    seconds = time.perf_counter() - start
    benchmarking.report(
        "synthetic",
        images_per_s=count / seconds,
        image_size=64,
        num_images=count,
        target_images_per_s=50,
        meets_target=count / seconds >= 50,
    )
