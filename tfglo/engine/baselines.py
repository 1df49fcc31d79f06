"""The billboard baseline: a training photo pasted on a plane, seen from another camera.

The weakest sensible "3D" model of a single view: the training image is a flat card through the
world origin (where the object sits, DESIGN.md section 3), facing its camera (the plane's normal is
the training camera's optical axis). Rendering it into a held-out camera intersects each ray with
the plane, projects the hit point into the training camera and samples the training image there
(bilinear). Rays that miss the card (parallel to it, hitting it behind the camera, or landing
outside the training image) see a constant background: the median of the training image's border
pixels. A learned 3D model must beat this on held-out views to show it has learned anything
beyond the photo itself.
"""

import numpy as np

from tfglo.geometry import camera as camera_lib


def border_median(image: np.ndarray) -> np.ndarray:
    """Median colour `[C]` of the one-pixel border of an image `[H, W, C]`."""
    image = np.asarray(image, np.float32)
    border = np.concatenate([image[0], image[-1], image[1:-1, 0], image[1:-1, -1]], axis=0).reshape(
        -1, image.shape[-1]
    )
    return np.median(border, axis=0).astype(np.float32)


def bilinear_sample(image: np.ndarray, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Samples an image at continuous pixel coordinates (pixel centres at +0.5).

    Args:
      image: `[H, W, C]`.
      pixels: `[..., 2]` (x, y) pixel coordinates.

    Returns:
      values `[..., C]` and inside `[...]` bool (the point lies within [0, W] x [0, H]; near the
      edges the nearest pixels are replicated).
    """
    image = np.asarray(image, np.float32)
    height, width = image.shape[:2]
    x = pixels[..., 0] - 0.5
    y = pixels[..., 1] - 0.5
    inside = ((pixels[..., 0] >= 0) & (pixels[..., 0] <= width) & (pixels[..., 1] >= 0)) & (
        pixels[..., 1] <= height
    )
    inside &= np.isfinite(x) & np.isfinite(y)
    x = np.clip(np.nan_to_num(x), 0.0, width - 1.0)
    y = np.clip(np.nan_to_num(y), 0.0, height - 1.0)
    x0 = np.floor(x).astype(np.int64)
    y0 = np.floor(y).astype(np.int64)
    x1 = np.minimum(x0 + 1, width - 1)
    y1 = np.minimum(y0 + 1, height - 1)
    fx = (x - x0)[..., None]
    fy = (y - y0)[..., None]
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32), inside


def render_billboard(
    image,
    source_intrinsics,
    source_world_to_camera,
    target_intrinsics,
    target_world_to_camera,
    height: int,
    width: int,
    mask=None,
    background=None,
) -> dict[str, np.ndarray]:
    """Renders the billboard of a training image into another camera.

    Args:
      image: `[H_s, W_s, 3]` training image in [0, 1].
      source_intrinsics: `[4]` training camera (fx, fy, cx, cy), pixels.
      source_world_to_camera: `[3, 4]` training camera [R | t], OpenCV.
      target_intrinsics: `[4]` camera to render into.
      target_world_to_camera: `[3, 4]` camera to render into.
      height, width: output size, pixels.
      mask: optional `[H_s, W_s]` training foreground mask; the card's opacity is the mask sampled
        like the image (the whole card is opaque without one).
      background: `[3]` colour for rays that miss the card; the border median of `image` when None.

    Returns:
      dict with rgb `[H, W, 3]`, alpha `[H, W]` (sampled mask, 0 off the card), depth `[H, W]`
      (camera z of the card point in the target camera, 0 off the card), on_card `[H, W]` bool.
    """
    image = np.asarray(image, np.float32)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must be [H, W, 3], got {image.shape}")
    if background is None:
        background = border_median(image)
    background = np.asarray(background, np.float32)
    source = camera_lib.make_camera(source_intrinsics, source_world_to_camera)
    target = camera_lib.make_camera(target_intrinsics, target_world_to_camera)

    rotation = np.asarray(source.world_to_camera, np.float64)[:, :3]
    normal = rotation[2]  # the source camera's optical axis (+z) in world coordinates
    origins, directions = camera_lib.image_rays(target, height, width)
    origins = np.asarray(origins, np.float64).reshape(-1, 3)
    directions = np.asarray(directions, np.float64).reshape(-1, 3)
    denominator = directions @ normal
    parallel = np.abs(denominator) < 1e-9
    distance = -(origins @ normal) / np.where(parallel, 1.0, denominator)
    in_front = (~parallel) & (distance > 0)
    points = origins + distance[:, None] * directions

    pixels, source_z = camera_lib.project(source, points.astype(np.float32)[None])
    pixels = np.asarray(pixels)[0]
    source_z = np.asarray(source_z)[0]
    rgb, inside = bilinear_sample(image, pixels)
    on_card = in_front & inside & (source_z > 0)

    if mask is not None:
        mask = np.asarray(mask, np.float32)
        if mask.shape != image.shape[:2]:
            raise ValueError(f"mask must be {image.shape[:2]}, got {mask.shape}")
        alpha = bilinear_sample(mask[..., None], pixels)[0][:, 0]
    else:
        alpha = np.ones(len(points), np.float32)
    alpha = np.where(on_card, alpha, 0.0).astype(np.float32)
    rgb = np.where(on_card[:, None], rgb, background[None]).astype(np.float32)

    rotation_t = np.asarray(target.world_to_camera, np.float64)
    target_z = points @ rotation_t[2, :3] + rotation_t[2, 3]
    depth = np.where(on_card, target_z, 0.0).astype(np.float32)
    return {
        "rgb": rgb.reshape(height, width, 3),
        "alpha": alpha.reshape(height, width),
        "depth": depth.reshape(height, width),
        "on_card": on_card.reshape(height, width),
    }


def billboard_sources(train_views) -> dict[int, dict]:
    """Each object's first view among `train_views` (view dicts, in their order): its billboard's
    source image. Returns {object_id: view}."""
    sources: dict[int, dict] = {}
    for view in train_views:
        sources.setdefault(view["object_id"], view)
    return sources


def render_billboard_view(source: dict, view: dict) -> dict[str, np.ndarray]:
    """Renders the billboard of `source` (a train view dict: image, mask, intrinsics,
    world_to_camera) into `view`'s camera and image size; see `render_billboard`."""
    height, width = view["image"].shape[:2]
    return render_billboard(
        source["image"],
        source["intrinsics"],
        source["world_to_camera"],
        view["intrinsics"],
        view["world_to_camera"],
        height,
        width,
        mask=source["mask"],
    )
