"""Analytic solids and exact ray casting against them (numpy, float64).

A `Primitives` holds P convex solids, each in its own local frame (centre c, local-to-world
rotation R, three size parameters):

- ellipsoid: semi-axes (a, b, c) along the local axes;
- box: half-extents along the local axes;
- cylinder: radii (r_x, half-height, r_z): an elliptic cylinder along local y, capped at
  y = +-half-height;
- cone: base radii (r_x, half-height, r_z): the apex at local y = -half-height (the top when R is
  the identity, world +y being down), the base disc at y = +half-height.

Any primitive may be clipped by a half-space n . x >= h (world): the part outside is cut away and
the solid becomes an open shell whose inner side shows where the cut lets a ray in (the heads'
hair cap). `trace` returns the nearest hit over all primitives with its unit normal; a ray's
parameter t is in the units of its direction vector.

Each solid meets a line in one interval [t_in, t_out] (they are convex), computed in closed form:
a quadratic for the curved surfaces, slabs for the flat faces (`ray_plane`).
"""

import dataclasses

import numpy as np

ELLIPSOID, BOX, CYLINDER, CONE = 0, 1, 2, 3
KIND_NAMES = ("ellipsoid", "box", "cylinder", "cone")

# Hits closer than this along a ray are ignored (the ray starts on or inside a surface).
_EPS = 1e-9


@dataclasses.dataclass(frozen=True)
class Primitives:
    """P solids (see the module docstring). Float64 numpy arrays.

    Attributes:
      kinds: `[P]` int, one of ELLIPSOID, BOX, CYLINDER, CONE.
      centers: `[P, 3]` centres, world (object units).
      rotations: `[P, 3, 3]` local-to-world rotations (columns: the local axes in world
        coordinates).
      sizes: `[P, 3]` size parameters of each kind (module docstring), object units.
      colors: `[P, 3]` albedo, sRGB in [0, 1].
      clip_normals: `[P, 3]` half-space normals, world (zero for unclipped primitives).
      clip_offsets: `[P]` half-space offsets h (a point is kept when n . x >= h).
      clipped: `[P]` bool, whether the primitive is clipped (then its inner side shows too).
    """

    kinds: np.ndarray
    centers: np.ndarray
    rotations: np.ndarray
    sizes: np.ndarray
    colors: np.ndarray
    clip_normals: np.ndarray
    clip_offsets: np.ndarray
    clipped: np.ndarray

    @property
    def num_primitives(self) -> int:
        return int(self.centers.shape[0])


def make_primitives(kinds, centers, rotations, sizes, colors) -> Primitives:
    """Unclipped `Primitives` from per-primitive lists or arrays (shapes as in `Primitives`).

    Raises:
      ValueError: shapes disagree, a kind is unknown or a size is not positive.
    """
    kinds = np.asarray(kinds, np.int64).reshape(-1)
    count = len(kinds)
    centers = np.asarray(centers, np.float64).reshape(count, 3)
    rotations = np.asarray(rotations, np.float64).reshape(count, 3, 3)
    sizes = np.asarray(sizes, np.float64).reshape(count, 3)
    colors = np.asarray(colors, np.float64).reshape(count, 3)
    if np.any((kinds < 0) | (kinds >= len(KIND_NAMES))):
        raise ValueError(f"unknown primitive kinds {sorted(set(kinds.tolist()))}")
    if not np.all(sizes > 0):
        raise ValueError(f"primitive sizes must be > 0, got {sizes.tolist()}")
    return Primitives(
        kinds=kinds,
        centers=centers,
        rotations=rotations,
        sizes=sizes,
        colors=colors,
        clip_normals=np.zeros((count, 3)),
        clip_offsets=np.full(count, -1.0),
        clipped=np.zeros(count, bool),
    )


def rotation(x: float = 0.0, y: float = 0.0, z: float = 0.0) -> np.ndarray:
    """Rotation R_z R_y R_x `[3, 3]` from angles about the world axes, radians."""
    cx, sx, cy, sy, cz, sz = np.cos(x), np.sin(x), np.cos(y), np.sin(y), np.cos(z), np.sin(z)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def bounding_radii(prims: Primitives) -> np.ndarray:
    """`[P]` radius of a sphere around the world origin that holds each primitive (an upper
    bound: |c| plus the farthest point of the solid from its centre)."""
    sizes = prims.sizes
    reach = np.where(
        prims.kinds == ELLIPSOID,
        sizes.max(-1),
        np.where(
            prims.kinds == BOX,
            np.linalg.norm(sizes, axis=-1),
            np.hypot(np.maximum(sizes[:, 0], sizes[:, 2]), sizes[:, 1]),
        ),
    )
    return np.linalg.norm(prims.centers, axis=-1) + reach


def ray_plane(origins, directions, normal, offset) -> np.ndarray:
    """Ray parameter t where rays meet the plane n . x = h (inf when parallel).

    Args:
      origins: `[..., 3]` ray origins.
      directions: `[..., 3]` ray directions (broadcast against origins).
      normal: `[3]` plane normal (any length; h is in its units).
      offset: plane offset h.

    Returns:
      `[...]` t (may be negative: behind the origin).
    """
    n_d = np.asarray(directions) @ np.asarray(normal, np.float64)
    n_o = np.asarray(origins) @ np.asarray(normal, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (offset - n_o) / n_d
    return np.where(n_d == 0.0, np.inf, t)


def _slab(o, d, half):
    """Interval of t where |o + t d| <= half along one axis (o, d `[K, N]`, half `[K, 1]`).

    A ray parallel to the slab (d = 0) gets (-inf, inf) inside it and an empty interval outside,
    from IEEE division by zero (the signs of the two numerators decide).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        ta = (-half - o) / d
        tb = (half - o) / d
    return np.minimum(ta, tb), np.maximum(ta, tb)


def _ellipsoid_interval(o, d, sizes):
    """o `[K, 1 or N, 3]`, d `[K, N, 3]` local; returns t0, t1, valid `[K, N]`."""
    inv_r = 1.0 / sizes
    o = o * inv_r[:, None]
    d = d * inv_r[:, None]
    a = np.sum(d * d, -1)
    b = np.sum(o * d, -1)
    c = np.sum(o * o, -1) - 1.0
    disc = b * b - a * c
    root = np.sqrt(np.maximum(disc, 0.0))
    t0 = (-b - root) / a
    t1 = (-b + root) / a
    return t0, t1, disc > 0.0


def _box_interval(o, d, sizes):
    o = np.broadcast_to(o, d.shape)
    lo, hi = _slab(o, d, sizes[:, None, :])
    t0, t1 = lo.max(-1), hi.min(-1)
    return t0, t1, t0 < t1


def _quadratic_roots(a, b, c):
    """Sorted roots of a t^2 + 2 b t + c and whether there are two distinct ones."""
    disc = b * b - a * c
    root = np.sqrt(np.maximum(disc, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        r0 = (-b - root) / a
        r1 = (-b + root) / a
    return np.minimum(r0, r1), np.maximum(r0, r1), disc > 0.0


def _cylinder_interval(o, d, sizes):
    o = np.broadcast_to(o, d.shape)
    scale = sizes[:, None, :]
    ox, oz = o[..., 0] / scale[..., 0], o[..., 2] / scale[..., 2]
    dx, dz = d[..., 0] / scale[..., 0], d[..., 2] / scale[..., 2]
    a = dx * dx + dz * dz
    b = ox * dx + oz * dz
    c = ox * ox + oz * oz - 1.0
    q0, q1, two = _quadratic_roots(a, b, c)
    parallel = a < 1e-15  # along the axis: inside the tube everywhere or nowhere
    q0 = np.where(parallel, np.where(c < 0.0, -np.inf, np.inf), q0)
    q1 = np.where(parallel, np.where(c < 0.0, np.inf, -np.inf), q1)
    lo, hi = _slab(o[..., 1], d[..., 1], sizes[:, None, 1])
    t0, t1 = np.maximum(q0, lo), np.minimum(q1, hi)
    return t0, t1, (two | parallel) & (t0 < t1)


def _cone_interval(o, d, sizes):
    # In scaled coordinates X = x / r_x, Z = z / r_z, u = (y + h) / (2 h), the solid is
    # X^2 + Z^2 <= u^2 with 0 <= u <= 1 (one nappe of a double cone, cut by the base).
    o = np.broadcast_to(o, d.shape)
    scale = sizes[:, None, :]
    half = scale[..., 1]
    ox, oz = o[..., 0] / scale[..., 0], o[..., 2] / scale[..., 2]
    dx, dz = d[..., 0] / scale[..., 0], d[..., 2] / scale[..., 2]
    u0 = (o[..., 1] + half) / (2.0 * half)
    du = d[..., 1] / (2.0 * half)
    a = dx * dx + dz * dz - du * du
    b = ox * dx + oz * dz - u0 * du
    c = ox * ox + oz * oz - u0 * u0
    r0, r1, two = _quadratic_roots(a, b, c)
    # a > 0: the line is inside the double cone between the roots (on one nappe: the slab
    # below removes the other one). a < 0: inside outside the roots, one half-line per nappe;
    # keep the one that runs towards u > 0.
    q0 = np.where(a > 0.0, r0, np.where(du > 0.0, r1, -np.inf))
    q1 = np.where(a > 0.0, r1, np.where(du > 0.0, np.inf, r0))
    with np.errstate(divide="ignore", invalid="ignore"):
        ua = -u0 / du
        ub = (1.0 - u0) / du
    flat = du == 0.0
    inside = (u0 >= 0.0) & (u0 <= 1.0)
    lo = np.where(flat, np.where(inside, -np.inf, np.inf), np.minimum(ua, ub))
    hi = np.where(flat, np.where(inside, np.inf, -np.inf), np.maximum(ua, ub))
    t0, t1 = np.maximum(q0, lo), np.minimum(q1, hi)
    # With a < 0 the line always crosses the cone (through the apex when the roots coincide).
    return t0, t1, np.where(a > 0.0, two, a < 0.0) & (t0 < t1)


_INTERVALS = {
    ELLIPSOID: _ellipsoid_interval,
    BOX: _box_interval,
    CYLINDER: _cylinder_interval,
    CONE: _cone_interval,
}


def _ellipsoid_normal(p, sizes, inv_sizes):
    return p * inv_sizes**2


def _box_normal(p, sizes, inv_sizes):
    # The face whose slab the point is closest to leaving.
    axis = np.argmax(np.abs(p) * inv_sizes, -1)
    normal = np.zeros_like(p)
    rows = np.arange(len(p))
    normal[rows, axis] = np.sign(p[rows, axis])
    return normal


def _cylinder_normal(p, sizes, inv_sizes):
    radial = np.hypot(p[:, 0] * inv_sizes[:, 0], p[:, 2] * inv_sizes[:, 2])
    side_gap = np.abs(radial - 1.0) * np.minimum(sizes[:, 0], sizes[:, 2])
    cap_gap = np.abs(np.abs(p[:, 1]) - sizes[:, 1])
    side = np.stack(
        [p[:, 0] * inv_sizes[:, 0] ** 2, np.zeros(len(p)), p[:, 2] * inv_sizes[:, 2] ** 2], -1
    )
    cap = np.stack([np.zeros(len(p)), np.sign(p[:, 1]), np.zeros(len(p))], -1)
    return np.where((side_gap <= cap_gap)[:, None], side, cap)


def _cone_normal(p, sizes, inv_sizes):
    half = sizes[:, 1]
    u = (p[:, 1] + half) / (2.0 * half)
    radial = np.hypot(p[:, 0] * inv_sizes[:, 0], p[:, 2] * inv_sizes[:, 2])
    side_gap = np.abs(radial - u) * np.minimum(sizes[:, 0], sizes[:, 2])
    base_gap = np.abs(p[:, 1] - half)
    # Gradient of X^2 + Z^2 - u^2 (halved).
    side = np.stack(
        [p[:, 0] * inv_sizes[:, 0] ** 2, -u / (2.0 * half), p[:, 2] * inv_sizes[:, 2] ** 2], -1
    )
    base = np.tile([0.0, 1.0, 0.0], [len(p), 1])
    return np.where((side_gap <= base_gap)[:, None], side, base)


_NORMALS = {
    ELLIPSOID: _ellipsoid_normal,
    BOX: _box_normal,
    CYLINDER: _cylinder_normal,
    CONE: _cone_normal,
}


def implicit(prims: Primitives, points) -> np.ndarray:
    """A normalised implicit function of every primitive at points, `[P, N]`.

    Zero on the surface, negative inside, positive outside (in units of the primitive's size,
    not a Euclidean distance): ellipsoid |x / r| - 1; box max_i |x_i| / s_i - 1; cylinder
    max(|(x / r_x, z / r_z)| - 1, |y| / h - 1); cone max(|(x / r_x, z / r_z)| - u, u - 1, -u) with
    u = (y + h) / 2h. Clipping is ignored.

    Args:
      prims: the primitives.
      points: `[N, 3]` world points.
    """
    local = np.matmul(
        np.asarray(points, np.float64)[None] - prims.centers[:, None], prims.rotations
    )
    scaled = local / prims.sizes[:, None]
    radial = np.hypot(scaled[..., 0], scaled[..., 2])
    u = 0.5 * (scaled[..., 1] + 1.0)
    values = {
        ELLIPSOID: np.linalg.norm(scaled, axis=-1) - 1.0,
        BOX: np.abs(scaled).max(-1) - 1.0,
        CYLINDER: np.maximum(radial - 1.0, np.abs(scaled[..., 1]) - 1.0),
        CONE: np.maximum(np.maximum(radial - u, u - 1.0), -u),
    }
    kinds = prims.kinds[:, None]
    out = np.zeros(local.shape[:2])
    for kind, value in values.items():
        out = np.where(kinds == kind, value, out)
    return out


def inside_clip(prims: Primitives, points) -> np.ndarray:
    """Whether points `[N, 3]` satisfy each primitive's half-space, `[P, N]` bool."""
    return prims.clip_normals @ np.asarray(points).T >= prims.clip_offsets[:, None] - 1e-9


def trace(prims: Primitives, origins, directions) -> dict[str, np.ndarray]:
    """Casts rays at the primitives: the nearest hit over all of them.

    Args:
      prims: the primitives.
      origins: `[3]` (shared) or `[N, 3]` ray origins, world, outside every primitive.
      directions: `[N, 3]` ray directions, world (need not be unit; t is in their units).

    Returns:
      dict with t `[N]` (ray parameter of the hit, inf on a miss), primitive `[N]` int (index
      into the primitives, -1 on a miss), points `[N, 3]` and normals `[N, 3]` (unit, facing the
      ray; zeros on a miss).
    """
    origins = np.asarray(origins, np.float64)
    directions = np.asarray(directions, np.float64)
    count = prims.num_primitives
    rot = prims.rotations
    present = [kind for kind in _INTERVALS if np.any(prims.kinds == kind)]
    intervals = []
    for kind in present:
        index = np.flatnonzero(prims.kinds == kind)
        if len(index) == count:  # one kind only (the heads): no gather, no scatter
            index = slice(None)
        # Each ray in each primitive's local frame: o' = R^T (o - c), d' = R^T d.
        if origins.ndim == 1:
            o_local = np.einsum("pi,pij->pj", origins - prims.centers[index], rot[index])[:, None]
        else:
            o_local = np.matmul(origins[None] - prims.centers[index][:, None], rot[index])
        d_local = np.matmul(directions[None], rot[index])  # [K, N, 3]
        intervals.append((index, _INTERVALS[kind](o_local, d_local, prims.sizes[index])))
    if len(intervals) == 1 and isinstance(intervals[0][0], slice):
        t0, t1, valid = intervals[0][1]
    else:
        t0 = np.empty((count, len(directions)))
        t1 = np.empty((count, len(directions)))
        valid = np.empty((count, len(directions)), bool)
        for index, (k0, k1, k_valid) in intervals:
            t0[index], t1[index], valid[index] = k0, k1, k_valid
    if np.any(prims.clip_normals):
        # Half-space test along the ray: n . (o + t d) = n . o + t n . d.
        n_o = (origins @ prims.clip_normals.T).T  # [P] or [P, N]
        if n_o.ndim == 1:
            n_o = n_o[:, None]
        n_d = (directions @ prims.clip_normals.T).T  # [P, N]
        h = prims.clip_offsets[:, None]
        # Missed rays may have infinite t (inf x 0 = nan compares False: still a miss).
        with np.errstate(invalid="ignore"):
            hit0 = valid & (t0 > _EPS) & (n_o + t0 * n_d >= h)
            # A clipped primitive is an open shell: where its outer side is cut away, the ray may
            # still meet its inner side (hair seen behind the head near the silhouette).
            hit1 = valid & prims.clipped[:, None] & (t1 > _EPS) & (n_o + t1 * n_d >= h)
    else:  # nothing is clipped
        hit0 = valid & (t0 > _EPS)
        hit1 = np.zeros_like(hit0)
    t = np.where(hit0, t0, np.where(hit1, t1, np.inf))  # [P, N]
    primitive = np.argmin(t, 0)
    rays = np.arange(t.shape[1])
    t_hit = t[primitive, rays]
    miss = ~np.isfinite(t_hit)
    primitive = np.where(miss, -1, primitive)
    t_safe = np.where(miss, 0.0, t_hit)
    points = origins + t_safe[:, None] * directions
    # Normals in the local frame of the primitive hit, rotated back: R n'.
    p = np.maximum(primitive, 0)
    local = np.einsum("ni,nij->nj", points - prims.centers[p], rot[p])
    inv_sizes = 1.0 / prims.sizes
    local_normals = None
    for kind in present:
        normal = _NORMALS[kind](local, prims.sizes[p], inv_sizes[p])
        if local_normals is None:
            local_normals = normal
        else:
            local_normals = np.where((prims.kinds[p] == kind)[:, None], normal, local_normals)
    normals = np.einsum("nij,nj->ni", rot[p], local_normals)
    normals /= np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-12)
    facing = np.sign(-np.sum(normals * directions, -1, keepdims=True))
    normals = np.where(miss[:, None], 0.0, normals * np.where(facing == 0, 1.0, facing))
    return {"t": t_hit, "primitive": primitive, "points": points, "normals": normals}
