"""`python -m tfglo.export`: versioned layout, never overwriting, nothing half-written on failure.

The run directory is written with the trainer's own code (`tfglo.engine.run_dir.make_config` /
`write_config`, a `tf.train.CheckpointManager` under `trainer.checkpoint_dir`) around a tiny
LOLNeRF, so `load_run` reads it exactly as it reads a trained run, without minutes of training.
"""

import dataclasses
import json

import app_testlib
import infer_testlib
import numpy as np
import pytest
import serving_testlib as lib
import tensorflow as tf

from tfglo.data.synthetic import heads as synthetic
from tfglo.lolnerf import model as lolnerf
from tfglo.lolnerf import serving
from tfglo.utils import configs

STEP = 7


def _write_run(path, model=None, with_checkpoint=True):
    model = model or lib.tiny_model()
    metadata = synthetic.dataset_metadata(
        synthetic.SyntheticConfig(num_objects=4, image_size=16, camera_distance=3.5)
    )
    metadata["image_size"] = [16, 16]
    infer_testlib.save_run(
        model,
        "/nonexistent/dataset",
        path,
        step=STEP,
        with_checkpoint=with_checkpoint,
        metadata=metadata,
    )
    return model


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("run")
    model = _write_run(path)
    return path, model


def _export_app(*args):
    return app_testlib.run_module("tfglo.export", *args, timeout=600)


def test_app_exports_the_next_free_version_and_prints_the_serving_command(run, tmp_path):
    path, model = run
    base = tmp_path / "models"
    older = base / "tfglo" / "3"
    older.mkdir(parents=True)
    (older / "saved_model.pb").write_bytes(b"older version")
    # --noaccelerate: the exact renderer in the signatures (the run's config says accelerate).
    assert model.config.render.accelerate
    result = _export_app(
        f"--run_dir={path}", f"--export_base={base}", "--warmup_image_size=8", "--noaccelerate"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    target = base / "tfglo" / "4"
    assert (target / "saved_model.pb").is_file()
    assert (target / "variables").is_dir()
    assert (target / "assets.extra" / serving.WARMUP_FILE).is_file()
    assert (older / "saved_model.pb").read_bytes() == b"older version"
    assert sorted(p.name for p in (base / "tfglo").iterdir()) == ["3", "4"]  # no temp dir left
    command = serving.serving_command(base / "tfglo")
    assert command in result.stdout
    assert "target=/models/tfglo -e MODEL_NAME=tfglo -t tensorflow/serving" in command
    info = json.loads((target / "assets.extra" / serving.METADATA_FILE).read_text())
    assert info["step"] == STEP and info["version"] == 4 and info["model"] == "lolnerf"
    assert info["camera_distance"] == 3.5 and info["focal_factor"] == 2.0
    exact_config = dataclasses.replace(
        model.config, render=dataclasses.replace(model.config.render, accelerate=False)
    )
    assert info["model_config"] == json.loads(json.dumps(configs.to_dict(exact_config)))
    assert info["accelerate"] is False
    # The export holds the checkpoint's weights: it renders what the (exact) model renders.
    loaded = tf.saved_model.load(str(target))
    exact = lolnerf.LOLNeRF(exact_config)
    exact.build_all()
    exact.set_weights(model.get_weights())
    module = serving.ServingModule(exact, np.zeros(8), np.eye(8), serving.ExportConfig())
    assert not module.accelerate
    k = np.array([[16.0, 0, 4], [0, 16, 4], [0, 0, 1]], np.float32)
    inputs = {
        "latent_id": np.array([0, 3], np.int64),
        "intrinsics": np.stack([k, k]),
        "world_to_camera": np.stack([np.eye(3, 4, dtype=np.float32)] * 2)
        + np.array([0, 0, 0, 3.0], np.float32),
        "height": np.int32(8),
        "width": np.int32(8),
    }
    got = lib.call_signature(loaded, "render_identity", inputs)
    expected = lib.call_signature_module(module, "render_identity", inputs)
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, atol=1e-5)


def test_app_never_overwrites_a_version(run, tmp_path):
    path, _ = run
    existing = tmp_path / "tfglo" / "2"
    existing.mkdir(parents=True)
    (existing / "saved_model.pb").write_bytes(b"keep me")
    result = _export_app(f"--run_dir={path}", f"--export_base={tmp_path}", "--version=2")
    assert result.returncode != 0
    assert "version 2 already exists" in result.stderr
    assert (existing / "saved_model.pb").read_bytes() == b"keep me"
    assert [p.name for p in (tmp_path / "tfglo").iterdir()] == ["2"]


def test_app_failure_leaves_no_version(tmp_path):
    path = tmp_path / "run_without_checkpoint"
    _write_run(path, with_checkpoint=False)
    base = tmp_path / "models"
    result = _export_app(f"--run_dir={path}", f"--export_base={base}")
    assert result.returncode != 0
    assert "has no checkpoint" in result.stderr
    assert not (base / "tfglo").exists() or not any((base / "tfglo").iterdir())


def test_app_requires_its_flags(tmp_path):
    result = _export_app(f"--export_base={tmp_path}")
    assert result.returncode != 0
    assert "--run_dir and --export_base are required" in result.stderr
