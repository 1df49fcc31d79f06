"""Image-quality and geometry metrics for one rendered view against its ground truth.

Each metric is a small function of numpy arrays (tensors are accepted and converted) returning a
Python float, so evaluation code and tests can call them on single images:
- `psnr`: peak signal-to-noise ratio over all pixels, dB (images in [0, 1]).
- `ssim`: structural similarity (`tf.image.ssim`, 11x11 Gaussian window, shrunk for tiny images).
- `masked_psnr`: PSNR over the foreground pixels only (mask >= 0.5).
- `mask_iou`: intersection over union of a predicted opacity and a mask, both thresholded at 0.5.
- `depth_errors`: mean absolute depth error on the foreground, raw and after the least-squares
  scale that best maps the prediction onto the ground truth (object units).
- `foreground_coverage` / `coverage_warning`: the share of the mask that the foreground field
  covers (near 0 when the foreground/background split has collapsed), and its warning.
- `hardness`: how solid the rendered surface is on the foreground: the fraction of rays whose
  largest sample weight exceeds 0.5, and the mean largest weight (a cloud spreads a ray's
  opacity over many samples; a hard surface puts it on one).
Undefined values (no foreground pixel) are NaN, which `summarize` skips when averaging.

Views are grouped by how far they are from a reference view (`canonical_yaw_deg`,
`view_angle_deg`, `angle_bin`, `summarize_by_angle`): off-axis quality is where single-view
models fail (cloudy, extruded heads), and a mean over all views hides it.
"""

import math

import numpy as np
import tensorflow as tf

MASK_THRESHOLD = 0.5


def _np(value) -> np.ndarray:
    if hasattr(value, "numpy"):
        value = value.numpy()
    return np.asarray(value, np.float64)


def _check_same_shape(a, b, what: str) -> None:
    a, b = tuple(np.shape(a)), tuple(np.shape(b))
    if a != b:
        raise ValueError(f"{what}: shapes differ, {a} vs {b}")


def mse_to_psnr(mse: float, max_value: float = 1.0) -> float:
    """PSNR in dB of a mean squared error (inf for 0)."""
    if mse <= 0.0:
        return math.inf
    return float(10.0 * math.log10(max_value**2 / mse))


def psnr(prediction, target, max_value: float = 1.0) -> float:
    """PSNR over every pixel and channel.

    Args:
      prediction, target: images `[H, W, C]` (or any equal shapes), values in [0, max_value].
      max_value: the signal peak.

    Returns:
      10 log10(max_value^2 / MSE), dB; inf for identical images.
    """
    prediction, target = _np(prediction), _np(target)
    _check_same_shape(prediction, target, "psnr")
    return mse_to_psnr(float(np.mean((prediction - target) ** 2)), max_value)


def masked_psnr(prediction, target, mask, max_value: float = 1.0) -> float:
    """PSNR over the foreground pixels (mask >= 0.5) only.

    Args:
      prediction, target: `[H, W, C]` images in [0, max_value].
      mask: `[H, W]` foreground weights in [0, 1] (ground truth).

    Returns:
      PSNR of the MSE averaged over foreground pixels and channels, dB; NaN without foreground.
    """
    prediction, target, mask = _np(prediction), _np(target), _np(mask)
    _check_same_shape(prediction, target, "masked_psnr")
    _check_same_shape(prediction[..., 0], mask, "masked_psnr mask")
    foreground = mask >= MASK_THRESHOLD
    if not foreground.any():
        return math.nan
    return mse_to_psnr(float(np.mean((prediction - target)[foreground] ** 2)), max_value)


def ssim(prediction, target, max_value: float = 1.0, filter_size: int = 11) -> float:
    """Structural similarity of two images with `tf.image.ssim` (Gaussian window, sigma 1.5).

    Args:
      prediction, target: `[H, W, C]` images in [0, max_value].
      max_value: the signal peak.
      filter_size: window size; shrunk to the image's smaller side for images under 11 pixels
        (tf.image.ssim needs the window to fit), so tiny test images still have an SSIM.

    Returns:
      Mean SSIM in [-1, 1] (1 for identical images).
    """
    prediction, target = _np(prediction), _np(target)
    _check_same_shape(prediction, target, "ssim")
    if prediction.ndim != 3:
        raise ValueError(f"ssim expects [H, W, C] images, got {prediction.shape}")
    size = int(min(filter_size, prediction.shape[0], prediction.shape[1]))
    value = tf.image.ssim(
        tf.constant(prediction, tf.float32),
        tf.constant(target, tf.float32),
        max_val=max_value,
        filter_size=size,
    )
    return float(value.numpy())


def mask_iou(alpha, mask, threshold: float = MASK_THRESHOLD) -> float:
    """Intersection over union of the predicted and true foregrounds.

    Args:
      alpha: `[H, W]` predicted foreground opacity in [0, 1].
      mask: `[H, W]` ground-truth mask in [0, 1].
      threshold: both are foreground where >= threshold.

    Returns:
      |A and B| / |A or B|; 1.0 when both are empty (nothing to disagree about).
    """
    alpha, mask = _np(alpha), _np(mask)
    _check_same_shape(alpha, mask, "mask_iou")
    predicted, true = alpha >= threshold, mask >= threshold
    union = np.count_nonzero(predicted | true)
    if union == 0:
        return 1.0
    return float(np.count_nonzero(predicted & true) / union)


def depth_errors(predicted_depth, true_depth, mask=None) -> dict[str, float]:
    """Depth errors on the foreground, in object units.

    The foreground is where the true depth is positive and finite (and mask >= 0.5 when given).
    The scaled error uses s = argmin_s sum (s p - g)^2 = sum(p g) / sum(p^2), which removes a
    global scale ambiguity (e.g. a reconstruction at the wrong size).

    Args:
      predicted_depth: `[H, W]` predicted depth (camera z), object units.
      true_depth: `[H, W]` ground-truth depth (camera z, 0 where there is no surface).
      mask: optional `[H, W]` foreground weights.

    Returns:
      dict with depth_abs (mean |p - g|), depth_abs_scaled (mean |s p - g|), depth_scale (s),
      depth_pixels (count); NaN values when there is no foreground pixel.
    """
    predicted, true = _np(predicted_depth), _np(true_depth)
    _check_same_shape(predicted, true, "depth_errors")
    valid = np.isfinite(true) & (true > 0) & np.isfinite(predicted)
    if mask is not None:
        mask = _np(mask)
        _check_same_shape(mask, true, "depth_errors mask")
        valid &= mask >= MASK_THRESHOLD
    count = int(np.count_nonzero(valid))
    if count == 0:
        nan = math.nan
        return {"depth_abs": nan, "depth_abs_scaled": nan, "depth_scale": nan, "depth_pixels": 0}
    p, g = predicted[valid], true[valid]
    denominator = float(np.sum(p * p))
    scale = float(np.sum(p * g) / denominator) if denominator > 0 else 0.0
    return {
        "depth_abs": float(np.mean(np.abs(p - g))),
        "depth_abs_scaled": float(np.mean(np.abs(scale * p - g))),
        "depth_scale": scale,
        "depth_pixels": count,
    }


HARD_WEIGHT = 0.5


def hardness(max_weight, mask, threshold: float = HARD_WEIGHT) -> dict[str, float]:
    """Hardness of the rendered surface on the ground-truth foreground.

    Args:
      max_weight: `[H, W]` (or `[N]`) each ray's largest compositing weight (the renderer's
        "max_weight").
      mask: same shape, ground-truth mask in [0, 1]; foreground where >= 0.5.
      threshold: a ray is hard when its largest weight is > this.

    Returns:
      dict with hard_fraction (fraction of foreground rays whose largest weight > threshold)
      and max_weight_mean (mean largest weight over foreground rays); NaN without foreground.
    """
    max_weight, mask = _np(max_weight), _np(mask)
    _check_same_shape(max_weight, mask, "hardness")
    foreground = mask >= MASK_THRESHOLD
    if not foreground.any():
        return {"hard_fraction": math.nan, "max_weight_mean": math.nan}
    values = max_weight[foreground]
    return {
        "hard_fraction": float(np.mean(values > threshold)),
        "max_weight_mean": float(np.mean(values)),
    }


# Below this share of the mask covered by foreground opacity, the split has likely collapsed
# (the background field paints the object); the warning of issue 15.
COVERAGE_WARNING_THRESHOLD = 0.5


def foreground_coverage(alpha, mask) -> dict[str, float]:
    """How much of the masked object the foreground field covers.

    Works on one image `[H, W]` or on a ray batch `[N]` (e.g. a training step's rays).

    Args:
      alpha: predicted foreground opacity in [0, 1].
      mask: ground-truth mask in [0, 1], same shape.

    Returns:
      dict with alpha_mean (mean opacity), mask_mean (mean mask), coverage (sum(alpha * mask) /
      sum(mask): the mask's share that the foreground covers, 1 when it covers all of it, near
      0 when the background field paints the object; NaN without mask) and opacity_ratio
      (alpha_mean / mask_mean; NaN without mask).
    """
    alpha, mask = _np(alpha), _np(mask)
    _check_same_shape(alpha, mask, "foreground_coverage")
    mask_sum = float(np.sum(mask))
    alpha_mean = float(np.mean(alpha)) if alpha.size else math.nan
    mask_mean = float(np.mean(mask)) if mask.size else math.nan
    if mask_sum <= 0:
        coverage = ratio = math.nan
    else:
        coverage = float(np.sum(alpha * mask) / mask_sum)
        ratio = alpha_mean / mask_mean
    return {
        "alpha_mean": alpha_mean,
        "mask_mean": mask_mean,
        "coverage": coverage,
        "opacity_ratio": ratio,
    }


def coverage_warning(coverage: float, threshold: float = COVERAGE_WARNING_THRESHOLD) -> str | None:
    """A warning line when the foreground covers less than `threshold` of the mask, else None.

    NaN coverage (no mask) gives None: nothing to judge.
    """
    if coverage is None or not math.isfinite(coverage) or coverage >= threshold:
        return None
    return (
        f"the foreground field covers only {coverage:.0%} of the masked object (warning below "
        f"{threshold:.0%}): the background field is painting the object, and held-out views "
        "will be poor. Raise --mask_weight (default 1.0), or train with a constant background "
        "(--dataset_background, when dataset.json records one; otherwise --nobackground "
        "--background_color=R,G,B) when the data's background is one colour."
    )


def image_metrics(
    prediction: dict,
    target: dict,
) -> dict[str, float]:
    """Every metric of one view.

    Args:
      prediction: dict with rgb `[H, W, 3]`, alpha `[H, W]` (optional), depth `[H, W]` camera z
        (optional), max_weight `[H, W]` (optional).
      target: dict with image `[H, W, 3]`, mask `[H, W]` (optional), has_mask (optional bool),
        depth `[H, W]` (optional), has_depth (optional bool).

    Returns:
      psnr, ssim, and where the inputs allow: masked_psnr, mask_iou, depth_abs, depth_abs_scaled,
      depth_scale, hard_fraction, max_weight_mean.
    """
    rgb, image = prediction["rgb"], target["image"]
    out = {"psnr": psnr(rgb, image), "ssim": ssim(rgb, image)}
    mask = target.get("mask")
    has_mask = mask is not None and bool(target.get("has_mask", True))
    if has_mask:
        out["masked_psnr"] = masked_psnr(rgb, image, mask)
        if prediction.get("alpha") is not None:
            out["mask_iou"] = mask_iou(prediction["alpha"], mask)
        if prediction.get("max_weight") is not None:
            out.update(hardness(prediction["max_weight"], mask))
    true_depth = target.get("depth")
    if (
        true_depth is not None
        and bool(target.get("has_depth", True))
        and prediction.get("depth") is not None
    ):
        errors = depth_errors(prediction["depth"], true_depth, mask if has_mask else None)
        errors.pop("depth_pixels")
        out.update(errors)
    return out


def summarize(per_view: list[dict[str, float]]) -> dict[str, float]:
    """Means of each numeric metric over views, skipping NaN and infinite values.

    Returns:
      {name: mean} plus {name + "_count": views that contributed} when some were skipped.
    """
    names = sorted({k for view in per_view for k, v in view.items() if isinstance(v, float | int)})
    summary = {}
    for name in names:
        values = [float(v[name]) for v in per_view if name in v]
        finite = [v for v in values if math.isfinite(v)]
        summary[name] = float(np.mean(finite)) if finite else math.nan
        if len(finite) != len(values):
            summary[name + "_count"] = len(finite)
    return summary


# ------------------------------------------------------------------ off-axis grouping of views

# Bin edges of a view's angle from its reference, degrees: [0, 10], (10, 20], (20, 35], ...
ANGLE_BIN_EDGES = (0.0, 10.0, 20.0, 35.0, 60.0, 90.0, 180.0)
# Angles from float32 cameras: 35 deg comes back as 35.00001; this much above an edge still
# counts as on it.
_ANGLE_TOLERANCE_DEG = 1e-3


def camera_center(world_to_camera) -> np.ndarray:
    """The camera centre in world coordinates, `[3]`: -R^T t of a `[3, 4]` world-to-camera."""
    matrix = _np(world_to_camera).reshape(3, 4)
    return -matrix[:, :3].T @ matrix[:, 3]


def canonical_yaw_deg(world_to_camera) -> float:
    """Signed yaw of a camera in the canonical frame, degrees in (-180, 180].

    The canonical frame's frontal camera sits at (0, 0, -d) (objects look towards -z, +y is down,
    README "Conventions"); yaw is the camera centre's azimuth about the vertical y axis: 0 for
    the frontal camera, positive towards +x (`camera.orbit_eyes`), whatever its pitch.

    Args:
      world_to_camera: `[3, 4]` OpenCV world-to-camera transform.
    """
    center = camera_center(world_to_camera)
    return float(np.degrees(np.arctan2(center[0], -center[2])))


def view_angle_deg(world_to_camera, reference_world_to_camera) -> float:
    """Angle between two views seen from the object's centre (the world origin), degrees.

    The angle between the directions from the origin to the two camera centres, in [0, 180]:
    yaw and pitch together, independent of the world frame's orientation, so it works for any
    class (cars seen all around, scenes from transforms.json) given each object's training view.

    Args:
      world_to_camera: `[3, 4]` the view.
      reference_world_to_camera: `[3, 4]` the reference (e.g. the object's training view).
    """
    a = camera_center(world_to_camera)
    b = camera_center(reference_world_to_camera)
    norms = np.linalg.norm(a) * np.linalg.norm(b)
    if norms == 0:
        raise ValueError("view_angle_deg: a camera sits at the world origin (no direction)")
    cosine = float(np.clip(np.dot(a, b) / norms, -1.0, 1.0))
    return float(np.degrees(np.arccos(cosine)))


def angle_bin(angle_deg: float, edges=ANGLE_BIN_EDGES) -> str | None:
    """Label "lo-hi" of the bin holding |angle_deg|: [e0, e1], (e1, e2], ...; None beyond."""
    if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"angle bin edges must increase, got {edges}")
    value = abs(float(angle_deg))
    if not math.isfinite(value) or value < edges[0] - _ANGLE_TOLERANCE_DEG:
        return None
    for lo, hi in zip(edges, edges[1:]):
        if value <= hi + _ANGLE_TOLERANCE_DEG:
            return f"{lo:g}-{hi:g}"
    return None


def summarize_by_angle(
    per_view: list[dict[str, float]], angles_deg, edges=ANGLE_BIN_EDGES
) -> dict[str, dict[str, float]]:
    """Per angle bin, the `summarize` of the views in it.

    Args:
      per_view: metric dicts of the views (e.g. `image_metrics` outputs).
      angles_deg: one angle per view, degrees (signed or not: |angle| is binned), e.g.
        `canonical_yaw_deg` for a class with a frontal canonical frame or `view_angle_deg` to
        the object's training view for any class.
      edges: increasing bin edges, degrees.

    Returns:
      {"lo-hi": summary + num_views (views in the bin) + angle_mean_deg (mean |angle|)}, bins in
      increasing order, empty bins left out; views outside every bin are left out.
    """
    angles = [float(a) for a in angles_deg]
    if len(angles) != len(per_view):
        raise ValueError(f"{len(per_view)} views but {len(angles)} angles")
    groups: dict[str, list[int]] = {}
    for index, angle in enumerate(angles):
        label = angle_bin(angle, edges)
        if label is not None:
            groups.setdefault(label, []).append(index)
    out = {}
    for lo, hi in zip(edges, edges[1:]):
        label = f"{lo:g}-{hi:g}"
        if label not in groups:
            continue
        indices = groups[label]
        summary = summarize([per_view[i] for i in indices])
        summary["num_views"] = len(indices)
        summary["angle_mean_deg"] = float(np.mean([abs(angles[i]) for i in indices]))
        out[label] = summary
    return out


ANGLE_REFERENCES = ("training_view", "canonical")


def view_angles(views: list[dict], reference: str = "training_view", train_views=()) -> list[float]:
    """Each view's angle from its reference, degrees (for `summarize_by_angle`).

    Args:
      views: dicts with world_to_camera `[3, 4]` and, for "training_view", object_id.
      reference: "training_view": `view_angle_deg` to the object's first view among
        `train_views` (NaN when it has none), for any class; "canonical": `canonical_yaw_deg`
        (signed), for classes whose world frame has a frontal camera at -z (faces, the
        synthetic heads).
      train_views: the training views (world_to_camera, object_id), in order.

    Returns:
      one angle per view, degrees.
    """
    if reference == "canonical":
        return [canonical_yaw_deg(v["world_to_camera"]) for v in views]
    if reference != "training_view":
        raise ValueError(f"angle reference must be one of {ANGLE_REFERENCES}, got {reference!r}")
    sources: dict[int, dict] = {}
    for view in train_views:
        sources.setdefault(view["object_id"], view)
    angles = []
    for view in views:
        source = sources.get(view["object_id"])
        angles.append(
            math.nan
            if source is None
            else view_angle_deg(view["world_to_camera"], source["world_to_camera"])
        )
    return angles
