"""Test helpers for the serving tests: a tiny exported LOLNeRF, and TF Serving stand-ins.

The model server cannot be installed here, so the parts of it the export depends on are
reproduced from its source (tensorflow_serving/util/json_tensor.cc, servables/tensorflow/
predict_util.cc) as small Python functions:
- `decode_rest_inputs`: the REST `inputs` (columnar) JSON form -> tensors of the signature's
  dtypes, with the server's type rules (an int input takes only JSON integers, a float input
  any JSON number) and its error texts;
- `rest_response`: outputs -> the columnar JSON response;
- `LocalServer`: an HTTP server (REST predict) and a gRPC `PredictionService` on localhost that
  run requests through a loaded export, for the client's end-to-end test.
"""

import importlib.util
import json
import pathlib
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import tensorflow as tf

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
SIGNATURES = ("serving_default", "render", "render_identity", "sample_latents", "orbit_cameras")


def tiny_model_config():
    """A LOLNeRF small enough to export and render in seconds on 2 CPU cores."""
    from tfglo.lolnerf import config as model_config_lib
    from tfglo.nerf import config as config_lib

    return model_config_lib.ModelConfig(
        num_latents=4,
        latent_dim=8,
        latent_init_std=0.5,
        foreground=config_lib.ForegroundConfig(
            width=32, depth=2, skip_layer=1, num_octaves=2, density_bias=0.0
        ),
        background=config_lib.BackgroundConfig(width=16, depth=1, num_octaves=2),
        render=config_lib.RenderConfig(num_coarse=8, num_fine=8, chunk_size=64),
    )


def tiny_model(seed: int = 0):
    """A built tiny LOLNeRF with a latent table of spread-out rows (a non-trivial Gaussian)."""
    import keras

    from tfglo.lolnerf import model as lolnerf

    keras.utils.set_random_seed(seed)
    model = lolnerf.LOLNeRF(tiny_model_config())
    model.build_all()
    table = model.latent_table.embeddings
    rows = np.random.default_rng(seed).normal(0.0, 0.5, table.shape).astype(np.float32)
    table.assign(rows)
    return model


def load_client():
    """Imports export/client.py (not a package) once, as module `tfglo_export_client`."""
    import sys

    name = "tfglo_export_client"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "export" / "client.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def signature_input_dtypes(loaded, signature: str) -> dict[str, tf.DType]:
    """name -> dtype of a loaded signature's inputs (what TF Serving reads in the SignatureDef)."""
    _, specs = loaded.signatures[signature].structured_input_signature
    return {name: spec.dtype for name, spec in specs.items()}


def call_signature(loaded, signature: str, inputs: dict) -> dict[str, np.ndarray]:
    """Runs a loaded signature on numpy inputs (each fed with its own dtype, as a server does)."""
    function = loaded.signatures[signature]
    out = function(**{name: tf.constant(value) for name, value in inputs.items()})
    return {name: value.numpy() for name, value in out.items()}


# REST `inputs` decoding, after tensorflow_serving/util/json_tensor.cc ------------------------


class RestDecodeError(ValueError):
    """A request the REST decoder rejects (TF Serving answers 400 with this text)."""


def _json_type(value) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (int, float)):
        return "Number"
    if isinstance(value, str):
        return "String"
    return "Array" if isinstance(value, list) else "Object"


def _convert(value, dtype: tf.DType):
    """One JSON leaf -> a value of `dtype` (rapidjson's IsNumber / IsInt / IsInt64 rules)."""
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if dtype in (tf.float32, tf.float64):
        ok = is_int or isinstance(value, float)
    elif dtype == tf.int32:
        ok = is_int and -(2**31) <= value < 2**31
    elif dtype == tf.int64:
        ok = is_int and -(2**63) <= value < 2**63
    else:
        raise NotImplementedError(dtype)
    if not ok:
        raise RestDecodeError(
            f"JSON Value: {json.dumps(value)} Type: {_json_type(value)} is not of expected "
            f"type: {dtype.name}"
        )
    return value


def _dense_shape(value) -> list[int]:
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _fill(value, level: int, shape: list[int], dtype, out: list):
    if not isinstance(value, list):
        if level != len(shape):
            raise RestDecodeError(
                f"JSON Value: {json.dumps(value)} found at incorrect level: {level + 1} in the "
                f"JSON DOM. Expected at level: {len(shape)}"
            )
        out.append(_convert(value, dtype))
        return
    if level >= len(shape):
        raise RestDecodeError(
            f"Encountered list at unexpected level: {level} expected < {len(shape)}"
        )
    if len(value) != shape[level]:
        raise RestDecodeError(
            f"Encountered list at unexpected size: {len(value)} at level: {level} expected "
            f"size: {shape[level]}"
        )
    for item in value:
        _fill(item, level + 1, shape, dtype, out)


def decode_rest_inputs(body: str, input_dtypes: dict[str, tf.DType]) -> dict[str, np.ndarray]:
    """Decodes a REST predict body in the columnar `inputs` form as TF Serving does.

    Args:
      body: the JSON text.
      input_dtypes: the signature's inputs, name -> dtype.

    Returns:
      name -> numpy array of the signature dtype (extra JSON keys are ignored, as the server does).

    Raises:
      RestDecodeError: with the server's message.
    """
    try:
        doc = json.loads(body)
    except ValueError as e:
        raise RestDecodeError(f"JSON Parse error: {e}") from e
    if not isinstance(doc, dict):
        raise RestDecodeError(f"JSON Value: {body[:80]} Is not object")
    if "instances" in doc and "inputs" in doc:
        raise RestDecodeError("expecting only one of 'inputs' or 'instances' keys to exist")
    if "inputs" not in doc:
        raise RestDecodeError("Missing 'inputs' or 'instances' key")
    inputs = doc["inputs"]
    if not isinstance(inputs, dict):
        if len(input_dtypes) > 1:
            raise RestDecodeError(
                "inputs is a plain value/list, but expecting an object as multiple input tensors "
                "required as per tensorinfo_map"
            )
        inputs = {next(iter(input_dtypes)): inputs}
    out = {}
    for name, dtype in input_dtypes.items():
        if name not in inputs:
            raise RestDecodeError(f"Missing named input: {name} in 'inputs' object.")
        shape = _dense_shape(inputs[name])
        values: list = []
        _fill(inputs[name], 0, shape, dtype, values)
        out[name] = np.asarray(values, dtype.as_numpy_dtype).reshape(shape)
    return out


def rest_response(outputs: dict[str, np.ndarray]) -> dict:
    """The columnar JSON response: {"outputs": {name: list}}, or {"outputs": list} for one."""
    if len(outputs) == 1:
        return {"outputs": next(iter(outputs.values())).tolist()}
    return {"outputs": {name: value.tolist() for name, value in outputs.items()}}


def serve_rest(loaded, body: str) -> tuple[int, dict]:
    """One REST predict: (HTTP status, JSON reply) as TF Serving would give them."""
    try:
        signature = json.loads(body).get("signature_name") or "serving_default"
    except (ValueError, AttributeError):
        signature = "serving_default"
    if signature not in loaded.signatures:
        return 400, {"error": f'Serving signature name: "{signature}" not found in signature def'}
    try:
        inputs = decode_rest_inputs(body, signature_input_dtypes(loaded, signature))
        return 200, rest_response(call_signature(loaded, signature, inputs))
    except RestDecodeError as e:
        return 400, {"error": str(e)}
    except tf.errors.OpError as e:
        return 400, {"error": e.message}


# A local stand-in server -------------------------------------------------------------------


class LocalServer:
    """REST (HTTP) and gRPC predict endpoints on localhost backed by a loaded export.

    Use as a context manager; `rest_url` and `grpc_target` are set while it runs.
    """

    def __init__(self, loaded, model_name: str = "tfglo"):
        self.loaded = loaded
        self.model_name = model_name
        self.requests: list[tuple[str, str]] = []  # (transport, signature) seen

    def __enter__(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"])).decode("utf-8")
                expected = f"/v1/models/{server.model_name}:predict"
                if self.path != expected:
                    status, reply = 404, {"error": f"unknown path {self.path}"}
                else:
                    status, reply = serve_rest(server.loaded, body)
                    server.requests.append(("rest", json.loads(body).get("signature_name")))
                data = json.dumps(reply).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):  # quiet
                del args

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http_thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._http_thread.start()
        self.rest_url = f"http://127.0.0.1:{self._http.server_address[1]}"

        import grpc
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

        class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
            def Predict(self, request, context):  # noqa: N802 (gRPC's name)
                signature = request.model_spec.signature_name or "serving_default"
                server.requests.append(("grpc", signature))
                if request.model_spec.name != server.model_name:
                    context.abort(grpc.StatusCode.NOT_FOUND, f"no model {request.model_spec.name}")
                if signature not in server.loaded.signatures:
                    context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"no {signature}")
                inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
                expected = signature_input_dtypes(server.loaded, signature)
                if set(inputs) != set(expected):
                    context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"input size does not match signature: {sorted(inputs)} != "
                        f"{sorted(expected)}",
                    )
                try:
                    outputs = call_signature(server.loaded, signature, inputs)
                except tf.errors.OpError as e:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, e.message)
                response = predict_pb2.PredictResponse()
                response.model_spec.CopyFrom(request.model_spec)
                for name, value in outputs.items():
                    response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
                return response

        options = [("grpc.max_receive_message_length", 1 << 28)]
        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=2), options=options)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Servicer(), self._grpc)
        port = self._grpc.add_insecure_port("127.0.0.1:0")
        self._grpc.start()
        self.grpc_target = f"127.0.0.1:{port}"
        return self

    def __exit__(self, *exc):
        self._http.shutdown()
        self._http.server_close()
        self._grpc.stop(grace=None)
        return False


def call_signature_module(module, signature: str, inputs: dict) -> dict[str, np.ndarray]:
    """Runs an in-memory `ServingModule` signature function on numpy inputs."""
    function = module.signatures()[signature]
    out = function(**{name: tf.constant(value) for name, value in inputs.items()})
    return {name: value.numpy() for name, value in out.items()}
