"""Hostile input, fuzzed: photos, transforms.json, landmarks files and camera files.

Property-based tests (hypothesis, deterministic: `fuzz_testlib.FUZZ`) feed each parser mutated
bytes of real files and mutated JSON structures. The properties:
- no traceback: a parser returns, or raises its own error type (`PhotoError`,
  `TransformsError`, `PhotoSourceError`, `CameraFileError`) whose message names the file (and
  the entry); any other exception fails the test;
- what it returns is usable: images are `[H, W, 3]` uint8 of the minimum size, cameras have
  finite, positive focal lengths and rigid world-to-camera matrices, metadata is JSON;
- in a folder, every file is either used or skipped with a reason (never an unexpected "error");
- nothing already written is lost: a failing import leaves a previous dataset untouched and no
  temporary directory behind.

The hand-made cases of earlier sessions (odd photo files, malformed transforms.json files) stay
as named regression tables here and in tests/test_photos.py, tests/test_transforms.py,
tests/test_photo_source.py and tests/test_camera_files.py. Case counts per parser are printed by
`pytest -s` (and `--hypothesis-show-statistics`). The default suite runs a few hundred cases per
parser; the `slow` variants ten times more.
"""

import io
import json
import os
import pathlib
import shutil
import struct
import subprocess
import sys
import textwrap
import zlib

import fuzz_testlib as fuzz
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from tfglo.data import camera_file_import, camera_files, dataset_dir, photos, records
from tfglo.data import photo_import as photo_source
from tfglo.data import transforms_json as transforms

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
PHOTO_REASONS = {"unreadable", "not an image", "truncated", "too large", "too small"}
EXTENSIONS = [".jpg", ".JPG", ".png", ".heic", ".gif", ".tif", ".webp", ".txt", ""]
SMALL = photos.PhotoConfig(image_size=32, min_size=8)


@pytest.fixture(scope="module", autouse=True)
def _report_counts():
    yield
    if fuzz.COUNTER.counts:
        print("\nfuzz cases per parser (outcome: count):")
        for parser, outcomes in sorted(fuzz.COUNTER.counts.items()):
            total = sum(outcomes.values())
            detail = ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items()))
            print(f"  {parser}: {total} cases ({detail})")


# Files to start from ------------------------------------------------------------------------


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def solid_png(path, width: int, height: int, value: int = 128) -> int:
    """Writes a grey PNG of one value without ever holding it decoded; returns the file size.

    The rows are identical, so one block of rows is deflated once (after a full flush the
    compressor starts afresh) and repeated; the zlib checksum is computed over all the rows.
    """
    row = b"\x00" + bytes([value]) * width  # filter type 0, then the pixels
    block_rows = max(1, min(height, (1 << 22) // len(row)))
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    block = compressor.compress(row * block_rows) + compressor.flush(zlib.Z_FULL_FLUSH)
    count, rest = divmod(height, block_rows)
    tail = b""
    if rest:
        tail = compressor.compress(row * rest)
    tail += compressor.flush()  # the final (empty) block
    checksum = 1
    for _ in range(count):
        checksum = zlib.adler32(row * block_rows, checksum)
    checksum = zlib.adler32(row * rest, checksum)
    data = b"\x78\x9c" + block * count + tail + struct.pack(">I", checksum)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)))
        f.write(png_chunk(b"IDAT", data))
        f.write(png_chunk(b"IEND", b""))
    return pathlib.Path(path).stat().st_size


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _exif_jpeg(image: Image.Image, exif_payload: bytes) -> bytes:
    """A JPEG with an APP1 "Exif" segment holding `exif_payload` (TIFF bytes) as written."""
    jpeg = _encode(image, "JPEG", quality=80)
    segment = b"Exif\x00\x00" + exif_payload
    segment = segment[: 65533 - 2]
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(segment) + 2) + segment + jpeg[2:]


@pytest.fixture(scope="module")
def face(faces_dir) -> Image.Image:
    return Image.open(faces_dir / "img2.jpg").convert("RGB")


@pytest.fixture(scope="module")
def photo_bases(face, faces_dir) -> dict[str, bytes]:
    """Real files in many formats and modes, small (decoding stays cheap) plus two real photos."""
    small = face.resize((80, 60))
    rgba = small.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(small.size))
    palette = small.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.info["transparency"] = 3
    gray16 = Image.fromarray(np.asarray(small.convert("L"), np.uint16) * 257)
    exif = Image.Exif()
    exif[0x0112] = 6
    frames = [small, small.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    animated = io.BytesIO()
    frames[0].save(animated, format="GIF", save_all=True, append_images=frames[1:])
    return {
        "face.jpg": (faces_dir / "img25.jpg").read_bytes(),
        "face_big.jpg": (faces_dir / "img2.jpg").read_bytes(),
        "small.jpg": _encode(small, "JPEG", quality=85),
        "progressive.jpg": _encode(small, "JPEG", progressive=True),
        "exif6.jpg": _encode(small, "JPEG", exif=exif.tobytes()),
        "cmyk.jpg": _encode(small.convert("CMYK"), "JPEG"),
        "rgb.png": _encode(small, "PNG"),
        "rgba.png": _encode(rgba, "PNG"),
        "la.png": _encode(rgba.convert("LA"), "PNG"),
        "palette.png": _encode(palette, "PNG"),
        "gray16.png": _encode(gray16, "PNG"),
        "bilevel.png": _encode(small.convert("1"), "PNG"),
        "animated.gif": animated.getvalue(),
        "lzw.tif": _encode(small, "TIFF", compression="tiff_lzw"),
        "float.tif": _encode(Image.fromarray(np.asarray(small.convert("L"), np.float32)), "TIFF"),
        "bmp.bmp": _encode(small, "BMP"),
        "webp.webp": _encode(rgba, "WEBP"),
        "heic.heic": b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64,
    }


def check_photo(path, config: photos.PhotoConfig, parser: str = "photo"):
    """load_photo returns a usable image or a PhotoError with a known reason; anything else
    (a traceback) fails. Returns the LoadedPhoto or None."""
    try:
        photo = photos.load_photo(path, config)
    except photos.PhotoError as e:
        assert e.reason in PHOTO_REASONS, e
        fuzz.COUNTER.add(parser, f"skipped ({e.reason})")
        return None
    image = photo.image
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3, image.shape
    assert min(image.shape[:2]) >= config.min_size, image.shape
    assert image.flags.c_contiguous
    assert image.shape[0] * image.shape[1] <= config.max_pixels
    assert all(isinstance(note, str) for note in photo.notes)
    assert photo.scale in (1.0, 0.5, 0.25, 0.125)
    fuzz.COUNTER.add(parser, "loaded")
    return photo


# Photos --------------------------------------------------------------------------------------


@fuzz.examples(300)
@given(data=st.data())
def test_photo_loader_survives_mutated_files(photo_bases, tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("photo", numbered=True)
    name = data.draw(st.sampled_from(sorted(photo_bases)), label="base")
    content = data.draw(fuzz.mutated_bytes(photo_bases[name]), label="bytes")
    extension = data.draw(st.sampled_from(EXTENSIONS), label="extension")
    path = folder / f"photo{extension}"
    path.write_bytes(content)
    config = photos.PhotoConfig(
        image_size=32,
        min_size=data.draw(st.sampled_from([1, 8, 32])),
        alpha=data.draw(st.sampled_from(photos.ALPHA_MODES)),
        max_pixels=data.draw(st.sampled_from([100_000_000, 3000])),
    )
    photo = check_photo(path, config)
    if photo is not None:
        # The crop of any loaded photo works too (what prepare does next).
        side = data.draw(st.floats(1.0, 4.0 * max(photo.image.shape)))
        center = (
            data.draw(st.floats(-side, photo.width + side)),
            data.draw(st.floats(-side, photo.height + side)),
        )
        crop = photos.crop_square(photo.image, center, side, 16)
        assert crop.image.shape == (16, 16, 3)
    shutil.rmtree(folder)


@st.composite
def _exif_payload(draw) -> bytes:
    """TIFF-structured EXIF with random tags (orientation among them) and values, mutated."""
    exif = Image.Exif()
    exif[0x0112] = draw(st.one_of(st.integers(0, 9), st.integers(0, 65535)))
    for _ in range(draw(st.integers(0, 4))):
        tag = draw(st.integers(1, 65535))
        exif[tag] = draw(
            st.one_of(
                st.integers(0, 2**32 - 1),
                st.text(max_size=20),
                st.binary(max_size=20),
                st.floats(allow_nan=False, allow_infinity=False, width=32),
            )
        )
    try:
        payload = exif.tobytes()
    except Exception:  # noqa: BLE001 - PIL cannot write every value; write a bare header then
        payload = b"MM\x00*\x00\x00\x00\x08\x00\x00"
    if draw(st.booleans()):
        payload = draw(fuzz.mutated_bytes(payload))
    return payload


@fuzz.examples(100)
@given(payload=_exif_payload())
def test_photo_loader_survives_exif_garbage(face, tmp_path_factory, payload):
    path = tmp_path_factory.mktemp("exif", numbered=True) / "exif.jpg"
    small = face.resize((40, 30))
    path.write_bytes(_exif_jpeg(small, payload))
    photo = check_photo(path, SMALL, parser="photo (EXIF)")
    # The pixels are never lost to a broken EXIF block: a JPEG that decodes is used.
    assert photo is not None
    assert sorted(photo.image.shape[:2]) == [30, 40]


_MODES = ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "I", "I;16", "F", "LAB", "HSV"]
_FORMATS = {
    "PNG": ".png",
    "TIFF": ".tif",
    "GIF": ".gif",
    "BMP": ".bmp",
    "WEBP": ".webp",
    "JPEG": ".jpg",
}


@fuzz.examples(150)
@given(
    mode=st.sampled_from(_MODES),
    fmt=st.sampled_from(sorted(_FORMATS)),
    size=st.tuples(st.integers(1, 70), st.integers(1, 70)),
    alpha=st.sampled_from(photos.ALPHA_MODES),
    orientation=st.integers(1, 8),
    seed=st.integers(0, 2**16),
)
def test_photo_loader_any_mode_any_format(
    tmp_path_factory, mode, fmt, size, alpha, orientation, seed
):
    """Every mode PIL can write in every format: an RGB image of the right upright size."""
    rng = np.random.default_rng(seed)
    base = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 4), dtype=np.uint8), "RGBA")
    try:
        image = base.convert(mode) if mode not in ("I;16", "I", "F") else _deep(base, mode)
        extra = {}
        if fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
            exif = Image.Exif()
            exif[0x0112] = orientation
            extra["exif"] = exif.tobytes()
        content = _encode(image, fmt, **extra)
    except (OSError, ValueError, KeyError, TypeError):
        fuzz.COUNTER.add("photo (modes)", "not writable by PIL")
        return  # PIL cannot write this mode in this format: nothing to test
    path = tmp_path_factory.mktemp("modes", numbered=True) / f"image{_FORMATS[fmt]}"
    path.write_bytes(content)
    config = photos.PhotoConfig(image_size=32, min_size=1, alpha=alpha)
    photo = check_photo(path, config, parser="photo (modes)")
    assert photo is not None, (mode, fmt)
    turned = "exif" in extra and orientation >= 5  # 5-8 swap width and height
    assert photo.image.shape[:2] == ((size[0], size[1]) if turned else (size[1], size[0]))


def _deep(image: Image.Image, mode: str) -> Image.Image:
    gray = np.asarray(image.convert("L"))
    if mode == "I;16":
        return Image.fromarray(gray.astype(np.uint16) * 257)
    if mode == "I":
        return Image.fromarray(gray.astype(np.int32) * 257)
    return Image.fromarray(gray.astype(np.float32) / 255.0)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pil(face, tmp_path, orientation):
    """The numpy transposes applied to the converted array equal PIL's exif_transpose."""
    from PIL import ImageOps

    small = face.resize((36, 20))
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "o.png"
    small.save(path, exif=exif.tobytes())
    photo = photos.load_photo(path, SMALL)
    with Image.open(path) as image:
        expected = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    np.testing.assert_array_equal(photo.image, expected)


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16", "P", "CMYK", "RGB"])
def test_tiff_orientation_5_to_8_keeps_the_pixels(tmp_path, mode):
    """Regression: from a path, Pillow 13 memory-maps uncompressed TIFFs and scrambles the
    pixels of EXIF orientations 5-8 in these modes; load_photo decodes from a file object."""
    rng = np.random.default_rng(1)
    raw = Image.fromarray(rng.integers(0, 255, (5, 7, 3), dtype=np.uint8))
    raw = raw.convert(mode) if mode != "I;16" else _deep(raw, mode)
    raw.save(tmp_path / "plain.tif")
    plain = photos.load_photo(tmp_path / "plain.tif", photos.PhotoConfig(min_size=1)).image
    for orientation in (5, 6, 7, 8):
        exif = Image.Exif()
        exif[0x0112] = orientation
        raw.save(tmp_path / "turned.tif", exif=exif.tobytes())
        turned = photos.load_photo(tmp_path / "turned.tif", photos.PhotoConfig(min_size=1))
        expected = photos._ORIENTATIONS[orientation](plain)
        np.testing.assert_array_equal(turned.image, expected, err_msg=f"{mode} {orientation}")


def test_block_conversion_equals_whole_image_conversion(tmp_path):
    """Photos of several blocks of rows convert exactly like a one-shot conversion."""
    rng = np.random.default_rng(0)
    height, width = 1030, 1024  # just over 1 M pixels: two blocks
    rgba = Image.fromarray(rng.integers(0, 255, (height, width, 4), dtype=np.uint8), "RGBA")
    palette = rgba.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    palette.info["transparency"] = 2
    gray16 = Image.fromarray(rng.integers(0, 65535, (height, width), dtype=np.uint16))
    for name, image in (("rgba.png", rgba), ("palette.png", palette), ("gray16.png", gray16)):
        image.save(tmp_path / name, compress_level=1)
        photo = photos.load_photo(tmp_path / name)
        if name == "gray16.png":
            values = np.asarray(Image.open(tmp_path / name), np.float64)
            gray = np.clip(np.round(values / 65535.0 * 255.0), 0, 255).astype(np.uint8)
            expected = np.repeat(gray[..., None], 3, -1)
        else:
            source = np.asarray(Image.open(tmp_path / name).convert("RGBA"), np.float32)
            alpha = source[..., 3:] / 255.0
            expected = np.clip(np.round(source[..., :3] * alpha + 255.0 * (1 - alpha)), 0, 255)
        np.testing.assert_array_equal(photo.image, expected.astype(np.uint8), err_msg=name)


# Today's hand-made odd photo files, kept as a regression table: name -> (bytes, outcome).
def _odd_photo_files(face: Image.Image) -> dict[str, tuple[bytes, str]]:
    small = face.resize((120, 90))
    jpeg = _encode(small, "JPEG")
    rgba = small.convert("RGBA")
    rgba.putalpha(128)
    transparent_palette = small.convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    transparent_palette.info["transparency"] = 0
    zero_png = (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 90, 8, 2, 0, 0, 0))
        + png_chunk(b"IDAT", zlib.compress(b""))
        + png_chunk(b"IEND", b"")
    )
    exif = Image.Exif()
    exif[0x0112] = 6
    return {
        "truncated.jpg": (jpeg[: len(jpeg) // 3], "loaded|truncated"),
        "text_named.jpg": (b"a text file with an image name\n", "not an image"),
        "README.txt": (b"not a photo either\n", "not an image"),
        "empty.png": (b"", "not an image"),
        "gray.jpg": (_encode(small.convert("L"), "JPEG"), "loaded"),
        "rgba.png": (_encode(rgba, "PNG"), "loaded"),
        "cmyk.jpg": (_encode(small.convert("CMYK"), "JPEG"), "loaded"),
        "deep16.png": (
            _encode(Image.fromarray(np.asarray(small.convert("L"), np.uint16) * 257), "PNG"),
            "loaded",
        ),
        "tiny.png": (_encode(Image.new("RGB", (8, 8)), "PNG"), "too small"),
        "zero_width.png": (zero_png, "not an image|too small"),
        "heic_header.heic": (b"\x00\x00\x00\x18ftypheic" + b"\x00" * 100, "not an image"),
        "png_named.jpg": (_encode(small, "PNG"), "loaded"),
        "palette_transparent.png": (_encode(transparent_palette, "PNG"), "loaded"),
        "exif_rotated.jpg": (_encode(small, "JPEG", exif=exif.tobytes()), "loaded"),
        "garbage_exif.jpg": (
            _exif_jpeg(small, b"MM\x00*\xff\xff\xff\xff" + b"\x00" * 40),
            "loaded",
        ),
        "bilevel.png": (_encode(small.convert("1"), "PNG"), "loaded"),
    }


def test_odd_photo_files_regression(face, tmp_path):
    cases = _odd_photo_files(face)
    assert len(cases) >= 15
    for name, (content, expected) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        try:
            photo = photos.load_photo(path, photos.PhotoConfig(min_size=32))
            outcome = "loaded"
        except photos.PhotoError as e:
            outcome, photo = e.reason, None
        assert outcome in expected.split("|"), (name, outcome)
        if name == "exif_rotated.jpg":
            assert photo.image.shape[:2] == (120, 90)  # upright: 90 degrees turned


# Huge images and decompression bombs: peak memory in a fresh process -------------------------

# Peak RSS from /proc/self/status (VmHWM): getrusage's ru_maxrss is kept across exec on Linux,
# so in a child of this (large) pytest process it would report the parent's peak.
_PEAK_RSS = textwrap.dedent(
    """
    import json, sys
    from tfglo.data import photos
    def peak_kb():
        with open("/proc/self/status") as f:
            return int(next(line for line in f if line.startswith("VmHWM")).split()[1])
    path, max_pixels = sys.argv[1], int(sys.argv[2])
    before = peak_kb()
    try:
        photo = photos.load_photo(path, photos.PhotoConfig(max_pixels=max_pixels))
        result = {"shape": list(photo.image.shape), "scale": photo.scale, "notes": photo.notes}
    except photos.PhotoError as e:
        result = {"reason": e.reason, "detail": e.detail}
    result["before_kb"] = before
    result["peak_kb"] = peak_kb()
    print(json.dumps(result))
    """
)


def _peak_rss(path, max_pixels: int = 100_000_000) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS, str(path), str(max_pixels)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    out["growth_mb"] = (out["peak_kb"] - out["before_kb"]) / 1024.0
    return out


def test_decompression_bomb_is_refused_from_its_header(tmp_path):
    """A 20000 x 20000 PNG of one colour (~1.2 GB decoded) is refused without decoding."""
    path = tmp_path / "bomb.png"
    size = solid_png(path, 20000, 20000)
    assert size < 2_000_000
    out = _peak_rss(path)
    assert out.get("reason") == "too large", out
    assert "400000000 pixels" in out["detail"] or "20000x20000" in out["detail"]
    assert out["growth_mb"] < 8, out  # measured: ~0 MB


def test_huge_jpeg_is_decoded_at_a_reduced_size(tmp_path):
    """A JPEG over max_pixels is decoded by DCT scaling, never at full size."""
    path = tmp_path / "huge.jpg"
    Image.new("RGB", (6000, 4000), (90, 140, 200)).save(path, quality=90)
    out = _peak_rss(path, max_pixels=2_000_000)  # 24 M pixels -> 1/4: 1500 x 1000
    assert out.get("shape") == [1000, 1500, 3], out
    assert out["scale"] == 0.25
    assert any("decoded at 1/4 size" in note for note in out["notes"])
    # Measured: 16 MB; decoded at full size the same file takes 166 MB.
    assert out["growth_mb"] < 40, out


def test_large_png_peak_memory_is_a_few_bytes_per_pixel(tmp_path):
    """An accepted PNG costs its decoded image plus the RGB result, not float copies."""
    path = tmp_path / "large.png"
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 255, (1500, 3000, 4), dtype=np.uint8)  # 4.5 M pixels, with alpha
    Image.fromarray(rgba, "RGBA").save(path, compress_level=1)
    del rgba
    out = _peak_rss(path)
    assert out.get("shape") == [1500, 3000, 3], out
    bytes_per_pixel = out["growth_mb"] * 2**20 / 4.5e6
    # Decoder RGBA (4 B) + result RGB (3 B) + the file's buffers and one block's temporaries:
    # measured 9.5 B/pixel; the one-shot float32 conversion of before measured 64 B/pixel.
    assert bytes_per_pixel < 14, out


# transforms.json -----------------------------------------------------------------------------


def _transforms_folder(root: pathlib.Path, face: Image.Image) -> dict:
    """Images for the transforms fuzz and a valid document naming them."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    small = face.resize((12, 12))
    rgba = small.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(small.size))
    rgba.save(root / "img" / "a.png")
    small.save(root / "img" / "b.png")
    small.convert("LA").save(root / "img" / "c.png")
    small.save(root / "img" / "d.jpg")
    small.resize((12, 10)).save(root / "img" / "wide.png")
    (root / "img" / "broken.png").write_bytes(_encode(small, "PNG")[:60])
    return {
        "camera_angle_x": 0.69,
        "frames": [
            {"file_path": "img/a.png", "transform_matrix": _pose(4.0, 0.0)},
            {"file_path": "./img/b", "transform_matrix": _pose(4.5, 0.7), "split": "eval"},
            {"file_path": "img/c.png", "transform_matrix": _pose(4.0, -0.7), "fl_x": 14.0},
            {"file_path": "img/d", "transform_matrix": _pose(5.0, 1.5), "w": 12, "h": 12},
        ],
    }


def _pose(distance: float, yaw: float) -> list:
    """A camera-to-world OpenGL matrix on a circle around the origin, looking at it."""
    c, s = np.cos(yaw), np.sin(yaw)
    rotation = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    matrix = np.eye(4)
    matrix[:3, :3] = rotation
    matrix[:3, 3] = rotation @ np.array([0.0, 0.0, distance])
    return matrix.tolist()


@pytest.fixture(scope="module")
def transforms_root(tmp_path_factory, face):
    root = tmp_path_factory.mktemp("transforms")
    return root, _transforms_folder(root, face)


_transforms_files = iter(range(10**9))


def check_transforms(path: pathlib.Path, doc, config: transforms.TransformsConfig) -> list:
    """read_transforms + load_frame + the record encoding: records, or a TransformsError that
    names the file; the frames are all either imported or skipped with a reason."""
    try:
        frames, skipped = transforms.read_transforms(path, config)
        out = [transforms.load_frame(frame, config) for frame in frames]
        for record in out:
            records.to_example(record)
        metadata = transforms.dataset_metadata(path, config, frames)
        json.dumps({**metadata, "skipped": skipped}, allow_nan=False)
    except transforms.TransformsError as e:
        assert str(path) in str(e), e
        fuzz.COUNTER.add("transforms.json", "refused")
        return []
    raw = doc["frames"]
    assert len(frames) + len(skipped) == len(raw)
    assert all(entry["reason"] for entry in skipped)
    for record in out:
        fx, fy, cx, cy = record.intrinsics
        assert np.all(np.isfinite(record.intrinsics)) and fx > 0 and fy > 0
        rotation = record.world_to_camera[:, :3].astype(np.float64)
        assert np.all(np.isfinite(record.world_to_camera))
        np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=5e-3)
        assert np.linalg.det(rotation) > 0
        assert record.image.dtype == np.uint8 and min(record.image.shape[:2]) >= 1
    fuzz.COUNTER.add("transforms.json", "imported")
    return out


def _transforms_config(data) -> transforms.TransformsConfig:
    return transforms.TransformsConfig(
        background=data.draw(st.sampled_from(transforms.BACKGROUNDS)),
        image_size=data.draw(st.sampled_from([None, 6, (5, 7)])),
        eval_every=data.draw(st.sampled_from([0, 2])),
        skip_missing=data.draw(st.booleans()),
        scene_radius=data.draw(st.sampled_from([1.5, 0.5])),
    )


@fuzz.examples(200)
@given(data=st.data())
def test_transforms_parser_survives_mutated_documents(transforms_root, data):
    root, base = transforms_root
    doc = data.draw(fuzz.mutated_document(base), label="document")
    path = root / f"transforms_{next(_transforms_files)}.json"
    path.write_text(fuzz.dumps(doc))
    if not isinstance(doc, dict) or not isinstance(doc.get("frames"), list):
        with pytest.raises(transforms.TransformsError, match=str(path)):
            transforms.read_transforms(path)
        fuzz.COUNTER.add("transforms.json", "refused")
        return
    check_transforms(path, doc, _transforms_config(data))


_FILE_PATHS = st.sampled_from(
    [
        "img/a.png",
        "img/broken.png",
        "img/wide.png",
        "img/missing.png",
        "img",
        "img/",
        "",
        "../outside.png",
        "img/../img/b.png",
        "/nonexistent/abs.png",
        "img/a.png/..",
        "img\x00.png",
        ".",
    ]
)


@fuzz.examples(120)
@given(data=st.data())
def test_transforms_parser_survives_hostile_file_paths_and_numbers(transforms_root, data):
    """Frames with odd paths (missing, broken, folders, NUL bytes, leaving the folder) and odd
    intrinsics / matrices."""
    root, base = transforms_root
    doc = json.loads(json.dumps(base))
    for frame in doc["frames"]:
        if data.draw(st.booleans()):
            frame["file_path"] = data.draw(_FILE_PATHS)
        if data.draw(st.booleans()):
            key = data.draw(st.sampled_from(["fl_x", "fl_y", "cx", "cy", "w", "h", "k1"]))
            frame[key] = data.draw(fuzz.hostile_json(max_leaves=1))
        if data.draw(st.booleans()):
            matrix = np.array(frame["transform_matrix"])
            matrix[:3, :3] *= data.draw(st.sampled_from([1.0, 1.0005, 1.01, -1.0, 0.0]))
            matrix[:3, 3] *= data.draw(st.sampled_from([1.0, 0.0, 1e30, -1.0]))
            frame["transform_matrix"] = matrix.tolist()
    path = root / f"transforms_{next(_transforms_files)}.json"
    path.write_text(fuzz.dumps(doc))
    check_transforms(path, doc, _transforms_config(data))


@fuzz.examples(100)
@given(data=st.data())
def test_transforms_import_survives_mutated_images(transforms_root, photo_bases, data):
    root, base = transforms_root
    folder = root / f"mutated_{next(_transforms_files)}"
    (folder / "img").mkdir(parents=True)
    name = data.draw(
        st.sampled_from(
            [
                "rgb.png",
                "rgba.png",
                "palette.png",
                "gray16.png",
                "small.jpg",
                "la.png",
                "lzw.tif",
                "animated.gif",
            ]
        )
    )
    content = data.draw(fuzz.mutated_bytes(photo_bases[name]))
    (folder / "img" / "x.png").write_bytes(content)
    doc = {
        "camera_angle_x": 0.69,
        "frames": [{"file_path": "img/x.png", "transform_matrix": _pose(4.0, 0.3)}],
    }
    path = folder / "transforms.json"
    path.write_text(json.dumps(doc))
    check_transforms(
        path, doc, transforms.TransformsConfig(image_size=data.draw(st.sampled_from([None, 8])))
    )
    shutil.rmtree(folder)


def test_deeply_nested_json_is_refused_by_every_parser(tmp_path):
    nested = "[" * 100_000 + "]" * 100_000
    path = tmp_path / "deep.json"
    path.write_text(nested)
    with pytest.raises(transforms.TransformsError, match=str(path)):
        transforms.read_transforms(path)
    with pytest.raises(photo_source.PhotoSourceError, match=str(path)):
        photo_source.load_landmarks_file(path)
    with pytest.raises(camera_files.CameraFileError, match=str(path)):
        camera_files.load(path)


# Landmarks files -----------------------------------------------------------------------------

_CELLS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**6), 10**6).map(str),
    st.sampled_from(
        ["", " ", "nan", "inf", "-inf", "1e999", "x", "1,5", '"3"', "0x10", "1_000", "٣"]
    ),
    st.text(max_size=6),
)


@st.composite
def _landmarks_csv(draw) -> bytes:
    rows = []
    if draw(st.booleans()):
        rows.append("name," + ",".join(f"x{i},y{i}" for i in range(5)))
    for index in range(draw(st.integers(0, 6))):
        name = draw(st.one_of(st.just(f"img{index}.jpg"), st.text(max_size=8)))
        count = draw(st.sampled_from([6, 10, 10, 10, 11, 16]))
        cells = [f"{v:.3f}" for v in np.linspace(10, 50, count)]
        for _ in range(draw(st.integers(0, 2))):
            cells[draw(st.integers(0, count - 1))] = draw(_CELLS)
        rows.append(",".join([name, *cells]))
    text = "\n".join(rows)
    data = text.encode("utf-8")
    if draw(st.integers(0, 4)) == 0:
        data = draw(fuzz.mutated_bytes(data or b"a,1,2"))
    return data


def check_landmarks(path: pathlib.Path, parser: str):
    try:
        table = photo_source.load_landmarks_file(path)
    except photo_source.PhotoSourceError as e:
        assert str(path) in str(e), e
        fuzz.COUNTER.add(parser, "refused")
        return None
    assert table
    counts = {points.shape for points in table.values()}
    assert len(counts) == 1
    (shape,) = counts
    assert len(shape) == 2 and shape[1] == 2 and shape[0] >= 3
    for points in table.values():
        assert points.dtype == np.float64 and np.all(np.isfinite(points))
    fuzz.COUNTER.add(parser, "loaded")
    return table


@fuzz.examples(200)
@given(content=_landmarks_csv())
def test_landmarks_csv_parser_survives_hostile_rows(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("landmarks", numbered=True) / "points.csv"
    path.write_bytes(content)
    check_landmarks(path, "landmarks file (CSV)")


_LANDMARKS_DOC = {
    f"img{i}.jpg": [[10.0 + i, 20.0], [30.0, 20.0], [20.0, 30.0], [15, 40], [25, 40]]
    for i in range(3)
}


@fuzz.examples(150)
@given(doc=fuzz.mutated_document(_LANDMARKS_DOC))
def test_landmarks_json_parser_survives_mutated_documents(tmp_path_factory, doc):
    path = tmp_path_factory.mktemp("landmarks", numbered=True) / "points.json"
    path.write_text(fuzz.dumps(doc))
    check_landmarks(path, "landmarks file (JSON)")


@fuzz.examples(60)
@given(content=st.binary(max_size=64), suffix=st.sampled_from([".json", ".csv", ".txt"]))
def test_landmarks_parser_survives_binary_files(tmp_path_factory, content, suffix):
    path = tmp_path_factory.mktemp("landmarks", numbered=True) / f"points{suffix}"
    path.write_bytes(content)
    check_landmarks(path, "landmarks file (bytes)")


# Camera files --------------------------------------------------------------------------------


def _look_at(eye) -> np.ndarray:
    """OpenCV world-to-camera [3, 4] at `eye` looking at the origin (+y down)."""
    forward = -np.asarray(eye, np.float64) / np.linalg.norm(eye)
    right = np.cross([0.0, 1.0, 0.0], forward)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rotation = np.stack([right, down, forward])
    return np.concatenate([rotation, -(rotation @ np.asarray(eye))[:, None]], 1)


_EYES = [(0.0, -0.5, -4.0), (1.5, -0.8, -3.5), (-1.2, 0.3, -4.2)]
TFGLO_DOC = {
    "format": camera_files.FORMAT_NAME,
    "version": 1,
    "scene_radius": 1.0,
    "images": {
        f"img{i}.png": {
            "width": 32,
            "height": 24,
            "fx": 40.0,
            "fy": 41.0,
            "cx": 16.0,
            "cy": 12.0,
            "world_to_camera": _look_at(eye).tolist(),
            "object_id": i % 2,
        }
        for i, eye in enumerate(_EYES)
    },
}
JAX3D_DOC = {
    f"img{i}.png": {
        "camera": {
            "orientation": _look_at(eye)[:, :3].tolist(),
            "position": list(eye),
            "focal_length": [40.0],
            "principal_point": [16.0, 12.0],
            "image_size": [32, 24],
            "skew": [0.0],
            "pixel_aspect_ratio": [1.0],
        },
        "identity": i,
    }
    for i, eye in enumerate(_EYES)
}


def check_camera_file(path: pathlib.Path, align, parser: str):
    try:
        loaded = camera_files.load(path, align)
    except camera_files.CameraFileError as e:
        assert str(path) in str(e), e
        fuzz.COUNTER.add(parser, "refused")
        return None
    assert loaded.cameras
    for name, cam in loaded.cameras.items():
        assert isinstance(name, str)
        fx, fy, cx, cy = cam.intrinsics
        assert np.all(np.isfinite(cam.intrinsics)) and fx > 0 and fy > 0, cam
        assert isinstance(cam.width, int) and isinstance(cam.height, int)
        assert cam.width >= 1 and cam.height >= 1
        assert np.all(np.isfinite(cam.world_to_camera))
        rotation = cam.world_to_camera[:, :3]
        np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=5e-3)
        assert np.linalg.det(rotation) > 0
        scaled = cam.scaled_to(16, 12)
        assert np.all(np.isfinite(scaled.intrinsics))
    assert loaded.scene_radius is None or (
        np.isfinite(loaded.scene_radius) and loaded.scene_radius > 0
    )
    fuzz.COUNTER.add(parser, "loaded")
    return loaded


@fuzz.examples(150)
@given(doc=fuzz.mutated_document(TFGLO_DOC), align=st.sampled_from([None, "none", "mean_camera"]))
def test_tfglo_camera_file_parser_survives_mutated_documents(tmp_path_factory, doc, align):
    path = tmp_path_factory.mktemp("cameras", numbered=True) / "cameras.json"
    path.write_text(fuzz.dumps(doc))
    check_camera_file(path, align, "camera file (tfglo)")


@fuzz.examples(150)
@given(doc=fuzz.mutated_document(JAX3D_DOC), align=st.sampled_from([None, "none", "mean_camera"]))
def test_jax3d_camera_file_parser_survives_mutated_documents(tmp_path_factory, doc, align):
    path = tmp_path_factory.mktemp("cameras", numbered=True) / "cameras.json"
    path.write_text(fuzz.dumps(doc))
    check_camera_file(path, align, "camera file (jax3d)")


_CAMERA_NUMBER_FIELDS = {
    "tfglo": [
        ("width",),
        ("height",),
        ("fx",),
        ("fy",),
        ("cx",),
        ("cy",),
        ("object_id",),
        ("world_to_camera", 0, 0),
        ("world_to_camera", 2, 3),
        ("world_to_camera", 1),
    ],
    "jax3d": [
        ("camera", "focal_length", 0),
        ("camera", "focal_length"),
        ("camera", "image_size", 0),
        ("camera", "image_size", 1),
        ("camera", "position", 2),
        ("camera", "orientation", 1, 1),
        ("camera", "principal_point", 0),
        ("camera", "skew"),
        ("camera", "pixel_aspect_ratio", 0),
        ("identity",),
    ],
}


@fuzz.examples(150)
@given(data=st.data())
def test_camera_file_parsers_survive_hostile_numbers(tmp_path_factory, data):
    """Every numeric field of either format set to NaN, inf, 10**400, 0, -1, a string, ..."""
    kind = data.draw(st.sampled_from(["tfglo", "jax3d"]))
    doc = json.loads(json.dumps(TFGLO_DOC if kind == "tfglo" else JAX3D_DOC))
    entries = doc["images"] if kind == "tfglo" else doc
    for entry in entries.values():
        if not data.draw(st.booleans()):
            continue
        field = data.draw(st.sampled_from(_CAMERA_NUMBER_FIELDS[kind]))
        target = entry
        for key in field[:-1]:
            target = target[key]
        target[field[-1]] = data.draw(fuzz.hostile_json(max_leaves=2))
    path = tmp_path_factory.mktemp("cameras", numbered=True) / "cameras.json"
    path.write_text(fuzz.dumps(doc))
    check_camera_file(
        path, data.draw(st.sampled_from([None, "mean_camera"])), f"camera file ({kind})"
    )


@fuzz.examples(60)
@given(content=fuzz.mutated_bytes(json.dumps(JAX3D_DOC).encode()))
def test_camera_file_parser_survives_mutated_bytes(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("cameras", numbered=True) / "cameras.json"
    path.write_bytes(content)
    check_camera_file(path, None, "camera file (bytes)")


# Frames that leave the transforms.json folder ----------------------------------------------


def _outside_scene(root: pathlib.Path, face: Image.Image) -> pathlib.Path:
    """scene/transforms.json with frames inside, `../` outside, absolute, and a link out."""
    scene = root / "scene"
    (scene / "img").mkdir(parents=True)
    small = face.resize((10, 10))
    small.save(scene / "img" / "inside.png")
    small.save(root / "sibling.png")
    small.save(root / "absolute.png")
    (scene / "img" / "link.png").symlink_to(root / "sibling.png")
    doc = {
        "camera_angle_x": 0.69,
        "frames": [
            {"file_path": "img/inside.png", "transform_matrix": _pose(4.0, 0.0)},
            {"file_path": "../sibling.png", "transform_matrix": _pose(4.0, 0.5)},
            {"file_path": str(root / "absolute.png"), "transform_matrix": _pose(4.0, 1.0)},
            {"file_path": "img/link.png", "transform_matrix": _pose(4.0, 1.5)},
            {"file_path": "img/../img/inside.png", "transform_matrix": _pose(4.0, 2.0)},
        ],
    }
    path = scene / "transforms.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("policy", transforms.OUTSIDE_FOLDER)
def test_frames_outside_the_folder_are_recorded_or_skipped(tmp_path, face, policy):
    path = _outside_scene(tmp_path, face)
    config = transforms.TransformsConfig(outside_folder=policy)
    frames, skipped = transforms.read_transforms(path, config)
    outside = {"../sibling.png", str(tmp_path / "absolute.png"), "img/link.png"}
    metadata = transforms.dataset_metadata(path, config, frames)
    if policy == "use":
        assert [f.file_path for f in frames if f.outside_folder] == sorted(
            outside, key=["../sibling.png", str(tmp_path / "absolute.png"), "img/link.png"].index
        )
        recorded = {e["file_path"]: e for e in metadata["frames_outside_folder"]}
        assert set(recorded) == outside
        assert recorded["img/link.png"]["resolved"] == str((tmp_path / "sibling.png").resolve())
        assert recorded["../sibling.png"]["frame"] == 1
        assert not skipped
    else:
        assert [f.file_path for f in frames] == ["img/inside.png", "img/../img/inside.png"]
        assert {s["source"] for s in skipped} == outside
        assert all("lies outside the folder of transforms.json" in s["reason"] for s in skipped)
        assert metadata["frames_outside_folder"] == []
    assert metadata["outside_folder"] == policy


def _run_prepare(*args):
    import app_testlib

    return app_testlib.run_module("tfglo.prepare", *args)


def test_prepare_app_records_outside_frames_and_a_failure_keeps_the_old_dataset(tmp_path, face):
    """The app end to end: frames outside the folder land in dataset.json; then a transforms
    file whose image is corrupt after a valid header fails with one line naming the file and
    frame, and the dataset it was to replace (--overwrite) is left exactly as it was."""
    path = _outside_scene(tmp_path, face)
    output = tmp_path / "dataset"
    result = _run_prepare("--source=transforms", f"--transforms={path}", f"--output={output}")
    assert result.returncode == 0, result.stderr[-3000:]
    metadata = dataset_dir.read_metadata(output)
    assert metadata["num_images"] == 5
    assert {e["file_path"] for e in metadata["frames_outside_folder"]} == {
        "../sibling.png",
        str(tmp_path / "absolute.png"),
        "img/link.png",
    }
    before = {p.name: p.read_bytes() for p in output.iterdir()}

    scene = path.parent
    good = _encode(face.resize((10, 10)), "PNG")
    (scene / "img" / "corrupt.png").write_bytes(good[:-30])  # the header, part of the pixels
    doc = json.loads(path.read_text())
    doc["frames"].append({"file_path": "img/corrupt.png", "transform_matrix": _pose(4.0, 2.5)})
    path.write_text(json.dumps(doc))
    result = _run_prepare(
        "--source=transforms", f"--transforms={path}", f"--output={output}", "--overwrite"
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"prepare: error: {path}: frame 5 (img/corrupt.png): cannot decode image" in (
        result.stderr
    )
    assert {p.name: p.read_bytes() for p in output.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


# Nothing already written is lost -----------------------------------------------------------


@pytest.fixture(scope="module")
def old_dataset(tmp_path_factory, face) -> pathlib.Path:
    """A small dataset directory that the failing imports below must leave as it is."""
    path = tmp_path_factory.mktemp("old") / "dataset"
    record = records.ImageRecord(
        image=np.asarray(face.resize((8, 8))),
        intrinsics=np.array([8.0, 8.0, 4.0, 4.0], np.float32),
        world_to_camera=np.eye(3, 4, dtype=np.float32) + np.array([0, 0, 0, 4], np.float32),
        latent_id=0,
        object_id=0,
        view_id=0,
        source="old.png",
        split="train",
    )
    with dataset_dir.DatasetWriter(path) as writer:
        writer.write(record)
    return path


def _snapshot(folder: pathlib.Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@fuzz.examples(30)
@given(data=st.data())
def test_a_failing_import_never_loses_the_previous_dataset(
    transforms_root, old_dataset, tmp_path_factory, data
):
    """An import over an existing dataset (--overwrite) either replaces it with a complete new
    one or fails with a TransformsError and leaves it untouched, with no temporary directory."""
    root, base = transforms_root
    doc = json.loads(json.dumps(base))
    if data.draw(st.booleans()):  # fails while writing: the header is fine, the pixels are not
        position = data.draw(st.integers(0, len(doc["frames"])))
        doc["frames"].insert(
            position, {"file_path": "img/broken.png", "transform_matrix": _pose(4.0, 0.2)}
        )
    doc = (
        data.draw(fuzz.mutated_document(doc, max_mutations=1)) if data.draw(st.booleans()) else doc
    )
    path = root / f"transforms_{next(_transforms_files)}.json"
    path.write_text(fuzz.dumps(doc))
    parent = tmp_path_factory.mktemp("replace", numbered=True)
    output = parent / "dataset"
    shutil.copytree(old_dataset, output)
    before = _snapshot(output)
    config = transforms.TransformsConfig(image_size=8)
    written = 0
    try:
        iterator, metadata, skipped = transforms.load(path, config)
        with dataset_dir.DatasetWriter(output, overwrite=True, records_per_shard=1) as writer:
            writer.metadata.update(metadata)
            writer.metadata["skipped"] = skipped
            for record in iterator:
                writer.write(record)
                written += 1
    except transforms.TransformsError:
        assert _snapshot(output) == before
        fuzz.COUNTER.add("transforms.json (over a dataset)", "refused, old dataset kept")
    else:
        assert dataset_dir.read_metadata(output)["num_images"] == written > 0
        fuzz.COUNTER.add("transforms.json (over a dataset)", "replaced")
    assert [p.name for p in parent.iterdir()] == ["dataset"]  # no temporary directory left


# A folder of photos: every file used or skipped with a reason --------------------------------

_CANONICAL = np.array(
    [[-0.4, -0.2, 0.1], [0.4, -0.2, 0.1], [0.0, 0.1, -0.2], [-0.25, 0.4, 0.0], [0.25, 0.4, 0.0]]
)
_PHOTO_SIZE = (96, 72)  # width, height


def _project(yaw: float, pitch: float) -> np.ndarray:
    """The 5 canonical points seen from 4 units away, in pixels of a 96 x 72 photo."""
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    rotation = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]]) @ np.array(
        [[1, 0, 0], [0, cp, -sp], [0, sp, cp]]
    )
    camera_points = _CANONICAL @ rotation.T + np.array([0.0, 0.0, 4.0])
    focal = 150.0
    return camera_points[:, :2] / camera_points[:, 2:] * focal + np.array([48.0, 36.0])


@fuzz.examples(25)
@given(data=st.data())
def test_photo_folder_every_file_is_used_or_skipped_with_a_reason(
    photo_bases, face, tmp_path_factory, data
):
    """prepare --source=images (landmarks file or camera file, no MediaPipe) over a folder of
    good photos and hostile files: each listed file is a record or a skip with a reason, and
    no skip is an unexpected error."""
    root = tmp_path_factory.mktemp("folder", numbered=True)
    folder = root / "photos"
    folder.mkdir()
    photo = face.resize(_PHOTO_SIZE)
    names = []
    for i in range(4):
        name = f"good{i}" + (".png" if i % 2 else ".jpg")
        photo.save(folder / name)
        names.append(name)
    for i in range(data.draw(st.integers(1, 4))):
        base = data.draw(st.sampled_from(sorted(photo_bases)))
        content = data.draw(fuzz.mutated_bytes(photo_bases[base]))
        name = f"odd{i}" + data.draw(st.sampled_from(EXTENSIONS))
        (folder / name).write_bytes(content)
        names.append(name)
    if data.draw(st.booleans()):
        (folder / "dangling.jpg").symlink_to(root / "gone.jpg")
        names.append("dangling.jpg")
    (folder / "subfolder.jpg").mkdir()  # a folder is not a photo: not listed
    (folder / ".hidden.jpg").write_bytes(photo_bases["small.jpg"])  # hidden: not listed
    kind = data.draw(st.sampled_from(["landmarks", "cameras"]))
    cameras = None
    landmarks_file = None
    if kind == "landmarks":
        points = {
            name: _project(
                *data.draw(st.tuples(st.floats(-0.4, 0.4), st.floats(-0.2, 0.2)))
            ).tolist()
            for name in names
        }
        landmarks_file = root / "points.json"
        landmarks_file.write_text(json.dumps(points))
    else:
        entry = dict(TFGLO_DOC["images"]["img0.png"], width=_PHOTO_SIZE[0], height=_PHOTO_SIZE[1])
        doc = dict(TFGLO_DOC, images={name: entry for name in names})
        cameras_path = root / "cameras.json"
        cameras_path.write_text(json.dumps(doc))
        cameras = camera_file_import.CameraImportConfig(cameras_file=str(cameras_path), mask="none")
    config = photo_source.PhotoSourceConfig(
        images=str(folder),
        photo=photos.PhotoConfig(image_size=32, min_size=16),
        landmarks_file=None if landmarks_file is None else str(landmarks_file),
        landmarks_mask="none",
        cameras=cameras,
        log_every=0,
    )
    prepared, metadata, skipped = photo_source.prepare_images(config)
    used = [r.source for r in prepared]
    skipped_names = [s["source"] for s in skipped]
    assert sorted(used + skipped_names) == sorted(names)
    for entry in skipped:
        assert entry["category"] != "error", entry  # an unexpected exception, caught
        assert entry["reason"].startswith(entry["category"])
    assert {f"good{i}" + (".png" if i % 2 else ".jpg") for i in range(4)} <= set(used)
    json.dumps(metadata)
    fuzz.COUNTER.add(f"photo folder ({kind})", f"{len(used)} used, {len(skipped)} skipped")


# The long profile --------------------------------------------------------------------------


@pytest.mark.slow
def test_long_fuzz_profile():
    """This module again with ten times the cases (TFGLO_FUZZ_SCALE=10): ~10 minutes."""
    env = dict(os.environ, TFGLO_FUZZ_SCALE=str(fuzz.SLOW_SCALE), TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-m", "not slow", __file__],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    print(result.stdout[-4000:])
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
