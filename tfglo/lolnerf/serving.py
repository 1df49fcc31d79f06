"""A trained LOLNeRF as a SavedModel for TF Serving: signatures, warm-up requests, versions.

`export_model` turns an in-memory `LOLNeRF` into a SavedModel whose signatures do all the work in
the graph (no Python on the serving side):

- `serving_default` and `render`: latent `[B, D]` float32, intrinsics `[B, 3, 3]` float32 (K in
  pixels), world_to_camera `[B, 3, 4]` float32 (OpenCV [R | t]), height and width int32 scalars
  -> rgb `[B, H, W, 3]` in [0, 1], depth `[B, H, W]` (expected termination distance along the
  unit ray, object units; 0 off the object's sphere), alpha `[B, H, W]` (foreground opacity).
  The B x H x W rays are rendered in fixed-size chunks inside a `tf.map_fn` that runs one chunk
  at a time, so the peak memory of a request does not grow with the image size (only the output
  images do).
- `render_identity`: latent_id `[B]` int64 (rows of the trained latent table) + the camera inputs
  -> the same outputs.
- `sample_latents`: count int32, seed int64, truncation float32 -> latents `[count, D]` drawn from
  the Gaussian fitted to the trained table (its mean and covariance are stored in the export).
- `orbit_cameras`: num_views int32, radius, yaw_min, yaw_max, pitch_min, pitch_max float32
  (radians), height, width int32, focal_factor float32 -> world_to_camera `[V, 3, 4]`, intrinsics
  `[V, 3, 3]` (focal = focal_factor x width, centred principal point), so a client can ask for an
  orbit without writing camera maths.

Every input is declared with an unknown shape and checked inside the graph: TF Serving feeds a
request's tensors to the graph without checking them against the signature's shapes, so only
in-graph checks give the same error everywhere (TF Serving, `saved_model_cli run`, Python). A bad
input fails with InvalidArgument and a message that names it, e.g.
"latent must be [B, D] float32 with D=64".

Keras 3 trap: a SavedModel of Keras 3 layers inside a `tf.Module` loads in Python but fails under
`saved_model_cli run` / TF Serving ("Could not find variable ...") unless the variables are
reachable from the module's object graph. `ServingModule` therefore tracks the model's
`tf.Variable`s in a list attribute (and does not track the Keras model object itself).

The export also carries `assets.extra/tf_serving_warmup_requests` (PredictionLog records that TF
Serving replays at load time, so the first real request does not pay for graph optimisation) and
`assets.extra/tfglo_export.json` (model configuration and defaults for clients).
"""

import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
from typing import Any

import numpy as np
import tensorflow as tf

from tfglo.geometry import camera
from tfglo.lolnerf import config as model_config_lib
from tfglo.lolnerf import latents
from tfglo.lolnerf import model as lolnerf
from tfglo.utils import benchmarking

DEFAULT_SIGNATURE = "serving_default"
WARMUP_FILE = "tf_serving_warmup_requests"
METADATA_FILE = "tfglo_export.json"
ASSETS_EXTRA = "assets.extra"

# The inputs of every signature: name -> (numpy dtype, rank, shape as documented). Shared with
# the client (export/client.py) and the warm-up requests so all three agree.
SIGNATURE_INPUTS: dict[str, dict[str, tuple[str, int, str]]] = {
    "render": {
        "latent": ("float32", 2, "[B, D]"),
        "intrinsics": ("float32", 3, "[B, 3, 3]"),
        "world_to_camera": ("float32", 3, "[B, 3, 4]"),
        "height": ("int32", 0, "[]"),
        "width": ("int32", 0, "[]"),
    },
    "render_identity": {
        "latent_id": ("int64", 1, "[B]"),
        "intrinsics": ("float32", 3, "[B, 3, 3]"),
        "world_to_camera": ("float32", 3, "[B, 3, 4]"),
        "height": ("int32", 0, "[]"),
        "width": ("int32", 0, "[]"),
    },
    "sample_latents": {
        "count": ("int32", 0, "[]"),
        "seed": ("int64", 0, "[]"),
        "truncation": ("float32", 0, "[]"),
    },
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
    DEFAULT_SIGNATURE: ("rgb", "depth", "alpha"),
    "render": ("rgb", "depth", "alpha"),
    "render_identity": ("rgb", "depth", "alpha"),
    "sample_latents": ("latents",),
    "orbit_cameras": ("world_to_camera", "intrinsics"),
}


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


class _Untracked:
    """Holds an object without making it part of the SavedModel's object graph."""

    def __init__(self, value):
        self.value = value


def _spec(signature: str, name: str) -> tf.TensorSpec:
    dtype, _, _ = SIGNATURE_INPUTS[signature][name]
    # Unknown shape on purpose: the checks in the graph give the named errors (module docstring).
    return tf.TensorSpec(None, tf.as_dtype(dtype), name=name)


def _specs(signature: str) -> list[tf.TensorSpec]:
    return [_spec(signature, name) for name in SIGNATURE_INPUTS[signature]]


def _padded_shape(value: tf.Tensor, rank: int) -> tf.Tensor:
    """The first `rank` dims of `value`'s shape, zero-padded: `[rank]` int32, safe for any input."""
    return tf.concat([tf.shape(value), tf.zeros([rank], tf.int32)], 0)[:rank]


def _first(value: tf.Tensor) -> tf.Tensor:
    """The first element of `value` (0 when empty): a scalar, safe for any input."""
    return tf.concat([tf.reshape(value, [-1]), tf.zeros([1], value.dtype)], 0)[0]


def _guard(
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


def _shape_is(value: tf.Tensor, expected) -> tf.Tensor:
    """Whether `value` has rank len(expected) and those dims (None: any), as a bool scalar."""
    shape = _padded_shape(value, len(expected))
    conditions = [tf.equal(tf.rank(value), len(expected))]
    conditions += [tf.equal(shape[i], d) for i, d in enumerate(expected) if d is not None]
    return tf.reduce_all(tf.stack(conditions))


def _scalar(value, name: str, dtype: str, low=None, high=None, fallback=1) -> tf.Tensor:
    """Checks for a scalar in [low, high] (None: unbounded); returns it, shape []."""
    message = f"{name} must be a scalar {dtype}"
    if low is not None and high is not None:
        message += f" in [{low}, {high}]"
    elif low is not None:
        message += f" >= {low}"
    first = _first(value)
    conditions = [tf.equal(tf.rank(value), 0)]
    if low is not None:
        conditions.append(first >= tf.cast(low, value.dtype))
    if high is not None:
        conditions.append(first <= tf.cast(high, value.dtype))
    ok = tf.reduce_all(tf.stack(conditions))
    return _guard(value, ok, message, fallback, [], data=["value", first])


class ServingModule(tf.Module):
    """The exported object: LOLNeRF's renderer, latent table and latent Gaussian as signatures.

    Usable in memory too (the tests compare it with the exported copy); `signatures()` gives the
    dict for `tf.saved_model.save`.

    Args:
      model: a built `tfglo.lolnerf.LOLNeRF` (every variable created), with `latent_table` and
        `render_rays(origins [N, 3], directions [N, 3], latents [N, D], training=False)`.
      mean: `[D]` mean of the latent Gaussian.
      covariance: `[D, D]` covariance of the latent Gaussian.
      config: an `ExportConfig`.
      default_chunk_size: rays per chunk when `config.chunk_size` is None.
    """

    def __init__(
        self, model, mean, covariance, config: ExportConfig, default_chunk_size: int = 4096
    ):
        super().__init__(name="tfglo_serving")
        embeddings = model.latent_table.embeddings
        self._num_latents, self._latent_dim = (int(d) for d in embeddings.shape)
        chunk_size = config.chunk_size or default_chunk_size
        if chunk_size < 1 or config.parallel_chunks < 1:
            raise ValueError(
                f"chunk_size and parallel_chunks must be >= 1, got {chunk_size}, "
                f"{config.parallel_chunks}"
            )
        self._chunk_size = int(chunk_size)
        self._config = config
        self._model = _Untracked(model)
        # The Keras 3 trap (module docstring): track the underlying tf.Variables explicitly.
        self.model_variables = [_tf_variable(v) for v in model.variables]
        self.latent_mean = tf.Variable(
            tf.reshape(tf.cast(mean, tf.float32), [self._latent_dim]),
            trainable=False,
            name="latent_mean",
        )
        self.latent_covariance = tf.Variable(
            tf.reshape(tf.cast(covariance, tf.float32), [self._latent_dim, self._latent_dim]),
            trainable=False,
            name="latent_covariance",
        )

    @property
    def latent_dim(self) -> int:
        return self._latent_dim

    @property
    def num_latents(self) -> int:
        return self._num_latents

    @property
    def chunk_size(self) -> int:
        return self._chunk_size

    def signatures(self) -> dict[str, Any]:
        """The signatures to save: name -> `tf.function` with an input signature."""
        return {
            DEFAULT_SIGNATURE: self.render,
            "render": self.render,
            "render_identity": self.render_identity,
            "sample_latents": self.sample_latents,
            "orbit_cameras": self.orbit_cameras,
        }

    # Validation ---------------------------------------------------------------------------

    def _check_camera(self, intrinsics, world_to_camera, height, width, batch):
        size = self._config.max_image_size
        intrinsics = _guard(
            intrinsics,
            _shape_is(intrinsics, [batch, 3, 3]),
            "intrinsics must be [B, 3, 3] float32 (pixels), B as in the latents",
            tf.eye(3, batch_shape=[batch]),
            [None, 3, 3],
        )
        world_to_camera = _guard(
            world_to_camera,
            _shape_is(world_to_camera, [batch, 3, 4]),
            "world_to_camera must be [B, 3, 4] float32 ([R | t]), B as in the latents",
            tf.eye(3, 4, batch_shape=[batch]),
            [None, 3, 4],
        )
        intrinsics = tf.debugging.assert_all_finite(intrinsics, "intrinsics must be finite")
        world_to_camera = tf.debugging.assert_all_finite(
            world_to_camera, "world_to_camera must be finite"
        )
        height = _scalar(height, "height", "int32", 1, size)
        width = _scalar(width, "width", "int32", 1, size)
        return intrinsics, world_to_camera, height, width

    def _check_latent(self, latent):
        dim = self._latent_dim
        shape = _padded_shape(latent, 2)
        ok = tf.logical_and(_shape_is(latent, [None, dim]), shape[0] >= 1)
        message = f"latent must be [B, D] float32 with D={dim} and B >= 1"
        latent = _guard(latent, ok, message, tf.zeros([1, dim]), [None, dim])
        return tf.debugging.assert_all_finite(latent, "latent must be finite")

    def _check_latent_id(self, latent_id):
        last = self._num_latents - 1
        ok = tf.reduce_all(
            tf.stack(
                [
                    _shape_is(latent_id, [None]),
                    tf.size(latent_id) >= 1,
                    tf.reduce_all(latent_id >= 0),
                    tf.reduce_all(latent_id <= last),
                ]
            )
        )
        message = f"latent_id must be [B] int64 with B >= 1 and ids in [0, {last}]"
        return _guard(latent_id, ok, message, tf.zeros([1], tf.int64), [None])

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

        def render_chunk(elems):
            chunk_origins, chunk_directions, chunk_images = elems
            # Latents are gathered per chunk, so no [B x H x W, D] tensor is ever built.
            chunk_latents = tf.gather(latent, chunk_images)
            out = model.render_rays(chunk_origins, chunk_directions, chunk_latents, training=False)
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

    @tf.function(input_signature=_specs("render"))
    def render(self, latent, intrinsics, world_to_camera, height, width):
        """Renders images of given latents; shapes in the module docstring."""
        latent = self._check_latent(latent)
        intrinsics, world_to_camera, height, width = self._check_camera(
            intrinsics, world_to_camera, height, width, tf.shape(latent)[0]
        )
        return self._render(latent, intrinsics, world_to_camera, height, width)

    @tf.function(input_signature=_specs("render_identity"))
    def render_identity(self, latent_id, intrinsics, world_to_camera, height, width):
        """Renders images of trained identities (rows of the latent table)."""
        latent_id = self._check_latent_id(latent_id)
        intrinsics, world_to_camera, height, width = self._check_camera(
            intrinsics, world_to_camera, height, width, tf.size(latent_id)
        )
        latent = self._model.value.latent_table(latent_id)
        return self._render(latent, intrinsics, world_to_camera, height, width)

    @tf.function(input_signature=_specs("sample_latents"))
    def sample_latents(self, count, seed, truncation):
        """Draws `count` latents `[count, D]` from the stored Gaussian with seed [seed, 0]."""
        count = _scalar(count, "count", "int32", 1, self._config.max_count)
        seed = _scalar(seed, "seed", "int64", fallback=0)
        truncation = _scalar(truncation, "truncation", "float32", 0.0)
        samples = latents.sample_latents(
            self.latent_mean,
            self.latent_covariance,
            count,
            tf.stack([seed, tf.constant(0, tf.int64)]),
            truncation,
        )
        return {"latents": tf.ensure_shape(samples, [None, self._latent_dim])}

    @tf.function(input_signature=_specs("orbit_cameras"))
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
        """Cameras on an orbit around the origin (`tfglo.camera.orbit_cameras`) with intrinsics."""
        size = self._config.max_image_size
        num_views = _scalar(num_views, "num_views", "int32", 1, self._config.max_count)
        height = _scalar(height, "height", "int32", 1, size)
        width = _scalar(width, "width", "int32", 1, size)
        radius = _scalar(radius, "radius", "float32", _TINY)
        focal_factor = _scalar(focal_factor, "focal_factor", "float32", _TINY)
        yaw_min, yaw_max, pitch_min, pitch_max = (
            _scalar(value, name, "float32", fallback=0)
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


def serving_module(model, config: ExportConfig) -> "ServingModule":
    """The `ServingModule` of a built LOLNeRF, its Gaussian fitted to the latent table."""
    mean, covariance = latents.fit_gaussian(model.latent_table.embeddings)
    return ServingModule(model, mean, covariance, config, model.config.render.chunk_size)


def _tf_variable(variable) -> tf.Variable:
    """The `tf.Variable` behind a Keras 3 variable (or the variable itself)."""
    if isinstance(variable, tf.Variable):
        return variable
    inner = getattr(variable, "value", None)
    if not isinstance(inner, tf.Variable):
        raise TypeError(f"cannot find the tf.Variable behind {variable!r}")
    return inner


# Requests ---------------------------------------------------------------------------------


def coerce_inputs(signature: str, values: dict[str, Any]) -> dict[str, np.ndarray]:
    """Checks and casts a request's inputs to the dtypes and ranks of a signature.

    Args:
      signature: a key of `SIGNATURE_INPUTS`.
      values: input name -> array-like.

    Returns:
      input name -> numpy array of the signature's dtype.

    Raises:
      ValueError: unknown signature, a missing or unknown input, a value of the wrong rank, or
        a non-integral value for an integer input; the message names the input.
    """
    if signature not in SIGNATURE_INPUTS:
        raise ValueError(f"unknown signature {signature!r}; choose from {sorted(SIGNATURE_INPUTS)}")
    spec = SIGNATURE_INPUTS[signature]
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


def predict_request(signature: str, inputs: dict[str, Any], model_name: str = "tfglo"):
    """A TF Serving gRPC `PredictRequest` for one signature.

    Args:
      signature: the signature name (a key of `SIGNATURE_INPUTS`).
      inputs: input name -> array-like; checked and cast with `coerce_inputs`.
      model_name: the served model's name.

    Returns:
      a `tensorflow_serving.apis.predict_pb2.PredictRequest`.
    """
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    for name, value in coerce_inputs(signature, inputs).items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return request


def rest_body(signature: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """A TF Serving REST predict body in the columnar `inputs` form (JSON-able dict).

    float32 values become Python floats holding the exact float32 value, so the server's JSON
    parse gives back the same float32 bits.
    """
    values = coerce_inputs(signature, inputs)
    return {"signature_name": signature, "inputs": {k: v.tolist() for k, v in values.items()}}


def warmup_inputs(module: ServingModule, config: ExportConfig) -> dict[str, dict[str, Any]]:
    """The inputs of the warm-up requests: signature name -> inputs."""
    size = config.warmup_image_size
    world_to_camera = camera.orbit_cameras(1, config.camera_distance, (0.0, 0.0)).numpy()
    intrinsics = camera.intrinsics_matrix(
        camera.default_intrinsics(size, size, config.focal_factor)
    ).numpy()[None]
    camera_inputs = {
        "intrinsics": intrinsics,
        "world_to_camera": world_to_camera,
        "height": size,
        "width": size,
    }
    return {
        DEFAULT_SIGNATURE: {"latent": module.latent_mean.numpy()[None], **camera_inputs},
        "render_identity": {"latent_id": [0], **camera_inputs},
        "sample_latents": {"count": 2, "seed": 0, "truncation": 1.0},
        "orbit_cameras": {
            "num_views": 4,
            "radius": config.camera_distance,
            "yaw_min": -0.5,
            "yaw_max": 0.5,
            "pitch_min": 0.0,
            "pitch_max": 0.0,
            "height": size,
            "width": size,
            "focal_factor": config.focal_factor,
        },
    }


def write_warmup(path, requests: dict[str, dict[str, Any]], model_name: str) -> int:
    """Writes PredictionLog records (one per signature) for TF Serving's warm-up.

    Returns:
      the number of records written.
    """
    from tensorflow_serving.apis import prediction_log_pb2

    with tf.io.TFRecordWriter(str(path)) as writer:
        for signature, inputs in requests.items():
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(
                    request=predict_request(signature, inputs, model_name)
                )
            )
            writer.write(log.SerializeToString())
    return len(requests)


# Export -----------------------------------------------------------------------------------


def export_model(
    model,
    export_dir,
    config: ExportConfig | None = None,
    gaussian: tuple[Any, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> ServingModule:
    """Writes a SavedModel of a LOLNeRF with the signatures of the module docstring.

    Args:
      model: a built `tfglo.lolnerf.LOLNeRF`.
      export_dir: target directory; must not exist or be empty.
      config: an `ExportConfig` (default: `ExportConfig()`).
      gaussian: (mean `[D]`, covariance `[D, D]`) for sample_latents; default: fitted to the
        model's latent table with `tfglo.latents.fit_gaussian`.
      metadata: JSON-able extras stored in `assets.extra/tfglo_export.json` (e.g. the run's
        configuration and step).

    Returns:
      the in-memory `ServingModule` that was saved.

    Raises:
      FileExistsError: export_dir exists and is not empty.
    """
    config = config or ExportConfig()
    export_dir = pathlib.Path(export_dir)
    if export_dir.exists() and any(export_dir.iterdir()):
        raise FileExistsError(f"export directory {export_dir} exists and is not empty")
    if gaussian is None:
        gaussian = latents.fit_gaussian(model.latent_table.embeddings)
    render_config = getattr(getattr(model, "config", None), "render", None)
    default_chunk = getattr(render_config, "chunk_size", 4096)
    module = ServingModule(model, gaussian[0], gaussian[1], config, default_chunk)
    tf.saved_model.save(module, str(export_dir), signatures=module.signatures())
    extra = export_dir / ASSETS_EXTRA
    extra.mkdir(parents=True, exist_ok=True)
    write_warmup(extra / WARMUP_FILE, warmup_inputs(module, config), config.model_name)
    info = {
        "format": "tfglo-serving-1",
        "latent_dim": module.latent_dim,
        "num_latents": module.num_latents,
        "chunk_size": module.chunk_size,
        "signatures": {
            name: {
                "inputs": {k: {"dtype": d, "shape": s} for k, (d, _, s) in spec.items()},
                "outputs": list(SIGNATURE_OUTPUTS[name]),
            }
            for name, spec in SIGNATURE_INPUTS.items()
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


def export_version(
    model,
    export_base,
    model_name: str = "tfglo",
    version: int | None = None,
    config: ExportConfig | None = None,
    gaussian: tuple[Any, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> pathlib.Path:
    """Exports into `<export_base>/<model_name>/<version>/`, the layout TF Serving loads.

    The SavedModel is written into a temporary directory beside the versions whose name starts
    with '.' (TF Serving only loads all-digit names) and renamed at the end, so a failure never
    leaves a half-written version for the server to pick up.

    Args:
      model, config, gaussian, metadata: as for `export_model` (config.model_name is set to
        `model_name`).
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
        export_model(model, temporary, config, gaussian, {"version": version, **(metadata or {})})
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
latent = loaded.signatures["sample_latents"](
    count=tf.constant(batch), seed=tf.constant(0, tf.int64), truncation=tf.constant(1.0))["latents"]
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
load_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
times = []
for _ in range(repeats):
    start = time.perf_counter(); call(); times.append(time.perf_counter() - start)
print(json.dumps({"warmup_s": first, "seconds": float(np.median(times)),
                  "load_rss_kb": load_rss,
                  "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
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


def benchmark_serving(
    peak_gflops: float,
    model_config=None,
    sizes=(64, 256),
    batches=(1, 8),
    chunk_size: int = 4096,
    max_case_seconds: float = 180.0,
) -> list[str]:
    """Render latency and peak memory of the exported `render` signature.

    Exports a freshly initialised LOLNeRF (`model_config`, default `ModelConfig()`: the paper's
    8 x 256 foreground, 64 + 64 samples; the weights do not change the cost) and measures each
    (size, batch) case in a fresh subprocess, so each peak RSS is that case's alone. Cases run
    from the cheapest; a case whose predicted time (from the rays/s measured so far) exceeds
    `max_case_seconds` is reported as skipped (256 x 256 x 8 takes ~20 minutes on 2 CPU cores).

    Prints one `serving` line per case: latency_ms, rays_per_s, forward GFLOP/s of the fields
    (as `benchmark_render`) and its ratio to the matmul peak, peak_rss_mb (after rendering) and
    base_rss_mb (after loading the export and a warm-up call on a 4 x 4 image).
    """
    model_config = model_config or model_config_lib.ModelConfig()
    model = lolnerf.LOLNeRF(model_config)
    model.build_all()
    # Forward FLOPs per ray: the forward third of a training step's (as benchmark_render).
    flops_per_ray = lolnerf.train_step_flops(model, 1) / 3.0
    cases = sorted(
        ((size, batch) for size in sizes for batch in batches), key=lambda c: c[0] ** 2 * c[1]
    )
    lines = []
    best_rays_per_s = None
    with tempfile.TemporaryDirectory() as tmp:
        export_dir = pathlib.Path(tmp) / "1"
        export_model(model, export_dir, ExportConfig(chunk_size=chunk_size))
        for size, batch in cases:
            rays = batch * size * size
            if best_rays_per_s and rays / best_rays_per_s > max_case_seconds:
                lines.append(
                    benchmarking.report(
                        "serving",
                        size=size,
                        batch=batch,
                        skipped=f"predicted_{rays / best_rays_per_s:.0f}s>{max_case_seconds:g}s",
                    )
                )
                continue
            repeats = 3 if rays <= 8192 else 1
            result = measure_render(export_dir, size, batch, repeats=repeats)
            rays_per_s = rays / result["seconds"]
            best_rays_per_s = max(best_rays_per_s or 0.0, rays_per_s)
            gflops = rays_per_s * flops_per_ray / 1e9
            lines.append(
                benchmarking.report(
                    "serving",
                    size=size,
                    batch=batch,
                    chunk=chunk_size,
                    latency_ms=1e3 * result["seconds"],
                    warmup_ms=1e3 * result["warmup_s"],
                    rays_per_s=rays_per_s,
                    gflops=gflops,
                    ratio=gflops / peak_gflops,
                    peak_rss_mb=result["peak_rss_kb"] / 1024.0,
                    base_rss_mb=result["load_rss_kb"] / 1024.0,
                )
            )
    return lines
