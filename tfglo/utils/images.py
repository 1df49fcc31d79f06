"""Writing images: PNG, looping GIF, colour-mapped depth, labelled grids, raw depth arrays.

Everything here is numpy + Pillow (no matplotlib): images are float arrays in [0, 1] (as
everywhere in the package, DESIGN.md section 3) or uint8, and are converted once, on writing.
The depth colour map is a built-in viridis table (11 stops, linearly interpolated), so the output
does not depend on an optional plotting package.
"""

import os
import pathlib

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Viridis at t = 0, 0.1, ..., 1 (the published colour map's stops). Near is drawn bright (t = 1),
# far dark, so the nearest parts of an object stand out.
_VIRIDIS_HEX = (
    "440154",
    "482475",
    "414487",
    "355f8d",
    "2a788e",
    "21918c",
    "22a884",
    "44bf70",
    "7ad151",
    "bddf26",
    "fde725",
)
VIRIDIS = np.array([[int(h[i : i + 2], 16) for i in (0, 2, 4)] for h in _VIRIDIS_HEX], np.float32)
VIRIDIS /= 255.0


def _as_array(image) -> np.ndarray:
    # Accept tensors too (anything with .numpy()) without importing TensorFlow here.
    if hasattr(image, "numpy"):
        image = image.numpy()
    return np.asarray(image)


def to_uint8(image) -> np.ndarray:
    """Converts an image to uint8.

    Args:
      image: `[H, W]`, `[H, W, 1]` or `[H, W, 3]`; float in [0, 1] (values outside are clipped)
        or uint8 (returned unchanged).

    Returns:
      uint8 array, `[H, W]` for single-channel input, `[H, W, 3]` otherwise.

    Raises:
      ValueError: the shape is not an image's, or a float image holds NaN.
    """
    image = _as_array(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] != 3):
        raise ValueError(f"expected an image [H, W], [H, W, 1] or [H, W, 3], got {image.shape}")
    if image.dtype == np.uint8:
        return image
    image = image.astype(np.float32)
    if np.isnan(image).any():
        raise ValueError("image holds NaN values")
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def to_float(image) -> np.ndarray:
    """float32 `[H, W, 3]` in [0, 1] of a uint8 or float image (grey is repeated to RGB)."""
    image = _as_array(image)
    if image.dtype == np.uint8:
        image = image.astype(np.float32) / 255.0
    image = image.astype(np.float32)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an image [H, W], [H, W, 1] or [H, W, 3], got {image.shape}")
    return image


def _parent(path) -> pathlib.Path:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write_png(path: os.PathLike | str, image) -> pathlib.Path:
    """Writes an image as PNG (creating parent directories).

    Args:
      path: output file.
      image: `[H, W]` (grey), `[H, W, 1]` or `[H, W, 3]`, float in [0, 1] or uint8.

    Returns:
      The path written.
    """
    path = _parent(path)
    Image.fromarray(to_uint8(image)).save(path, format="PNG")
    return path


def read_png(path: os.PathLike | str) -> np.ndarray:
    """Reads a PNG as float32 `[H, W, 3]` in [0, 1] (RGB; grey and alpha are converted)."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), np.float32) / 255.0


def write_gif(
    path: os.PathLike | str, frames, fps: float = 12.0, loop: bool = True
) -> pathlib.Path:
    """Writes frames as an animated GIF that loops forever (or plays once).

    Args:
      path: output file.
      frames: sequence of `[H, W, 3]` (or grey) images of one size, float in [0, 1] or uint8.
      fps: frames per second (GIF delays are whole milliseconds).
      loop: loop forever when True, play once otherwise.

    Returns:
      The path written.

    Raises:
      ValueError: no frames, or frames of different sizes.
    """
    frames = [to_uint8(f) for f in frames]
    if not frames:
        raise ValueError("write_gif needs at least one frame")
    shapes = {f.shape[:2] for f in frames}
    if len(shapes) != 1:
        raise ValueError(f"GIF frames must share one size, got {sorted(shapes)}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    path = _parent(path)
    pil = [Image.fromarray(f).convert("RGB") for f in frames]
    kwargs = {"loop": 0} if loop else {}
    pil[0].save(
        path,
        format="GIF",
        save_all=True,
        append_images=pil[1:],
        duration=max(1, round(1000.0 / fps)),
        disposal=2,
        **kwargs,
    )
    return path


def apply_colormap(values, colormap: np.ndarray = VIRIDIS) -> np.ndarray:
    """Maps values in [0, 1] (clipped) through a colour table, `[...] -> [..., 3]` float32."""
    values = np.clip(np.nan_to_num(_as_array(values).astype(np.float32)), 0.0, 1.0)
    position = values * (len(colormap) - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, len(colormap) - 1)
    frac = (position - low)[..., None]
    return (colormap[low] * (1.0 - frac) + colormap[high] * frac).astype(np.float32)


# Silhouette pixels of a rendered object have grazing rays and far depths; a few percent of them
# would stretch a min/max range so much that the whole face gets one colour.
DEPTH_PERCENTILE = 5.0


def depth_range(depth, mask=None, percentile: float = DEPTH_PERCENTILE) -> tuple[float, float]:
    """Robust (near, far) range of the valid depths of an image.

    Args:
      depth: `[H, W]` depth, object units; values <= 0 or non-finite count as "no surface".
      mask: optional `[H, W]` weights in [0, 1]; pixels below 0.5 are ignored.
      percentile: ignore this percentage of outliers at each end.

    Returns:
      (near, far) with far > near; (0, 1) when no pixel is valid.
    """
    depth = _as_array(depth).astype(np.float32)
    valid = np.isfinite(depth) & (depth > 0)
    if mask is not None:
        valid &= _as_array(mask) >= 0.5
    if not valid.any():
        return 0.0, 1.0
    near, far = np.percentile(depth[valid], [percentile, 100.0 - percentile])
    if far - near < 1e-6:
        far = near + 1e-6
    return float(near), float(far)


def colorize_depth(
    depth,
    mask=None,
    depth_min: float | None = None,
    depth_max: float | None = None,
    background=(0.0, 0.0, 0.0),
    colormap: np.ndarray = VIRIDIS,
) -> tuple[np.ndarray, tuple[float, float]]:
    """Colour-maps a depth image: near is bright, far is dark; no-surface pixels get `background`.

    Args:
      depth: `[H, W]` depth, object units (<= 0 or non-finite: no surface).
      mask: optional `[H, W]` foreground weights; pixels below 0.5 are painted as background.
      depth_min, depth_max: the range mapped onto the colour table; by default the 5th-95th
        percentile of the valid depths (pass fixed values to compare frames of one orbit).
      background: RGB in [0, 1] for pixels without a surface.
      colormap: `[K, 3]` colour table in [0, 1], from t = 0 to t = 1.

    Returns:
      (image `[H, W, 3]` float32 in [0, 1], (depth_min, depth_max) used).
    """
    depth = _as_array(depth).astype(np.float32)
    if depth.ndim != 2:
        raise ValueError(f"depth must be [H, W], got {depth.shape}")
    auto_min, auto_max = depth_range(depth, mask)
    depth_min = auto_min if depth_min is None else float(depth_min)
    depth_max = auto_max if depth_max is None else float(depth_max)
    if depth_max <= depth_min:
        raise ValueError(f"depth_max ({depth_max}) must exceed depth_min ({depth_min})")
    valid = np.isfinite(depth) & (depth > 0)
    if mask is not None:
        valid &= _as_array(mask) >= 0.5
    t = 1.0 - (np.nan_to_num(depth) - depth_min) / (depth_max - depth_min)
    image = apply_colormap(t, colormap)
    image[~valid] = np.asarray(background, np.float32)
    return image, (depth_min, depth_max)


def error_image(prediction, target, max_error: float = 0.25) -> np.ndarray:
    """Colour-mapped per-pixel RGB error |prediction - target| averaged over channels.

    Args:
      prediction, target: `[H, W, 3]` images in [0, 1].
      max_error: error drawn at the top of the colour table (yellow); 0 is dark purple.

    Returns:
      `[H, W, 3]` float32 in [0, 1].
    """
    error = np.abs(to_float(prediction) - to_float(target)).mean(-1)
    return apply_colormap(error / max_error)


def save_depth(path: os.PathLike | str, depth) -> pathlib.Path:
    """Saves raw depth `[H, W]` (object units) as float32 `.npy`. Returns the path."""
    path = _parent(path)
    np.save(path, _as_array(depth).astype(np.float32))
    return path


def _font():
    try:
        return ImageFont.load_default()
    except OSError:  # pragma: no cover - Pillow always ships its default bitmap font
        return None


def image_grid(
    rows,
    column_labels=None,
    row_labels=None,
    padding: int = 2,
    background: float = 1.0,
) -> np.ndarray:
    """Arranges images into one grid image, with optional labels above columns / left of rows.

    Images in a row may differ in size; each cell is as large as the largest image of its column
    and row, and smaller images are centred in it.

    Args:
      rows: list of rows, each a list of images (`[H, W]` or `[H, W, 3]`, float or uint8); `None`
        leaves a cell empty.
      column_labels: optional list of strings, one per column.
      row_labels: optional list of strings, one per row.
      padding: pixels between cells.
      background: grey level of the padding and empty cells, in [0, 1].

    Returns:
      `[H_grid, W_grid, 3]` float32 in [0, 1].

    Raises:
      ValueError: no images, or labels of the wrong length.
    """
    rows = [[None if im is None else to_float(im) for im in row] for row in rows]
    num_cols = max((len(r) for r in rows), default=0)
    if not rows or num_cols == 0 or all(im is None for r in rows for im in r):
        raise ValueError("image_grid needs at least one image")
    if column_labels is not None and len(column_labels) != num_cols:
        raise ValueError(f"{len(column_labels)} column labels for {num_cols} columns")
    if row_labels is not None and len(row_labels) != len(rows):
        raise ValueError(f"{len(row_labels)} row labels for {len(rows)} rows")
    col_widths = [
        max((r[c].shape[1] for r in rows if c < len(r) and r[c] is not None), default=0)
        for c in range(num_cols)
    ]
    row_heights = [max((im.shape[0] for im in r if im is not None), default=0) for r in rows]
    font = _font()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def text_size(text):
        box = measure.textbbox((0, 0), text, font=font)
        return box[2] - box[0], box[3] - box[1]

    label_h = 0
    if column_labels:
        label_h = max(text_size(str(s))[1] for s in column_labels) + 2 * padding + 2
        # Widen columns whose label is wider than their images, so labels never overlap.
        col_widths = [max(w, text_size(str(s))[0] + 2) for w, s in zip(col_widths, column_labels)]
    label_w = 0
    if row_labels:
        label_w = max(text_size(str(s))[0] for s in row_labels) + 2 * padding + 2
    height = label_h + sum(row_heights) + padding * (len(rows) + 1)
    width = label_w + sum(col_widths) + padding * (num_cols + 1)
    grid = np.full((height, width, 3), background, np.float32)
    y = label_h + padding
    for r, row in enumerate(rows):
        x = label_w + padding
        for c in range(num_cols):
            image = row[c] if c < len(row) else None
            if image is not None:
                oy = y + (row_heights[r] - image.shape[0]) // 2
                ox = x + (col_widths[c] - image.shape[1]) // 2
                grid[oy : oy + image.shape[0], ox : ox + image.shape[1]] = image
            x += col_widths[c] + padding
        y += row_heights[r] + padding
    if not column_labels and not row_labels:
        return grid
    pil = Image.fromarray(to_uint8(grid))
    draw = ImageDraw.Draw(pil)
    ink = (0, 0, 0) if background > 0.5 else (255, 255, 255)
    if column_labels:
        x = label_w + padding
        for c, text in enumerate(column_labels):
            draw.text((x + 1, padding), str(text), fill=ink, font=font)
            x += col_widths[c] + padding
    if row_labels:
        y = label_h + padding
        for r, text in enumerate(row_labels):
            draw.text((padding, y + 1), str(text), fill=ink, font=font)
            y += row_heights[r] + padding
    return np.asarray(pil, np.float32) / 255.0
