"""The per-image record: the one feature spec that dataset writers and readers share.

A dataset directory holds `tf.train.Example` records, one per image (DESIGN.md section 4). This
module owns their schema: `ImageRecord` (numpy, for writers and tests), `to_example` /
`from_example` (exact round trip), and `parse_features` (graph-mode parsing for tf.data).

Optional fields are stored as empty lists / empty bytes when absent; `parse_features` returns
them with a leading length that may be 0 and a `has_<name>` flag.
"""

import dataclasses
import io

import numpy as np
import tensorflow as tf
from PIL import Image

SPLITS = ("train", "eval")


@dataclasses.dataclass
class ImageRecord:
    """One image with its camera and annotations.

    Attributes:
      image: `[H, W, 3]` uint8 RGB (gamma-encoded sRGB, as stored).
      intrinsics: `[4]` float32 (fx, fy, cx, cy), pixels.
      world_to_camera: `[3, 4]` float32 [R | t], OpenCV convention.
      latent_id: row of the latent table this image trains.
      object_id: identity of the object (several views of one object share it).
      view_id: index of the view within its object.
      source: where the image came from (file name or generator key).
      split: "train" or "eval".
      mask: optional `[H, W]` uint8 foreground mask (255 = foreground); bool is converted.
      depth: optional `[H, W]` float32 ground-truth depth along the camera z axis (0 = no hit),
        object units; evaluation only.
      landmarks: optional `[K, 2]` float32 2D keypoints used by the camera fit, pixels.
      keypoints_3d: optional `[K, 3]` float32 ground-truth 3D keypoints (synthetic data), world.
      face_mesh: optional `[478, 3]` float32 MediaPipe landmarks (x, y in pixels, z relative).
      face_pose: optional `[4, 4]` float32 MediaPipe facial transformation matrix.
    """

    image: np.ndarray
    intrinsics: np.ndarray
    world_to_camera: np.ndarray
    latent_id: int
    object_id: int = 0
    view_id: int = 0
    source: str = ""
    split: str = "train"
    mask: np.ndarray | None = None
    depth: np.ndarray | None = None
    landmarks: np.ndarray | None = None
    keypoints_3d: np.ndarray | None = None
    face_mesh: np.ndarray | None = None
    face_pose: np.ndarray | None = None

    def __post_init__(self):
        image = np.asarray(self.image)
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be [H, W, 3] uint8, got {image.shape} {image.dtype}")
        height, width = image.shape[:2]
        if self.mask is not None:
            mask = np.asarray(self.mask)
            if mask.dtype == bool:
                self.mask = mask.astype(np.uint8) * 255
            elif mask.dtype != np.uint8:
                # A float mask in [0, 1] would silently become 0/1 out of 255 in the PNG.
                raise ValueError(f"mask must be uint8 (255 = foreground) or bool, got {mask.dtype}")
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        if np.shape(self.intrinsics) != (4,):
            raise ValueError(f"intrinsics must be [4], got {np.shape(self.intrinsics)}")
        if np.shape(self.world_to_camera) != (3, 4):
            raise ValueError(
                f"world_to_camera must be [3, 4], got {np.shape(self.world_to_camera)}"
            )
        if self.mask is not None and np.shape(self.mask) != (height, width):
            raise ValueError(f"mask must be [{height}, {width}], got {np.shape(self.mask)}")
        if self.depth is not None and np.shape(self.depth) != (height, width):
            raise ValueError(f"depth must be [{height}, {width}], got {np.shape(self.depth)}")
        for name, last in (("landmarks", 2), ("keypoints_3d", 3), ("face_mesh", 3)):
            value = getattr(self, name)
            if value is not None and (np.ndim(value) != 2 or np.shape(value)[1] != last):
                raise ValueError(f"{name} must be [K, {last}], got {np.shape(value)}")
        if self.face_pose is not None and np.shape(self.face_pose) != (4, 4):
            raise ValueError(f"face_pose must be [4, 4], got {np.shape(self.face_pose)}")

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of a `[H, W, 3]` or `[H, W]` uint8 array."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """uint8 array of PNG bytes (`[H, W, 3]` for RGB, `[H, W]` for grayscale)."""
    return np.asarray(Image.open(io.BytesIO(data)))


def _bytes(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _ints(values) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def _floats(values) -> tf.train.Feature:
    flat = np.asarray(values, np.float32).reshape(-1) if values is not None else []
    return tf.train.Feature(float_list=tf.train.FloatList(value=flat))


def to_example(record: ImageRecord) -> tf.train.Example:
    """Serialisable `tf.train.Example` of a record (images as PNG, floats as float32)."""
    landmarks = record.landmarks
    feature = {
        "image": _bytes(encode_png(record.image)),
        "mask": _bytes(encode_png(record.mask) if record.mask is not None else b""),
        "depth": _floats(record.depth),
        "height": _ints([record.height]),
        "width": _ints([record.width]),
        "intrinsics": _floats(record.intrinsics),
        "world_to_camera": _floats(record.world_to_camera),
        "landmarks": _floats(landmarks),
        "num_landmarks": _ints([0 if landmarks is None else len(landmarks)]),
        "keypoints_3d": _floats(record.keypoints_3d),
        "face_mesh": _floats(record.face_mesh),
        "face_pose": _floats(record.face_pose),
        "latent_id": _ints([record.latent_id]),
        "object_id": _ints([record.object_id]),
        "view_id": _ints([record.view_id]),
        "source": _bytes(record.source.encode("utf-8")),
        "split": _bytes(record.split.encode("utf-8")),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature))


def from_example(serialized: bytes) -> ImageRecord:
    """Decodes serialized `tf.train.Example` bytes back into an `ImageRecord` (numpy)."""
    example = tf.train.Example.FromString(serialized)
    f = example.features.feature

    def floats(name, shape):
        values = np.asarray(f[name].float_list.value, np.float32)
        return values.reshape(shape) if values.size else None

    height = f["height"].int64_list.value[0]
    width = f["width"].int64_list.value[0]
    mask_bytes = f["mask"].bytes_list.value[0]
    return ImageRecord(
        image=decode_png(f["image"].bytes_list.value[0]),
        intrinsics=floats("intrinsics", [4]),
        world_to_camera=floats("world_to_camera", [3, 4]),
        latent_id=int(f["latent_id"].int64_list.value[0]),
        object_id=int(f["object_id"].int64_list.value[0]),
        view_id=int(f["view_id"].int64_list.value[0]),
        source=f["source"].bytes_list.value[0].decode("utf-8"),
        split=f["split"].bytes_list.value[0].decode("utf-8"),
        mask=decode_png(mask_bytes) if mask_bytes else None,
        depth=floats("depth", [height, width]),
        landmarks=floats("landmarks", [-1, 2]),
        keypoints_3d=floats("keypoints_3d", [-1, 3]),
        face_mesh=floats("face_mesh", [-1, 3]),
        face_pose=floats("face_pose", [4, 4]),
    )


FEATURE_SPEC = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "mask": tf.io.FixedLenFeature([], tf.string, default_value=b""),
    "depth": tf.io.VarLenFeature(tf.float32),
    "height": tf.io.FixedLenFeature([], tf.int64),
    "width": tf.io.FixedLenFeature([], tf.int64),
    "intrinsics": tf.io.FixedLenFeature([4], tf.float32),
    "world_to_camera": tf.io.FixedLenFeature([12], tf.float32),
    "landmarks": tf.io.VarLenFeature(tf.float32),
    "latent_id": tf.io.FixedLenFeature([], tf.int64),
    "object_id": tf.io.FixedLenFeature([], tf.int64, default_value=0),
    "view_id": tf.io.FixedLenFeature([], tf.int64, default_value=0),
    "source": tf.io.FixedLenFeature([], tf.string, default_value=b""),
    "split": tf.io.FixedLenFeature([], tf.string, default_value=b"train"),
}


def parse_features(serialized: tf.Tensor, as_uint8: bool = False) -> dict[str, tf.Tensor]:
    """Parses one serialized record in graph mode (for `tf.data`).

    Args:
      serialized: scalar string tensor.
      as_uint8: return image and mask as uint8 (0..255) instead of float32 in [0, 1]: a quarter
        of the memory, for pipelines that cache decoded images and convert only what they use.

    Returns:
      A dict with image `[H, W, 3]` float32 in [0, 1]; mask `[H, W]` float32 in [0, 1] (ones when
      the record has none) and has_mask bool; depth `[H, W]` float32 (zeros when absent) and
      has_depth bool; intrinsics `[4]`; world_to_camera `[3, 4]`; landmarks `[K, 2]`; height,
      width, latent_id, object_id, view_id (int64 scalars); source, split (strings).
    """
    raw = tf.io.parse_single_example(serialized, FEATURE_SPEC)
    height = tf.cast(raw["height"], tf.int32)
    width = tf.cast(raw["width"], tf.int32)
    dtype = tf.uint8 if as_uint8 else tf.float32
    image = tf.io.decode_png(raw["image"], channels=3)
    image = tf.image.convert_image_dtype(image, dtype)
    has_mask = tf.strings.length(raw["mask"]) > 0
    mask = tf.cond(
        has_mask,
        lambda: tf.image.convert_image_dtype(
            tf.io.decode_png(raw["mask"], channels=1)[..., 0], dtype
        ),
        lambda: tf.fill([height, width], tf.constant(255 if as_uint8 else 1, dtype)),
    )
    depth_values = tf.sparse.to_dense(raw["depth"])
    has_depth = tf.size(depth_values) > 0
    depth = tf.cond(
        has_depth,
        lambda: tf.reshape(depth_values, [height, width]),
        lambda: tf.zeros([height, width], tf.float32),
    )
    return {
        "image": image,
        "mask": mask,
        "has_mask": has_mask,
        "depth": depth,
        "has_depth": has_depth,
        "intrinsics": raw["intrinsics"],
        "world_to_camera": tf.reshape(raw["world_to_camera"], [3, 4]),
        "landmarks": tf.reshape(tf.sparse.to_dense(raw["landmarks"]), [-1, 2]),
        "height": raw["height"],
        "width": raw["width"],
        "latent_id": raw["latent_id"],
        "object_id": raw["object_id"],
        "view_id": raw["view_id"],
        "source": raw["source"],
        "split": raw["split"],
    }
