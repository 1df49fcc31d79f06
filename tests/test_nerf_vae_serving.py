"""The NeRF-VAE SavedModel (tfglo/nerf_vae/serving.py): encode, sample_latents and the engine's
render signatures, checked in a fresh process, under `saved_model_cli run` (the session loader TF
Serving uses), through the warm-up records, and with bad inputs."""

import json
import pathlib
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfglo.engine import serving as engine_serving
from tfglo.geometry import camera
from tfglo.nerf import config as nerf_config
from tfglo.nerf_vae import config as config_lib
from tfglo.nerf_vae import encoder as encoder_lib
from tfglo.nerf_vae import model as model_lib
from tfglo.nerf_vae import scenes, serving

SIZE = 16
SIGNATURES = ("serving_default", "render", "encode", "sample_latents", "orbit_cameras")
SAVED_MODEL_CLI = pathlib.Path(sys.executable).parent / "saved_model_cli"
REPO = pathlib.Path(__file__).resolve().parent.parent


def _env():
    import os

    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")


def tiny_model():
    keras.utils.set_random_seed(0)
    config = config_lib.NeRFVAEConfig(
        encoder=encoder_lib.EncoderConfig(
            image_size=SIZE, stage_widths=(8, 16), groups=4, latent_dim=6
        ),
        foreground=nerf_config.ForegroundConfig(
            width=16, depth=2, skip_layer=1, num_octaves=2, density_bias=0.0
        ),
        background=nerf_config.BackgroundConfig(enabled=False),
        render=nerf_config.RenderConfig(
            num_coarse=6, num_fine=6, chunk_size=64, background_color=(0.8, 0.8, 0.8)
        ),
    )
    model = model_lib.NeRFVAE(config)
    model.build_all()
    # A head of ordinary scale, so the encoder's output depends visibly on its input.
    kernel = model.encoder.head.kernel
    kernel.assign(np.random.default_rng(1).normal(0, 0.05, kernel.shape).astype(np.float32))
    return model


def _views(batch=2, views=3, seed=0):
    rng = np.random.default_rng(seed)
    eyes = rng.normal(size=(batch * views, 3))
    eyes = 4.0 * eyes / np.linalg.norm(eyes, axis=-1, keepdims=True)
    w2c = camera.look_at(eyes.astype(np.float32)).numpy().reshape(batch, views, 3, 4)
    k = camera.intrinsics_matrix(camera.default_intrinsics(SIZE, SIZE)).numpy()
    return {
        "images": rng.uniform(size=(batch, views, SIZE, SIZE, 3)).astype(np.float32),
        "intrinsics": np.broadcast_to(k, (batch, views, 3, 3)).astype(np.float32),
        "world_to_camera": w2c.astype(np.float32),
    }


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = tiny_model()
    config = engine_serving.ExportConfig(warmup_image_size=8, camera_distance=4.0)
    export_dir = tmp_path_factory.mktemp("nerf_vae_export") / "1"
    module = engine_serving.save_module(serving.serving_module(model, config), export_dir)
    encode_inputs = _views()
    encoded = {k: v.numpy() for k, v in module.encode(**encode_inputs).items()}
    orbit = {
        "num_views": np.int32(2),
        "radius": np.float32(4.0),
        "yaw_min": np.float32(-0.5),
        "yaw_max": np.float32(0.5),
        "pitch_min": np.float32(0.0),
        "pitch_max": np.float32(0.2),
        "height": np.int32(6),
        "width": np.int32(5),
        "focal_factor": np.float32(2.0),
    }
    cameras = {k: v.numpy() for k, v in module.orbit_cameras(**orbit).items()}
    inputs = {
        "encode": encode_inputs,
        "render": {
            "latent": encoded["mean"],
            "intrinsics": cameras["intrinsics"],
            "world_to_camera": cameras["world_to_camera"],
            "height": np.int32(6),
            "width": np.int32(5),
        },
        "sample_latents": {
            "count": np.int32(3),
            "seed": np.int64(7),
            "truncation": np.float32(0.5),
        },
        "orbit_cameras": orbit,
    }
    inputs["serving_default"] = inputs["render"]
    expected = {
        name: {
            k: v.numpy()
            for k, v in getattr(module, name.replace("serving_default", "render"))(**values).items()
        }
        for name, values in inputs.items()
    }
    return {"dir": export_dir, "model": model, "inputs": inputs, "expected": expected}


def test_encode_is_the_models_posterior(exported):
    model, inputs = exported["model"], exported["inputs"]["encode"]
    posterior = model.posterior(inputs["images"], inputs["intrinsics"], inputs["world_to_camera"])
    np.testing.assert_allclose(exported["expected"]["encode"]["mean"], posterior.mean, atol=1e-6)
    assert exported["expected"]["encode"]["mean"].shape == (2, 6)
    # Different scenes give different codes (the test would pass for a constant encoder else).
    mean = exported["expected"]["encode"]["mean"]
    assert np.abs(mean[0] - mean[1]).max() > 1e-4


def test_sample_latents_is_the_prior_of_the_render_app(exported):
    got = exported["expected"]["sample_latents"]["latents"]
    np.testing.assert_allclose(got, scenes.prior_latents(3, 6, seed=7, truncation=0.5), atol=1e-6)


_FRESH = textwrap.dedent(
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
    try:
        bad = {k[len("encode/"):]: tf.constant(inputs[k]) for k in inputs.files
               if k.startswith("encode/")}
        bad["images"] = tf.zeros([1, 1, 8, 8, 3])
        loaded.signatures["encode"](**bad)
        outputs["error"] = np.array("no error")
    except tf.errors.InvalidArgumentError as e:
        outputs["error"] = np.array(e.message)
    np.savez(outputs_path, **outputs)
    """
)


def test_fresh_process_matches_the_in_memory_module(exported, tmp_path):
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
        [sys.executable, "-c", _FRESH, str(exported["dir"]), inputs_path, outputs_path],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = np.load(outputs_path)
    for signature in SIGNATURES:
        expected = exported["expected"][signature]
        assert set(expected) == set(serving.SIGNATURE_OUTPUTS[signature])
        for name, value in expected.items():
            np.testing.assert_allclose(
                outputs[f"{signature}/{name}"], value, atol=1e-5, err_msg=f"{signature}/{name}"
            )
    message = str(outputs["error"])
    assert "images must be [B, V, 16, 16, 3]" in message, message


def test_saved_model_cli_runs_encode_and_render(exported, tmp_path):
    for signature in ("encode", "render"):
        paths = []
        for name, value in exported["inputs"][signature].items():
            path = tmp_path / f"{signature}_{name}.npy"
            np.save(path, value)
            paths.append(f"{name}={path}")
        out_dir = tmp_path / f"{signature}_out"
        result = subprocess.run(
            [
                str(SAVED_MODEL_CLI),
                "run",
                "--dir",
                str(exported["dir"]),
                "--tag_set",
                "serve",
                "--signature_def",
                signature,
                "--inputs",
                ";".join(paths),
                "--outdir",
                str(out_dir),
            ],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        for name, value in exported["expected"][signature].items():
            np.testing.assert_allclose(np.load(out_dir / f"{name}.npy"), value, atol=1e-5)


def test_warmup_records_cover_every_signature_and_run(exported):
    from tensorflow_serving.apis import prediction_log_pb2

    path = exported["dir"] / engine_serving.ASSETS_EXTRA / engine_serving.WARMUP_FILE
    loaded = tf.saved_model.load(str(exported["dir"]))
    names = []
    for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
        request = prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
        name = request.model_spec.signature_name
        names.append(name)
        feeds = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
        outputs = loaded.signatures[name](**feeds)
        assert set(outputs) == set(serving.SIGNATURE_OUTPUTS[name]), name
    # serving_default stands for render (one graph).
    assert sorted(names) == sorted(set(SIGNATURES) - {"render"})


def test_export_metadata(exported):
    info = json.loads(
        (exported["dir"] / engine_serving.ASSETS_EXTRA / engine_serving.METADATA_FILE).read_text()
    )
    assert info["latent_dim"] == 6 and info["encoder_image_size"] == SIZE
    assert info["combine"] == "average" and info["encoder_cameras"] is True
    assert info["signatures"]["encode"]["inputs"]["images"]["shape"] == "[B, V, S, S, 3]"
    assert set(info["signatures"]) == set(SIGNATURES)


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("images", np.zeros([1, 3, 8, 8, 3], np.float32), "images must be [B, V, 16, 16, 3]"),
        ("images", np.zeros([2, 0, 16, 16, 3], np.float32), "B, V >= 1"),
        ("intrinsics", np.zeros([2, 3, 4], np.float32), "intrinsics must be [B, V, 3, 3]"),
        ("world_to_camera", np.zeros([2, 2, 3, 4], np.float32), "world_to_camera must be"),
    ],
)
def test_encode_rejects_bad_inputs(exported, name, value, message):
    module = serving.serving_module(exported["model"], engine_serving.ExportConfig())
    inputs = dict(exported["inputs"]["encode"], **{name: value})
    with pytest.raises(tf.errors.InvalidArgumentError, match=message.replace("[", r"\[")):
        module.encode(**inputs)
