"""How much of an image's foreground the bounding sphere can explain.

The renderer samples only inside the bounding sphere (`camera.intersect_sphere`); a foreground
pixel whose ray misses the sphere can only be drawn by the background field, so the model can
never make it solid (the shoulders of a head-and-shoulders photo, cut in a round arc, issue 16).
`mask_outside_fraction` measures that share per image; `tfglo.data.photo_import` reports it.
"""

import numpy as np

from tfglo.geometry import camera as camera_lib


def ray_hits_sphere(intrinsics, world_to_camera, height: int, width: int, radius: float):
    """Whether each pixel's ray meets the sphere of `radius` around the origin, `[H, W]` bool.

    Args:
      intrinsics: `[4]` (fx, fy, cx, cy), pixels.
      world_to_camera: `[3, 4]` OpenCV [R | t].
      height, width: image size, pixels.
      radius: bounding-sphere radius, object units.
    """
    cam = camera_lib.make_camera(intrinsics, world_to_camera)
    origins, directions = camera_lib.image_rays(cam, height, width)
    _, _, hit = camera_lib.intersect_sphere(origins, directions, radius)
    return hit.numpy()


def mask_outside_fraction(
    mask, intrinsics, world_to_camera, radius: float, threshold: float = 0.5
) -> float:
    """Fraction of foreground pixels whose rays miss the bounding sphere.

    Args:
      mask: `[H, W]` foreground mask, uint8 (0..255) or float in [0, 1].
      intrinsics: `[4]` (fx, fy, cx, cy), pixels.
      world_to_camera: `[3, 4]` OpenCV [R | t].
      radius: bounding-sphere radius, object units.
      threshold: a pixel is foreground when its mask value (scaled to [0, 1]) exceeds this.

    Returns:
      A fraction in [0, 1]; 0 when the mask has no foreground pixel.
    """
    mask = np.asarray(mask)
    values = mask.astype(np.float32) / 255.0 if mask.dtype == np.uint8 else mask
    foreground = values > threshold
    if not foreground.any():
        return 0.0
    hit = ray_hits_sphere(intrinsics, world_to_camera, mask.shape[0], mask.shape[1], radius)
    return float(np.mean(~hit[foreground]))


def summarise(fractions: dict[str, float]) -> dict:
    """dataset.json entry: per-image fractions plus mean, max, worst image and counts over 1 %."""
    if not fractions:
        return {"per_image": {}}
    values = np.array(list(fractions.values()))
    worst = max(fractions, key=fractions.get)
    return {
        "mean": round(float(values.mean()), 5),
        "max": round(float(values.max()), 5),
        "worst": worst,
        "images_over_1_percent": int(np.sum(values > 0.01)),
        "per_image": {name: round(float(v), 5) for name, v in fractions.items()},
    }


def summary_line(summary: dict, radius: float) -> str:
    """One human line for logs and the prepare app's summary."""
    if "mean" not in summary:
        return "mask pixels outside the bounding sphere: no masks"
    count = len(summary["per_image"])
    return (
        f"mask pixels whose rays miss the bounding sphere (radius {radius:g}): mean "
        f"{summary['mean']:.2%}, max {summary['max']:.2%} ({summary['worst']}), "
        f"{summary['images_over_1_percent']} of {count} images over 1%"
    )
