"""NeRF-VAE as a model family of the engine (tfglo/nerf_vae/family.py, model.py): its configs and
flags, training a tiny model through the real trainer with checkpoints and resume, TensorBoard
tags, bad training data, and a step on 2 replicas equal to the step on one device.

Tests that need 2 logical devices run this file as a script in a subprocess (`_worker`): logical
CPU devices must be configured before TensorFlow runs any op.
Run as a script: `python tests/test_nerf_vae_family.py '<json options>'` prints `RESULT <json>`.
"""

import dataclasses
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

HERE = pathlib.Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))

import nerf_vae_testlib as lib  # noqa: E402

from tfglo.data import dataset_dir  # noqa: E402
from tfglo.engine import family as family_lib  # noqa: E402
from tfglo.engine import run_dir as run_dir_lib  # noqa: E402
from tfglo.engine import trainer  # noqa: E402


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return lib.write_shapes(tmp_path_factory.mktemp("nerf_vae") / "shapes")


# -- configuration ---------------------------------------------------------------------------


def test_registry_resolves_the_family():
    family = family_lib.get_family("nerf_vae")
    assert family.name == "nerf_vae"
    assert set(family.sections) == {"model", "loss", "train", "data"}


def test_constant_background_of_the_dataset_replaces_the_background_field(dataset):
    configs = lib.smoke_configs(dataset)
    model = configs["model"]
    assert not model.background.enabled
    assert model.render.background_color == pytest.approx((0.85, 0.85, 0.85))
    kept = lib.smoke_configs(dataset, dataset_background=False)["model"]
    assert kept.background.enabled
    # One flag sets the encoder's and the scene batches' context size.
    assert configs["data"].image_size == model.encoder.image_size == 16
    assert model.latent_dim == 8


def test_mismatched_context_size_is_refused(dataset):
    from tfglo.nerf_vae import family

    configs = lib.smoke_configs(dataset)
    configs["data"] = dataclasses.replace(configs["data"], image_size=32)
    with pytest.raises(ValueError, match="encoder takes 16 x 16"):
        family.FAMILY.check_configs(configs)


def test_flags_shared_with_lolnerf_agree():
    """A flag name both families use has one type and default (one train app defines both)."""
    from tfglo import train as train_app
    from tfglo.nerf_vae import family

    lolnerf, vae = train_app.FLAG_SPEC.flags, family.FLAG_SPEC.flags
    shared = sorted(set(lolnerf) & set(vae))
    assert {"fg_width", "num_coarse", "mask_weight", "latent_dim", "seed"} <= set(shared)
    for name in shared:
        a, b = lolnerf[name], vae[name]
        assert (a.kind, a.default, a.enum_values) == (b.kind, b.default, b.enum_values), name


def test_flagfiles_build(dataset):
    """The demo and GPU-scale flagfiles build configs (sizes agree, values accepted)."""
    from tfglo.nerf_vae import family

    for name in ("nerf_vae_demo.cfg", "nerf_vae_shapes.cfg"):
        values = family.flagfile_values(lib.REPO_ROOT / "flags" / name)
        configs = family.FAMILY.configs_from_flags(values, dataset_dir.read_metadata(dataset))
        assert configs["data"].context_views == 4, name


# -- training --------------------------------------------------------------------------------


def _weights(model):
    return [v.numpy() for v in model.trainable_variables]


def test_trains_checkpoints_and_resumes(dataset, tmp_path):
    run = tmp_path / "run"
    configs = lib.smoke_configs(dataset, num_steps=4, checkpoint_every=2, image_summary_every=4)
    first = lib.make_trainer(dataset, run, configs)
    assert set(first.optimizers) == {"encoder", "decoder"}
    result = first.train()
    assert result.step == 4
    for key in ("elbo", "reconstruction", "kl", "kl_active_dims", "posterior_std", "total"):
        assert np.isfinite(result.metrics[key]), key
    # The KL weight rises over 5 steps: 0, 0.2, 0.4, 0.6 at steps 0-3, logged as their mean.
    assert result.metrics["kl_weight"] == pytest.approx(0.3)
    saved = _weights(first.model)

    more = dataclasses.replace(configs["train"], num_steps=6)
    second = lib.make_trainer(dataset, run, dict(configs, train=more))
    assert second.restored_from.endswith("ckpt-4")
    assert int(second.step.numpy()) == 4
    for a, b in zip(saved, _weights(second.model)):
        np.testing.assert_array_equal(a, b)
    encoder_moments = [v.numpy() for v in second.optimizers["encoder"].variables]
    assert int(second.optimizers["encoder"].iterations.numpy()) == 4
    assert any(np.abs(m).sum() > 0 for m in encoder_moments[1:])
    assert second.train().step == 6

    loaded = run_dir_lib.load_run(run)
    assert loaded.family_name == "nerf_vae" and loaded.step == 6
    tags = set()
    for path in (run / trainer.TENSORBOARD_DIR).glob("events.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            tags |= {value.tag for value in event.summary.value}
    for tag in (
        "loss/elbo",
        "loss/kl",
        "loss/kl_active_dims",
        "loss/posterior_std",
        "loss/reconstruction",
        "metrics/psnr",
        "learning_rate/encoder",
        "images/encode_novel_views",
        "images/prior_samples",
    ):
        assert tag in tags, (tag, sorted(tags))


def test_another_model_configuration_cannot_resume(dataset, tmp_path):
    run = tmp_path / "run"
    lib.make_trainer(dataset, run, lib.smoke_configs(dataset, num_steps=1)).train()
    with pytest.raises(run_dir_lib.RunDirError, match="latent_dim"):
        lib.make_trainer(dataset, run, lib.smoke_configs(dataset, latent_dim=4))


def test_single_view_dataset_is_refused_at_train_time(tmp_path, dataset):
    single = lib.write_shapes(tmp_path / "single", num_objects=3, train_views=1, eval_views=1)
    configs = lib.smoke_configs(dataset)
    with pytest.raises(dataset_dir.DatasetError, match="single-view dataset"):
        lib.make_trainer(single, tmp_path / "run", configs)


def test_objects_with_too_few_views_are_named(tmp_path, dataset):
    configs = lib.smoke_configs(dataset, context_views=3, novel_view_targets=1)
    with pytest.raises(dataset_dir.DatasetError, match="object 0 has 3"):
        lib.make_trainer(dataset, tmp_path / "run", configs)


def test_training_latent_noise_is_keyed_per_scene():
    from tfglo.nerf_vae import model as model_lib

    noise = model_lib.scene_noise(tf.constant([3, 5, 3], tf.int64), 0, 7, 4).numpy()
    np.testing.assert_array_equal(noise[0], noise[2])  # the same scene, the same draw
    assert not np.allclose(noise[0], noise[1])
    other = model_lib.scene_noise(tf.constant([5], tf.int64), 0, 7, 4).numpy()
    np.testing.assert_array_equal(other[0], noise[1])  # whatever else is in the batch


# -- 2 replicas ------------------------------------------------------------------------------


def _worker(options: dict) -> None:
    devices = options["devices"]
    if devices > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * devices
        )
    strategy = trainer.make_strategy("mirrored")
    # No sampling jitter: each replica draws its own (the latent noise is keyed per scene).
    configs = lib.smoke_configs(
        options["dataset"], perturb=False, image_summary_every=0, novel_view_targets=0
    )
    t = lib.make_trainer(options["dataset"], options["run_dir"], configs, strategy=strategy)
    losses = [t.train_step()["total"] for _ in range(options["steps"])]
    print(
        "RESULT "
        + json.dumps(
            {
                "replicas": strategy.num_replicas_in_sync,
                "losses": losses,
                "weights": [w.tolist() for w in _weights(t.model)],
            }
        ),
        flush=True,
    )


def _run_worker(options: dict) -> dict:
    path = os.pathsep.join(p for p in (str(HERE.parent.parent), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", PYTHONPATH=path)
    env.pop("TF_CONFIG", None)
    proc = subprocess.run(
        [sys.executable, str(HERE), json.dumps(options)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, proc.stdout[-3000:]
    return json.loads(lines[-1][len("RESULT ") :])


# Default suite time: the encoder's 2-replica test (group and synced batch norm) runs by default.
@pytest.mark.slow
def test_two_replicas_match_one_device(dataset, tmp_path):
    options = {"dataset": dataset, "steps": 2}
    one = _run_worker(dict(options, devices=1, run_dir=str(tmp_path / "one")))
    two = _run_worker(dict(options, devices=2, run_dir=str(tmp_path / "two")))
    assert (one["replicas"], two["replicas"]) == (1, 2)
    np.testing.assert_allclose(one["losses"], two["losses"], rtol=1e-5)
    for a, b in zip(one["weights"], two["weights"]):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-6, rtol=1e-4)


if __name__ == "__main__":
    _worker(json.loads(sys.argv[1]))
