"""Tests of `python -m tfglo.train`, the run directory and LOLNeRF training end to end.

A tiny synthetic dataset (3 heads, 16 x 16) and flags/smoke.cfg keep each run to seconds.
"""

import dataclasses
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from absl import flags
from absl.testing import flagsaver, parameterized

from tfglo import train as train_app
from tfglo.data import dataset_dir
from tfglo.data.synthetic import heads as synthetic
from tfglo.engine import family as family_lib
from tfglo.engine import run_dir as run_dir_lib
from tfglo.lolnerf import config as model_config_lib
from tfglo.lolnerf import family as lolnerf_family

REPO = pathlib.Path(__file__).resolve().parent.parent
SMOKE = REPO / "flags" / "smoke.cfg"
FLAGFILES = ("smoke", "demo", "lego", "celeba_hq", "ffhq", "afhq")


def _env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env.pop("TF_CONFIG", None)
    return env


def _run_app(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "tfglo.train", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(),
    )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "synthetic"
    config = synthetic.SyntheticConfig(num_objects=3, image_size=16, eval_views_per_object=1)
    with dataset_dir.DatasetWriter(path) as writer:
        writer.metadata.update(synthetic.dataset_metadata(config))
        for record in synthetic.generate(config):
            writer.write(record)
    return path


def _build_configs(values, metadata):
    """(model, loss, train, data) as the app builds them for LOLNeRF (its default --model)."""
    built = train_app.FAMILIES[values["model"]].configs_from_flags(values, metadata)
    return built["model"], built["loss"], built["train"], built["data"]


def _smoke_configs(dataset_path, **overrides):
    """Configs as the app builds them from flags/smoke.cfg (+ overrides)."""
    argv = ["train", f"--flagfile={SMOKE}"] + [f"--{k}={v}" for k, v in overrides.items()]
    with flagsaver.flagsaver():
        train_app.FLAGS(argv)
        values = train_app.flag_values()
        train_app.FLAGS.unparse_flags()
    return _build_configs(values, dataset_dir.read_metadata(dataset_path)), values


def _probe_batch():
    rng = np.random.default_rng(0)
    origins = np.tile([[0.0, 0.0, -4.5]], (32, 1)).astype(np.float32)
    directions = rng.normal([0.0, 0.0, 1.0], 0.1, (32, 3)).astype(np.float32)
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    return {
        "origins": origins,
        "directions": directions,
        "latent_id": (np.arange(32) % 3).astype(np.int64),
    }


class FlagsTest(parameterized.TestCase):
    def test_flagfile_then_command_line_override(self):
        argv = ["train", f"--flagfile={SMOKE}", "--num_steps=3", "--fg_width=48"]
        with flagsaver.flagsaver():
            train_app.FLAGS(argv)
            values = train_app.flag_values()
            train_app.FLAGS.unparse_flags()
        self.assertEqual(values["num_steps"], 3)  # smoke.cfg says 10
        self.assertEqual(values["fg_width"], 48)  # smoke.cfg says 32
        self.assertEqual(values["fg_depth"], 2)  # from smoke.cfg (default 8)
        self.assertEqual(values["num_coarse"], 8)

    @parameterized.parameters(*FLAGFILES)
    def test_every_flagfile_parses_into_valid_configs(self, name):
        path = REPO / "flags" / f"{name}.cfg"
        self.assertTrue(path.is_file(), f"{path} is missing")
        text = path.read_text()
        self.assertIn("#", text, "flagfiles explain their settings in comments")
        with flagsaver.flagsaver():
            train_app.FLAGS(["train", f"--flagfile={path}"])
            values = train_app.flag_values()
            train_app.FLAGS.unparse_flags()
        # The in-process reader agrees with absl's parser.
        self.assertEqual(train_app.flagfile_values(path), values)
        model, loss, train, data = _build_configs(values, {"num_latents": 10})
        self.assertEqual(model.num_latents, 10)
        if name in ("celeba_hq", "ffhq", "afhq"):
            # The paper's setting: 8 x 256 foreground, ~64 + 64 samples, both priors on.
            self.assertEqual((model.foreground.depth, model.foreground.width), (8, 256))
            self.assertGreaterEqual(model.render.num_coarse + model.render.num_fine, 128)
            self.assertGreater(loss.mask_weight, 0)
            self.assertGreater(loss.hard_surface_weight, 0)

    def test_model_flag_names_the_registered_families(self):
        flag = train_app.FLAG_SPEC.flags["model"]
        self.assertEqual(flag.default, "lolnerf")
        self.assertEqual(set(flag.enum_values), set(family_lib.family_names()))
        self.assertEqual(set(train_app.FAMILIES), set(flag.enum_values))
        with flagsaver.flagsaver():
            with pytest.raises(flags.IllegalFlagValueError):
                train_app.FLAGS(["train", "--model=nerf"])
            train_app.FLAGS.unparse_flags()
        # Every LOLNeRF flag is a flag of the app, and config.json's flags are its and the app's.
        names = train_app.FLAG_SPEC.names_of("lolnerf")
        self.assertEqual(names[:3], ["model", "dataset", "run_dir"])
        self.assertLessEqual(set(lolnerf_family.FLAG_SPEC.names), set(names))

    def test_num_latents_smaller_than_the_dataset_is_rejected(self):
        values = dict(train_app.flag_values(), num_latents=2)
        with pytest.raises(ValueError, match="smaller than the dataset's 5"):
            _build_configs(values, {"num_latents": 5})


def test_flagfile_values_overrides_and_errors(tmp_path):
    values = train_app.flagfile_values(SMOKE, num_steps=3, background=False)
    assert (values["num_steps"], values["background"]) == (3, False)
    assert values["fg_width"] == 32
    with pytest.raises(ValueError, match="unknown tfglo.train flag 'steps'"):
        train_app.flagfile_values(SMOKE, steps=3)
    bad = tmp_path / "bad.cfg"
    bad.write_text("# x\n--fg_width=wide\n")
    with pytest.raises(ValueError, match="bad.cfg:2: bad value for --fg_width"):
        train_app.flagfile_values(bad)
    bad.write_text("--fg_wdth=3\n")
    with pytest.raises(ValueError, match="bad.cfg:1: unknown tfglo.train flag --fg_wdth"):
        train_app.flagfile_values(bad)


def test_app_trains_writes_config_and_resumes(dataset, tmp_path):
    run = tmp_path / "run"
    proc = _run_app(
        f"--flagfile={SMOKE}",
        f"--dataset={dataset}",
        f"--run_dir={run}",
        "--num_steps=4",
        "--checkpoint_every=2",
        "--image_summary_every=0",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "step 4/4" in proc.stdout and "rays/s" in proc.stdout and "psnr" in proc.stdout
    # The start line names the family and the images it trains on and holds out.
    assert f"training LOLNeRF on {dataset} (3 training images, 3 held out) for 4 steps" in (
        proc.stdout
    )
    values = json.loads((run / "config.json").read_text())
    assert values["model"] == "lolnerf" and values["version"] == run_dir_lib.CONFIG_VERSION
    assert values["configs"]["train"]["num_steps"] == 4  # the command line beat the flagfile
    assert values["configs"]["model"]["foreground"]["width"] == 32  # from the flagfile
    assert values["configs"]["model"]["num_latents"] == 3  # from dataset.json
    assert values["dataset_metadata"]["num_latents"] == 3
    assert "images" not in values["dataset_metadata"]
    assert values["flags"]["num_steps"] == 4 and values["flags"]["model"] == "lolnerf"
    assert list(values["flags"]) == train_app.FLAG_SPEC.names_of("lolnerf")  # its flags only
    assert values["dataset_dir"] == str(dataset)
    assert sorted(p.name for p in (run / "checkpoints").glob("*.index")) == [
        "ckpt-2.index",
        "ckpt-4.index",
    ]
    # Same command with more steps: resumes at 4.
    proc = _run_app(
        f"--flagfile={SMOKE}",
        f"--dataset={dataset}",
        f"--run_dir={run}",
        "--num_steps=6",
        "--image_summary_every=0",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "at step 4" in proc.stdout and "step 6/6" in proc.stdout
    # Another model in the same run directory is refused, with the differing field named.
    proc = _run_app(
        f"--flagfile={SMOKE}", f"--dataset={dataset}", f"--run_dir={run}", "--fg_width=64"
    )
    assert proc.returncode == 1
    assert "another model configuration" in proc.stderr
    assert "model.foreground.width: 32 -> 64" in proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--run_dir=/tmp/x"], "--dataset and --run_dir are required"),
        (["--dataset=/nonexistent/data", "--run_dir=/tmp/x"], "does not exist"),
    ],
)
def test_app_rejects_bad_input(args, message):
    proc = _run_app(f"--flagfile={SMOKE}", *args)
    assert proc.returncode == 1
    assert message in proc.stderr


def test_load_run_rebuilds_the_trained_model_and_summaries(dataset, tmp_path):
    import tensorflow as tf

    (model_config, loss_config, train_config, data_config), values = _smoke_configs(
        dataset, num_steps=3, checkpoint_every=3, image_summary_every=3, log_every=1
    )
    run = tmp_path / "run"
    metadata = dataset_dir.read_metadata(dataset)
    configs = {"model": model_config, "loss": loss_config, "train": train_config}
    configs["data"] = data_config
    config = run_dir_lib.make_config("lolnerf", configs, dataset, metadata, values)
    run_dir_lib.write_config(run, config)
    trained = lolnerf_family.lolnerf_trainer(
        dataset, run, model_config, loss_config, train_config, data_config
    )
    trained.train()

    loaded = run_dir_lib.load_run(run)
    assert loaded.step == 3 and loaded.checkpoint.endswith("ckpt-3")
    assert loaded.model_config == model_config and loaded.train_config == train_config
    assert loaded.data_config == data_config and loaded.loss_config == loss_config
    assert loaded.num_latents == 3 and loaded.dataset_metadata["num_latents"] == 3
    assert loaded.dataset_dir == str(dataset)
    assert loaded.family.name == "lolnerf" and loaded.configs == configs
    batch = {k: tf.constant(v) for k, v in _probe_batch().items()}
    expected = trained.model(batch, training=False)
    actual = loaded.model(batch, training=False)
    for key in ("rgb", "alpha", "depth"):
        np.testing.assert_allclose(actual[key].numpy(), expected[key].numpy(), atol=1e-6)
    np.testing.assert_array_equal(
        loaded.model.latent_table.embeddings.numpy(),
        trained.model.latent_table.embeddings.numpy(),
    )

    # TensorBoard: every scalar and every LOLNeRF image summary.
    tags = {}
    for path in (run / "tensorboard").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                tags[value.tag] = value
    for tag in (
        "loss/total",
        "loss/rgb_mse",
        "loss/mask",
        "loss/hard_surface",
        "metrics/psnr",
        "learning_rate/network",
        "learning_rate/latent",
        "throughput/rays_per_second",
        "throughput/samples_per_second",
        "images/reconstruction",
        "images/novel_views",
        "images/depth",
        "images/alpha",
    ):
        assert tag in tags, f"{tag} not in {sorted(tags)}"
    # The reconstruction summary is ground truth | render: [width, height, png, png].
    width, height = (int(x) for x in tags["images/reconstruction"].tensor.string_val[:2])
    assert (width, height) == (32, 16)


def test_load_run_errors(dataset, tmp_path):
    with pytest.raises(run_dir_lib.RunDirError, match="does not exist"):
        run_dir_lib.load_run(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(run_dir_lib.RunDirError, match="config.json is missing"):
        run_dir_lib.load_run(tmp_path / "empty")

    (model_config, loss_config, train_config, data_config), _ = _smoke_configs(dataset)
    run = tmp_path / "run"
    metadata = dataset_dir.read_metadata(dataset)
    configs = {"model": model_config, "loss": loss_config, "train": train_config}
    values = run_dir_lib.make_config("lolnerf", dict(configs, data=data_config), dataset, metadata)
    run_dir_lib.write_config(run, values)
    with pytest.raises(run_dir_lib.RunDirError, match="has no checkpoint"):
        run_dir_lib.load_run(run)

    lolnerf_family.lolnerf_trainer(
        dataset, run, model_config, loss_config, train_config, data_config
    ).save()
    assert run_dir_lib.load_run(run).step == 0
    # config.json edited to another model: the checkpoint does not fit it.
    values["configs"]["model"]["foreground"]["width"] = 16
    run_dir_lib.write_config(run, values)
    with pytest.raises(run_dir_lib.RunDirError, match="does not match the model"):
        run_dir_lib.load_run(run)
    values["configs"]["model"]["foreground"]["colour"] = 1
    run_dir_lib.write_config(run, values)
    with pytest.raises(run_dir_lib.RunDirError, match="unknown ForegroundConfig keys: colour"):
        run_dir_lib.load_run(run)


def test_check_resume(dataset, tmp_path):
    (model_config, loss_config, train_config, data_config), _ = _smoke_configs(dataset)
    configs = {"model": model_config, "loss": loss_config, "train": train_config}
    configs["data"] = data_config
    run_dir_lib.check_resume(tmp_path, "lolnerf", configs)  # no config.json: a new run
    values = run_dir_lib.make_config("lolnerf", configs, dataset, {"num_latents": 3})
    run_dir_lib.write_config(tmp_path, values)
    run_dir_lib.check_resume(tmp_path, "lolnerf", configs)
    # Steps and learning rates may change on resume; the model may not.
    longer = dataclasses.replace(train_config, num_steps=99, network_learning_rate=1.0)
    run_dir_lib.check_resume(tmp_path, "lolnerf", dict(configs, train=longer))
    other = model_config_lib.ModelConfig(**{**model_config.__dict__, "latent_dim": 4})
    with pytest.raises(run_dir_lib.RunDirError, match="model.latent_dim: 8 -> 4"):
        run_dir_lib.check_resume(tmp_path, "lolnerf", dict(configs, model=other))


@pytest.mark.slow
def test_app_sigterm_saves_and_sigkill_at_a_random_moment_resumes(dataset, tmp_path):
    run = tmp_path / "run"
    args = (
        f"--flagfile={SMOKE}",
        f"--dataset={dataset}",
        f"--run_dir={run}",
        "--num_steps=400",
        "--checkpoint_every=20",
        "--log_every=100",
        "--image_summary_every=0",
    )

    def start_and_signal(sig):
        proc = subprocess.Popen(
            [sys.executable, "-m", "tfglo.train", *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=_env(),
        )
        before = run_dir_lib.latest_checkpoint(run) if run.exists() else None
        deadline = time.time() + 180
        while proc.poll() is None and time.time() < deadline:
            if (run / "checkpoints").is_dir() and run_dir_lib.latest_checkpoint(run) != before:
                break
            time.sleep(0.05)
        delay = random.uniform(0.0, 2.0)
        time.sleep(delay)
        proc.send_signal(sig)
        output = proc.communicate(timeout=120)[0]
        return proc.returncode, output, delay

    # SIGTERM: a checkpoint of the step it stopped at, off the checkpoint_every grid.
    code, output, _ = start_and_signal(signal.SIGTERM)
    assert code == 130, output[-3000:]
    stopped = run_dir_lib.load_run(run).step
    assert 0 < stopped < 400
    # SIGKILL at a random moment (maybe mid-save): the run resumes and finishes.
    code, output, delay = start_and_signal(signal.SIGKILL)
    assert code == -signal.SIGKILL, f"finished before the kill ({delay:.2f} s): {output}"
    assert f"at step {stopped}" in output
    done = _run_app(*args)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "resumed from" in done.stdout, f"no resume after a kill at +{delay:.2f} s"
    assert "step 400/400" in done.stdout
    assert run_dir_lib.load_run(run).step == 400
