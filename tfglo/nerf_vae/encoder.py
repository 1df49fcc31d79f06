"""The NeRF-VAE view encoder: NVAE-style residual cells from a view (and its camera) to a Gaussian.

One context view `[B, H, W, 3]` (sRGB in [0, 1]) and, by default, its camera as per-pixel rays go
in; the mean and log-variance `[B, D]` of a diagonal Gaussian over the scene latent come out
(`tfglo.nerf_vae.posterior` combines the Gaussians of a scene's views).

Architecture (NVAE, Vahdat & Kautz 2020, "Nouveau VAE", encoder side):
- input: the image mapped to [-1, 1], concatenated with 6 camera channels per pixel (below);
- stem: one 3x3 convolution to `stage_widths[0]` channels;
- stages: stage s > 0 starts with a downsampling cell (stride 2); then `cells_per_stage`
  residual cells at that resolution. A cell is x + residual_scale * SE(conv3x3(swish(norm(
  conv3x3(swish(norm(x))))))), NVAE's encoder cell with its 0.1 residual scale; a downsampling
  cell's first convolution has stride 2 and its skip path is a 2x2 average pool followed by a 1x1
  convolution when the width changes;
- head: norm, swish, then the final feature map flattened (or averaged over space), one dense
  layer to 2 D numbers: the mean and the log-variance, softly clamped to +-`log_variance_limit`
  (NVAE's soft clamp, which keeps exp() finite). The head starts at a small scale, so an untrained
  encoder gives posteriors close to the prior N(0, I) (KL near 0 at the first step).
Left out from NVAE: weight normalisation and the spectral regulariser (flags can add them when a
measurement asks for them).

Cameras (`cameras=True`): each pixel gets its ray, from `tfglo.geometry.camera.image_rays`
(through the pixel centre, world frame, unit direction d, origin o = camera centre), encoded as
- "plucker" (default): Plücker coordinates (d, o x d): the moment o x d is the same for any point
  of the ray taken as its origin, so a ray has one encoding, and |o x d| is the distance of the
  ray's line from the world origin (bounded by the camera distance, small for rays that cross the
  object's bounding sphere), rather than a camera position repeated over every pixel;
- "origin_direction": (o, d).
The latent lives in the world frame, so the encoder needs to know where each view was taken from;
`cameras=False` leaves the camera out (the image alone).

Normalisation: "group" (default) normalises each example on its own (GroupNormalization), so a
replica's result does not depend on the other examples of the batch, or on how the batch is split
over replicas: exact under MirroredStrategy. "batch_sync" is batch normalisation whose batch
statistics are all-reduced over the replicas (Keras' `synchronized=True`), also exact under a
strategy but with moving statistics for inference. Both are tested on 2 logical devices against
one device.
"""

import dataclasses
from typing import Literal

import keras
import tensorflow as tf

from tfglo.geometry import camera

CAMERA_CHANNELS = 6
# The smallest squeeze-and-excitation bottleneck (NVAE's).
_MIN_SE_UNITS = 4
# Initial scale of the head's kernel (variance scaling): the first posteriors are near N(0, I).
_HEAD_INIT_SCALE = 1e-2


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """The view encoder (NVAE-style residual cells -> mean and log-variance of the latent).

    Attributes:
      image_size: side of the square views it takes, pixels (the scene-batch pipeline resizes
        context views to it and scales their intrinsics); divisible by 2^(number of stages - 1).
      stage_widths: channels of each stage, from the input resolution down; every stage after
        the first starts with a stride-2 downsampling cell.
      cells_per_stage: residual cells per stage (after the stage's downsampling cell).
      latent_dim: size of each latent code. The scene latent: the decoder is built for it.
      cameras: concatenate each view's camera, as per-pixel rays, to its image; False encodes the
        image alone.
      camera_encoding: how a pixel's ray enters: "plucker" (direction d and moment o x d) or
        "origin_direction" (camera centre o and direction d); world frame, unit d.
      normalization: "group" (group normalisation, per example: exact under any strategy) or
        "batch_sync" (batch normalisation with statistics all-reduced over replicas).
      groups: groups of the group normalisation (must divide every stage width).
      se_ratio: squeeze-and-excitation reduction, hidden units = max(width // se_ratio, 4);
        0 disables squeeze-and-excitation.
      residual_scale: scale of every cell's residual branch (NVAE: 0.1).
      head_pooling: "flatten" (the final feature map, keeping where things are in the view) or
        "mean" (averaged over space).
      log_variance_limit: the log-variance is softly clamped to (-limit, limit) by
        limit * tanh(x / limit); None: no clamp.
    """

    image_size: int = 64
    stage_widths: tuple[int, ...] = (32, 64, 128, 256)
    cells_per_stage: int = 1
    latent_dim: int = 64
    cameras: bool = True
    camera_encoding: Literal["plucker", "origin_direction"] = "plucker"
    normalization: Literal["group", "batch_sync"] = "group"
    groups: int = 8
    se_ratio: int = 16
    residual_scale: float = 0.1
    head_pooling: Literal["flatten", "mean"] = "flatten"
    log_variance_limit: float | None = 10.0

    def __post_init__(self):
        object.__setattr__(self, "stage_widths", tuple(int(w) for w in self.stage_widths))
        if not self.stage_widths or min(self.stage_widths) < 1:
            raise ValueError(
                f"stage_widths must be a non-empty list of >= 1, got {self.stage_widths}"
            )
        for name in ("image_size", "latent_dim", "groups"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.cells_per_stage < 0:
            raise ValueError(f"cells_per_stage must be >= 0, got {self.cells_per_stage}")
        if self.se_ratio < 0:
            raise ValueError(f"se_ratio must be >= 0 (0 disables), got {self.se_ratio}")
        factor = 2 ** (len(self.stage_widths) - 1)
        if self.image_size % factor:
            raise ValueError(
                f"image_size {self.image_size} must be divisible by {factor} (2^(stages - 1) for "
                f"{len(self.stage_widths)} stages)"
            )
        if self.normalization == "group":
            bad = [w for w in self.stage_widths if w % self.groups]
            if bad:
                raise ValueError(
                    f"groups {self.groups} must divide every stage width, not {bad} "
                    f"(stage_widths {self.stage_widths})"
                )
        choices = {
            "camera_encoding": ("plucker", "origin_direction"),
            "normalization": ("group", "batch_sync"),
            "head_pooling": ("flatten", "mean"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not self.residual_scale > 0:
            raise ValueError(f"residual_scale must be > 0, got {self.residual_scale}")
        if self.log_variance_limit is not None and not self.log_variance_limit > 0:
            raise ValueError(
                f"log_variance_limit must be > 0 or None, got {self.log_variance_limit}"
            )

    @property
    def input_channels(self) -> int:
        """Channels of the encoder's input: 3 (+ 6 camera channels)."""
        return 3 + (CAMERA_CHANNELS if self.cameras else 0)

    @property
    def final_size(self) -> int:
        """Side of the last stage's feature map, pixels."""
        return self.image_size // 2 ** (len(self.stage_widths) - 1)


def camera_channels(intrinsics, world_to_camera, height: int, width: int, encoding: str):
    """Per-pixel rays of a batch of cameras, as encoder input channels.

    Args:
      intrinsics: `[B, 4]` (fx, fy, cx, cy) or `[B, 3, 3]` K, pixels of the `height` x `width`
        image.
      world_to_camera: `[B, 3, 4]` (or `[B, 4, 4]`) OpenCV [R | t].
      height: image height, pixels.
      width: image width, pixels.
      encoding: "plucker" -> (d, o x d); "origin_direction" -> (o, d).

    Returns:
      `[B, H, W, 6]` float32: per pixel centre, the ray's encoding (world frame, unit d, object
      units).
    """
    cameras = camera.make_camera(intrinsics, world_to_camera)
    origins, directions = camera.image_rays(cameras, height, width)
    if encoding == "plucker":
        return tf.concat([directions, tf.linalg.cross(origins, directions)], -1)
    if encoding == "origin_direction":
        return tf.concat([origins, directions], -1)
    raise ValueError(f"camera encoding must be 'plucker' or 'origin_direction', got {encoding!r}")


def _merge_leading(x):
    """`[B, V, ...]` -> `[B * V, ...]`, keeping the static trailing shape (None passes through)."""
    if x is None:
        return None
    x = tf.convert_to_tensor(x)
    trailing = x.shape[2:]
    if trailing.is_fully_defined():
        return tf.reshape(x, [-1] + trailing.as_list())
    return tf.reshape(x, tf.concat([[-1], tf.shape(x)[2:]], 0))


def _normalization(config: EncoderConfig, name: str) -> keras.layers.Layer:
    if config.normalization == "group":
        return keras.layers.GroupNormalization(groups=config.groups, epsilon=1e-5, name=name)
    return keras.layers.BatchNormalization(synchronized=True, momentum=0.99, name=name)


def se_units(config: EncoderConfig, width: int) -> int:
    """Hidden units of a cell's squeeze-and-excitation block (0 when disabled)."""
    return max(width // config.se_ratio, _MIN_SE_UNITS) if config.se_ratio else 0


class SqueezeExcitation(keras.layers.Layer):
    """Channel gating: x * sigmoid(W2 relu(W1 mean_hw(x))) (Hu et al. 2018, as in NVAE).

    Input and output `[B, H, W, C]`.
    """

    def __init__(self, width: int, units: int, **kwargs):
        super().__init__(**kwargs)
        self.squeeze = keras.layers.Dense(units, activation="relu", name="squeeze")
        self.excite = keras.layers.Dense(width, activation="sigmoid", name="excite")

    def call(self, x):
        gate = self.excite(self.squeeze(tf.reduce_mean(x, axis=[1, 2])))
        return x * gate[:, None, None, :]


class ResidualCell(keras.layers.Layer):
    """NVAE encoder cell: x + s * SE(conv3x3(swish(norm(conv3x3(swish(norm(x))))))).

    With `stride=2` the first convolution downsamples and the skip path is a 2x2 average pool
    (then a 1x1 convolution when the width changes).

    Input `[B, H, W, C_in]`, output `[B, H / stride, W / stride, width]`.
    """

    def __init__(self, config: EncoderConfig, in_width: int, width: int, stride: int, **kwargs):
        super().__init__(**kwargs)
        self.scale = config.residual_scale
        self.stride = stride
        self.norm1 = _normalization(config, "norm1")
        # No bias before a normalisation: it would be removed by it.
        self.conv1 = keras.layers.Conv2D(
            width, 3, strides=stride, padding="same", use_bias=False, name="conv1"
        )
        self.norm2 = _normalization(config, "norm2")
        self.conv2 = keras.layers.Conv2D(width, 3, padding="same", name="conv2")
        units = se_units(config, width)
        self.se = SqueezeExcitation(width, units, name="se") if units else None
        self.pool = keras.layers.AveragePooling2D(2, name="pool") if stride == 2 else None
        self.project = keras.layers.Conv2D(width, 1, name="project") if in_width != width else None

    def call(self, x, training=False):
        h = self.conv1(tf.nn.silu(self.norm1(x, training=training)))
        h = self.conv2(tf.nn.silu(self.norm2(h, training=training)))
        if self.se is not None:
            h = self.se(h)
        skip = x
        if self.pool is not None:
            skip = self.pool(skip)
        if self.project is not None:
            skip = self.project(skip)
        return skip + self.scale * h


def _cell_plan(config: EncoderConfig) -> list[tuple[int, int, int]]:
    """(in_width, width, stride) of every cell, in order."""
    plan, width = [], config.stage_widths[0]
    for stage, stage_width in enumerate(config.stage_widths):
        if stage > 0:
            plan.append((width, stage_width, 2))
            width = stage_width
        plan.extend((width, width, 1) for _ in range(config.cells_per_stage))
    return plan


def encoder_multiply_adds(config: EncoderConfig) -> int:
    """Multiply-adds of one view through the encoder (convolutions and dense layers).

    Normalisation, activations, pooling, the residual additions and the camera rays are left out
    (elementwise work, a few per cent at the default sizes). A benchmark reports the train step's
    ratio to the matmul peak with 2 x this per view (forward; the backward pass is about 2 x more).
    """
    size = config.image_size
    total = size * size * 9 * config.input_channels * config.stage_widths[0]  # stem
    for in_width, width, stride in _cell_plan(config):
        out = size // stride
        total += out * out * 9 * in_width * width  # conv1
        total += out * out * 9 * width * width  # conv2
        units = se_units(config, width)
        total += 2 * width * units  # squeeze + excite
        if in_width != width:
            total += out * out * in_width * width  # 1x1 projection of the skip
        size = out
    features = config.stage_widths[-1]
    if config.head_pooling == "flatten":
        features *= config.final_size**2
    return total + features * 2 * config.latent_dim


class Encoder(keras.Model):
    """View -> (mean, log-variance) of a diagonal Gaussian over the scene latent.

    Args:
      config: an `EncoderConfig`.

    Call:
      images `[B, S, S, 3]` float sRGB in [0, 1] (S = config.image_size); with config.cameras,
      intrinsics `[B, 4]` (fx, fy, cx, cy, pixels of the S x S view) or `[B, 3, 3]`, and
      world_to_camera `[B, 3, 4]` (OpenCV). Returns mean `[B, D]` and log_variance `[B, D]`.

    Raises (on call):
      ValueError: images of another shape, or cameras missing while config.cameras is set.
    """

    def __init__(self, config: EncoderConfig = EncoderConfig(), **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.stem = keras.layers.Conv2D(config.stage_widths[0], 3, padding="same", name="stem")
        # One attribute per cell: Keras' tracked lists are not TensorFlow trackables, so
        # `tf.train.Checkpoint` would not see layers kept only in a list.
        self._cell_names = []
        for i, (in_width, width, stride) in enumerate(_cell_plan(config)):
            name = f"cell{i}"
            setattr(self, name, ResidualCell(config, in_width, width, stride, name=name))
            self._cell_names.append(name)
        self.head_norm = _normalization(config, "head_norm")
        self.head = keras.layers.Dense(
            2 * config.latent_dim,
            kernel_initializer=keras.initializers.VarianceScaling(_HEAD_INIT_SCALE),
            name="head",
        )

    @property
    def cells(self) -> list[ResidualCell]:
        return [getattr(self, name) for name in self._cell_names]

    def _check_images(self, images) -> None:
        shape = images.shape
        size = self.config.image_size
        expected = [None, size, size, 3]
        if shape.rank != 4 or any(
            e is not None and s is not None and s != e for s, e in zip(shape, expected)
        ):
            raise ValueError(
                f"the encoder takes views [B, {size}, {size}, 3] (EncoderConfig.image_size), got "
                f"{shape}: resize them first (the scene-batch pipeline does, scaling intrinsics)"
            )

    def call(self, images, intrinsics=None, world_to_camera=None, training=False):
        """See the class docstring."""
        images = tf.convert_to_tensor(images)
        self._check_images(images)
        size = self.config.image_size
        x = tf.cast(images, tf.float32) * 2.0 - 1.0
        if self.config.cameras:
            if intrinsics is None or world_to_camera is None:
                raise ValueError(
                    "this encoder takes cameras (EncoderConfig.cameras): pass intrinsics and "
                    "world_to_camera with the images"
                )
            rays = camera_channels(
                intrinsics, world_to_camera, size, size, self.config.camera_encoding
            )
            x = tf.concat([x, rays], -1)
        h = self.stem(x)
        for cell in self.cells:
            h = cell(h, training=training)
        h = tf.nn.silu(self.head_norm(h, training=training))
        if self.config.head_pooling == "flatten":
            final = self.config.final_size
            h = tf.reshape(h, [-1, final * final * self.config.stage_widths[-1]])
        else:
            h = tf.reduce_mean(h, axis=[1, 2])
        mean, log_variance = tf.split(self.head(h), 2, axis=-1)
        limit = self.config.log_variance_limit
        if limit is not None:
            log_variance = limit * tf.tanh(log_variance / limit)
        return mean, log_variance

    def encode_views(self, images, intrinsics=None, world_to_camera=None, training=False):
        """Encodes V views of each of B scenes in one batch.

        Args:
          images: `[B, V, S, S, 3]` in [0, 1].
          intrinsics: `[B, V, 4]` or `[B, V, 3, 3]` (with config.cameras).
          world_to_camera: `[B, V, 3, 4]` (with config.cameras).
          training: normalisation in training mode (batch statistics with "batch_sync").

        Returns:
          mean `[B, V, D]`, log_variance `[B, V, D]`.
        """
        images = tf.convert_to_tensor(images)
        if images.shape.rank != 5:
            raise ValueError(f"encode_views takes images [B, V, S, S, 3], got {images.shape}")
        batch_shape = tf.shape(images)[:2]
        mean, log_variance = self(
            _merge_leading(images),
            intrinsics=_merge_leading(intrinsics),
            world_to_camera=_merge_leading(world_to_camera),
            training=training,
        )
        new_shape = tf.concat([batch_shape, [self.config.latent_dim]], 0)
        return tf.reshape(mean, new_shape), tf.reshape(log_variance, new_shape)

    def build_all(self) -> None:
        """Creates every weight (one call on a zero view), e.g. inside a strategy's scope."""
        size = self.config.image_size
        images = tf.zeros([1, size, size, 3])
        cameras = {}
        if self.config.cameras:
            cameras = dict(
                intrinsics=tf.constant([[2.0 * size, 2.0 * size, size / 2, size / 2]]),
                world_to_camera=camera.look_at(tf.constant([[0.0, 0.0, -4.0]])),
            )
        self(images, training=False, **cameras)

    def multiply_adds(self) -> int:
        """Multiply-adds per view (`encoder_multiply_adds`)."""
        return encoder_multiply_adds(self.config)
