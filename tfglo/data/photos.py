"""Photos in, square face crops out: robust loading, cropping with padding, landmark transforms.

Loading (`load_photo`) accepts what people actually have in a photo folder and turns it into an
upright `[H, W, 3]` uint8 RGB array, or raises `PhotoError` with a short reason:
- EXIF orientation is applied (phone photos are often stored sideways);
- every PIL mode becomes RGB: L/1/P/CMYK/YCbCr/LAB/HSV by PIL's conversion; 16-bit and 32-bit
  grayscale (I;16, I;16B, I, F) are scaled to 8 bits (not clipped, which would whiten them);
  images with transparency (RGBA, LA, PA, P with a transparent colour) are composited on a
  background colour (`PhotoConfig.alpha="white"`, the default, or "black"), or their alpha is
  dropped ("drop"); animated/multi-page files give their first frame;
- unreadable files are rejected with a reason: "not an image", "truncated", "unreadable"
  (whatever the decoder raised on a malformed file, named in the detail), "too small" (shorter
  side < `min_size`, or no pixels at all), "too large" (decompression-bomb guard, below).

Memory is bounded by the pixel count of the file's header, before any pixel is decoded: a photo
with more than `max_pixels` pixels is refused ("too large"), except a JPEG, which is decoded at
1/2, 1/4 or 1/8 of its size by the decoder's DCT scaling (`LoadedPhoto.scale` says which) when
that fits. (PIL itself refuses files of more than 2 x `PIL.Image.MAX_IMAGE_PIXELS`, ~179 M
pixels, as decompression bombs: "too large" too.) Mode conversions run in blocks of rows, and
the EXIF rotation is done on the converted array, so the peak is the decoder's image plus the
returned array plus a block: measured 7-10 bytes per decoded pixel (RGB JPEG 7.3, RGB PNG 8.2,
RGBA PNG 9.5; the one-shot float conversions before took 14-64), so under 1 GB at the default
`max_pixels`. A 20000 x 20000 PNG of one colour (441 KB on disk) is refused from its header,
with no growth of the process (tests/test_fuzz_inputs.py measures these in a fresh process).

Cropping (`crop_square`) cuts a square around a face box with a margin. Where the square leaves the
photo it is padded (edge replication or a constant colour), and the padding is recorded. The crop is
resized to the output size; `CropTransform` maps photo pixels to crop pixels (landmarks).

Pixel coordinates follow `tfglo.geometry.camera`: continuous (x, y) with pixel centres at +0.5.
"""

import dataclasses
import os
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

ALPHA_MODES = ("white", "black", "drop")
PAD_MODES = ("edge", "constant")


class PhotoError(Exception):
    """A photo cannot be used. `reason` is a short category, `detail` says what happened."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass(frozen=True)
class PhotoConfig:
    """How photos are loaded and cropped.

    Attributes:
      image_size: side of the square output crop, pixels.
      crop_margin: margin added on every side of the face box, as a fraction of the box's longer
        side (0.5: the crop side is twice the box side).
      pad_mode: "edge" (replicate the border pixels) or "constant" (`pad_color`) where the
        square leaves the photo.
      pad_color: RGB 0..255 for "constant" padding.
      alpha: transparency handling: "white" / "black" (composite on that colour) or "drop".
      min_size: photos whose shorter side is below this are rejected ("too small"), pixels.
      max_pixels: photos with more pixels are rejected before decoding ("too large"), except
        JPEGs, which are decoded at a reduced size that fits (see the module docstring).
    """

    image_size: int = 256
    crop_margin: float = 0.5
    pad_mode: str = "edge"
    pad_color: tuple[int, int, int] = (255, 255, 255)
    alpha: str = "white"
    min_size: int = 32
    max_pixels: int = 100_000_000

    def __post_init__(self):
        if self.pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {self.pad_mode!r}")
        if self.alpha not in ALPHA_MODES:
            raise ValueError(f"alpha must be one of {ALPHA_MODES}, got {self.alpha!r}")
        if self.image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {self.image_size}")
        if self.crop_margin < 0:
            raise ValueError(f"crop_margin must be >= 0, got {self.crop_margin}")
        if self.max_pixels < 1:
            raise ValueError(f"max_pixels must be >= 1, got {self.max_pixels}")


@dataclasses.dataclass
class LoadedPhoto:
    """A decoded photo.

    Attributes:
      image: `[H, W, 3]` uint8 RGB, upright.
      mode: the PIL mode of the file ("RGB", "CMYK", "I;16", ...).
      notes: what was done to it (conversions, EXIF rotation, alpha compositing).
      scale: decoded pixels per pixel of the file (1, or 1/2, 1/4, 1/8 for a huge JPEG decoded
        at a reduced size): a point (x, y) of the file's upright photo is (x, y) * scale here.
    """

    image: np.ndarray
    mode: str
    notes: list[str]
    scale: float = 1.0

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


# Rows are converted in blocks of about this many pixels, so the float temporaries of a
# conversion (alpha compositing, 16-bit scaling) stay small whatever the photo's size.
_BLOCK_PIXELS = 1 << 18
_DEEP_GRAY_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
# EXIF orientation -> the numpy view of `ImageOps.exif_transpose` on an `[H, W, C]` array
# (2: mirror, 3: 180 degrees, 4: flip, 5: transpose, 6: 90 clockwise, 7: transverse,
# 8: 90 counter-clockwise); a test checks each against PIL.
_ORIENTATIONS = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}


def _converter(image: Image.Image, config: PhotoConfig, notes: list[str]):
    """The function that turns a block of rows (a PIL image) into `[h, W, 3]` uint8 RGB."""
    mode = image.mode
    if mode in _DEEP_GRAY_MODES:
        low, high = image.getextrema()
        high = max(float(high), 0.0) if np.isfinite(high) else 0.0
        if mode == "F":
            top = 1.0 if high <= 1.0 else 255.0
        elif mode == "I":
            # 32-bit ints: PNG 16-bit grayscale often opens as "I"; 8-bit data stays 8-bit.
            top = 65535.0 if high > 255.0 else 255.0
        else:
            top = 65535.0
        notes.append(f"{mode} scaled to 8 bits")

        def deep_gray(block):
            values = np.nan_to_num(np.asarray(block, np.float64), nan=0.0, posinf=top, neginf=0)
            gray = np.clip(np.round(values / top * 255.0), 0, 255).astype(np.uint8)
            return np.repeat(gray[..., None], 3, -1)

        return deep_gray
    has_alpha = mode in _ALPHA_MODES or (mode == "P" and "transparency" in image.info)
    if has_alpha:
        if config.alpha == "drop":
            notes.append(f"{mode}: alpha dropped")
            return lambda block: np.asarray(block.convert("RGBA"), np.uint8)[..., :3]
        background = 255.0 if config.alpha == "white" else 0.0
        notes.append(f"{mode}: composited on {config.alpha}")

        def composite(block):
            rgba = np.asarray(block.convert("RGBA"))
            alpha = rgba[..., 3:].astype(np.float32) / 255.0
            rgb = rgba[..., :3].astype(np.float32)
            rgb *= alpha  # rgb * a + background * (1 - a), in place
            rgb += background * (1.0 - alpha)
            return np.clip(np.round(rgb, out=rgb), 0, 255, out=rgb).astype(np.uint8)

        return composite
    if mode != "RGB":
        notes.append(f"{mode} converted to RGB")
        return lambda block: np.asarray(block.convert("RGB"), np.uint8)
    return lambda block: np.asarray(block, np.uint8)


def _to_rgb(image: Image.Image, config: PhotoConfig, notes: list[str]) -> np.ndarray:
    """Converts any PIL image to `[H, W, 3]` uint8 RGB (see the module docstring), in blocks of
    rows so that no full-size temporary beyond the result is made."""
    convert = _converter(image, config, notes)
    width, height = image.size
    out = np.empty((height, width, 3), np.uint8)
    rows = max(1, _BLOCK_PIXELS // max(width, 1))
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        block = image if (top, bottom) == (0, height) else image.crop((0, top, width, bottom))
        out[top:bottom] = convert(block)
    return out


def _draft_factor(image: Image.Image, max_pixels: int) -> int | None:
    """Asks a JPEG decoder for a reduced size (1/2, 1/4, 1/8) with at most `max_pixels` pixels;
    returns the factor, or None (not a JPEG, or even 1/8 is too large)."""
    if image.format != "JPEG":
        return None
    width, height = image.size
    for factor in (2, 4, 8):
        size = (-(-width // factor), -(-height // factor))
        if size[0] * size[1] <= max_pixels:
            image.draft(image.mode, size)
            if image.size[0] * image.size[1] <= max_pixels:
                return round(width / image.size[0])
            return None
    return None


def load_photo(path: os.PathLike | str, config: PhotoConfig | None = None) -> LoadedPhoto:
    """Decodes a photo into upright uint8 RGB.

    Args:
      path: an image file.
      config: loading settings (alpha handling, size limits).

    Returns:
      A `LoadedPhoto`.

    Raises:
      PhotoError: with reason "unreadable" (cannot be opened or decoded), "not an image",
        "truncated", "too large" or "too small".
    """
    config = config or PhotoConfig()
    notes: list[str] = []
    scale = 1.0
    try:
        with warnings.catch_warnings():
            # PIL warns, then errors, on decompression bombs; we check the size ourselves.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            # A file object, not the path: from a path PIL memory-maps uncompressed files, and
            # its memory-mapped TIFF decoder scrambles the pixels of EXIF orientations 5-8
            # (Pillow 13; a test keeps the case).
            with open(path, "rb") as handle, Image.open(handle) as image:
                width, height = image.size
                if min(width, height) < 1:
                    raise PhotoError("too small", f"{width}x{height} has no pixels")
                if width * height > config.max_pixels:
                    factor = _draft_factor(image, config.max_pixels)
                    if factor is None:
                        raise PhotoError(
                            "too large",
                            f"{width}x{height} has more than {config.max_pixels} pixels",
                        )
                    scale = 1.0 / factor
                    notes.append(
                        f"{width}x{height} decoded at 1/{factor} size "
                        f"({image.size[0]}x{image.size[1]}): more than {config.max_pixels} pixels"
                    )
                if getattr(image, "n_frames", 1) > 1:
                    notes.append(f"first of {image.n_frames} frames")
                    image.seek(0)
                mode = image.mode
                opened_size = image.size
                image.load()
                if image.size != opened_size:  # a decoder that disagrees with its own header
                    raise PhotoError(
                        "unreadable",
                        f"the decoder changed the size from {opened_size} to {image.size}",
                    )
                orientation = _orientation(image)
                array = _to_rgb(image, config, notes)
    except PhotoError:
        raise
    except UnidentifiedImageError as e:
        raise PhotoError("not an image", f"no image format that PIL reads: {path}") from e
    except Image.DecompressionBombError as e:
        raise PhotoError("too large", str(e)) from e
    except FileNotFoundError as e:
        raise PhotoError("unreadable", f"no such file: {e.filename}") from e
    except MemoryError as e:
        raise PhotoError("too large", f"out of memory while decoding: {e}") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        message = str(e)
        reason = "truncated" if "truncated" in message.lower() else "unreadable"
        raise PhotoError(reason, f"{type(e).__name__}: {message}") from e
    except Exception as e:  # noqa: BLE001 - decoders raise any type on malformed data
        raise PhotoError("unreadable", f"{type(e).__name__}: {e}") from e
    if isinstance(orientation, int) and orientation in _ORIENTATIONS:
        array = np.ascontiguousarray(_ORIENTATIONS[orientation](array))
        notes.append(f"EXIF orientation {orientation} applied")
    elif orientation not in (None, 1):
        notes.append(f"EXIF orientation {orientation!r} ignored (not 1-8)")
    if min(array.shape[:2]) < config.min_size:
        raise PhotoError(
            "too small",
            f"{array.shape[1]}x{array.shape[0]} is below the minimum side of {config.min_size} px",
        )
    return LoadedPhoto(image=array, mode=mode, notes=notes, scale=scale)


def _orientation(image: Image.Image):
    try:
        return image.getexif().get(0x0112)
    except Exception:  # noqa: BLE001 - unreadable EXIF means no orientation
        return None


def downscale_for_detection(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Returns a copy whose longer side is at most `max_side` and the scale applied (<= 1)."""
    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale >= 1.0:
        return image, 1.0
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = Image.fromarray(image).resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    # Use the exact per-axis ratios so that mapping points back is consistent with the resize.
    return np.ascontiguousarray(np.asarray(small)), size[0] / width


@dataclasses.dataclass(frozen=True)
class CropTransform:
    """Maps photo pixels to crop pixels: crop = (photo - origin) * scale.

    Attributes:
      origin: (x, y) of the square's top-left corner in photo pixels (may be negative).
      side: side of the square in photo pixels.
      scale: output size / side.
    """

    origin: tuple[float, float]
    side: float
    scale: float

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Photo `[..., 2]` (x, y) -> crop pixels `[..., 2]`; extra columns are scaled (z)."""
        points = np.asarray(points, np.float64).copy()
        points[..., 0] = (points[..., 0] - self.origin[0]) * self.scale
        points[..., 1] = (points[..., 1] - self.origin[1]) * self.scale
        if points.shape[-1] > 2:
            points[..., 2:] = points[..., 2:] * self.scale
        return points

    def invert(self, points: np.ndarray) -> np.ndarray:
        """Crop pixels `[..., 2]` -> photo pixels `[..., 2]`."""
        points = np.asarray(points, np.float64)
        return points[..., :2] / self.scale + np.asarray(self.origin)


@dataclasses.dataclass
class Crop:
    """A square crop.

    Attributes:
      image: `[S, S, 3]` uint8.
      transform: photo -> crop pixel mapping.
      padding: photo pixels added on each side {"left", "top", "right", "bottom"} (0 when the
        square lies inside the photo), plus "fraction": the largest of them / side, and "mode".
    """

    image: np.ndarray
    transform: CropTransform
    padding: dict

    @property
    def padded(self) -> bool:
        return any(self.padding[k] > 0 for k in ("left", "top", "right", "bottom"))


def square_around(box, margin: float) -> tuple[float, float, float]:
    """The square (centre x, centre y, side) around a box (x0, y0, x1, y1) with a margin."""
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(x1 - x0, y1 - y0) * (1.0 + 2.0 * margin)
    return 0.5 * (x0 + x1), 0.5 * (y0 + y1), max(side, 1.0)


def crop_square(
    image: np.ndarray,
    center: tuple[float, float],
    side: float,
    output_size: int,
    pad_mode: str = "edge",
    pad_color=(255, 255, 255),
) -> Crop:
    """Cuts a square from a photo, padding where it leaves the photo, and resizes it.

    Args:
      image: `[H, W, 3]` uint8.
      center: (x, y) of the square's centre, photo pixels.
      side: the square's side, photo pixels (rounded to whole pixels).
      output_size: side of the returned image, pixels.
      pad_mode: "edge" or "constant".
      pad_color: RGB for "constant".

    Returns:
      A `Crop`.

    Raises:
      ValueError: bad pad_mode or a non-positive size.
    """
    if pad_mode not in PAD_MODES:
        raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
    if side <= 0 or output_size <= 0:
        raise ValueError(f"side and output_size must be positive, got {side}, {output_size}")
    height, width = image.shape[:2]
    side_px = max(1, int(round(side)))
    left = int(round(center[0] - side_px / 2.0))
    top = int(round(center[1] - side_px / 2.0))
    right, bottom = left + side_px, top + side_px
    pads = {
        "left": max(0, -left),
        "top": max(0, -top),
        "right": max(0, right - width),
        "bottom": max(0, bottom - height),
    }
    # Cut the part inside the photo first, then pad only that (cheap for huge photos).
    inside = image[max(top, 0) : min(bottom, height), max(left, 0) : min(right, width)]
    if any(pads.values()):
        widths = ((pads["top"], pads["bottom"]), (pads["left"], pads["right"]), (0, 0))
        if inside.size == 0:
            # The square misses the photo entirely: nothing to replicate.
            inside = np.broadcast_to(np.asarray(pad_color, np.uint8), (side_px, side_px, 3))
        elif pad_mode == "edge":
            inside = np.pad(inside, widths, mode="edge")
        else:
            channels = [
                np.pad(inside[..., c], widths[:2], mode="constant", constant_values=pad_color[c])
                for c in range(3)
            ]
            inside = np.stack(channels, -1)
    resized = Image.fromarray(np.ascontiguousarray(inside)).resize(
        (output_size, output_size), Image.Resampling.LANCZOS, reducing_gap=3.0
    )
    padding = dict(pads)
    padding["fraction"] = round(max(pads.values()) / side_px, 4)
    padding["mode"] = pad_mode
    transform = CropTransform(
        origin=(float(left), float(top)), side=float(side_px), scale=output_size / side_px
    )
    return Crop(image=np.asarray(resized, np.uint8), transform=transform, padding=padding)
