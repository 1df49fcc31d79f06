"""A trained LOLNeRF as a SavedModel for TF Serving: its serving module and export functions.

`ServingModule` is the engine's `RenderModule` (`tfglo.engine.serving`: `serving_default` /
`render` of given latents and `orbit_cameras`; in-graph input checks; the Keras 3 variable
tracking) plus what LOLNeRF's latent table adds:

- `render_identity`: latent_id `[B]` int64 (rows of the trained latent table) + the camera inputs
  (intrinsics `[B, 3, 3]`, world_to_camera `[B, 3, 4]`, height, width) -> rgb `[B, H, W, 3]`,
  depth `[B, H, W]`, alpha `[B, H, W]`, as `render`.
- `sample_latents`: count int32, seed int64, truncation float32 -> latents `[count, D]` drawn from
  the Gaussian fitted to the trained table (its mean and covariance are stored in the export).

`export_model` / `export_version` write it with the engine's warm-up requests and
`assets.extra/tfglo_export.json` (model sizes, signatures, export settings, the caller's
metadata). `SIGNATURE_INPUTS`, `coerce_inputs`, `predict_request` and `rest_body` cover all five
signatures (the client in export/client.py uses them); the export constants and helpers
(`ExportConfig`, `WARMUP_FILE`, `serving_command`, ...) are the engine's, re-exported here.
"""

from typing import Any

import numpy as np
import tensorflow as tf

from tfglo.engine import serving as serving_lib
from tfglo.engine.serving import (
    ASSETS_EXTRA,
    DEFAULT_SIGNATURE,
    METADATA_FILE,
    WARMUP_FILE,
    ExportConfig,
    existing_versions,
    measure_render,
    serving_command,
)
from tfglo.lolnerf import latents

__all__ = [
    "ASSETS_EXTRA",
    "DEFAULT_SIGNATURE",
    "METADATA_FILE",
    "SIGNATURE_INPUTS",
    "SIGNATURE_OUTPUTS",
    "WARMUP_FILE",
    "ExportConfig",
    "ServingModule",
    "coerce_inputs",
    "existing_versions",
    "export_model",
    "export_version",
    "measure_render",
    "predict_request",
    "rest_body",
    "serving_command",
    "serving_module",
]

# The inputs of every signature: name -> (numpy dtype, rank, shape as documented): the engine's
# render signatures plus LOLNeRF's own. Shared with the client (export/client.py) and the
# warm-up requests so all three agree.
SIGNATURE_INPUTS: serving_lib.SignatureInputs = {
    "render": serving_lib.SIGNATURE_INPUTS["render"],
    "render_identity": {"latent_id": ("int64", 1, "[B]"), **serving_lib.CAMERA_INPUTS},
    "sample_latents": {
        "count": ("int32", 0, "[]"),
        "seed": ("int64", 0, "[]"),
        "truncation": ("float32", 0, "[]"),
    },
    "orbit_cameras": serving_lib.SIGNATURE_INPUTS["orbit_cameras"],
}
SIGNATURE_INPUTS[DEFAULT_SIGNATURE] = SIGNATURE_INPUTS["render"]

SIGNATURE_OUTPUTS: dict[str, tuple[str, ...]] = {
    **serving_lib.SIGNATURE_OUTPUTS,
    "render_identity": serving_lib.RENDER_OUTPUTS,
    "sample_latents": ("latents",),
}


class ServingModule(serving_lib.RenderModule):
    """The exported object: LOLNeRF's renderer, latent table and latent Gaussian as signatures.

    Usable in memory too (the tests compare it with the exported copy); `signatures()` gives the
    dict for `tf.saved_model.save`.

    Args:
      model: a built `tfglo.lolnerf.model.LOLNeRF` (every variable created), with
        `latent_table` and `render_rays(origins [N, 3], directions [N, 3], latents [N, D],
        training=False)`.
      mean: `[D]` mean of the latent Gaussian.
      covariance: `[D, D]` covariance of the latent Gaussian.
      config: an `ExportConfig`.
      default_chunk_size: rays per chunk when `config.chunk_size` is None.
    """

    SIGNATURE_INPUTS = SIGNATURE_INPUTS
    SIGNATURE_OUTPUTS = SIGNATURE_OUTPUTS

    def __init__(
        self, model, mean, covariance, config: ExportConfig, default_chunk_size: int = 4096
    ):
        embeddings = model.latent_table.embeddings
        num_latents, latent_dim = (int(d) for d in embeddings.shape)
        super().__init__(model, latent_dim, config, default_chunk_size)
        self._num_latents = num_latents
        self.latent_mean = tf.Variable(
            tf.reshape(tf.cast(mean, tf.float32), [latent_dim]),
            trainable=False,
            name="latent_mean",
        )
        self.latent_covariance = tf.Variable(
            tf.reshape(tf.cast(covariance, tf.float32), [latent_dim, latent_dim]),
            trainable=False,
            name="latent_covariance",
        )

    @property
    def num_latents(self) -> int:
        return self._num_latents

    def signatures(self) -> dict[str, Any]:
        """The signatures to save: name -> `tf.function` with an input signature."""
        return {
            DEFAULT_SIGNATURE: self.render,
            "render": self.render,
            "render_identity": self.render_identity,
            "sample_latents": self.sample_latents,
            "orbit_cameras": self.orbit_cameras,
        }

    def default_latent(self) -> np.ndarray:
        """The mean of the latent Gaussian (the warm-up render request's latent)."""
        return self.latent_mean.numpy()

    def export_info(self) -> dict[str, Any]:
        return {
            "latent_dim": self.latent_dim,
            "num_latents": self.num_latents,
            "chunk_size": self.chunk_size,
            "accelerate": self.accelerate,
        }

    def warmup_inputs(self) -> dict[str, dict[str, Any]]:
        """One request per signature (`render` is `serving_default`'s graph)."""
        engine = super().warmup_inputs()
        return {
            DEFAULT_SIGNATURE: engine[DEFAULT_SIGNATURE],
            "render_identity": {"latent_id": [0], **self.warmup_camera_inputs()},
            "sample_latents": {"count": 2, "seed": 0, "truncation": 1.0},
            "orbit_cameras": engine["orbit_cameras"],
        }

    def _check_latent_id(self, latent_id):
        last = self._num_latents - 1
        ok = tf.reduce_all(
            tf.stack(
                [
                    serving_lib.shape_is(latent_id, [None]),
                    tf.size(latent_id) >= 1,
                    tf.reduce_all(latent_id >= 0),
                    tf.reduce_all(latent_id <= last),
                ]
            )
        )
        message = f"latent_id must be [B] int64 with B >= 1 and ids in [0, {last}]"
        return serving_lib.guard(latent_id, ok, message, tf.zeros([1], tf.int64), [None])

    @tf.function(input_signature=serving_lib.input_specs(SIGNATURE_INPUTS, "render_identity"))
    def render_identity(self, latent_id, intrinsics, world_to_camera, height, width):
        """Renders images of trained identities (rows of the latent table)."""
        latent_id = self._check_latent_id(latent_id)
        intrinsics, world_to_camera, height, width = self._check_camera(
            intrinsics, world_to_camera, height, width, tf.size(latent_id)
        )
        latent = self._model.value.latent_table(latent_id)
        return self._render(latent, intrinsics, world_to_camera, height, width)

    @tf.function(input_signature=serving_lib.input_specs(SIGNATURE_INPUTS, "sample_latents"))
    def sample_latents(self, count, seed, truncation):
        """Draws `count` latents `[count, D]` from the stored Gaussian with seed [seed, 0]."""
        count = serving_lib.check_scalar(count, "count", "int32", 1, self._config.max_count)
        seed = serving_lib.check_scalar(seed, "seed", "int64", fallback=0)
        truncation = serving_lib.check_scalar(truncation, "truncation", "float32", 0.0)
        samples = latents.sample_latents(
            self.latent_mean,
            self.latent_covariance,
            count,
            tf.stack([seed, tf.constant(0, tf.int64)]),
            truncation,
        )
        return {"latents": tf.ensure_shape(samples, [None, self._latent_dim])}


def serving_module(model, config: ExportConfig) -> ServingModule:
    """The `ServingModule` of a built LOLNeRF, its Gaussian fitted to the latent table."""
    mean, covariance = latents.fit_gaussian(model.latent_table.embeddings)
    return ServingModule(model, mean, covariance, config, model.config.render.chunk_size)


# Requests: the engine's, with LOLNeRF's signatures --------------------------------------------


def coerce_inputs(signature: str, values: dict[str, Any]) -> dict[str, np.ndarray]:
    """`engine.serving.coerce_inputs` for LOLNeRF's signatures (`SIGNATURE_INPUTS`)."""
    return serving_lib.coerce_inputs(signature, values, SIGNATURE_INPUTS)


def predict_request(signature: str, inputs: dict[str, Any], model_name: str = "tfglo"):
    """`engine.serving.predict_request` for LOLNeRF's signatures: a gRPC `PredictRequest`."""
    return serving_lib.predict_request(signature, inputs, model_name, SIGNATURE_INPUTS)


def rest_body(signature: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """`engine.serving.rest_body` for LOLNeRF's signatures: a REST predict body."""
    return serving_lib.rest_body(signature, inputs, SIGNATURE_INPUTS)


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
      model: a built `tfglo.lolnerf.model.LOLNeRF`.
      export_dir: target directory; must not exist or be empty.
      config: an `ExportConfig` (default: `ExportConfig()`).
      gaussian: (mean `[D]`, covariance `[D, D]`) for sample_latents; default: fitted to the
        model's latent table with `tfglo.lolnerf.latents.fit_gaussian`.
      metadata: JSON-able extras stored in `assets.extra/tfglo_export.json` (e.g. the run's
        configuration and step).

    Returns:
      the in-memory `ServingModule` that was saved.

    Raises:
      FileExistsError: export_dir exists and is not empty.
    """
    config = config or ExportConfig()
    if gaussian is None:
        module = serving_module(model, config)
    else:
        default_chunk = model.config.render.chunk_size
        module = ServingModule(model, gaussian[0], gaussian[1], config, default_chunk)
    return serving_lib.save_module(module, export_dir, metadata)


def export_version(
    model,
    export_base,
    model_name: str = "tfglo",
    version: int | None = None,
    config: ExportConfig | None = None,
    gaussian: tuple[Any, Any] | None = None,
    metadata: dict[str, Any] | None = None,
):
    """Exports a LOLNeRF into `<export_base>/<model_name>/<version>/` (`export_model` there).

    See `engine.serving.export_version`: the next free version unless `version` is given, never
    overwriting one, nothing half-written left behind. Returns the version directory.
    """

    def write(export_dir, export_config, info):
        return export_model(model, export_dir, export_config, gaussian, info)

    return serving_lib.export_version(write, export_base, model_name, version, config, metadata)
