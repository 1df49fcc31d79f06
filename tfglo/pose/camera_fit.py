"""Joint fit of canonical 3D keypoints and per-image cameras from 2D keypoints (DESIGN.md 6).

The unknowns are K canonical 3D points shared by all M images and one rigid pose per image
(axis-angle rotation + translation); intrinsics are fixed. The fit:

1. initialises the canonical points from a generic face template (K = 5 face keypoints, Face
   Mesh order 33, 263, 1, 61, 291) or, for other K, from an affine factorisation of the
   observations (Tomasi-Kanade with a metric upgrade; a planar lift of the first image when that
   fails);
2. gives every image a camera by a small multi-start PnP (no OpenCV): a grid of yaw/pitch starts,
   each completed by a 2D Procrustes alignment (roll, scale -> depth, offset), the best few
   refined by Levenberg-Marquardt, all images and starts at once (batched numpy);
3. refines everything jointly by Levenberg-Marquardt (bundle adjustment). The default solver
   eliminates the cameras with a Schur complement (6x6 blocks per image, a 3K x 3K system for
   the points) and uses analytic Jacobians, so one iteration costs O(M); it reaches the same
   minimum as `scipy.optimize.least_squares` (`solver="scipy"`: trust-region reflective with the
   sparse Jacobian structure and finite differences), which is kept as the reference and is
   ~100x slower (94 s and not converged for 1000 images on 2 cores, against 0.5 s). For faces
   a weak Gaussian prior keeps the canonical points near the template (`shape_prior_std`):
   photos that barely differ in pose cannot see depth, and without it a flat face with cameras
   pitched by tens of degrees fits best;
4. fixes the gauge: keypoint centroid at the origin, eyes along x (Face Mesh 33 at -x, 263 at
   +x), mouth below the eyes (+y, the canonical frame's y points down), face towards -z (the
   frontal camera sits at (0, 0, -d) with identity rotation); for non-face keypoints the mean
   camera rotation becomes the identity instead. For faces the points are then scaled and
   moved so that the head and shoulders a photo crop shows fit the scene's bounding sphere
   (`SPHERE_RADIUS_CM` around `SPHERE_CENTER_CM`), and the translations with them;
5. measures each image's reprojection error (RMS over its keypoints, pixels), drops images whose
   error is an outlier (above median + k * MAD and above a floor) with a reason, and re-fits
   without them. These rounds use a robust loss (soft L1) so that a bad image cannot spread its
   error over the others; the inliers are then refined with plain least squares.

Cameras are OpenCV world-to-camera [R | t] as in `tfglo.geometry.camera` (+x right, +y down,
+z forward).
Pure numpy/scipy: no TensorFlow import.
"""

import dataclasses

import numpy as np
from scipy import optimize, sparse
from scipy.spatial.transform import Rotation

# Face Mesh indices of the 5 semantic keypoints, in the package-wide order.
FACE_KEYPOINT_INDICES = (33, 263, 1, 61, 291)
FACE_KEYPOINT_NAMES = (
    "right_eye_outer",  # Face Mesh 33: the subject's right eye, image left in a frontal view
    "left_eye_outer",  # 263
    "nose_tip",  # 1
    "mouth_right",  # 61
    "mouth_left",  # 291
)

# Generic face template (centimetres) in the canonical frame (+y down, face towards -z): the
# vertices 33, 263, 1, 61, 291 of MediaPipe's canonical face mesh (read from the
# geometry_pipeline_metadata of the bundled face_landmarker.task, which uses +y up and faces +z,
# hence y and z negated here).
FACE_TEMPLATE_CM = np.array(
    [
        [-4.445859, -2.663991, -3.173422],
        [4.445859, -2.663991, -3.173422],
        [0.0, 1.126865, -7.475604],
        [-2.456206, 4.342621, -4.283884],
        [2.456206, 4.342621, -4.283884],
    ],
    np.float64,
)
# Distance from the 5 keypoints' centroid to the farthest point of a typical head, hair
# included (back and top of the skull), in the same centimetres. Used to scale the canonical
# frame so that the whole head lies inside the bounding sphere.
HEAD_RADIUS_CM = 17.0
# The bounding sphere of what a photo crop shows (margin 0.5 around the face box: the head, the
# neck and the top of the shoulders down to ~22 cm below the eyes), in the same centimetres:
# centred 4 cm below and 6 cm behind the keypoints' centroid (about the middle of the head and
# neck), radius 26 cm. The shoulders' outer front (~(+-18, 22, 8) from the centroid) lies 25.5 cm
# from that centre, the top of the hair ~20 cm and the back of the skull ~12 cm. On the 32 photos
# of ../shared/data/faces the share of mask pixels whose rays miss the sphere falls from 9.1 %
# (max 13.9 %; head-only sphere of 17 cm around the centroid) to 0.0 % (issue 16).
SPHERE_RADIUS_CM = 26.0
SPHERE_CENTER_CM = (0.0, 4.0, 6.0)


@dataclasses.dataclass(frozen=True)
class CameraFitConfig:
    """Settings of the keypoint camera fit.

    Attributes:
      scene_radius: radius of the bounding sphere the object must fit in, object units.
      keypoint_rms_radius: RMS distance of the fitted keypoints from their centroid, object units.
        None: for faces, `sphere_radius_cm` of the face template becomes `scene_radius`
        (scene_radius * 4.76 / sphere_radius_cm); otherwise half the scene radius.
      sphere_radius_cm: faces: the bounding sphere's radius in the face template's centimetres:
        SPHERE_RADIUS_CM holds the head and shoulders a photo crop shows (HEAD_RADIUS_CM with
        a zero `sphere_center_cm` holds the head alone, as before issue 16).
      sphere_center_cm: faces: where the sphere's centre (the world origin) lies relative to the
        keypoints' centroid, in template centimetres on the canonical axes (+x towards the
        subject's left, +y down, +z away from the viewer). Non-face keypoints keep their
        centroid at the origin.
      face_template: use the face template and the face gauge; None: when K == 5.
      shape_prior_std: faces: a Gaussian prior keeps the canonical points near the template (after
        a rotation), with this standard deviation per coordinate in units of the keypoints' RMS
        radius; None or 0 disables it. Without it, photos of nearly one pose (depth
        unobservable) give a flat face and cameras pitched by tens of degrees.
      loss: loss of the final refinement of the inliers: "linear" (plain least squares, the
        Levenberg-Marquardt fit of the design), "soft_l1" or "huber" (robust: damp single bad
        keypoints; iteratively reweighted least squares), as in `scipy.optimize.least_squares`.
      outlier_loss: loss of the rounds that find outliers (robust by default, so that one bad
        image does not spread its error over the others and hide).
      robust_scale: residual scale of the robust loss, as a fraction of the image width
        (taken as 2 cx: tfglo centres the principal point); ~ the keypoint noise of a detector.
      solver: "schur" (Levenberg-Marquardt with a Schur complement, analytic Jacobians) or
        "scipy" (`scipy.optimize.least_squares`, method "trf" with the sparse Jacobian pattern).
      max_iterations: iteration budget of one joint refinement (scipy: function evaluations).
      outlier_mad_factor: k in the outlier threshold median + k * 1.4826 * MAD (errors, px).
      outlier_floor: images whose error is at or below this fraction of the image width are
        never outliers.
      max_outlier_rounds: how many times to drop outliers and re-fit.
      min_images_for_structure: with fewer images the canonical points are not optimised (a single
        view cannot see depth): the template (or planar lift) is kept and only cameras are fitted.
      min_inlier_fraction: never drop images so that fewer than this fraction remain.
    """

    scene_radius: float = 1.0
    keypoint_rms_radius: float | None = None
    sphere_radius_cm: float = SPHERE_RADIUS_CM
    sphere_center_cm: tuple[float, float, float] = SPHERE_CENTER_CM
    face_template: bool | None = None
    shape_prior_std: float | None = 0.1
    loss: str = "linear"
    outlier_loss: str = "soft_l1"
    robust_scale: float = 0.0075
    solver: str = "schur"
    max_iterations: int = 200
    outlier_mad_factor: float = 5.0
    outlier_floor: float = 0.01
    max_outlier_rounds: int = 3
    min_images_for_structure: int = 3
    min_inlier_fraction: float = 0.5


@dataclasses.dataclass
class FitResult:
    """Result of `fit_cameras`.

    Attributes:
      canonical_points: `[K, 3]` fitted keypoints in the canonical frame, object units.
      world_to_camera: `[M, 3, 4]` OpenCV [R | t] per image (outliers get a camera fitted against
        the final canonical points, so every image has one).
      intrinsics: `[M, 4]` (fx, fy, cx, cy) used, pixels.
      errors_px: `[M]` RMS reprojection error over each image's keypoints, pixels.
      inliers: `[M]` bool, False for images dropped as outliers.
      outlier_reasons: image index -> why it was dropped.
      median_error_px: median of `errors_px` over inliers.
      max_error_px: maximum of `errors_px` over inliers.
      threshold_px: the last outlier threshold, pixels.
      converged: the final joint refinement met its tolerance (or had nothing to refine).
      rounds: number of joint fits run.
      used_face_template: whether the face template and face gauge were used.
      notes: human-readable remarks (e.g. cameras inside the sphere).
    """

    canonical_points: np.ndarray
    world_to_camera: np.ndarray
    intrinsics: np.ndarray
    errors_px: np.ndarray
    inliers: np.ndarray
    outlier_reasons: dict[int, str]
    median_error_px: float
    max_error_px: float
    threshold_px: float
    converged: bool
    rounds: int
    used_face_template: bool
    notes: list[str] = dataclasses.field(default_factory=list)

    def summary(self, names: list[str] | None = None) -> dict:
        """A JSON-able summary (per-image errors keyed by `names` or by index)."""
        names = names or [str(i) for i in range(len(self.errors_px))]
        return {
            "median_error_px": float(self.median_error_px),
            "max_error_px": float(self.max_error_px),
            "threshold_px": float(self.threshold_px),
            "converged": bool(self.converged),
            "rounds": int(self.rounds),
            "num_inliers": int(self.inliers.sum()),
            "num_outliers": int((~self.inliers).sum()),
            "used_face_template": bool(self.used_face_template),
            "per_image_error_px": {n: round(float(e), 4) for n, e in zip(names, self.errors_px)},
            "outliers": {names[i]: reason for i, reason in sorted(self.outlier_reasons.items())},
            "notes": list(self.notes),
        }


# The accepted values of `CameraFitConfig.loss` / `outlier_loss` and of `solver`.
LOSSES = ("linear", "soft_l1", "huber")
SOLVERS = ("schur", "scipy")


# ----------------------------------------------------------------------------------------------
# Small geometry helpers (numpy, float64).


def _rotations(rotvecs: np.ndarray) -> np.ndarray:
    """`[..., 3]` axis-angle -> `[..., 3, 3]` rotation matrices."""
    rotvecs = np.asarray(rotvecs, np.float64)
    flat = Rotation.from_rotvec(rotvecs.reshape(-1, 3)).as_matrix()
    return flat.reshape(rotvecs.shape[:-1] + (3, 3))


def _rotvecs(rotations: np.ndarray) -> np.ndarray:
    """`[..., 3, 3]` rotation matrices -> `[..., 3]` axis-angle."""
    flat = Rotation.from_matrix(rotations.reshape(-1, 3, 3)).as_rotvec()
    return flat.reshape(rotations.shape[:-2] + (3,))


def _hat(vectors: np.ndarray) -> np.ndarray:
    """`[..., 3]` -> `[..., 3, 3]` cross-product matrices ([v]x w = v x w)."""
    x, y, z = vectors[..., 0], vectors[..., 1], vectors[..., 2]
    zero = np.zeros_like(x)
    return np.stack(
        [np.stack([zero, -z, y], -1), np.stack([z, zero, -x], -1), np.stack([-y, x, zero], -1)],
        -2,
    )


def _camera_points(points, rotations, translations) -> np.ndarray:
    """Camera-frame points `[M, K, 3]` of `[K, 3]` or `[M, K, 3]` world points."""
    return np.einsum("mij,...kj->mki", rotations, points) + translations[:, None, :]


def _project(points, rotations, translations, intrinsics) -> np.ndarray:
    """Pixels `[M, K, 2]` of `[K, 3]` or `[M, K, 3]` points seen by `[M]` cameras.

    Depths are clamped to a small positive value so that a point that wanders behind a camera
    during the optimisation gives a large, finite residual (and the step is rejected) instead of a
    sign flip.
    """
    cam = _camera_points(points, rotations, translations)
    depth = np.maximum(cam[..., 2], 1e-6)
    fx, fy, cx, cy = (intrinsics[:, i : i + 1] for i in range(4))
    return np.stack([fx * cam[..., 0] / depth + cx, fy * cam[..., 1] / depth + cy], -1)


def _projection_jacobians(points, rotations, translations, intrinsics):
    """Pixels and their Jacobians for the local pose update R <- exp(w) R, t <- t + dt.

    Returns:
      pixels `[M, K, 2]`; d pixels / d(w, t) `[M, K, 2, 6]`; d pixels / d point `[M, K, 2, 3]`.
    """
    cam = _camera_points(points, rotations, translations)
    depth = np.maximum(cam[..., 2], 1e-6)
    fx, fy = intrinsics[:, None, 0], intrinsics[:, None, 1]
    x, y = cam[..., 0], cam[..., 1]
    pixels = np.stack(
        [fx * x / depth + intrinsics[:, None, 2], fy * y / depth + intrinsics[:, None, 3]], -1
    )
    zero = np.zeros_like(x)
    d_pix_d_cam = np.stack(
        [
            np.stack([fx / depth, zero, -fx * x / depth**2], -1),
            np.stack([zero, fy / depth, -fy * y / depth**2], -1),
        ],
        -2,
    )  # [M, K, 2, 3]
    # d(exp(w) R X) / dw at w = 0 is -[R X]x.
    rotated = cam - translations[:, None, :]
    d_cam_d_w = -_hat(rotated)
    d_pose = np.concatenate([d_pix_d_cam @ d_cam_d_w, d_pix_d_cam], -1)
    d_point = d_pix_d_cam @ rotations[:, None]
    return pixels, d_pose, d_point


def _update_rotations(rotations, delta_w) -> np.ndarray:
    return _rotations(delta_w) @ rotations


def _rms_errors(residuals: np.ndarray) -> np.ndarray:
    """`[M, K, 2]` pixel residuals -> `[M]` RMS point distance."""
    return np.sqrt(np.mean(np.sum(residuals**2, -1), -1))


def _robust(squared: np.ndarray, loss: str, scale: float):
    """Robust loss rho and its derivative (IRLS weight) of squared distances, in px^2."""
    if loss == "linear":
        return squared, np.ones_like(squared)
    z = squared / scale**2
    if loss == "soft_l1":
        root = np.sqrt(1.0 + z)
        return scale**2 * 2.0 * (root - 1.0), 1.0 / root
    # huber
    root = np.sqrt(np.maximum(z, 1e-300))
    rho = np.where(z <= 1.0, z, 2.0 * root - 1.0)
    return scale**2 * rho, np.where(z <= 1.0, 1.0, 1.0 / root)


def _image_width(intrinsics: np.ndarray) -> float:
    """Typical image width in pixels, 2 cx (tfglo puts the principal point at the centre)."""
    return float(2.0 * np.median(intrinsics[:, 2]))


def _robust_scale_px(config, intrinsics: np.ndarray) -> float:
    return max(config.robust_scale * _image_width(intrinsics), 1e-6)


def _normalise_intrinsics(intrinsics, num_images: int) -> np.ndarray:
    intrinsics = np.asarray(intrinsics, np.float64)
    if intrinsics.shape == (4,):
        intrinsics = np.broadcast_to(intrinsics, (num_images, 4)).copy()
    if intrinsics.shape != (num_images, 4):
        raise ValueError(
            f"intrinsics must be [4] or [{num_images}, 4] (fx, fy, cx, cy), got {intrinsics.shape}"
        )
    if not np.all(np.isfinite(intrinsics)) or np.any(intrinsics[:, :2] <= 0):
        raise ValueError("intrinsics must be finite with positive focal lengths")
    return intrinsics


def _to_normalised(points_2d: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """Pixels `[M, K, 2]` -> normalised image coordinates ((x - cx) / fx, (y - cy) / fy)."""
    return (points_2d - intrinsics[:, None, 2:]) / intrinsics[:, None, :2]


def _unit_rms(points: np.ndarray) -> np.ndarray:
    """Centres `[K, 3]` points and scales them to unit RMS distance from the centroid."""
    centred = points - points.mean(0)
    rms = np.sqrt(np.mean(np.sum(centred**2, -1)))
    return centred / max(rms, 1e-12)


# ----------------------------------------------------------------------------------------------
# Camera poses with known points (PnP), batched.


def _start_rotations() -> np.ndarray:
    """`[S, 3, 3]` object-to-camera rotations: a yaw x pitch grid around the frontal view."""
    angles = [(yaw, pitch) for yaw in (-60, -30, 0, 30, 60) for pitch in (-30, 0, 30)]
    return Rotation.from_euler("yx", angles, degrees=True).as_matrix()


_START_ROTATIONS = _start_rotations()


def _aligned_starts(points_3d, normalised, starts):
    """Completes start rotations with the roll, depth and offset that best explain the 2D points.

    Weak-perspective reasoning: project the rotated points orthographically and find the 2D
    similarity to the observations (complex-number Procrustes): its angle is the roll about the
    optical axis and its scale is 1 / depth.

    Args:
      points_3d: `[K, 3]` object points.
      normalised: `[M, K, 2]` normalised observations.
      starts: `[S, 3, 3]` rotations.

    Returns:
      rotations `[M, S, 3, 3]`, translations `[M, S, 3]`.
    """
    centroid = points_3d.mean(0)
    rotated = np.einsum("sij,kj->ski", starts, points_3d - centroid)  # [S, K, 3]
    za = rotated[..., 0] + 1j * rotated[..., 1]  # [S, K]
    observed = normalised - normalised.mean(1, keepdims=True)
    zb = observed[..., 0] + 1j * observed[..., 1]  # [M, K]
    norm = np.maximum(np.sum(np.abs(za) ** 2, -1), 1e-18)  # [S]
    z = np.einsum("sk,mk->ms", np.conj(za), zb) / norm  # [M, S]
    angle, scale = np.angle(z), np.maximum(np.abs(z), 1e-9)
    cos, sin = np.cos(angle), np.sin(angle)
    zeros, ones = np.zeros_like(cos), np.ones_like(cos)
    roll = np.stack(
        [
            np.stack([cos, -sin, zeros], -1),
            np.stack([sin, cos, zeros], -1),
            np.stack([zeros, zeros, ones], -1),
        ],
        -2,
    )  # [M, S, 3, 3]
    rotations = roll @ starts[None]
    depth = 1.0 / scale
    centre = normalised.mean(1)  # [M, 2]
    centroid_cam = depth[..., None] * np.concatenate(
        [np.broadcast_to(centre[:, None], depth.shape + (2,)), np.ones(depth.shape + (1,))], -1
    )
    translations = centroid_cam - rotations @ centroid
    return rotations, translations


def _refine_poses(points_2d, intrinsics, points_3d, rotations, translations, iterations=50):
    """Batched Levenberg-Marquardt on independent camera poses (points fixed).

    Args:
      points_2d: `[B, K, 2]` observations, pixels.
      intrinsics: `[B, 4]`.
      points_3d: `[K, 3]` or `[B, K, 3]`.
      rotations: `[B, 3, 3]`, translations `[B, 3]`: starting poses.
      iterations: maximum iterations (each problem has its own damping and stops on its own).

    Returns:
      rotations `[B, 3, 3]`, translations `[B, 3]`, cost `[B]` (sum of squared residuals, px^2).
    """
    rotations, translations = rotations.copy(), translations.copy()
    damping = np.full(len(points_2d), 1e-3)
    pixels, d_pose, _ = _projection_jacobians(points_3d, rotations, translations, intrinsics)
    residuals = pixels - points_2d
    cost = np.sum(residuals**2, (1, 2))
    active = np.ones(len(points_2d), bool)
    eye = np.eye(6)
    for _ in range(iterations):
        if not np.any(active):
            break
        hessian = np.einsum("bkri,bkrj->bij", d_pose, d_pose)
        gradient = np.einsum("bkri,bkr->bi", d_pose, residuals)
        diagonal = np.einsum("bii->bi", hessian) + 1e-12
        system = hessian + damping[:, None, None] * diagonal[:, :, None] * eye
        step = -np.linalg.solve(system, gradient[..., None])[..., 0]
        new_rotations = _update_rotations(rotations, step[:, :3])
        new_translations = translations + step[:, 3:]
        new_pixels, new_d_pose, _ = _projection_jacobians(
            points_3d, new_rotations, new_translations, intrinsics
        )
        new_residuals = new_pixels - points_2d
        new_cost = np.sum(new_residuals**2, (1, 2))
        better = (new_cost < cost) & active
        small = np.abs(cost - new_cost) <= 1e-12 * np.maximum(cost, 1e-30)
        rotations[better] = new_rotations[better]
        translations[better] = new_translations[better]
        d_pose[better], residuals[better] = new_d_pose[better], new_residuals[better]
        cost = np.where(better, new_cost, cost)
        damping = np.where(better, damping / 3.0, damping * 4.0)
        active &= ~(small | (damping > 1e12) | (cost < 1e-24))
    return rotations, translations, cost


def solve_pnp_batch(points_2d, points_3d, intrinsics, refine_top: int = 3):
    """Camera poses of M images from K 2D-3D correspondences each (K >= 3), multi-start.

    Args:
      points_2d: `[M, K, 2]` observed pixels.
      points_3d: `[K, 3]` object points (shared).
      intrinsics: `[M, 4]` (fx, fy, cx, cy), pixels.
      refine_top: how many of the best aligned starts per image are refined.

    Returns:
      rotations `[M, 3, 3]`, translations `[M, 3]`, RMS reprojection errors `[M]` (pixels).
    """
    points_2d = np.asarray(points_2d, np.float64)
    points_3d = np.asarray(points_3d, np.float64)
    num_images, num_points, _ = points_2d.shape
    normalised = _to_normalised(points_2d, intrinsics)
    rotations, translations = _aligned_starts(points_3d, normalised, _START_ROTATIONS)
    num_starts = rotations.shape[1]
    repeated_k = np.repeat(intrinsics, num_starts, 0)
    pixels = _project(
        points_3d, rotations.reshape(-1, 3, 3), translations.reshape(-1, 3), repeated_k
    )
    start_cost = np.sum(
        (pixels.reshape(num_images, num_starts, num_points, 2) - points_2d[:, None]) ** 2, (2, 3)
    )
    best = np.argsort(start_cost, 1)[:, :refine_top]  # [M, T]
    pick = np.arange(num_images)[:, None]
    rotations, translations = rotations[pick, best], translations[pick, best]  # [M, T, ...]
    top = best.shape[1]
    rotations, translations, cost = _refine_poses(
        np.repeat(points_2d, top, 0),
        np.repeat(intrinsics, top, 0),
        points_3d,
        rotations.reshape(-1, 3, 3),
        translations.reshape(-1, 3),
    )
    cost = cost.reshape(num_images, top)
    winner = np.argmin(cost, 1)
    index = np.arange(num_images) * top + winner
    errors = np.sqrt(cost[np.arange(num_images), winner] / num_points)
    return rotations[index], translations[index], errors


def solve_pnp(points_2d, points_3d, intrinsics):
    """Camera pose of one image: (rotation `[3, 3]`, translation `[3]`, RMS error px)."""
    intrinsics = np.asarray(intrinsics, np.float64)[None]
    rotations, translations, errors = solve_pnp_batch(
        np.asarray(points_2d, np.float64)[None], points_3d, intrinsics
    )
    return rotations[0], translations[0], float(errors[0])


def fit_camera_to_canonical(points_2d, intrinsics, canonical):
    """Fits one camera against known canonical points (`--canonical_from`: camera only).

    Args:
      points_2d: `[K, 2]` observed keypoints, pixels.
      intrinsics: `[4]` (fx, fy, cx, cy), pixels.
      canonical: `[K, 3]` canonical keypoints of a fitted dataset, object units.

    Returns:
      (world_to_camera `[3, 4]` float32 OpenCV [R | t], RMS reprojection error in pixels).

    Raises:
      ValueError: shapes disagree, K < 3, or values are not finite.
    """
    points_2d = np.asarray(points_2d, np.float64)
    canonical = np.asarray(canonical, np.float64)
    if points_2d.ndim != 2 or points_2d.shape[1] != 2:
        raise ValueError(f"points_2d must be [K, 2], got {points_2d.shape}")
    if canonical.shape != (len(points_2d), 3):
        raise ValueError(
            f"canonical must be [{len(points_2d)}, 3] to match points_2d, got {canonical.shape}"
        )
    if len(points_2d) < 3:
        raise ValueError(f"at least 3 keypoints are needed for a camera, got {len(points_2d)}")
    if not (np.all(np.isfinite(points_2d)) and np.all(np.isfinite(canonical))):
        raise ValueError("points_2d and canonical must be finite")
    intrinsics = _normalise_intrinsics(intrinsics, 1)[0]
    rotation, translation, error = solve_pnp(points_2d, canonical, intrinsics)
    world_to_camera = np.concatenate([rotation, translation[:, None]], 1)
    return world_to_camera.astype(np.float32), error


# ----------------------------------------------------------------------------------------------
# Structure initialisation for keypoints without a template.


def _factorisation_init(normalised: np.ndarray) -> np.ndarray | None:
    """Tomasi-Kanade affine factorisation with a scaled-orthographic metric upgrade.

    Args:
      normalised: `[M, K, 2]` normalised image coordinates.

    Returns:
      `[K, 3]` structure (up to a similarity and a mirror image in depth), or None when the
      observations do not determine one (too few images or points, degenerate motion).
    """
    num_images, num_points, _ = normalised.shape
    if num_images < 3 or num_points < 4:
        return None
    centred = normalised - normalised.mean(1, keepdims=True)
    measurement = centred.transpose(0, 2, 1).reshape(2 * num_images, num_points)
    u, s, vt = np.linalg.svd(measurement, full_matrices=False)
    if s[2] < 1e-9 * s[0]:
        return None
    motion = u[:, :3] * np.sqrt(s[:3])
    shape = np.sqrt(s[:3])[:, None] * vt[:3]

    def row(x, y):
        # Coefficients of x^T L y in the 6 unknowns of a symmetric 3x3 L.
        return np.array(
            [
                x[0] * y[0],
                x[0] * y[1] + x[1] * y[0],
                x[0] * y[2] + x[2] * y[0],
                x[1] * y[1],
                x[1] * y[2] + x[2] * y[1],
                x[2] * y[2],
            ]
        )

    # Metric upgrade: L = Q Q^T with |a_i|^2 = |b_i|^2 and a_i . b_i = 0 for every image's rows.
    rows, rhs = [], []
    for i in range(num_images):
        a, b = motion[2 * i], motion[2 * i + 1]
        rows += [row(a, a) - row(b, b), row(a, b)]
        rhs += [0.0, 0.0]
    rows.append(np.mean([row(m, m) for m in motion], 0))  # fixes the overall scale
    rhs.append(1.0)
    l_vec = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]
    l_mat = np.array(
        [
            [l_vec[0], l_vec[1], l_vec[2]],
            [l_vec[1], l_vec[3], l_vec[4]],
            [l_vec[2], l_vec[4], l_vec[5]],
        ]
    )
    values, vectors = np.linalg.eigh(l_mat)
    if values.max() <= 0:
        return None
    values = np.maximum(values, 1e-3 * values.max())
    q = vectors * np.sqrt(values)
    structure = np.linalg.solve(q, shape).T
    return structure if np.all(np.isfinite(structure)) else None


def _planar_init(normalised_first: np.ndarray) -> np.ndarray:
    """Lifts one image's normalised points `[K, 2]` onto the plane z = 0 (a fallback)."""
    flat = normalised_first - normalised_first.mean(0)
    return np.concatenate([flat, np.zeros((len(flat), 1))], 1)


# ----------------------------------------------------------------------------------------------
# Joint refinement (bundle adjustment).


def _priors(points: np.ndarray, gauge_weight: float, template, shape_weight: float):
    """Prior residuals on the canonical points and their Jacobian `[R, 3K]`.

    Gauge (4 residuals): centroid at 0 and unit mean squared radius. Both are pure gauge
    directions (moving the centroid or scaling the scene leaves every reprojection unchanged), so
    they are met exactly at the optimum and bias nothing; they only make the normal equations well
    conditioned. The rotation gauge stays free (the damping handles it) and is fixed afterwards.

    Shape (3K residuals, faces only): `shape_weight * (R* (X - centroid) - template)` with R* the
    rotation that best aligns the points to the unit-RMS template (Procrustes). Treating R* as a
    constant gives the exact gradient of the squared norm (R* is a minimiser), so Gauss-Newton
    steps stay consistent. It keeps the depth of the face plausible when the photos barely differ
    in pose (then depth is unobservable and a flat face that "pitches" fits the keypoints best).
    """
    num_points = len(points)
    centroid = points.mean(0)
    centred = points - centroid
    residuals = [gauge_weight * np.concatenate([centroid, [np.mean(np.sum(centred**2, -1)) - 1.0]])]
    jacobian = np.zeros((4, 3 * num_points))
    for axis in range(3):
        jacobian[axis, axis::3] = gauge_weight / num_points
    jacobian[3] = gauge_weight * 2.0 * centred.ravel() / num_points
    jacobians = [jacobian]
    if template is not None and shape_weight > 0:
        u, _, vt = np.linalg.svd(template.T @ centred)
        fix = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
        rotation = u @ fix @ vt  # rotation @ centred_k ~ template_k
        residuals.append(shape_weight * (centred @ rotation.T - template).ravel())
        centring = np.eye(num_points) - 1.0 / num_points
        jacobians.append(shape_weight * np.kron(centring, rotation))
    return np.concatenate(residuals), np.concatenate(jacobians)


def _ba_cost(points_2d, intrinsics, points, rotations, translations, config, prior):
    residuals = _project(points, rotations, translations, intrinsics) - points_2d
    rho, _ = _robust(np.sum(residuals**2, -1), config.loss, _robust_scale_px(config, intrinsics))
    priors, _ = _priors(points, *prior)
    return 0.5 * (np.sum(rho) + np.sum(priors**2))


def _prior_settings(config, intrinsics, template):
    """(gauge weight, template or None, shape weight) for `_priors`."""
    gauge_weight = float(np.mean(intrinsics[:, 0])) * 1e-2
    shape_weight = 0.0
    if template is not None and config.shape_prior_std:
        # A keypoint off the template by one std costs as much as one noisy keypoint.
        shape_weight = _robust_scale_px(config, intrinsics) / config.shape_prior_std
    return gauge_weight, template, shape_weight


def _bundle_adjust_schur(points_2d, intrinsics, points, rotations, translations, config, template):
    """Joint Levenberg-Marquardt with the cameras eliminated by a Schur complement.

    Returns:
      points `[K, 3]`, rotations `[M, 3, 3]`, translations `[M, 3]`, converged flag.
    """
    num_images, num_points, _ = points_2d.shape
    prior = _prior_settings(config, intrinsics, template)
    damping = 1e-3
    cost = _ba_cost(points_2d, intrinsics, points, rotations, translations, config, prior)
    converged = False
    for _ in range(config.max_iterations):
        pixels, d_pose, d_point = _projection_jacobians(points, rotations, translations, intrinsics)
        residuals = pixels - points_2d
        _, weights = _robust(
            np.sum(residuals**2, -1), config.loss, _robust_scale_px(config, intrinsics)
        )
        sqrt_w = np.sqrt(weights)[..., None]
        residuals = residuals * sqrt_w
        d_pose = d_pose * sqrt_w[..., None]
        d_point = d_point * sqrt_w[..., None]
        # Normal-equation blocks: U (cameras, 6x6 each), W (camera-point), V (points).
        u_blocks = np.einsum("mkri,mkrj->mij", d_pose, d_pose)
        g_pose = np.einsum("mkri,mkr->mi", d_pose, residuals)
        w_blocks = np.einsum("mkri,mkrj->mkij", d_pose, d_point)  # [M, K, 6, 3]
        v_blocks = np.einsum("mkri,mkrj->kij", d_point, d_point)  # [K, 3, 3]
        g_point = np.einsum("mkri,mkr->ki", d_point, residuals).ravel()
        priors, prior_jacobian = _priors(points, *prior)
        v_matrix = prior_jacobian.T @ prior_jacobian
        for k in range(num_points):
            v_matrix[3 * k : 3 * k + 3, 3 * k : 3 * k + 3] += v_blocks[k]
        g_point = g_point + prior_jacobian.T @ priors

        while True:
            u_damped = u_blocks + damping * np.einsum("mii->mi", u_blocks)[..., None] * np.eye(6)
            u_damped += 1e-12 * np.eye(6)
            v_damped = (
                v_matrix + damping * np.diag(np.diag(v_matrix)) + 1e-12 * np.eye(len(v_matrix))
            )
            u_inv = np.linalg.inv(u_damped)
            w_flat = w_blocks.transpose(0, 2, 1, 3).reshape(num_images, 6, 3 * num_points)
            y = u_inv @ w_flat  # [M, 6, 3K]
            schur = v_damped - np.einsum("mci,mcj->ij", w_flat, y)
            rhs = -g_point + np.einsum("mci,mc->i", y, g_pose)
            # The rotation gauge leaves the Schur system singular up to the damping: lstsq.
            delta_points = np.linalg.lstsq(schur, rhs, rcond=1e-12)[0]
            delta_pose = np.einsum("mij,mj->mi", u_inv, -g_pose - w_flat @ delta_points)
            new_points = points + delta_points.reshape(num_points, 3)
            new_rotations = _update_rotations(rotations, delta_pose[:, :3])
            new_translations = translations + delta_pose[:, 3:]
            new_cost = _ba_cost(
                points_2d,
                intrinsics,
                new_points,
                new_rotations,
                new_translations,
                config,
                prior,
            )
            if new_cost < cost:
                break
            damping *= 4.0
            if damping > 1e12:
                return points, rotations, translations, True  # no descent left: a minimum
        decrease = cost - new_cost
        points, rotations, translations = new_points, new_rotations, new_translations
        cost = new_cost
        damping = max(damping / 3.0, 1e-12)
        if decrease <= 1e-12 * max(cost, 1e-30) or cost < 1e-24:
            converged = True
            break
    return points, rotations, translations, converged


def _bundle_adjust_scipy(points_2d, intrinsics, points, rotations, translations, config, template):
    """Reference joint refinement with `scipy.optimize.least_squares` (trf, sparse pattern)."""
    num_images, num_points, _ = points_2d.shape
    prior = _prior_settings(config, intrinsics, template)
    num_priors = len(_priors(points, *prior)[0])
    cols = 3 * num_points + 6 * num_images
    rows = 2 * num_images * num_points
    pattern = sparse.lil_matrix((rows + num_priors, cols), dtype=np.int8)
    for i in range(num_images):
        block = slice(2 * num_points * i, 2 * num_points * (i + 1))
        pattern[block, : 3 * num_points] = 1
        pattern[block, 3 * num_points + 6 * i : 3 * num_points + 6 * (i + 1)] = 1
    pattern[rows:, : 3 * num_points] = 1

    def unpack(params):
        cams = params[3 * num_points :].reshape(num_images, 6)
        return params[: 3 * num_points].reshape(num_points, 3), cams[:, :3], cams[:, 3:]

    def residuals(params):
        pts, rv, t = unpack(params)
        res = (_project(pts, _rotations(rv), t, intrinsics) - points_2d).ravel()
        return np.concatenate([res, _priors(pts, *prior)[0]])

    x0 = np.concatenate(
        [points.ravel(), np.concatenate([_rotvecs(rotations), translations], 1).ravel()]
    )
    result = optimize.least_squares(
        residuals,
        x0,
        jac_sparsity=pattern,
        method="trf",
        x_scale="jac",
        loss=config.loss,
        f_scale=_robust_scale_px(config, intrinsics),
        xtol=1e-12,
        ftol=1e-12,
        gtol=1e-12,
        max_nfev=config.max_iterations,
    )
    pts, rv, t = unpack(result.x)
    return pts.copy(), _rotations(rv), t.copy(), bool(result.status > 0)


def _bundle_adjust(
    points_2d, intrinsics, points, rotations, translations, config, fix_points, template=None
):
    """Joint refinement, or poses only when `fix_points` (too few images to see depth).

    `template` `[K, 3]` (unit RMS, centred) enables the shape prior (faces)."""
    if fix_points:
        rotations, translations, _ = _refine_poses(
            points_2d, intrinsics, points, rotations, translations, config.max_iterations
        )
        return points, rotations, translations, True
    if config.solver == "scipy":
        return _bundle_adjust_scipy(
            points_2d, intrinsics, points, rotations, translations, config, template
        )
    return _bundle_adjust_schur(
        points_2d, intrinsics, points, rotations, translations, config, template
    )


def _fit_cost(points_2d, intrinsics, structure, config) -> tuple[float, tuple]:
    """Sum of squared residuals after PnP and a joint refinement from `structure`."""
    rotations, translations, _ = solve_pnp_batch(points_2d, structure, intrinsics)
    fix = len(points_2d) < config.min_images_for_structure
    solution = _bundle_adjust(
        points_2d, intrinsics, structure, rotations, translations, config, fix
    )
    points, rotations, translations, _ = solution
    projected = _project(points, rotations, translations, intrinsics)
    return float(np.sum((projected - points_2d) ** 2)), solution


# ----------------------------------------------------------------------------------------------
# Gauge.


def _face_gauge_rotation(points: np.ndarray) -> np.ndarray:
    """Rotation whose rows are the canonical axes: x along the eyes, y from eyes to mouth."""
    x_axis = points[1] - points[0]
    x_axis = x_axis / np.linalg.norm(x_axis)
    down = 0.5 * (points[3] + points[4]) - 0.5 * (points[0] + points[1])
    y_axis = down - np.dot(down, x_axis) * x_axis
    y_axis = y_axis / np.linalg.norm(y_axis)
    z_axis = np.cross(x_axis, y_axis)  # right-handed: x right, y down, z away from the viewer
    return np.stack([x_axis, y_axis, z_axis])


def _mean_rotation(rotations: np.ndarray) -> np.ndarray:
    """Chordal L2 mean of `[M, 3, 3]` rotations (SVD projection of their average)."""
    u, _, vt = np.linalg.svd(np.mean(rotations, 0))
    fix = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    return u @ fix @ vt


def _apply_gauge(points, rotations, translations, face: bool, rms_radius: float, offset=None):
    """Moves a solution into the canonical gauge; returns (points, rotations, translations).

    `offset` `[3]` (object units, canonical axes) is where the world origin goes relative to the
    keypoints' centroid (None: the centroid).
    """
    centroid = points.mean(0)
    centred = points - centroid
    if face:
        gauge = _face_gauge_rotation(centred)
    else:
        # The average camera becomes the identity: the object faces -z as the faces do.
        gauge = _mean_rotation(rotations)
    scale = rms_radius / max(np.sqrt(np.mean(np.sum(centred**2, -1))), 1e-12)
    new_points = scale * centred @ gauge.T
    # x_cam = R X + t with X = gauge^T X' / s + c  =>  R' = R gauge^T, t' = s (R c + t).
    new_rotations = rotations @ gauge.T
    new_translations = scale * (np.einsum("mij,j->mi", rotations, centroid) + translations)
    if offset is not None:
        # x' = x - o: R x + t = R x' + (R o + t).
        new_points = new_points - offset
        new_translations = new_translations + np.einsum("mij,j->mi", new_rotations, offset)
    return new_points, new_rotations, new_translations


def _rescale(points, rotations, translations):
    """Re-centres points at unit RMS radius (pure gauge move; warm starts stay well scaled)."""
    centroid = points.mean(0)
    scale = 1.0 / max(np.sqrt(np.mean(np.sum((points - centroid) ** 2, -1))), 1e-12)
    translations = scale * (np.einsum("mij,j->mi", rotations, centroid) + translations)
    return scale * (points - centroid), translations


def default_keypoint_rms_radius(config: CameraFitConfig, face: bool) -> float:
    """RMS radius of the fitted keypoints in object units (see `CameraFitConfig`)."""
    if config.keypoint_rms_radius is not None:
        return float(config.keypoint_rms_radius)
    if face:
        return float(config.scene_radius * _template_rms_cm() / config.sphere_radius_cm)
    return 0.5 * config.scene_radius


def _template_rms_cm() -> float:
    centred = FACE_TEMPLATE_CM - FACE_TEMPLATE_CM.mean(0)
    return float(np.sqrt(np.mean(np.sum(centred**2, -1))))


def sphere_center_offset(config: CameraFitConfig, face: bool) -> np.ndarray | None:
    """The world origin relative to the keypoints' centroid, object units (None: centroid)."""
    if not face or not np.any(config.sphere_center_cm):
        return None
    units_per_cm = default_keypoint_rms_radius(config, True) / _template_rms_cm()
    return np.asarray(config.sphere_center_cm, np.float64) * units_per_cm


# ----------------------------------------------------------------------------------------------
# Public entry point.


def fit_cameras(points_2d, intrinsics, config: CameraFitConfig | None = None) -> FitResult:
    """Fits canonical keypoints and one camera per image to 2D keypoints.

    Args:
      points_2d: `[M, K, 2]` keypoints per image, pixels (K >= 3; for K = 5 the face order
        33, 263, 1, 61, 291 is assumed unless `config.face_template` is False). Non-face classes
        should use K >= 6: with 4 or 5 points a shape and its mirror image in depth fit noisy
        keypoints about equally well.
      intrinsics: `[M, 4]` or `[4]` (fx, fy, cx, cy) per image, pixels; fixed.
      config: fit settings.

    Returns:
      A `FitResult` (canonical points `[K, 3]`, world_to_camera `[M, 3, 4]`, errors, inliers).

    Raises:
      ValueError: shapes are wrong, K < 3, M < 1, inputs are not finite, or the config names an
        unknown loss or solver.
    """
    config = config or CameraFitConfig()
    for loss in (config.loss, config.outlier_loss):
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose from {LOSSES}")
    if config.solver not in SOLVERS:
        raise ValueError(f"unknown solver {config.solver!r}; choose from {SOLVERS}")
    points_2d = np.asarray(points_2d, np.float64)
    if points_2d.ndim != 3 or points_2d.shape[-1] != 2:
        raise ValueError(f"points_2d must be [M, K, 2], got {points_2d.shape}")
    num_images, num_points, _ = points_2d.shape
    if num_images < 1:
        raise ValueError("points_2d holds no images (M = 0)")
    if num_points < 3:
        raise ValueError(f"at least 3 keypoints per image are needed, got K = {num_points}")
    if not np.all(np.isfinite(points_2d)):
        raise ValueError("points_2d must be finite (no NaN or inf keypoints)")
    intrinsics = _normalise_intrinsics(intrinsics, num_images)
    face = config.face_template if config.face_template is not None else num_points == 5
    if face and num_points != 5:
        raise ValueError(f"the face template has 5 keypoints, got K = {num_points}")
    rms_radius = default_keypoint_rms_radius(config, face)

    template = _unit_rms(FACE_TEMPLATE_CM) if face else None
    if face:
        structure = template.copy()
    else:
        normalised = _to_normalised(points_2d, intrinsics)
        lifted = _factorisation_init(normalised)
        lifted = _unit_rms(lifted if lifted is not None else _planar_init(normalised[0]))
        # An affine factorisation (like a planar lift) cannot tell a shape from its mirror image
        # in depth; both are refined and the one that reprojects better is kept.
        mirrored = lifted * np.array([1.0, 1.0, -1.0])
        cost_a, _ = _fit_cost(points_2d, intrinsics, lifted, config)
        cost_b, _ = _fit_cost(points_2d, intrinsics, mirrored, config)
        structure = lifted if cost_a <= cost_b else mirrored

    notes: list[str] = []
    inliers = np.ones(num_images, bool)
    outlier_reasons: dict[int, str] = {}
    rotations, translations, _ = solve_pnp_batch(points_2d, structure, intrinsics)
    min_inliers = max(1, int(np.ceil(config.min_inlier_fraction * num_images)))
    floor_px = config.outlier_floor * _image_width(intrinsics)
    converged, rounds, threshold = True, 0, float("inf")
    # Outlier rounds use the robust loss (one bad image cannot spread its error over the others);
    # the final refinement of the inliers uses `config.loss` (plain least squares by default).
    robust = dataclasses.replace(config, loss=config.outlier_loss)

    def refine(active, fit_config):
        fix_points = len(active) < config.min_images_for_structure
        points, rot_a, trans_a, done = _bundle_adjust(
            points_2d[active],
            intrinsics[active],
            structure,
            rotations[active],
            translations[active],
            fit_config,
            fix_points,
            template,
        )
        points, trans_a = _rescale(points, rot_a, trans_a)
        rotations[active], translations[active] = rot_a, trans_a
        return points, done

    for round_index in range(config.max_outlier_rounds + 1):
        active = np.flatnonzero(inliers)
        structure, converged = refine(active, robust)
        rounds += 1
        projected = _project(structure, rotations[active], translations[active], intrinsics[active])
        errors = _rms_errors(projected - points_2d[active])
        median = float(np.median(errors))
        mad = float(np.median(np.abs(errors - median)))
        threshold = max(floor_px, median + config.outlier_mad_factor * 1.4826 * mad)
        bad = errors > threshold
        if round_index == config.max_outlier_rounds or not np.any(bad):
            break
        if len(active) - int(bad.sum()) < min_inliers:
            notes.append(
                f"{int(bad.sum())} images above the outlier threshold {threshold:.2f} px were "
                f"kept: dropping them would leave fewer than {min_inliers} images"
            )
            break
        for index, error in zip(active[bad], errors[bad]):
            inliers[index] = False
            outlier_reasons[int(index)] = (
                f"fit outlier: reprojection error {error:.2f} px > threshold {threshold:.2f} px "
                f"(median {median:.2f} px + {config.outlier_mad_factor:g} x 1.4826 x MAD "
                f"{mad:.2f} px, floor {floor_px:.2f} px)"
            )

    if config.loss != config.outlier_loss:
        structure, converged = refine(np.flatnonzero(inliers), config)
        rounds += 1

    # Outliers still get a camera against the final points (reported, never trained on).
    outliers = np.flatnonzero(~inliers)
    if len(outliers):
        rot_o, trans_o, _ = solve_pnp_batch(points_2d[outliers], structure, intrinsics[outliers])
        rotations[outliers], translations[outliers] = rot_o, trans_o

    points, rotations, translations = _apply_gauge(
        structure, rotations, translations, face, rms_radius, sphere_center_offset(config, face)
    )
    errors_all = _rms_errors(_project(points, rotations, translations, intrinsics) - points_2d)
    centres = -np.einsum("mji,mj->mi", rotations, translations)
    if face and np.median(centres[inliers, 2]) > 0:
        notes.append(
            "most cameras are on the +z side: the fitted face looks away from them (a depth-"
            "flipped solution); check the keypoint order"
        )
    inside = int(np.sum(np.linalg.norm(centres[inliers], axis=-1) <= config.scene_radius))
    if inside:
        notes.append(
            f"{inside} cameras lie inside the scene sphere of radius {config.scene_radius}"
        )
    world_to_camera = np.concatenate([rotations, translations[..., None]], -1)
    inlier_errors = errors_all[inliers]
    return FitResult(
        canonical_points=points.astype(np.float32),
        world_to_camera=world_to_camera.astype(np.float32),
        intrinsics=intrinsics.astype(np.float32),
        errors_px=errors_all,
        inliers=inliers,
        outlier_reasons=outlier_reasons,
        median_error_px=float(np.median(inlier_errors)),
        max_error_px=float(np.max(inlier_errors)),
        threshold_px=float(threshold),
        converged=converged,
        rounds=rounds,
        used_face_template=bool(face),
        notes=notes,
    )
