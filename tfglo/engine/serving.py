"""Export machinery for TF Serving, shared by every model family: signatures, input guards,
requests, warm-up files, versions, and the render benchmark.

A family's serving module subclasses `RenderModule`, a `tf.Module` whose signatures render a
camera-conditioned NeRF entirely in the graph (no Python on the serving side):

- `serving_default` and `render`: latent `[B, D]` float32, intrinsics `[B, 3, 3]` float32 (K in
  pixels), world_to_camera `[B, 3, 4]` float32 (OpenCV [R | t]), height and width int32 scalars
  -> rgb `[B, H, W, 3]` in [0, 1], depth `[B, H, W]` (expected termination distance along the
  unit ray, object units; 0 off the object's sphere), alpha `[B, H, W]` (foreground opacity).
  The B x H x W rays are rendered in fixed-size chunks inside a `tf.map_fn` that runs one chunk
  at a time, so the peak memory of a request does not grow with the image size (only the output
  images do). With `RenderConfig.accelerate` (the model's `config.render`) the chunks are
  rendered by `tfglo.nerf.accelerated_renderer` in the graph: one occupancy grid per distinct
  latent of the request (views of one latent share it), then samples in occupied cells only and
  early ray termination; otherwise every ray by the exact brute-force renderer.
- `orbit_cameras`: num_views int32, radius, yaw_min, yaw_max, pitch_min, pitch_max float32
  (radians), height, width int32, focal_factor float32 -> world_to_camera `[V, 3, 4]`, intrinsics
  `[V, 3, 3]` (focal = focal_factor x width, centred principal point), so a client can ask for an
  orbit without writing camera maths.

A family adds its own signatures (LOLNeRF: `render_identity`, `sample_latents`; see
`tfglo.lolnerf.serving`) and extends `SIGNATURE_INPUTS` / `SIGNATURE_OUTPUTS` with them.

Every input is declared with an unknown shape and checked inside the graph (`guard`,
`check_scalar`): TF Serving feeds a request's tensors to the graph without checking them against
the signature's shapes, so only in-graph checks give the same error everywhere (TF Serving,
`saved_model_cli run`, Python). A bad input fails with InvalidArgument and a message that names
it, e.g. "latent must be [B, D] float32 with D=64". Cameras are checked for what they mean, not
only their shape (`check_intrinsics`, `check_world_to_camera`): K must be a pinhole matrix
[[fx, 0, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0 (a zero or negative focal, a skew, a
wrong last row are refused: the renderer reads only fx, fy, cx, cy and would silently render
something else), and [R | t] must be rigid (R R^T = I within `RIGID_TOLERANCE`, det R = +1);
every entry finite and within +-`CAMERA_VALUE_LIMIT` (beyond it the ray maths overflows float32).

Keras 3 trap: a SavedModel of Keras 3 layers inside a `tf.Module` loads in Python but fails under
`saved_model_cli run` / TF Serving ("Could not find variable ...") unless the variables are
reachable from the module's object graph. `RenderModule` therefore tracks the model's
`tf.Variable`s in a list attribute (and does not track the Keras model object itself).

`save_module` writes the SavedModel plus `assets.extra/tf_serving_warmup_requests`
(PredictionLog records that TF Serving replays at load time, so the first real request does not
pay for graph optimisation) and `assets.extra/tfglo_export.json` (the signatures, the module's
sizes and the caller's metadata, for clients); `export_version` puts it at
`<export_base>/<model_name>/<version>/` without ever leaving a half-written version.
"""

import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from tfglo.geometry import camera
from tfglo.nerf import accelerated_renderer

DEFAULT_SIGNATURE = "serving_default"
WARMUP_FILE = "tf_serving_warmup_requests"
METADATA_FILE = "tfglo_export.json"
ASSETS_EXTRA = "assets.extra"
EXPORT_FORMAT = "tfglo-serving-1"

# The camera inputs of every render signature: name -> (numpy dtype, rank, shape as documented).
CAMERA_INPUTS: dict[str, tuple[str, int, str]] = {
    "intrinsics": ("float32", 3, "[B, 3, 3]"),
    "world_to_camera": ("float32", 3, "[B, 3, 4]"),
    "height": ("int32", 0, "[]"),
    "width": ("int32", 0, "[]"),
}
RENDER_OUTPUTS = ("rgb", "depth", "alpha")

# The inputs of the signatures every `RenderModule` has: signature -> input name -> (numpy
# dtype, rank, shape as documented). Shared with the clients and the warm-up requests so all
# agree; a family's module extends it with its own signatures.
SIGNATURE_INPUTS: dict[str, dict[str, tuple[str, int, str]]] = {
    "render": {"latent": ("float32", 2, "[B, D]"), **CAMERA_INPUTS},
    "orbit_cameras": {
        "num_views": ("int32", 0, "[]"),
        "radius": ("float32", 0, "[]"),
        "yaw_min": ("float32", 0, "[]"),
        "yaw_max": ("float32", 0, "[]"),
        "pitch_min": ("float32", 0, "[]"),
        "pitch_max": ("float32", 0, "[]"),
        "height": ("int32", 0, "[]"),
        "width": ("int32", 0, "[]"),
        "focal_factor": ("float32", 0, "[]"),
    },
}
SIGNATURE_INPUTS[DEFAULT_SIGNATURE] = SIGNATURE_INPUTS["render"]

SIGNATURE_OUTPUTS: dict[str, tuple[str, ...]] = {
    DEFAULT_SIGNATURE: RENDER_OUTPUTS,
    "render": RENDER_OUTPUTS,
    "orbit_cameras": ("world_to_camera", "intrinsics"),
}

SignatureInputs = dict[str, dict[str, tuple[str, int, str]]]


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """How a model is exported.

    Attributes:
      model_name: the TF Serving model name (used in the warm-up requests' model spec).
      chunk_size: rays rendered per chunk inside the render signatures (None: the model's
        `RenderConfig.chunk_size`); bounds the peak memory of a request.
      parallel_chunks: chunks the `tf.map_fn` may run at once (1 keeps memory flat; more can
        use a large accelerator better).
      max_image_size: largest height or width a request may ask for, pixels.
      max_count: largest `count` of sample_latents and `num_views` of orbit_cameras.
      warmup_image_size: height and width of the warm-up render requests, pixels.
      camera_distance: camera distance of the warm-up requests (and the clients' default),
        object units.
      focal_factor: focal length / image width of the warm-up requests (and clients' default).
    """

    model_name: str = "tfglo"
    chunk_size: int | None = None
    parallel_chunks: int = 1
    max_image_size: int = 4096
    max_count: int = 65536
    warmup_image_size: int = 16
    camera_distance: float = 4.5
    focal_factor: float = 2.0


# Smallest accepted radius and focal factor (they must be > 0).
_TINY = 1e-6
# Largest |R R^T - I| entry of an accepted world-to-camera rotation: float32 rotations from
# clients (and JSON round trips) are orthonormal to ~1e-6; 1e-3 is transforms.json's tolerance.
RIGID_TOLERANCE = 1e-3
# Largest |entry| of K (pixels) and of t (object units): squares stay far inside float32.
CAMERA_VALUE_LIMIT = 1e6
# Largest off-pinhole entry of K (skew, last row), relative to the focal length.
_PINHOLE_TOLERANCE = 1e-4


class Untracked:
    """Holds an object without making it part of the SavedModel's object graph."""

    def __init__(self, value):
        self.value = value


def input_spec(signature_inputs: SignatureInputs, signature: str, name: str) -> tf.TensorSpec:
    """The `tf.TensorSpec` of one input: its dtype, an unknown shape, its name."""
    dtype, _, _ = signature_inputs[signature][name]
    # Unknown shape on purpose: the checks in the graph give the named errors (module docstring).
    return tf.TensorSpec(None, tf.as_dtype(dtype), name=name)


def input_specs(signature_inputs: SignatureInputs, signature: str) -> list[tf.TensorSpec]:
    """The input signature of a signature's `tf.function`, in the table's order."""
    return [input_spec(signature_inputs, signature, name) for name in signature_inputs[signature]]


def padded_shape(value: tf.Tensor, rank: int) -> tf.Tensor:
    """The first `rank` dims of `value`'s shape, zero-padded: `[rank]` int32, safe for any input."""
    return tf.concat([tf.shape(value), tf.zeros([rank], tf.int32)], 0)[:rank]


def first_element(value: tf.Tensor) -> tf.Tensor:
    """The first element of `value` (0 when empty): a scalar, safe for any input."""
    return tf.concat([tf.reshape(value, [-1]), tf.zeros([1], value.dtype)], 0)[0]


def guard(
    value: tf.Tensor, ok: tf.Tensor, message: str, fallback, static_shape, data=()
) -> tf.Tensor:
    """Asserts `ok` with `message`; returns `value` when ok, else a harmless `fallback`.

    Why not `tf.control_dependencies` before the use: Grappler may rewrite `Shape(Identity(x))`
    into `Shape(x)` and drop the ordering, so an op downstream of a bad input can fail first
    with an anonymous error ("slice index 1 of dimension 0 out of bounds"). Routing the value
    through `tf.cond` on the check's own condition is a data dependency no rewrite can drop:
    downstream ops only ever see a well-formed tensor, and the only error left is the assertion,
    which names the input. (Stateful asserts always run: they are control outputs of the
    function.)

    Args:
      value: the input as fed (any shape).
      ok: bool scalar, whether it is valid (computed without any op that can fail).
      message: the error message; names the input and its expected shape.
      fallback: a valid stand-in, used only when the assertion fails anyway.
      static_shape: the shape to declare on the result.
      data: more tensors to print in the error.
    """
    check = tf.debugging.Assert(ok, [message, "got shape", tf.shape(value), *data], summarize=8)
    with tf.control_dependencies([check]):
        value = tf.cond(
            ok,
            lambda: tf.identity(value),
            lambda: tf.cast(fallback, value.dtype),
        )
    return tf.ensure_shape(value, static_shape)


def shape_is(value: tf.Tensor, expected) -> tf.Tensor:
    """Whether `value` has rank len(expected) and those dims (None: any), as a bool scalar."""
    shape = padded_shape(value, len(expected))
    conditions = [tf.equal(tf.rank(value), len(expected))]
    conditions += [tf.equal(shape[i], d) for i, d in enumerate(expected) if d is not None]
    return tf.reduce_all(tf.stack(conditions))


def check_scalar(value, name: str, dtype: str, low=None, high=None, fallback=1) -> tf.Tensor:
    """Checks for a scalar in [low, high] (None: unbounded; floats also finite); returns it,
    shape []."""
    message = f"{name} must be a scalar {dtype}"
    if low is not None and high is not None:
        message += f" in [{low}, {high}]"
    elif low is not None:
        message += f" >= {low}"
    first = first_element(value)
    conditions = [tf.equal(tf.rank(value), 0)]
    if value.dtype.is_floating:
        # NaN fails every comparison but +-inf passes an open bound (an orbit radius of inf
        # renders NaN cameras): refuse non-finite floats whatever the bounds.
        message += " (finite)"
        conditions.append(tf.math.is_finite(first))
    if low is not None:
        conditions.append(first >= tf.cast(low, value.dtype))
    if high is not None:
        conditions.append(first <= tf.cast(high, value.dtype))
    ok = tf.reduce_all(tf.stack(conditions))
    return guard(value, ok, message, fallback, [], data=["value", first])


def _first_bad(ok_each: tf.Tensor) -> tf.Tensor:
    """The index of the first False in a `[B]` bool tensor (0 if none), int32."""
    return tf.cast(tf.argmin(tf.cast(ok_each, tf.int32)), tf.int32)


def check_intrinsics(intrinsics: tf.Tensor) -> tf.Tensor:
    """Checks that `[B, 3, 3]` finite K are pinhole matrices (module docstring); returns them.

    The error names the input and the first bad camera (its index and its K).
    """
    fx, fy = intrinsics[:, 0, 0], intrinsics[:, 1, 1]
    off = tf.stack(
        [intrinsics[:, 0, 1], intrinsics[:, 1, 0], intrinsics[:, 2, 0], intrinsics[:, 2, 1]], 1
    )
    scale = tf.maximum(tf.maximum(tf.abs(fx), tf.abs(fy)), 1.0)
    ok_each = tf.reduce_all(
        tf.stack(
            [
                fx > 0.0,
                fy > 0.0,
                tf.reduce_all(tf.abs(off) <= _PINHOLE_TOLERANCE * scale[:, None], 1),
                tf.abs(intrinsics[:, 2, 2] - 1.0) <= _PINHOLE_TOLERANCE,
                tf.reduce_all(tf.abs(intrinsics) <= CAMERA_VALUE_LIMIT, [1, 2]),
            ],
            1,
        ),
        1,
    )
    bad = _first_bad(ok_each)
    message = (
        "intrinsics must be pinhole matrices [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] with fx > 0 "
        f"and fy > 0 (pixels, |entries| <= {CAMERA_VALUE_LIMIT:g}): not singular, no skew"
    )
    return guard(
        intrinsics,
        tf.reduce_all(ok_each),
        message,
        tf.eye(3, batch_shape=tf.shape(intrinsics)[:1]),
        [None, 3, 3],
        data=["first bad camera", bad, "its K", intrinsics[bad : bad + 1]],
    )


def check_world_to_camera(world_to_camera: tf.Tensor) -> tf.Tensor:
    """Checks that `[B, 3, 4]` finite [R | t] are rigid (module docstring); returns them.

    The error names the input and the first bad camera (its index, max |R R^T - I|, det R).
    """
    rotation = world_to_camera[:, :, :3]
    eye = tf.eye(3, batch_shape=tf.shape(rotation)[:1])
    error = tf.reduce_max(tf.abs(tf.matmul(rotation, rotation, transpose_b=True) - eye), [1, 2])
    det = tf.linalg.det(rotation)
    ok_each = tf.reduce_all(
        tf.stack(
            [
                error <= RIGID_TOLERANCE,
                det > 0.0,
                tf.reduce_all(tf.abs(world_to_camera[:, :, 3]) <= CAMERA_VALUE_LIMIT, 1),
            ],
            1,
        ),
        1,
    )
    bad = _first_bad(ok_each)
    message = (
        "world_to_camera must be rigid transforms [R | t]: R orthonormal (max |R R^T - I| <= "
        f"{RIGID_TOLERANCE:g}) with det R = +1, |t| entries <= {CAMERA_VALUE_LIMIT:g}"
    )
    return guard(
        world_to_camera,
        tf.reduce_all(ok_each),
        message,
        tf.eye(3, 4, batch_shape=tf.shape(world_to_camera)[:1]),
        [None, 3, 4],
        data=[
            "first bad camera",
            bad,
            "max |R R^T - I|",
            error[bad : bad + 1],  # slices, not gathers: never an error of their own
            "det R",
            det[bad : bad + 1],
        ],
    )


class RenderModule(tf.Module):
    """The exported object of a camera-conditioned NeRF: `render` and `orbit_cameras`.

    Usable in memory too (tests compare it with the exported copy); `signatures()` gives the
    dict for `tf.saved_model.save`. Subclasses add signatures (tf.functions with an input
    signature from their own table), list them in `SIGNATURE_INPUTS` / `SIGNATURE_OUTPUTS` and
    `signatures()`, and may extend `warmup_inputs` and `export_info`.

    Args:
      model: a built model (every variable created) with `render_rays(origins [N, 3],
        directions [N, 3], latents [N, D], training=False) -> {"rgb", "depth", "alpha", ...}`.
      latent_dim: D, the size of a latent code.
      config: an `ExportConfig`.
      default_chunk_size: rays per chunk when `config.chunk_size` is None.
    """

    SIGNATURE_INPUTS: SignatureInputs = SIGNATURE_INPUTS
    SIGNATURE_OUTPUTS: dict[str, tuple[str, ...]] = SIGNATURE_OUTPUTS

    def __init__(
        self, model, latent_dim: int, config: ExportConfig, default_chunk_size: int = 4096
    ):
        super().__init__(name="tfglo_serving")
        self._latent_dim = int(latent_dim)
        chunk_size = config.chunk_size or default_chunk_size
        if chunk_size < 1 or config.parallel_chunks < 1:
            raise ValueError(
                f"chunk_size and parallel_chunks must be >= 1, got {chunk_size}, "
                f"{config.parallel_chunks}"
            )
        self._chunk_size = int(chunk_size)
        self._config = config
        self._model = Untracked(model)
        # The Keras 3 trap (module docstring): track the underlying tf.Variables explicitly.
        self.model_variables = [tf_variable(v) for v in model.variables]
        self._accelerated = _accelerated_renderer(model, self._chunk_size)

    @property
    def latent_dim(self) -> int:
        return self._latent_dim

    @property
    def chunk_size(self) -> int:
        return self._chunk_size

    @property
    def config(self) -> ExportConfig:
        return self._config

    @property
    def accelerate(self) -> bool:
        """Whether the render signatures use the accelerated renderer."""
        return self._accelerated is not None

    def signatures(self) -> dict[str, Any]:
        """The signatures to save: name -> `tf.function` with an input signature."""
        return {
            DEFAULT_SIGNATURE: self.render,
            "render": self.render,
            "orbit_cameras": self.orbit_cameras,
        }

    def default_latent(self) -> np.ndarray:
        """`[D]` the latent of the warm-up render request (zeros; a family may pick better)."""
        return np.zeros([self._latent_dim], np.float32)

    def export_info(self) -> dict[str, Any]:
        """Sizes recorded in tfglo_export.json (latent_dim, chunk_size, ...)."""
        return {
            "latent_dim": self.latent_dim,
            "chunk_size": self.chunk_size,
            "accelerate": self.accelerate,
        }

    def warmup_inputs(self) -> dict[str, dict[str, Any]]:
        """The inputs of the warm-up requests: signature name -> inputs (one request each)."""
        return {
            DEFAULT_SIGNATURE: {
                "latent": self.default_latent()[None],
                **self.warmup_camera_inputs(),
            },
            "orbit_cameras": self.warmup_orbit_inputs(),
        }

    def warmup_camera_inputs(self) -> dict[str, Any]:
        """One camera at `config.camera_distance`, `warmup_image_size` square (warm-up)."""
        config = self._config
        size = config.warmup_image_size
        world_to_camera = camera.orbit_cameras(1, config.camera_distance, (0.0, 0.0)).numpy()
        intrinsics = camera.intrinsics_matrix(
            camera.default_intrinsics(size, size, config.focal_factor)
        ).numpy()[None]
        return {
            "intrinsics": intrinsics,
            "world_to_camera": world_to_camera,
            "height": size,
            "width": size,
        }

    def warmup_orbit_inputs(self) -> dict[str, Any]:
        """An orbit_cameras request of 4 views framed like the warm-up camera."""
        config = self._config
        size = config.warmup_image_size
        return {
            "num_views": 4,
            "radius": config.camera_distance,
            "yaw_min": -0.5,
            "yaw_max": 0.5,
            "pitch_min": 0.0,
            "pitch_max": 0.0,
            "height": size,
            "width": size,
            "focal_factor": config.focal_factor,
        }

    # Validation ---------------------------------------------------------------------------

    def _check_camera(self, intrinsics, world_to_camera, height, width, batch):
        size = self._config.max_image_size
        intrinsics = guard(
            intrinsics,
            shape_is(intrinsics, [batch, 3, 3]),
            "intrinsics must be [B, 3, 3] float32 (pixels), B as in the latents",
            tf.eye(3, batch_shape=[batch]),
            [None, 3, 3],
        )
        world_to_camera = guard(
            world_to_camera,
            shape_is(world_to_camera, [batch, 3, 4]),
            "world_to_camera must be [B, 3, 4] float32 ([R | t]), B as in the latents",
            tf.eye(3, 4, batch_shape=[batch]),
            [None, 3, 4],
        )
        intrinsics = tf.debugging.assert_all_finite(intrinsics, "intrinsics must be finite")
        world_to_camera = tf.debugging.assert_all_finite(
            world_to_camera, "world_to_camera must be finite"
        )
        # After the finiteness checks (their outputs feed these), so NaN names "finite".
        intrinsics = check_intrinsics(intrinsics)
        world_to_camera = check_world_to_camera(world_to_camera)
        height = check_scalar(height, "height", "int32", 1, size)
        width = check_scalar(width, "width", "int32", 1, size)
        return intrinsics, world_to_camera, height, width

    def _check_latent(self, latent):
        dim = self._latent_dim
        shape = padded_shape(latent, 2)
        ok = tf.logical_and(shape_is(latent, [None, dim]), shape[0] >= 1)
        message = f"latent must be [B, D] float32 with D={dim} and B >= 1"
        latent = guard(latent, ok, message, tf.zeros([1, dim]), [None, dim])
        return tf.debugging.assert_all_finite(latent, "latent must be finite")

    # Rendering ----------------------------------------------------------------------------

    def _render(self, latent, intrinsics, world_to_camera, height, width):
        """Renders validated inputs in fixed-size ray chunks; see the module docstring."""
        model = self._model.value
        cameras = camera.Camera(camera.intrinsics_from_matrix(intrinsics), world_to_camera)
        origins, directions = camera.image_rays(cameras, height, width)  # [B, H, W, 3]
        batch = tf.shape(latent)[0]
        pixels = height * width
        total = batch * pixels
        # A small request renders one chunk of its own size, not a padded full chunk.
        chunk = tf.minimum(self._chunk_size, total)
        num_chunks = (total + chunk - 1) // chunk
        # Pad by repeating the last ray (a real ray: no degenerate maths in the padding); the
        # padded results are cut off below.
        index = tf.minimum(tf.range(num_chunks * chunk), total - 1)
        origins = tf.gather(tf.reshape(origins, [-1, 3]), index)
        directions = tf.gather(tf.reshape(directions, [-1, 3]), index)
        image_index = index // pixels
        accelerated = self._accelerated
        if accelerated is not None:
            # One occupancy grid per distinct latent (a batch of views of one latent builds one).
            unique, grid_of_image = tf.raw_ops.UniqueV2(
                x=latent, axis=tf.constant([0], tf.int64), out_idx=tf.int32
            )
            grids = accelerated.build_grids(model.foreground, unique)

        def render_chunk(elems):
            chunk_origins, chunk_directions, chunk_images = elems
            # Latents are gathered per chunk, so no [B x H x W, D] tensor is ever built.
            chunk_latents = tf.gather(latent, chunk_images)
            if accelerated is None:
                out = model.render_rays(
                    chunk_origins, chunk_directions, chunk_latents, training=False
                )
            else:
                out = accelerated.render_rays(
                    model.foreground,
                    getattr(model, "background", None),
                    chunk_origins,
                    chunk_directions,
                    chunk_latents,
                    grids,
                    tf.gather(grid_of_image, chunk_images),
                )
            return {"rgb": out["rgb"], "depth": out["depth"], "alpha": out["alpha"]}

        out = tf.map_fn(
            render_chunk,
            (
                tf.reshape(origins, [num_chunks, chunk, 3]),
                tf.reshape(directions, [num_chunks, chunk, 3]),
                tf.reshape(image_index, [num_chunks, chunk]),
            ),
            fn_output_signature={
                "rgb": tf.TensorSpec([None, 3], tf.float32),
                "depth": tf.TensorSpec([None], tf.float32),
                "alpha": tf.TensorSpec([None], tf.float32),
            },
            parallel_iterations=self._config.parallel_chunks,
        )
        image_shape = tf.stack([batch, height, width])
        return {
            "rgb": tf.reshape(
                tf.reshape(out["rgb"], [-1, 3])[:total], tf.concat([image_shape, [3]], 0)
            ),
            "depth": tf.reshape(tf.reshape(out["depth"], [-1])[:total], image_shape),
            "alpha": tf.reshape(tf.reshape(out["alpha"], [-1])[:total], image_shape),
        }

    @tf.function(input_signature=input_specs(SIGNATURE_INPUTS, "render"))
    def render(self, latent, intrinsics, world_to_camera, height, width):
        """Renders images of given latents; shapes in the module docstring."""
        latent = self._check_latent(latent)
        intrinsics, world_to_camera, height, width = self._check_camera(
            intrinsics, world_to_camera, height, width, tf.shape(latent)[0]
        )
        return self._render(latent, intrinsics, world_to_camera, height, width)

    @tf.function(input_signature=input_specs(SIGNATURE_INPUTS, "orbit_cameras"))
    def orbit_cameras(
        self,
        num_views,
        radius,
        yaw_min,
        yaw_max,
        pitch_min,
        pitch_max,
        height,
        width,
        focal_factor,
    ):
        """Cameras on an orbit around the origin (`geometry.camera.orbit_cameras`), intrinsics."""
        size = self._config.max_image_size
        num_views = check_scalar(num_views, "num_views", "int32", 1, self._config.max_count)
        height = check_scalar(height, "height", "int32", 1, size)
        width = check_scalar(width, "width", "int32", 1, size)
        radius = check_scalar(radius, "radius", "float32", _TINY)
        focal_factor = check_scalar(focal_factor, "focal_factor", "float32", _TINY)
        yaw_min, yaw_max, pitch_min, pitch_max = (
            check_scalar(value, name, "float32", fallback=0)
            for name, value in (
                ("yaw_min", yaw_min),
                ("yaw_max", yaw_max),
                ("pitch_min", pitch_min),
                ("pitch_max", pitch_max),
            )
        )
        world_to_camera = camera.orbit_cameras(
            num_views, radius, (yaw_min, yaw_max), (pitch_min, pitch_max)
        )
        width_f = tf.cast(width, tf.float32)
        focal = focal_factor * width_f
        intrinsics = tf.stack([focal, focal, 0.5 * width_f, 0.5 * tf.cast(height, tf.float32)])
        intrinsics = tf.tile(camera.intrinsics_matrix(intrinsics)[None], [num_views, 1, 1])
        return {
            "world_to_camera": tf.ensure_shape(world_to_camera, [None, 3, 4]),
            "intrinsics": tf.ensure_shape(intrinsics, [None, 3, 3]),
        }


def _accelerated_renderer(model, chunk_size: int):
    """The model's `AcceleratedRenderer` when its `config.render.accelerate` is set, else None."""
    render_config = getattr(getattr(model, "config", None), "render", None)
    if not getattr(render_config, "accelerate", False) or not hasattr(model, "foreground"):
        return None
    samples = render_config.num_coarse + render_config.num_fine
    return accelerated_renderer.AcceleratedRenderer(
        render_config, min(accelerated_renderer.GRID_POINTS_PER_CHUNK, chunk_size * samples)
    )


def tf_variable(variable) -> tf.Variable:
    """The `tf.Variable` behind a Keras 3 variable (or the variable itself)."""
    if isinstance(variable, tf.Variable):
        return variable
    inner = getattr(variable, "value", None)
    if not isinstance(inner, tf.Variable):
        raise TypeError(f"cannot find the tf.Variable behind {variable!r}")
    return inner


# Requests ---------------------------------------------------------------------------------


def coerce_inputs(
    signature: str, values: dict[str, Any], signature_inputs: SignatureInputs = SIGNATURE_INPUTS
) -> dict[str, np.ndarray]:
    """Checks and casts a request's inputs to the dtypes and ranks of a signature.

    Args:
      signature: a key of `signature_inputs`.
      values: input name -> array-like.
      signature_inputs: the module's table (default: the `RenderModule` signatures).

    Returns:
      input name -> numpy array of the signature's dtype.

    Raises:
      ValueError: unknown signature, a missing or unknown input, a value of the wrong rank, or
        a non-integral value for an integer input; the message names the input.
    """
    if signature not in signature_inputs:
        raise ValueError(f"unknown signature {signature!r}; choose from {sorted(signature_inputs)}")
    spec = signature_inputs[signature]
    missing = sorted(set(spec) - set(values))
    extra = sorted(set(values) - set(spec))
    if missing or extra:
        raise ValueError(
            f"signature {signature!r} takes inputs {list(spec)}; missing {missing}, unknown {extra}"
        )
    out = {}
    for name, (dtype, rank, shape) in spec.items():
        value = np.asarray(values[name])
        if value.ndim != rank:
            raise ValueError(f"{name} must be {shape} {dtype}, got shape {value.shape}")
        if np.dtype(dtype).kind == "i":
            if value.dtype.kind not in "iub" and not (
                value.dtype.kind == "f" and np.all(np.equal(np.mod(value, 1), 0))
            ):
                raise ValueError(f"{name} must be {shape} {dtype}, got {value.dtype} values")
        elif value.dtype.kind not in "iuf":
            raise ValueError(f"{name} must be {shape} {dtype}, got {value.dtype} values")
        out[name] = value.astype(dtype)
    return out


def predict_request(
    signature: str,
    inputs: dict[str, Any],
    model_name: str = "tfglo",
    signature_inputs: SignatureInputs = SIGNATURE_INPUTS,
):
    """A TF Serving gRPC `PredictRequest` for one signature.

    Args:
      signature: the signature name (a key of `signature_inputs`).
      inputs: input name -> array-like; checked and cast with `coerce_inputs`.
      model_name: the served model's name.
      signature_inputs: the module's table (default: the `RenderModule` signatures).

    Returns:
      a `tensorflow_serving.apis.predict_pb2.PredictRequest`.
    """
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    for name, value in coerce_inputs(signature, inputs, signature_inputs).items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return request


def rest_body(
    signature: str, inputs: dict[str, Any], signature_inputs: SignatureInputs = SIGNATURE_INPUTS
) -> dict[str, Any]:
    """A TF Serving REST predict body in the columnar `inputs` form (JSON-able dict).

    float32 values become Python floats holding the exact float32 value, so the server's JSON
    parse gives back the same float32 bits.
    """
    values = coerce_inputs(signature, inputs, signature_inputs)
    return {"signature_name": signature, "inputs": {k: v.tolist() for k, v in values.items()}}


def write_warmup(
    path,
    requests: dict[str, dict[str, Any]],
    model_name: str,
    signature_inputs: SignatureInputs = SIGNATURE_INPUTS,
) -> int:
    """Writes PredictionLog records (one per signature) for TF Serving's warm-up.

    Returns:
      the number of records written.
    """
    from tensorflow_serving.apis import prediction_log_pb2

    with tf.io.TFRecordWriter(str(path)) as writer:
        for signature, inputs in requests.items():
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(
                    request=predict_request(signature, inputs, model_name, signature_inputs)
                )
            )
            writer.write(log.SerializeToString())
    return len(requests)


# Export -----------------------------------------------------------------------------------


def save_module(
    module: RenderModule, export_dir, metadata: dict[str, Any] | None = None
) -> RenderModule:
    """Writes `module` as a SavedModel with its warm-up requests and tfglo_export.json.

    Args:
      module: the serving module (its `config` names the model and sizes the warm-up).
      export_dir: target directory; must not exist or be empty.
      metadata: JSON-able extras stored in `assets.extra/tfglo_export.json` (e.g. the run's
        configuration and step).

    Returns:
      `module`.

    Raises:
      FileExistsError: export_dir exists and is not empty.
    """
    export_dir = pathlib.Path(export_dir)
    if export_dir.exists() and any(export_dir.iterdir()):
        raise FileExistsError(f"export directory {export_dir} exists and is not empty")
    tf.saved_model.save(module, str(export_dir), signatures=module.signatures())
    extra = export_dir / ASSETS_EXTRA
    extra.mkdir(parents=True, exist_ok=True)
    config = module.config
    write_warmup(
        extra / WARMUP_FILE, module.warmup_inputs(), config.model_name, module.SIGNATURE_INPUTS
    )
    info = {
        "format": EXPORT_FORMAT,
        **module.export_info(),
        "signatures": {
            name: {
                "inputs": {k: {"dtype": d, "shape": s} for k, (d, _, s) in spec.items()},
                "outputs": list(module.SIGNATURE_OUTPUTS[name]),
            }
            for name, spec in module.SIGNATURE_INPUTS.items()
        },
        "export_config": dataclasses.asdict(config),
        **(metadata or {}),
    }
    (extra / METADATA_FILE).write_text(json.dumps(info, indent=2, default=str) + "\n")
    return module


def existing_versions(model_dir) -> list[int]:
    """The version numbers TF Serving would see in `model_dir` (all-digit directory names)."""
    model_dir = pathlib.Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


ExportWriter = Callable[[pathlib.Path, ExportConfig, dict[str, Any]], Any]


def module_writer(make_module: Callable[[ExportConfig], RenderModule]) -> ExportWriter:
    """An `export_version` writer that saves `make_module(config)` with `save_module`."""

    def write(export_dir, config, metadata):
        return save_module(make_module(config), export_dir, metadata)

    return write


def export_version(
    write: ExportWriter,
    export_base,
    model_name: str = "tfglo",
    version: int | None = None,
    config: ExportConfig | None = None,
    metadata: dict[str, Any] | None = None,
) -> pathlib.Path:
    """Exports into `<export_base>/<model_name>/<version>/`, the layout TF Serving loads.

    The SavedModel is written into a temporary directory beside the versions whose name starts
    with '.' (TF Serving only loads all-digit names) and renamed at the end, so a failure never
    leaves a half-written version for the server to pick up.

    Args:
      write: `(export_dir, config, metadata)` writes the SavedModel into the (empty) export_dir
        (e.g. `module_writer(make_module)`); config.model_name is `model_name` and metadata
        holds "version".
      config: an `ExportConfig` (default `ExportConfig()`).
      metadata: extras for tfglo_export.json.
      export_base: the directory TF Serving's base path points at, minus the model name.
      model_name: the served model's name (a directory under export_base).
      version: the version number (>= 1); None: one more than the largest existing version.

    Returns:
      the version directory.

    Raises:
      FileExistsError: that version exists already (it is never overwritten).
      ValueError: version < 1 or an empty/invalid model name.
    """
    if not model_name or os.sep in model_name or model_name.startswith("."):
        raise ValueError(f"invalid model name {model_name!r}")
    model_dir = pathlib.Path(export_base) / model_name
    versions = existing_versions(model_dir)
    if version is None:
        version = (versions[-1] + 1) if versions else 1
    if version < 1:
        raise ValueError(f"version must be >= 1, got {version}")
    target = model_dir / str(version)
    if target.exists():
        raise FileExistsError(
            f"version {version} already exists at {target}; versions are never overwritten "
            f"(existing: {versions}): pick another version or leave it out for the next free one"
        )
    model_dir.mkdir(parents=True, exist_ok=True)
    config = dataclasses.replace(config or ExportConfig(), model_name=model_name)
    temporary = pathlib.Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=model_dir))
    try:
        write(temporary, config, {"version": version, **(metadata or {})})
        if target.exists():  # another exporter took the version meanwhile
            raise FileExistsError(f"version {version} appeared at {target} during the export")
        os.rename(temporary, target)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)
    return target


def serving_command(model_dir, model_name: str = "tfglo") -> str:
    """The `docker run` command that serves `<export_base>/<model_name>` with TF Serving."""
    source = pathlib.Path(model_dir).resolve()
    return (
        f"docker run -p 8500:8500 -p 8501:8501 "
        f"--mount type=bind,source={source},target=/models/{model_name} "
        f"-e MODEL_NAME={model_name} -t tensorflow/serving"
    )


# Benchmark --------------------------------------------------------------------------------

_BENCH_SCRIPT = r"""
import json, os, resource, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
import tensorflow as tf
export_dir, size, batch, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
loaded = tf.saved_model.load(export_dir)
render = loaded.signatures["render"]
orbit = loaded.signatures["orbit_cameras"](
    num_views=tf.constant(batch), radius=tf.constant(4.5), yaw_min=tf.constant(-0.5),
    yaw_max=tf.constant(0.5), pitch_min=tf.constant(0.0), pitch_max=tf.constant(0.0),
    height=tf.constant(size), width=tf.constant(size), focal_factor=tf.constant(2.0))
if "sample_latents" in loaded.signatures:
    latent = loaded.signatures["sample_latents"](
        count=tf.constant(batch), seed=tf.constant(0, tf.int64),
        truncation=tf.constant(1.0))["latents"]
else:  # a family without a latent Gaussian: standard normal codes of the exported size
    info = json.load(open(os.path.join(export_dir, "assets.extra", "tfglo_export.json")))
    latent = tf.random.stateless_normal([batch, info["latent_dim"]], [0, 0])
def peak_kb():
    # VmHWM is this process's own peak; getrusage's ru_maxrss survives exec on Linux, so in a
    # child of a large process (python -m tfglo.bench) it would report the parent's peak.
    try:
        with open("/proc/self/status") as f:
            return int(next(l for l in f if l.startswith("VmHWM")).split()[1])
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
def call():
    out = render(latent=latent, intrinsics=orbit["intrinsics"],
                 world_to_camera=orbit["world_to_camera"], height=tf.constant(size),
                 width=tf.constant(size))
    return out["rgb"].numpy()
# Warm-up on a tiny image: the graph is optimised once per signature, whatever the size.
start = time.perf_counter()
render(latent=latent[:1], intrinsics=orbit["intrinsics"][:1],
       world_to_camera=orbit["world_to_camera"][:1], height=tf.constant(4),
       width=tf.constant(4))["rgb"].numpy()
first = time.perf_counter() - start
load_rss = peak_kb()
times = []
for _ in range(repeats):
    start = time.perf_counter(); call(); times.append(time.perf_counter() - start)
print(json.dumps({"warmup_s": first, "seconds": float(np.median(times)),
                  "load_rss_kb": load_rss,
                  "peak_rss_kb": peak_kb()}))
"""


def measure_render(export_dir, size: int, batch: int, repeats: int = 2) -> dict[str, float]:
    """Latency and peak RSS of the exported `render` signature, in a fresh process.

    Returns:
      warmup_s (a 4 x 4 first call: graph optimisation), seconds (median of `repeats` calls),
      load_rss_kb (RSS high-water after loading and the warm-up), peak_rss_kb (after
      rendering).
    """
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, "-c", _BENCH_SCRIPT, str(export_dir), str(size), str(batch), str(repeats)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"render benchmark failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])
