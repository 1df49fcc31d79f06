"""One view of a set of primitives with exact ground truth: image, mask, depth, primitive ids.

Every pixel casts one ray through its centre (no anti-aliasing), so the mask is exactly the set
of pixels whose ray hits a primitive and the depth is that hit's camera z: the ground truth is
exact, not estimated.
"""

from collections.abc import Callable

import numpy as np

from tfglo.data.synthetic import cameras, primitives, shading

# An environment: unit world directions [N, 3] -> colours [N, 3]; or one constant colour [3].
Background = Callable[[np.ndarray], np.ndarray] | np.ndarray | tuple


def check_camera(intrinsics, world_to_camera) -> tuple[np.ndarray, np.ndarray]:
    """float64 intrinsics `[4]` and world-to-camera `[3, 4]` of one unbatched camera.

    Raises:
      ValueError: the camera is batched or malformed.
    """
    intrinsics = np.asarray(intrinsics, np.float64)
    pose = np.asarray(world_to_camera, np.float64)
    if intrinsics.shape != (4,) or pose.shape != (3, 4):
        raise ValueError(
            f"render_view needs one unbatched camera, got intrinsics {intrinsics.shape} and "
            f"world_to_camera {pose.shape}"
        )
    return intrinsics, pose


def render_view(
    prims: primitives.Primitives,
    lighting: shading.Lighting,
    background: Background,
    intrinsics,
    world_to_camera,
    height: int,
    width: int,
    bound_radius: float = 1.0,
) -> dict[str, np.ndarray]:
    """Renders one view of primitives lying inside a sphere of `bound_radius` around the origin.

    Args:
      prims: the primitives.
      lighting: their light.
      background: a function of unit world ray directions `[N, 3]` -> sRGB `[N, 3]`, or one
        constant sRGB colour `[3]`.
      intrinsics: `[4]` (fx, fy, cx, cy), pixels.
      world_to_camera: `[3, 4]` OpenCV world-to-camera; the camera lies outside the sphere.
      height, width: image size, pixels.
      bound_radius: only rays that meet this sphere are traced (the primitives lie inside it).

    Returns:
      dict with image `[H, W, 3]` uint8, mask `[H, W]` uint8 (255 where the pixel's ray hits a
      primitive, else 0), depth `[H, W]` float32 (camera z of the hit, object units; 0 off the
      object), primitive `[H, W]` int32 (index of the primitive hit, -1 on the background).
    """
    intrinsics, pose = check_camera(intrinsics, world_to_camera)
    origin, directions, z_per_t = cameras.pixel_rays(intrinsics, pose, height, width)
    # Only rays that meet the bounding sphere can hit a primitive: trace those alone.
    b = directions @ origin
    candidates = np.flatnonzero(b * b - (origin @ origin - bound_radius**2) > 0.0)
    hits = primitives.trace(prims, origin, directions[candidates])
    primitive = np.full(len(directions), -1)
    primitive[candidates] = hits["primitive"]
    hit = primitive >= 0
    if callable(background):
        rgb = background(directions)
    else:
        rgb = np.tile(np.asarray(background, np.float64).reshape(1, 3), [len(directions), 1])
    colors = shading.shade(prims.colors, hits["primitive"], hits["normals"], lighting)
    rgb[candidates] = np.where(hit[candidates, None], colors, rgb[candidates])
    depth = np.zeros(len(directions))
    depth[candidates] = np.where(hits["primitive"] >= 0, hits["t"] * z_per_t[candidates], 0.0)
    return {
        "image": np.round(np.clip(rgb, 0.0, 1.0) * 255.0)
        .astype(np.uint8)
        .reshape(height, width, 3),
        "mask": np.where(hit, 255, 0).astype(np.uint8).reshape(height, width),
        "depth": depth.astype(np.float32).reshape(height, width),
        "primitive": primitive.astype(np.int32).reshape(height, width),
    }
