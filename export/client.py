"""A TF Serving client for an exported tfglo model: render a camera orbit, write PNGs.

    python export/client.py --rest_url=http://localhost:8501 --output=/tmp/orbit
    python export/client.py --grpc_target=localhost:8500 --output=/tmp/orbit --seed=3

It asks the server for the orbit's cameras (`orbit_cameras` signature: no camera maths here), for
a latent (a trained identity by `--latent_id`, or a new one from `sample_latents` with `--seed`),
then renders the orbit in batches (`render_identity` / `render`) and writes, per view,
`view_XXX_rgb.png`, `view_XXX_depth.png` (colour-mapped, one depth range for the whole orbit) and
`view_XXX_alpha.png`, plus `orbit.gif`. The orbit's flags are the fields of `OrbitConfig` (derived
with `tfglo.utils.configs`: one declaration per setting).

The request-building functions (`orbit_inputs`, `render_inputs`, `rest_body`, `predict_request`)
and the transports (`RestTransport`, `GrpcTransport`) are importable; the tests drive them
against the exported model. REST uses only the standard library (urllib); gRPC needs `grpcio`
(a dependency of tensorflow-serving-api).
"""

import dataclasses
import json
import pathlib
import sys
import urllib.error
import urllib.request
from typing import Any

import numpy as np
from absl import app, flags

# Runnable as `python export/client.py` from a checkout (tfglo importable from the repo root).
_REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(_REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(_REPO_ROOT))

from tfglo.lolnerf import serving  # noqa: E402
from tfglo.utils import configs, images  # noqa: E402

FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class OrbitConfig:
    """The orbit the client has the server render.

    Attributes:
      num_views: views on the orbit.
      radius: camera distance from the origin, object units.
      yaw_range: (min, max) yaw of the orbit, radians.
      pitch_range: (min, max) pitch of the orbit, radians.
      height: image height, pixels.
      width: image width, pixels.
      focal_factor: focal length / image width.
      latent_id: trained identity to render (row of the latent table).
      seed: render a new identity from sample_latents with this seed (overrides latent_id).
      truncation: truncation of the sampled latent.
      batch_size: views per render request.
    """

    num_views: int = 8
    radius: float = 4.5
    yaw_range: tuple[float, float] = (-0.6, 0.6)
    pitch_range: tuple[float, float] = (0.0, 0.0)
    height: int = 128
    width: int = 128
    focal_factor: float = 2.0
    latent_id: int | None = 0
    seed: int | None = None
    truncation: float = 0.7
    batch_size: int = 4


FLAG_SPEC = configs.ConfigFlags(
    "export/client.py",
    {"orbit": OrbitConfig},
    naming={OrbitConfig: configs.FlagNames(names={"yaw_range": "yaw", "pitch_range": "pitch"})},
    extra=(
        configs.Flag(
            "rest_url", "string", None, "TF Serving REST address, e.g. http://localhost:8501."
        ),
        configs.Flag(
            "grpc_target", "string", None, "TF Serving gRPC address host:port, e.g. localhost:8500."
        ),
        configs.Flag("model_name", "string", "tfglo", "Served model name."),
        configs.Flag("model_version", "integer", None, "Model version (default: latest)."),
        configs.Flag("output", "string", None, "Directory for the PNGs and the GIF."),
        configs.Flag("timeout", "float", 300.0, "Seconds to wait for one response."),
    ),
)


def define_flags() -> None:
    """Defines the client's flags (at start-up, not import: importing it must not clash)."""
    FLAG_SPEC.define(FLAGS)


# Request bodies -----------------------------------------------------------------------------


def orbit_inputs(
    num_views: int,
    radius: float,
    yaw_range=(-0.6, 0.6),
    pitch_range=(0.0, 0.0),
    height: int = 128,
    width: int = 128,
    focal_factor: float = 2.0,
) -> dict[str, Any]:
    """Inputs of the `orbit_cameras` signature (angles in radians, sizes in pixels)."""
    return serving.coerce_inputs(
        "orbit_cameras",
        {
            "num_views": num_views,
            "radius": radius,
            "yaw_min": yaw_range[0],
            "yaw_max": yaw_range[1],
            "pitch_min": pitch_range[0],
            "pitch_max": pitch_range[1],
            "height": height,
            "width": width,
            "focal_factor": focal_factor,
        },
    )


def render_inputs(
    world_to_camera, intrinsics, height: int, width: int, latent=None, latent_id=None
) -> tuple[str, dict[str, np.ndarray]]:
    """The signature and inputs that render B views.

    Args:
      world_to_camera: `[B, 3, 4]`.
      intrinsics: `[B, 3, 3]`.
      height, width: image size, pixels.
      latent: `[D]` (one identity for every view) or `[B, D]`; or
      latent_id: an int (one trained identity for every view) or `[B]` ids.

    Returns:
      ("render", inputs) or ("render_identity", inputs), checked with `serving.coerce_inputs`.

    Raises:
      ValueError: neither or both of latent and latent_id, or inputs of the wrong shape/type.
    """
    if (latent is None) == (latent_id is None):
        raise ValueError("give exactly one of latent and latent_id")
    world_to_camera = np.asarray(world_to_camera, np.float32)
    batch = world_to_camera.shape[0] if world_to_camera.ndim == 3 else 1
    camera = {
        "intrinsics": intrinsics,
        "world_to_camera": world_to_camera,
        "height": height,
        "width": width,
    }
    if latent is not None:
        latent = np.asarray(latent, np.float32)
        if latent.ndim == 1:
            latent = np.broadcast_to(latent, (batch, latent.shape[0]))
        return "render", serving.coerce_inputs("render", {"latent": latent, **camera})
    latent_id = np.asarray(latent_id)
    if latent_id.ndim == 0:
        latent_id = np.full([batch], latent_id)
    return "render_identity", serving.coerce_inputs(
        "render_identity", {"latent_id": latent_id, **camera}
    )


def rest_body(signature: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """The REST predict body (columnar `inputs` form) as a JSON-able dict."""
    return serving.rest_body(signature, inputs)


def predict_request(signature: str, inputs: dict[str, Any], model_name: str = "tfglo"):
    """The gRPC `PredictRequest` for a signature."""
    return serving.predict_request(signature, inputs, model_name)


def rest_predict_url(rest_url: str, model_name: str = "tfglo", version: int | None = None) -> str:
    """`<rest_url>/v1/models/<name>[/versions/<v>]:predict`."""
    url = f"{rest_url.rstrip('/')}/v1/models/{model_name}"
    if version is not None:
        url += f"/versions/{int(version)}"
    return url + ":predict"


def parse_rest_outputs(signature: str, response: dict[str, Any]) -> dict[str, np.ndarray]:
    """Turns a REST predict response (columnar form) into named float arrays.

    TF Serving answers `{"outputs": {name: value, ...}}`, or `{"outputs": value}` when the
    signature has a single output.

    Raises:
      RuntimeError: the response is an error (`{"error": ...}`) or lacks an output.
    """
    if "error" in response:
        raise RuntimeError(f"server error: {response['error']}")
    if "outputs" not in response:
        raise RuntimeError(f"response has no 'outputs': {str(response)[:200]}")
    names = serving.SIGNATURE_OUTPUTS[signature]
    outputs = response["outputs"]
    if len(names) == 1 and not (isinstance(outputs, dict) and names[0] in outputs):
        outputs = {names[0]: outputs}
    missing = [n for n in names if n not in outputs]
    if missing:
        raise RuntimeError(f"response lacks outputs {missing}")
    return {name: np.asarray(outputs[name], np.float32) for name in names}


# Transports ---------------------------------------------------------------------------------


class RestTransport:
    """Sends predict requests to TF Serving's REST API with urllib.

    Args:
      rest_url: e.g. http://localhost:8501.
      model_name, version: the served model (version None: the latest).
      timeout: seconds per request.
    """

    def __init__(
        self,
        rest_url: str,
        model_name: str = "tfglo",
        version: int | None = None,
        timeout: float = 300.0,
    ):
        self.url = rest_predict_url(rest_url, model_name, version)
        self.timeout = timeout

    def predict(self, signature: str, inputs: dict[str, Any]) -> dict[str, np.ndarray]:
        data = json.dumps(rest_body(signature, inputs)).encode("utf-8")
        request = urllib.request.Request(
            self.url, data=data, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                response = json.loads(reply.read().decode("utf-8"))
        except urllib.error.HTTPError as e:
            detail = e.read().decode("utf-8", "replace")
            try:
                detail = json.loads(detail).get("error", detail)
            except (ValueError, AttributeError):
                pass
            raise RuntimeError(
                f"{signature} request to {self.url} failed ({e.code}): {detail}"
            ) from None
        except urllib.error.URLError as e:
            raise RuntimeError(f"cannot reach {self.url}: {e.reason}") from None
        return parse_rest_outputs(signature, response)


class GrpcTransport:
    """Sends predict requests to TF Serving's gRPC API (`PredictionService/Predict`).

    Args:
      target: host:port, e.g. localhost:8500.
      model_name, version: the served model (version None: the latest).
      timeout: seconds per request.

    Raises:
      ImportError: grpcio is not installed (with how to get it).
    """

    def __init__(
        self,
        target: str,
        model_name: str = "tfglo",
        version: int | None = None,
        timeout: float = 300.0,
    ):
        try:
            import grpc
            from tensorflow_serving.apis import prediction_service_pb2_grpc
        except ImportError as e:
            raise ImportError(
                "gRPC needs grpcio and tensorflow-serving-api (pip install grpcio "
                "tensorflow-serving-api); or use --rest_url"
            ) from e
        self._grpc = grpc
        # Rendered images are large: lift gRPC's 4 MiB default message limit.
        options = [
            ("grpc.max_send_message_length", 1 << 30),
            ("grpc.max_receive_message_length", 1 << 30),
        ]
        self.channel = grpc.insecure_channel(target, options=options)
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.model_name = model_name
        self.version = version
        self.timeout = timeout

    def predict(self, signature: str, inputs: dict[str, Any]) -> dict[str, np.ndarray]:
        import tensorflow as tf

        request = predict_request(signature, inputs, self.model_name)
        if self.version is not None:
            request.model_spec.version.value = int(self.version)
        try:
            response = self.stub.Predict(request, timeout=self.timeout)
        except self._grpc.RpcError as e:
            raise RuntimeError(
                f"{signature} gRPC request failed: {e.code()}: {e.details()}"
            ) from None
        return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}

    def close(self):
        self.channel.close()


# The orbit ----------------------------------------------------------------------------------


def render_orbit(
    transport, config: OrbitConfig | None = None, **overrides
) -> dict[str, np.ndarray]:
    """Renders an orbit through a transport (anything with `predict(signature, inputs)`).

    Args:
      transport: `RestTransport`, `GrpcTransport`, or anything with that `predict`.
      config: the orbit (default `OrbitConfig()`).
      **overrides: `OrbitConfig` fields that replace the config's.

    Returns:
      dict: rgb `[V, H, W, 3]`, depth `[V, H, W]`, alpha `[V, H, W]`, world_to_camera
      `[V, 3, 4]`, intrinsics `[V, 3, 3]`, and latent `[D]` when sampled.
    """
    config = dataclasses.replace(config or OrbitConfig(), **overrides)
    num_views, height, width = config.num_views, config.height, config.width
    batch_size, latent_id, seed = config.batch_size, config.latent_id, config.seed
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    cameras = transport.predict(
        "orbit_cameras",
        orbit_inputs(
            num_views,
            config.radius,
            config.yaw_range,
            config.pitch_range,
            height,
            width,
            config.focal_factor,
        ),
    )
    result: dict[str, Any] = {
        "world_to_camera": cameras["world_to_camera"],
        "intrinsics": cameras["intrinsics"],
    }
    latent = None
    if seed is not None:
        sampled = transport.predict(
            "sample_latents",
            serving.coerce_inputs(
                "sample_latents", {"count": 1, "seed": seed, "truncation": config.truncation}
            ),
        )
        latent = sampled["latents"][0]
        result["latent"] = latent
        latent_id = None
    pieces: dict[str, list] = {"rgb": [], "depth": [], "alpha": []}
    for start in range(0, num_views, batch_size):
        rows = slice(start, start + batch_size)
        signature, inputs = render_inputs(
            cameras["world_to_camera"][rows],
            cameras["intrinsics"][rows],
            height,
            width,
            latent=latent,
            latent_id=latent_id,
        )
        out = transport.predict(signature, inputs)
        for key, values in pieces.items():
            values.append(np.asarray(out[key], np.float32))
    result.update({key: np.concatenate(values, 0) for key, values in pieces.items()})
    return result


def write_orbit(output_dir, result: dict[str, np.ndarray], fps: float = 8.0) -> list[pathlib.Path]:
    """Writes `view_XXX_{rgb,depth,alpha}.png` and `orbit.gif`; returns the paths."""
    output_dir = pathlib.Path(output_dir)
    valid = result["depth"][(result["depth"] > 0) & (result["alpha"] >= 0.5)]
    # One depth range for every view, so the colours of the frames are comparable.
    if valid.size and valid.max() > valid.min():
        depth_range = (float(np.percentile(valid, 1)), float(np.percentile(valid, 99)) + 1e-6)
    else:
        depth_range = (0.0, 1.0)
    paths = []
    for index in range(result["rgb"].shape[0]):
        depth_image, _ = images.colorize_depth(
            result["depth"][index], result["alpha"][index], *depth_range
        )
        paths.append(
            images.write_png(output_dir / f"view_{index:03d}_rgb.png", result["rgb"][index])
        )
        paths.append(images.write_png(output_dir / f"view_{index:03d}_depth.png", depth_image))
        paths.append(
            images.write_png(output_dir / f"view_{index:03d}_alpha.png", result["alpha"][index])
        )
    paths.append(images.write_gif(output_dir / "orbit.gif", list(result["rgb"]), fps=fps))
    return paths


def main(argv):
    del argv
    if (FLAGS.rest_url is None) == (FLAGS.grpc_target is None):
        raise app.UsageError("give exactly one of --rest_url and --grpc_target")
    if not FLAGS.output:
        raise app.UsageError("--output is required")
    try:
        orbit = FLAG_SPEC.build(FLAG_SPEC.values(FLAGS))["orbit"]
    except ValueError as e:  # e.g. --yaw with one value
        raise app.UsageError(f"{e} (--yaw and --pitch take min,max in radians)") from None
    if FLAGS.rest_url:
        transport = RestTransport(
            FLAGS.rest_url, FLAGS.model_name, FLAGS.model_version, FLAGS.timeout
        )
    else:
        transport = GrpcTransport(
            FLAGS.grpc_target, FLAGS.model_name, FLAGS.model_version, FLAGS.timeout
        )
    try:
        result = render_orbit(transport, orbit)
    except RuntimeError as e:
        sys.exit(f"error: {e}")
    paths = write_orbit(FLAGS.output, result)
    print(f"wrote {len(paths)} files to {FLAGS.output}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
