"""The TF Serving export: signatures, a fresh-process reload, saved_model_cli, requests, warm-up.

One tiny LOLNeRF is exported once per module (`exported` fixture) and every test reads that
export. The model server is not installable here, so what it does with an export is reproduced
with real tools: `tf.saved_model.load` in a fresh process, `saved_model_cli show/run` (the
TF1-session path TF Serving uses, where the Keras 3 untracked-variable trap shows up), the REST
`inputs` decoding and the gRPC protos (see serving_testlib).
"""

import json
import os
import pathlib
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import serving_load_testlib as load_lib
import serving_testlib as lib
import tensorflow as tf
from absl.testing import parameterized

from tfglo.geometry import camera
from tfglo.lolnerf import latents, serving

SAVED_MODEL_CLI = pathlib.Path(sys.executable).parent / "saved_model_cli"
HEIGHT, WIDTH = 12, 10  # not square: a swapped height/width shows up


def _env():
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")


def _request_inputs(module: serving.ServingModule) -> dict[str, dict[str, np.ndarray]]:
    """Inputs for every signature (numpy, signature dtypes)."""
    orbit = {
        "num_views": 3,
        "radius": 3.0,
        "yaw_min": -0.5,
        "yaw_max": 0.5,
        "pitch_min": 0.0,
        "pitch_max": 0.2,
        "height": HEIGHT,
        "width": WIDTH,
        "focal_factor": 1.0,
    }
    orbit = serving.coerce_inputs("orbit_cameras", orbit)
    cameras = module.orbit_cameras(**{k: tf.constant(v) for k, v in orbit.items()})
    world_to_camera = cameras["world_to_camera"].numpy()[:2]
    intrinsics = cameras["intrinsics"].numpy()[:2]
    sample = serving.coerce_inputs("sample_latents", {"count": 5, "seed": 7, "truncation": 0.8})
    latent = module.sample_latents(**{k: tf.constant(v) for k, v in sample.items()})["latents"]
    camera_inputs = {
        "intrinsics": intrinsics,
        "world_to_camera": world_to_camera,
        "height": HEIGHT,
        "width": WIDTH,
    }
    render = serving.coerce_inputs("render", {"latent": latent.numpy()[:2], **camera_inputs})
    identity = serving.coerce_inputs("render_identity", {"latent_id": [1, 3], **camera_inputs})
    return {
        "serving_default": render,
        "render": render,
        "render_identity": identity,
        "sample_latents": sample,
        "orbit_cameras": orbit,
    }


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(model, in-memory ServingModule, export dir, inputs, in-memory outputs) of a tiny export."""
    model = lib.tiny_model()
    export_dir = tmp_path_factory.mktemp("export") / "1"
    config = serving.ExportConfig(chunk_size=64, warmup_image_size=8, camera_distance=3.0)
    module = serving.export_model(model, export_dir, config, metadata={"note": "test"})
    inputs = _request_inputs(module)
    expected = {
        name: lib.call_signature_module(module, name, values) for name, values in inputs.items()
    }
    return {
        "model": model,
        "module": module,
        "dir": export_dir,
        "inputs": inputs,
        "expected": expected,
    }


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(str(exported["dir"]))


_FRESH_PROCESS = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tensorflow as tf
    export_dir, inputs_path, outputs_path = sys.argv[1:]
    loaded = tf.saved_model.load(export_dir)
    inputs = np.load(inputs_path)
    outputs = {}
    for signature in sorted({key.split("/")[0] for key in inputs.files}):
        prefix = signature + "/"
        feeds = {k[len(prefix):]: tf.constant(inputs[k]) for k in inputs.files
                 if k.startswith(prefix)}
        for name, value in loaded.signatures[signature](**feeds).items():
            outputs[prefix + name] = value.numpy()
    np.savez(outputs_path, **outputs)
    """
)


def test_fresh_process_outputs_match_the_in_memory_model(exported, tmp_path):
    inputs_path, outputs_path = tmp_path / "inputs.npz", tmp_path / "outputs.npz"
    np.savez(
        inputs_path,
        **{
            f"{sig}/{name}": value
            for sig, values in exported["inputs"].items()
            for name, value in values.items()
        },
    )
    result = subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS, str(exported["dir"]), inputs_path, outputs_path],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = np.load(outputs_path)
    for signature in lib.SIGNATURES:
        expected = exported["expected"][signature]
        assert set(expected) == set(serving.SIGNATURE_OUTPUTS[signature])
        for name, value in expected.items():
            got = outputs[f"{signature}/{name}"]
            assert got.shape == value.shape, (signature, name)
            np.testing.assert_allclose(got, value, atol=1e-5, rtol=0, err_msg=f"{signature}/{name}")


def test_render_matches_render_image_of_the_model(exported):
    model, inputs = exported["model"], exported["inputs"]["render"]
    out = exported["expected"]["render"]
    assert out["rgb"].shape == (2, HEIGHT, WIDTH, 3)
    assert out["depth"].shape == out["alpha"].shape == (2, HEIGHT, WIDTH)
    for b in range(2):
        view = camera.make_camera(inputs["intrinsics"][b], inputs["world_to_camera"][b])
        reference = model.render_image(inputs["latent"][b], view, HEIGHT, WIDTH)
        for name in ("rgb", "depth", "alpha"):
            np.testing.assert_allclose(out[name][b], reference[name].numpy(), atol=1e-5)
    # The images are not trivial: the object covers part of the view and the views differ.
    assert 0.0 < out["alpha"].max() and out["alpha"].min() < out["alpha"].max()
    assert np.abs(out["rgb"][0] - out["rgb"][1]).max() > 1e-3


def test_render_identity_renders_the_table_rows(exported):
    module, inputs = exported["module"], exported["inputs"]["render_identity"]
    table = exported["model"].latent_table.embeddings.numpy()
    camera_inputs = {k: v for k, v in inputs.items() if k != "latent_id"}
    by_latent = lib.call_signature_module(
        module, "render", {**camera_inputs, "latent": table[inputs["latent_id"]]}
    )
    for name, value in exported["expected"]["render_identity"].items():
        np.testing.assert_allclose(value, by_latent[name], atol=1e-6)


def test_sample_latents_draws_from_the_gaussian_of_the_table(exported):
    table = exported["model"].latent_table.embeddings
    mean, covariance = latents.fit_gaussian(table)
    inputs = exported["inputs"]["sample_latents"]
    expected = latents.sample_latents(
        mean, covariance, 5, tf.constant([7, 0], tf.int64), 0.8
    ).numpy()
    got = exported["expected"]["sample_latents"]["latents"]
    assert got.shape == (5, 8)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    zero = lib.call_signature_module(
        exported["module"], "sample_latents", {**inputs, "truncation": np.float32(0)}
    )
    np.testing.assert_allclose(zero["latents"], np.broadcast_to(mean, (5, 8)), atol=1e-6)


def test_orbit_cameras_are_the_camera_module_orbit(exported):
    out = exported["expected"]["orbit_cameras"]
    expected = camera.orbit_cameras(3, 3.0, (-0.5, 0.5), (0.0, 0.2)).numpy()
    np.testing.assert_allclose(out["world_to_camera"], expected, atol=1e-6)
    k = np.array([[WIDTH, 0, WIDTH / 2], [0, WIDTH, HEIGHT / 2], [0, 0, 1]], np.float32)
    np.testing.assert_allclose(out["intrinsics"], np.broadcast_to(k, (3, 3, 3)), atol=1e-6)


def test_export_refuses_a_non_empty_directory(exported, tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        serving.export_model(exported["model"], tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_metadata_file_describes_the_export(exported):
    info = json.loads((exported["dir"] / "assets.extra" / serving.METADATA_FILE).read_text())
    assert info["latent_dim"] == 8 and info["num_latents"] == 4 and info["chunk_size"] == 64
    assert info["note"] == "test"
    assert info["signatures"]["render"]["inputs"]["latent"] == {
        "dtype": "float32",
        "shape": "[B, D]",
    }


# saved_model_cli: the session-based loader TF Serving uses -----------------------------------


def _cli(*args, check=True):
    result = subprocess.run(
        [str(SAVED_MODEL_CLI), *args], capture_output=True, text=True, env=_env(), timeout=300
    )
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def _parse_show(text: str) -> dict:
    """`saved_model_cli show --all` -> {signature: {"inputs": {name: dtype}, "outputs": {...}}}."""
    signatures = {}
    blocks = re.split(r"signature_def\['([^']+)'\]:", text)
    for name, block in zip(blocks[1::2], blocks[2::2]):
        inputs_text, _, outputs_text = block.partition("contains the following output(s):")
        parse = lambda part: {  # noqa: E731
            key: (dtype, shape)
            for key, dtype, shape in re.findall(
                r"\['(\w+)'\] tensor_info:\s+dtype: (\w+)\s+shape: ([^\n]+)", part
            )
        }
        signatures[name] = {"inputs": parse(inputs_text), "outputs": parse(outputs_text)}
    return signatures


def test_saved_model_cli_show_lists_the_signatures(exported):
    shown = _parse_show(_cli("show", "--dir", str(exported["dir"]), "--all").stdout)
    dtype_names = {"float32": "DT_FLOAT", "int32": "DT_INT32", "int64": "DT_INT64"}
    for signature in lib.SIGNATURES:
        assert signature in shown, sorted(shown)
        inputs = {k: v[0] for k, v in shown[signature]["inputs"].items()}
        assert inputs == {
            name: dtype_names[dtype]
            for name, (dtype, _, _) in serving.SIGNATURE_INPUTS[signature].items()
        }
        assert set(shown[signature]["outputs"]) == set(serving.SIGNATURE_OUTPUTS[signature])
    assert shown["render"]["outputs"]["rgb"] == ("DT_FLOAT", "(-1, -1, -1, 3)")
    assert shown["render"]["outputs"]["depth"] == ("DT_FLOAT", "(-1, -1, -1)")
    assert shown["sample_latents"]["outputs"]["latents"] == ("DT_FLOAT", "(-1, 8)")
    assert shown["orbit_cameras"]["outputs"]["world_to_camera"] == ("DT_FLOAT", "(-1, 3, 4)")


def _cli_run(export_dir, signature: str, inputs: dict, tmp_path, check=True):
    tmp_path.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, value in inputs.items():
        path = tmp_path / f"{signature}_{name}.npy"
        np.save(path, value)
        paths.append(f"{name}={path}")
    out_dir = tmp_path / f"{signature}_out"
    result = _cli(
        "run",
        "--dir",
        str(export_dir),
        "--tag_set",
        "serve",
        "--signature_def",
        signature,
        "--inputs",
        ";".join(paths),
        "--outdir",
        str(out_dir),
        check=check,
    )
    return result, out_dir


def test_saved_model_cli_run_returns_the_same_image(exported, tmp_path):
    _, out_dir = _cli_run(exported["dir"], "render", exported["inputs"]["render"], tmp_path)
    for name, value in exported["expected"]["render"].items():
        np.testing.assert_allclose(np.load(out_dir / f"{name}.npy"), value, atol=1e-5)


_TF1_SESSION = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2
    export_dir, inputs_path, outputs_path, warmup_path = sys.argv[1:]
    tf.compat.v1.disable_eager_execution()
    inputs = np.load(inputs_path)
    outputs = {}
    with tf.compat.v1.Session(graph=tf.Graph()) as sess:
        # SavedModelBundle: the loader TF Serving uses (a TF1 session, feeds by tensor name).
        meta = tf.compat.v1.saved_model.load(sess, ["serve"], export_dir)
        def run(signature, feeds):
            sig = meta.signature_def[signature]
            feed = {sig.inputs[k].name: v for k, v in feeds.items()}
            fetch = {k: v.name for k, v in sig.outputs.items()}
            return sess.run(fetch, feed)
        for signature in sorted({key.split("/")[0] for key in inputs.files}):
            prefix = signature + "/"
            feeds = {k[len(prefix):]: inputs[k] for k in inputs.files if k.startswith(prefix)}
            for name, value in run(signature, feeds).items():
                outputs[prefix + name] = value
        for i, record in enumerate(tf.compat.v1.io.tf_record_iterator(warmup_path)):
            request = prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
            feeds = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
            for name, value in run(request.model_spec.signature_name, feeds).items():
                outputs[f"warmup{i}/{name}"] = value
        good = {k[len("render/"):]: inputs[k] for k in inputs.files if k.startswith("render/")}
        bad = {"latent": good["latent"][0], "height": np.int32(0), "latent_id": np.int64(9),
               "intrinsics": np.zeros_like(good["intrinsics"]),
               "world_to_camera": good["world_to_camera"] * np.array([-1, 1, 1, 1], np.float32)}
        for name, value in bad.items():
            signature = "render_identity" if name == "latent_id" else "render"
            feeds = dict(good, **{name: value})
            if name == "latent_id":
                del feeds["latent"]
            try:
                run(signature, feeds)
                outputs["error/" + name] = np.array("no error")
            except tf.errors.InvalidArgumentError as e:
                outputs["error/" + name] = np.array(e.message)
    np.savez(outputs_path, **outputs)
    """
)


def test_tf1_session_runs_every_signature_and_the_warmup(exported, tmp_path):
    """The SavedModelBundle path of TF Serving: every signature, the warm-up replay, and named
    errors for bad feeds."""
    inputs_path, outputs_path = tmp_path / "inputs.npz", tmp_path / "outputs.npz"
    np.savez(
        inputs_path,
        **{
            f"{sig}/{name}": value
            for sig, values in exported["inputs"].items()
            for name, value in values.items()
        },
    )
    warmup = exported["dir"] / "assets.extra" / serving.WARMUP_FILE
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _TF1_SESSION,
            str(exported["dir"]),
            inputs_path,
            outputs_path,
            warmup,
        ],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = np.load(outputs_path)
    for signature in lib.SIGNATURES:
        for name, value in exported["expected"][signature].items():
            np.testing.assert_allclose(
                outputs[f"{signature}/{name}"], value, atol=1e-5, err_msg=f"{signature}/{name}"
            )
    warmup_rgb = [k for k in outputs.files if k.startswith("warmup") and k.endswith("/rgb")]
    assert len(warmup_rgb) == 2 and all(outputs[k].shape == (1, 8, 8, 3) for k in warmup_rgb)
    # Bad feeds fail in the session with the input's name too (no Python checks on this path).
    assert "latent must be [B, D] float32 with D=8" in str(outputs["error/latent"])
    assert "height must be a scalar int32 in [1, 4096]" in str(outputs["error/height"])
    assert "latent_id must be [B] int64" in str(outputs["error/latent_id"])
    assert "intrinsics must be pinhole matrices" in str(outputs["error/intrinsics"])
    assert "world_to_camera must be rigid" in str(outputs["error/world_to_camera"])


def test_saved_model_cli_run_catches_untracked_keras_variables(exported, tmp_path):
    """Negative control: the naive export (the Keras model as an attribute of the module, no
    explicit variable list) saves and loads in Python, but the session-based loader
    (saved_model_cli, TF Serving) cannot find the variables."""
    module = serving.ServingModule(
        exported["model"],
        np.zeros(8, np.float32),
        np.eye(8, dtype=np.float32),
        serving.ExportConfig(chunk_size=64),
    )
    del module.model_variables
    module.keras_model = exported["model"]
    export_dir = tmp_path / "untracked"
    tf.saved_model.save(module, str(export_dir), signatures={"render": module.render})
    reloaded = tf.saved_model.load(str(export_dir))
    out = lib.call_signature(reloaded, "render", exported["inputs"]["render"])
    np.testing.assert_allclose(out["rgb"], exported["expected"]["render"]["rgb"], atol=1e-5)
    result, _ = _cli_run(
        export_dir, "render", exported["inputs"]["render"], tmp_path / "run", check=False
    )
    assert result.returncode != 0
    assert "Could not find variable" in result.stderr


# Requests: REST JSON, gRPC protos, warm-up -------------------------------------------------


def test_rest_body_decodes_like_tf_serving_and_runs(exported, loaded):
    client = lib.load_client()
    orbit = client.orbit_inputs(2, 3.0, (-0.5, 0.5), (0.0, 0.2), HEIGHT, WIDTH, 1.0)
    body = json.dumps(client.rest_body("orbit_cameras", orbit))
    decoded = lib.decode_rest_inputs(body, lib.signature_input_dtypes(loaded, "orbit_cameras"))
    cameras = lib.call_signature(loaded, "orbit_cameras", decoded)
    latent = exported["inputs"]["render"]["latent"][0]
    signature, inputs = client.render_inputs(
        cameras["world_to_camera"], cameras["intrinsics"], HEIGHT, WIDTH, latent=latent
    )
    assert signature == "render"
    body = json.dumps(client.rest_body(signature, inputs))
    assert json.loads(body)["signature_name"] == "render"
    decoded = lib.decode_rest_inputs(body, lib.signature_input_dtypes(loaded, "render"))
    for name, value in inputs.items():  # float32 survives the JSON text exactly
        assert decoded[name].dtype == value.dtype
        np.testing.assert_array_equal(decoded[name], value)
    out = lib.call_signature(loaded, "render", decoded)
    assert out["rgb"].shape == (2, HEIGHT, WIDTH, 3)
    assert out["depth"].shape == out["alpha"].shape == (2, HEIGHT, WIDTH)
    reference = lib.call_signature_module(exported["module"], "render", inputs)
    for name in out:
        np.testing.assert_allclose(out[name], reference[name], atol=1e-5)


def test_grpc_request_tensors_round_trip(exported, loaded):
    client = lib.load_client()
    from tensorflow_serving.apis import predict_pb2

    for signature, inputs in exported["inputs"].items():
        request = client.predict_request(signature, inputs, "tfglo")
        wire = predict_pb2.PredictRequest.FromString(request.SerializeToString())
        assert wire.model_spec.name == "tfglo" and wire.model_spec.signature_name == signature
        decoded = {name: tf.make_ndarray(proto) for name, proto in wire.inputs.items()}
        assert set(decoded) == set(inputs)
        for name, value in inputs.items():
            assert decoded[name].dtype == value.dtype, name
            np.testing.assert_array_equal(decoded[name], value)
        out = lib.call_signature(loaded, signature, decoded)
        for name, value in exported["expected"][signature].items():
            np.testing.assert_allclose(out[name], value, atol=1e-5)


def test_warmup_file_holds_prediction_logs_that_run(exported, loaded):
    from tensorflow_serving.apis import prediction_log_pb2

    path = exported["dir"] / "assets.extra" / serving.WARMUP_FILE
    records = list(tf.data.TFRecordDataset(str(path)).as_numpy_iterator())
    assert len(records) >= 4
    seen = set()
    for record in records:
        log = prediction_log_pb2.PredictionLog.FromString(record)
        assert log.WhichOneof("log_type") == "predict_log"
        request = log.predict_log.request
        assert request.model_spec.name == "tfglo"
        signature = request.model_spec.signature_name
        seen.add(signature)
        inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
        assert lib.signature_input_dtypes(loaded, signature) == {
            k: tf.as_dtype(v.dtype) for k, v in inputs.items()
        }
        out = lib.call_signature(loaded, signature, inputs)
        assert set(out) == set(serving.SIGNATURE_OUTPUTS[signature])
        if "rgb" in out:
            assert out["rgb"].shape == (1, 8, 8, 3)
            assert np.isfinite(out["rgb"]).all()
    assert seen >= {"serving_default", "render_identity", "sample_latents", "orbit_cameras"}


# Bad requests ------------------------------------------------------------------------------

# Cameras, for what they mean: accepted and rejected (intrinsics K, world_to_camera [R | t]).
# Each case changes camera `index` of a valid batch of two: (name, input, index, change,
# expected message or None).
_K = np.array([[8.0, 0, 4], [0, 8, 4], [0, 0, 1]], np.float32)


def _rotation(yaw: float, pitch: float = 0.0) -> np.ndarray:
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    return np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]]) @ np.array(
        [[1, 0, 0], [0, cp, -sp], [0, sp, cp]]
    )


def _set(row, col, value):
    def change(matrix):
        matrix[row, col] = value
        return matrix

    return change


def _scale_rotation(factor):
    def change(matrix):
        matrix[:, :3] *= factor
        return matrix

    return change


def _rotate(yaw, pitch=0.0, noise=0.0):
    def change(matrix):
        rotation = _rotation(yaw, pitch) + noise * np.random.default_rng(0).normal(size=(3, 3))
        matrix[:, :3] = rotation
        return matrix

    return change


_FINITE_K = "intrinsics must be finite"
_PINHOLE = r"intrinsics must be pinhole matrices \[\[fx, 0, cx\], \[0, fy, cy\], \[0, 0, 1\]\]"
_FINITE_W2C = "world_to_camera must be finite"
_RIGID = r"world_to_camera must be rigid transforms \[R \| t\]"
CAMERA_CASES = (
    # Accepted.
    ("identity", "intrinsics", 0, lambda m: m, None),
    ("non_square_pixels", "intrinsics", 0, _set(1, 1, 12.0), None),
    ("principal_point_outside", "intrinsics", 1, _set(0, 2, -30.0), None),
    ("long_focal", "intrinsics", 0, _set(0, 0, 5e5), None),
    ("skew_within_tolerance", "intrinsics", 0, _set(0, 1, 5e-4), None),
    ("turned", "world_to_camera", 1, _rotate(0.7, -0.3), None),
    ("float32_noise", "world_to_camera", 0, _rotate(0.2, 0.1, noise=1e-4), None),
    ("far_away", "world_to_camera", 0, _set(2, 3, 9e5), None),
    # Rejected: singular or non-finite intrinsics.
    ("zero_k", "intrinsics", 0, lambda m: m * 0, _PINHOLE),
    ("zero_focal", "intrinsics", 0, _set(0, 0, 0.0), _PINHOLE),
    ("negative_focal", "intrinsics", 1, _set(1, 1, -8.0), _PINHOLE),
    ("last_row_zero", "intrinsics", 0, _set(2, 2, 0.0), _PINHOLE),
    ("skew", "intrinsics", 0, _set(0, 1, 1.0), _PINHOLE),
    ("lower_row", "intrinsics", 0, _set(2, 0, 0.5), _PINHOLE),
    ("huge_principal_point", "intrinsics", 0, _set(0, 2, 1e9), _PINHOLE),
    ("nan_focal", "intrinsics", 0, _set(0, 0, np.nan), _FINITE_K),
    ("inf_cx", "intrinsics", 1, _set(0, 2, np.inf), _FINITE_K),
    # Rejected: world-to-camera matrices that are not rigid, or not finite.
    ("scaled_rotation", "world_to_camera", 0, _scale_rotation(2.0), _RIGID),
    ("reflection", "world_to_camera", 0, _set(0, 0, -1.0), _RIGID),
    ("zero_rotation", "world_to_camera", 1, _scale_rotation(0.0), _RIGID),
    ("shear", "world_to_camera", 0, _set(0, 1, 0.3), _RIGID),
    ("slightly_off", "world_to_camera", 0, _rotate(0.2, 0.1, noise=1e-2), _RIGID),
    ("huge_translation", "world_to_camera", 0, _set(2, 3, 1e9), _RIGID),
    ("nan_translation", "world_to_camera", 1, _set(1, 3, np.nan), _FINITE_W2C),
    ("inf_translation", "world_to_camera", 0, _set(2, 3, -np.inf), _FINITE_W2C),
    ("nan_rotation", "world_to_camera", 0, _set(0, 0, np.nan), _FINITE_W2C),
)


def camera_case_inputs(name: str) -> dict[str, np.ndarray]:
    """The render camera inputs (batch of 2, 4 x 4) of a CAMERA_CASES entry."""
    _, which, index, change, _ = next(case for case in CAMERA_CASES if case[0] == name)
    world_to_camera = np.stack([np.eye(3, 4), np.eye(3, 4)]) + np.array([0, 0, 0, 3.0])
    inputs = {
        "intrinsics": np.stack([_K, _K]).astype(np.float64),
        "world_to_camera": world_to_camera,
    }
    inputs[which][index] = change(inputs[which][index].copy())
    return {
        "intrinsics": inputs["intrinsics"].astype(np.float32),
        "world_to_camera": inputs["world_to_camera"].astype(np.float32),
        "height": np.int32(4),
        "width": np.int32(4),
    }


_CAMERA_PROCESS = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    export_dir, inputs_path, outputs_path = sys.argv[1:]
    loaded = tf.saved_model.load(export_dir)
    inputs = np.load(inputs_path)
    results = {}
    for name in sorted({key.split("/")[0] for key in inputs.files}):
        feeds = {k.split("/")[1]: tf.constant(inputs[k]) for k in inputs.files
                 if k.startswith(name + "/")}
        signature = "render_identity" if "latent_id" in feeds else "render"
        try:
            out = loaded.signatures[signature](**feeds)
            results[name] = {"ok": True, "finite": bool(np.isfinite(out["rgb"].numpy()).all())}
        except tf.errors.InvalidArgumentError as e:
            results[name] = {"ok": False, "message": e.message}
    json.dump(results, open(outputs_path, "w"))
    """
)


def test_camera_checks_hold_in_the_exported_model(exported, tmp_path):
    """Every CAMERA_CASES entry through `render` and `render_identity` of the reloaded export,
    in a fresh process: the same accepted / rejected split, the same messages."""
    feeds = {}
    for name, *_ in CAMERA_CASES:
        camera_inputs = camera_case_inputs(name)
        for key, value in camera_inputs.items():
            feeds[f"{name}/{key}"] = value
            feeds[f"{name}-identity/{key}"] = value
        feeds[f"{name}/latent"] = np.zeros([2, 8], np.float32)
        feeds[f"{name}-identity/latent_id"] = np.array([0, 3], np.int64)
    inputs_path, outputs_path = tmp_path / "cameras.npz", tmp_path / "results.json"
    np.savez(inputs_path, **feeds)
    result = subprocess.run(
        [sys.executable, "-c", _CAMERA_PROCESS, str(exported["dir"]), inputs_path, outputs_path],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(outputs_path.read_text())
    for name, _, index, _, message in CAMERA_CASES:
        for key in (name, f"{name}-identity"):
            got = results[key]
            if message is None:
                assert got["ok"] and got["finite"], (key, got)
            else:
                assert not got["ok"], key
                assert re.search(message, got["message"]), (key, got["message"][:400])
                if "must be rigid" in got["message"] or "must be pinhole" in got["message"]:
                    assert f"[first bad camera] [{index}]" in got["message"], got["message"]


class BadRequestTest(parameterized.TestCase):
    """Wrong ranks, sizes and values fail inside the graph with an error naming the input."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.model = lib.tiny_model()
        cls.module = serving.ServingModule(
            cls.model, np.zeros(8), np.eye(8), serving.ExportConfig(chunk_size=64)
        )
        k = np.array([[8.0, 0, 4], [0, 8, 4], [0, 0, 1]], np.float32)
        cls.render = {
            "latent": np.zeros([2, 8], np.float32),
            "intrinsics": np.stack([k, k]),
            "world_to_camera": np.stack([np.eye(3, 4, dtype=np.float32)] * 2)
            + np.array([0, 0, 0, 3], np.float32),
            "height": np.int32(4),
            "width": np.int32(4),
        }

    def _call(self, signature, inputs):
        lib.call_signature_module(self.module, signature, inputs)

    @parameterized.named_parameters(
        ("latent_rank", "latent", np.zeros([8], np.float32), r"latent must be \[B, D\].*D=8"),
        ("latent_dim", "latent", np.zeros([2, 5], np.float32), r"latent must be \[B, D\].*D=8"),
        ("latent_empty", "latent", np.zeros([0, 8], np.float32), r"latent must be .*B >= 1"),
        ("latent_nan", "latent", np.full([2, 8], np.nan, np.float32), "latent must be finite"),
        ("k_rank", "intrinsics", np.eye(3, dtype=np.float32), r"intrinsics must be \[B, 3, 3\]"),
        ("k_batch", "intrinsics", np.zeros([3, 3, 3], np.float32), "intrinsics must be"),
        ("w2c_size", "world_to_camera", np.zeros([2, 4, 4], np.float32), "world_to_camera must"),
        ("zero_height", "height", np.int32(0), r"height must be a scalar int32 in \[1, 4096\]"),
        ("zero_width", "width", np.int32(0), "width must be a scalar int32"),
        ("huge_width", "width", np.int32(100000), "width must be a scalar int32"),
        ("height_rank", "height", np.array([4], np.int32), "height must be a scalar int32"),
    )
    def test_render_rejects(self, name, value, message):
        with self.assertRaisesRegex(tf.errors.InvalidArgumentError, message):
            self._call("render", {**self.render, name: value})

    @parameterized.named_parameters(
        ("negative", [-1, 0]),
        ("too_large", [0, 4]),
        ("rank", [[0, 1]]),
        ("empty", np.zeros([0], np.int64)),
    )
    def test_render_identity_rejects_bad_ids(self, ids):
        inputs = {k: v for k, v in self.render.items() if k != "latent"}
        inputs["latent_id"] = np.asarray(ids, np.int64)
        if inputs["latent_id"].ndim == 1 and inputs["latent_id"].size != 2:
            inputs["intrinsics"] = inputs["intrinsics"][:0]
            inputs["world_to_camera"] = inputs["world_to_camera"][:0]
        with self.assertRaisesRegex(
            tf.errors.InvalidArgumentError, r"latent_id must be \[B\] int64 .*ids in \[0, 3\]"
        ):
            self._call("render_identity", inputs)

    @parameterized.named_parameters(
        ("count_zero", "count", np.int32(0), "count must be a scalar int32"),
        ("count_rank", "count", np.array([2], np.int32), "count must be a scalar int32"),
        ("seed_rank", "seed", np.array([1, 2], np.int64), "seed must be a scalar int64"),
        ("truncation", "truncation", np.float32(-1), "truncation must be a scalar float32 >= 0"),
    )
    def test_sample_latents_rejects(self, name, value, message):
        inputs = {"count": np.int32(2), "seed": np.int64(0), "truncation": np.float32(1)}
        with self.assertRaisesRegex(tf.errors.InvalidArgumentError, message):
            self._call("sample_latents", {**inputs, name: value})

    @parameterized.named_parameters(
        ("views", "num_views", np.int32(0), "num_views must be a scalar int32"),
        ("radius", "radius", np.float32(0), "radius must be a scalar float32"),
        ("yaw_rank", "yaw_min", np.zeros([2], np.float32), "yaw_min must be a scalar float32"),
        ("focal", "focal_factor", np.float32(-2), "focal_factor must be a scalar float32"),
        ("zero_height", "height", np.int32(0), "height must be a scalar int32"),
    )
    def test_orbit_cameras_rejects(self, name, value, message):
        inputs = serving.coerce_inputs(
            "orbit_cameras",
            {
                "num_views": 2,
                "radius": 3.0,
                "yaw_min": 0.0,
                "yaw_max": 1.0,
                "pitch_min": 0.0,
                "pitch_max": 0.0,
                "height": 4,
                "width": 4,
                "focal_factor": 2.0,
            },
        )
        with self.assertRaisesRegex(tf.errors.InvalidArgumentError, message):
            self._call("orbit_cameras", {**inputs, name: value})

    def test_valid_request_passes(self):
        out = lib.call_signature_module(self.module, "render", self.render)
        self.assertEqual(out["rgb"].shape, (2, 4, 4, 3))

    @parameterized.named_parameters(*[(case[0], case[0]) for case in CAMERA_CASES if case[4]])
    def test_render_rejects_bad_cameras(self, name):
        _, _, index, _, message = next(case for case in CAMERA_CASES if case[0] == name)
        cameras = camera_case_inputs(name)
        for signature, extra in (
            ("render", {"latent": np.zeros([2, 8], np.float32)}),
            ("render_identity", {"latent_id": np.array([1, 2], np.int64)}),
        ):
            with self.assertRaisesRegex(tf.errors.InvalidArgumentError, message) as raised:
                self._call(signature, {**cameras, **extra})
            if "finite" not in message:  # the structural checks name the camera
                self.assertIn(f"[first bad camera] [{index}]", str(raised.exception))

    @parameterized.named_parameters(*[(case[0], case[0]) for case in CAMERA_CASES if not case[4]])
    def test_render_accepts_valid_cameras(self, name):
        inputs = {**camera_case_inputs(name), "latent": np.zeros([2, 8], np.float32)}
        out = lib.call_signature_module(self.module, "render", inputs)
        self.assertEqual(out["rgb"].shape, (2, 4, 4, 3))
        self.assertTrue(np.isfinite(out["rgb"]).all() and np.isfinite(out["depth"]).all())

    def test_orbit_cameras_pass_the_camera_checks(self):
        """What orbit_cameras returns is always a valid render input (rigid, pinhole)."""
        orbit = serving.coerce_inputs(
            "orbit_cameras",
            {
                "num_views": 7,
                "radius": 2.5,
                "yaw_min": -3.0,
                "yaw_max": 3.0,
                "pitch_min": -1.4,
                "pitch_max": 1.4,
                "height": 3,
                "width": 5,
                "focal_factor": 0.7,
            },
        )
        cameras = lib.call_signature_module(self.module, "orbit_cameras", orbit)
        out = lib.call_signature_module(
            self.module,
            "render",
            {
                "latent": np.zeros([7, 8], np.float32),
                "intrinsics": cameras["intrinsics"],
                "world_to_camera": cameras["world_to_camera"],
                "height": np.int32(3),
                "width": np.int32(5),
            },
        )
        self.assertEqual(out["rgb"].shape, (7, 3, 5, 3))


def test_bad_requests_fail_in_the_exported_model_too(loaded):
    """The checks live in the graph: the reloaded export names the input as well."""
    k = np.array([[8.0, 0, 4], [0, 8, 4], [0, 0, 1]], np.float32)
    good = {
        "latent": np.zeros([1, 8], np.float32),
        "intrinsics": k[None],
        "world_to_camera": np.eye(3, 4, dtype=np.float32)[None],
        "height": np.int32(4),
        "width": np.int32(4),
    }
    for name, value, message in (
        ("latent", np.zeros([8], np.float32), "latent must be"),
        ("height", np.int32(0), "height must be"),
        ("world_to_camera", np.zeros([1, 3, 3], np.float32), "world_to_camera must be"),
    ):
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            lib.call_signature(loaded, "render", {**good, name: value})


# Every bad request of the soak's table (serving_load_testlib), one case each, against the
# reloaded export (`loaded`: tf.saved_model.load, the graph TF Serving runs). The tiny model:
# latent_dim 8, 4 latents (test_metadata_file_describes_the_export checks the export says so).
_BAD_REQUESTS = {case[0]: case for case in load_lib.requests(8, 4)[1]}


@pytest.mark.parametrize("name", sorted(_BAD_REQUESTS))
def test_loaded_export_rejects_bad_request(loaded, name):
    _, signature, inputs, pattern = _BAD_REQUESTS[name]
    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
        lib.call_signature(loaded, signature, inputs)
    assert re.search(pattern, raised.value.message), (name, raised.value.message[:400])


def test_bad_request_table_covers_every_kind_the_issue_lists():
    """Wrong latent size, non-finite values, negative / huge sizes, out-of-range ids, batch
    mismatches, singular / non-finite K, non-rigid [R | t]: each kind is in the table."""
    kinds = (
        "latent_dim",
        "latent_nan",
        "latent_inf",
        "height_negative",
        "width_huge",
        "count_huge",
        "id_too_large",
        "id_negative",
        "batch_latent_vs_cameras",
        "batch_ids_vs_cameras",
        "k_zero",
        "k_nan",
        "w2c_reflection",
        "w2c_scaled",
        "w2c_nan",
    )
    assert set(kinds) <= set(_BAD_REQUESTS)


# The soak: 3000 requests from 4 threads in a fresh process: ~25 s of requests (~60 s with the
# process start and the load) on 2 cores shared with 4 other test processes; measured three times:
# 0 errors, RSS 693.9-694.2 MB after the warm-up (400 requests), +0.83 to +0.91 MB at the end.
SOAK_REQUESTS, SOAK_THREADS = 3000, 4
# Largest accepted RSS growth after the warm-up, MiB. Measured (same export, 4 threads): valid
# requests only, +0.5 MB over 4500 requests and flattening (allocator arenas settling); rejected
# requests only, a steady ~0.5-1.1 KB each (TensorFlow's error path: 2 Python objects per failed
# call kept at tensorflow/python/eager/execute.py:53, the rest native). A leak of one request's
# outputs (~1 KB) per request would add ~2.6 MB here and fail.
SOAK_GROWTH_MB = 2.0


def test_soak_many_small_requests_from_threads(exported, tmp_path):
    """Every signature called SOAK_REQUESTS times from SOAK_THREADS threads (every 10th request
    a bad one, cycling through the table): no error, results bit-identical to a single-threaded
    reference, each bad request rejected with its message, RSS flat after the warm-up."""
    output = tmp_path / "soak.json"
    result = subprocess.run(
        [
            sys.executable,
            str(pathlib.Path(__file__).parent / "serving_load_testlib.py"),
            str(exported["dir"]),
            str(output),
            f"--requests={SOAK_REQUESTS}",
            f"--threads={SOAK_THREADS}",
        ],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    soak = json.loads(output.read_text())
    figures = {k: v for k, v in soak.items() if k != "samples"}
    print(f"\nserving soak: {figures}")
    assert soak["num_errors"] == 0, soak["errors"]
    assert soak["ok"] + soak["rejected"] == SOAK_REQUESTS
    assert soak["rejected"] == SOAK_REQUESTS // 10  # every bad request refused, none accepted
    assert soak["rejected"] >= 2 * len(_BAD_REQUESTS)  # each case at least twice
    assert soak["growth_after_warmup_mb"] < SOAK_GROWTH_MB, figures
    assert soak["max_rss_after_warmup_mb"] - soak["warm_rss_mb"] < SOAK_GROWTH_MB, figures


def test_wrong_dtypes_are_refused(loaded):
    """A JSON float for an int input fails in the server's decoder (which does not name the
    input: that is TF Serving's text); the client refuses it first, naming the input; a tensor of
    the wrong dtype fed straight to the signature fails in TensorFlow."""
    body = json.dumps(
        {"signature_name": "sample_latents", "inputs": {"count": 2.5, "seed": 0, "truncation": 1}}
    )
    dtypes = lib.signature_input_dtypes(loaded, "sample_latents")
    with pytest.raises(lib.RestDecodeError, match="is not of expected type: int32"):
        lib.decode_rest_inputs(body, dtypes)
    with pytest.raises(ValueError, match="count must be"):
        serving.coerce_inputs("sample_latents", {"count": 2.5, "seed": 0, "truncation": 1.0})
    with pytest.raises(ValueError, match="latent must be"):
        serving.coerce_inputs(
            "render",
            {
                "latent": np.array([["a"]]),
                "intrinsics": np.zeros([1, 3, 3]),
                "world_to_camera": np.zeros([1, 3, 4]),
                "height": 4,
                "width": 4,
            },
        )
    with pytest.raises(ValueError, match=r"missing \['truncation'\]"):
        serving.coerce_inputs("sample_latents", {"count": 1, "seed": 0})
    with pytest.raises((tf.errors.InvalidArgumentError, TypeError, ValueError)):
        loaded.signatures["sample_latents"](
            count=tf.constant(2, tf.int64),
            seed=tf.constant(0, tf.int64),
            truncation=tf.constant(1.0),
        )


# Client end to end and export versions ------------------------------------------------------


def test_client_renders_an_orbit_over_rest_and_grpc(exported, loaded, tmp_path):
    client = lib.load_client()
    with lib.LocalServer(loaded) as server:
        rest = client.render_orbit(
            client.RestTransport(server.rest_url, timeout=60),
            num_views=3,
            radius=3.0,
            height=HEIGHT,
            width=WIDTH,
            focal_factor=1.0,
            latent_id=2,
            batch_size=2,
        )
        grpc_transport = client.GrpcTransport(server.grpc_target, timeout=60)
        try:
            grpc = client.render_orbit(
                grpc_transport,
                num_views=3,
                radius=3.0,
                height=HEIGHT,
                width=WIDTH,
                focal_factor=1.0,
                latent_id=2,
                batch_size=2,
            )
            sampled = client.render_orbit(
                grpc_transport, num_views=1, height=4, width=4, seed=3, truncation=0.5
            )
        finally:
            grpc_transport.close()
        with pytest.raises(RuntimeError, match="height must be"):
            client.RestTransport(server.rest_url).predict(
                "render", {**exported["inputs"]["render"], "height": 0}
            )
    kinds = {kind for kind, _ in server.requests}
    assert kinds == {"rest", "grpc"}
    assert ("rest", "render_identity") in server.requests
    assert ("grpc", "sample_latents") in server.requests
    assert rest["rgb"].shape == (3, HEIGHT, WIDTH, 3)
    for name in ("rgb", "depth", "alpha", "world_to_camera"):
        np.testing.assert_allclose(rest[name], grpc[name], atol=1e-6)
    # The same views rendered in memory.
    direct = lib.call_signature_module(
        exported["module"],
        "render_identity",
        {
            "latent_id": np.full([3], 2, np.int64),
            "intrinsics": rest["intrinsics"],
            "world_to_camera": rest["world_to_camera"],
            "height": np.int32(HEIGHT),
            "width": np.int32(WIDTH),
        },
    )
    np.testing.assert_allclose(rest["rgb"], direct["rgb"], atol=1e-5)
    assert sampled["latent"].shape == (8,) and sampled["rgb"].shape == (1, 4, 4, 3)
    paths = client.write_orbit(tmp_path / "orbit", rest)
    names = sorted(p.name for p in paths)
    assert "orbit.gif" in names and "view_002_rgb.png" in names and "view_000_depth.png" in names
    from tfglo.utils import images

    np.testing.assert_allclose(
        images.read_png(tmp_path / "orbit" / "view_001_rgb.png"), rest["rgb"][1], atol=1 / 255
    )


def test_client_refuses_bad_arguments():
    client = lib.load_client()
    with pytest.raises(ValueError, match="exactly one of latent and latent_id"):
        client.render_inputs(np.zeros([1, 3, 4]), np.zeros([1, 3, 3]), 4, 4)
    with pytest.raises(ValueError, match=r"world_to_camera must be \[B, 3, 4\]"):
        client.render_inputs(np.zeros([3, 4]), np.zeros([1, 3, 3]), 4, 4, latent_id=0)
    assert (
        client.rest_predict_url("http://h:8501/", "tfglo", 3)
        == "http://h:8501/v1/models/tfglo/versions/3:predict"
    )
    with pytest.raises(RuntimeError, match="server error: boom"):
        client.parse_rest_outputs("render", {"error": "boom"})
    single = client.parse_rest_outputs("sample_latents", {"outputs": [[1.0, 2.0]]})
    assert single["latents"].shape == (1, 2)


class _FakeExport:
    """Stands in for `serving.export_model` in the versioning tests (a real export is slow)."""

    def __init__(self, fail=False):
        self.fail = fail
        self.calls = []

    def __call__(self, model, export_dir, config=None, gaussian=None, metadata=None):
        self.calls.append((pathlib.Path(export_dir), metadata))
        (pathlib.Path(export_dir) / "saved_model.pb").write_bytes(b"partial")
        if self.fail:
            raise RuntimeError("export failed half way")


def test_export_version_picks_the_next_free_version(tmp_path, monkeypatch):
    fake = _FakeExport()
    monkeypatch.setattr(serving, "export_model", fake)
    base = tmp_path / "models"
    assert serving.export_version(None, base) == base / "tfglo" / "1"
    for name in ("3", ".tmp-9-abc", "notes", "7x"):
        (base / "tfglo" / name).mkdir()
    target = serving.export_version(None, base)
    assert target == base / "tfglo" / "4"
    assert fake.calls[-1][0].name.startswith(".tmp-4-")  # written beside, then renamed
    assert fake.calls[-1][1]["version"] == 4
    assert serving.existing_versions(base / "tfglo") == [1, 3, 4]
    assert serving.export_version(None, base, version=10) == base / "tfglo" / "10"


def test_export_version_never_overwrites(tmp_path, monkeypatch):
    fake = _FakeExport()
    monkeypatch.setattr(serving, "export_model", fake)
    existing = tmp_path / "tfglo" / "2"
    existing.mkdir(parents=True)
    (existing / "saved_model.pb").write_bytes(b"original")
    with pytest.raises(FileExistsError, match="version 2 already exists"):
        serving.export_version(None, tmp_path, version=2)
    assert (existing / "saved_model.pb").read_bytes() == b"original"
    assert not fake.calls
    with pytest.raises(ValueError, match="version must be >= 1"):
        serving.export_version(None, tmp_path, version=0)


def test_export_version_leaves_no_half_version_on_failure(tmp_path, monkeypatch):
    monkeypatch.setattr(serving, "export_model", _FakeExport(fail=True))
    with pytest.raises(RuntimeError, match="half way"):
        serving.export_version(None, tmp_path)
    assert list((tmp_path / "tfglo").iterdir()) == []


def test_serving_command_mounts_the_model_directory(tmp_path):
    command = serving.serving_command(tmp_path / "tfglo")
    assert command == (
        "docker run -p 8500:8500 -p 8501:8501 --mount type=bind,source="
        f"{(tmp_path / 'tfglo').resolve()},target=/models/tfglo -e MODEL_NAME=tfglo "
        "-t tensorflow/serving"
    )


# The serving kit: export/models.config and export/README.md ----------------------------------


def test_models_config_is_a_model_server_config():
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    text = (lib.REPO_ROOT / "export" / "models.config").read_text()
    config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    (model,) = config.model_config_list.config
    assert model.name == "tfglo" and model.base_path == "/models/tfglo"
    assert model.model_platform == "tensorflow"


def _readme_blocks(language: str) -> list[str]:
    text = (lib.REPO_ROOT / "export" / "README.md").read_text()
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def test_readme_has_the_exact_docker_command():
    text = (lib.REPO_ROOT / "export" / "README.md").read_text()
    assert serving.serving_command("/srv/models/tfglo") in text
    assert "--model_config_file=/models/models.config" in text


def test_readme_rest_examples_run_through_the_signatures(loaded):
    bodies = _readme_blocks("json")
    assert len(bodies) >= 3
    seen = set()
    for body in bodies:
        signature = json.loads(body)["signature_name"]
        seen.add(signature)
        status, reply = lib.serve_rest(loaded, body)
        assert status == 200, reply
        if signature == "render_identity":
            assert np.asarray(reply["outputs"]["rgb"]).shape == (1, 64, 64, 3)
        if signature == "sample_latents":  # one output: the value itself
            assert np.asarray(reply["outputs"]).shape == (4, 8)
    assert seen == {"render_identity", "sample_latents", "orbit_cameras"}


def test_readme_grpc_example_runs(loaded):
    (snippet,) = _readme_blocks("python")
    with lib.LocalServer(loaded) as server:
        namespace = {}
        exec(snippet.replace("localhost:8500", server.grpc_target), namespace)  # noqa: S102
        namespace["channel"].close()
    assert namespace["rgb"].shape == (1, 64, 64, 3)


def test_client_app_writes_the_orbit(loaded, tmp_path):
    with lib.LocalServer(loaded) as server:
        result = subprocess.run(
            [
                sys.executable,
                str(lib.REPO_ROOT / "export" / "client.py"),
                f"--rest_url={server.rest_url}",
                f"--output={tmp_path / 'orbit'}",
                "--num_views=3",
                "--height=6",
                "--width=5",
                "--radius=3",
                "--seed=4",
                "--batch_size=2",
            ],
            capture_output=True,
            text=True,
            env=_env(),
            cwd=tmp_path,
            timeout=300,
        )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "wrote 10 files" in result.stdout
    assert [s for _, s in server.requests] == [
        "orbit_cameras",
        "sample_latents",
        "render",
        "render",
    ]
    from tfglo.utils import images

    assert images.read_png(tmp_path / "orbit" / "view_002_rgb.png").shape == (6, 5, 3)
