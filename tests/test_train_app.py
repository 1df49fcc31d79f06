"""Tests of `python -m tfglo.train`, the run directory and LOLNeRF training end to end.

A tiny synthetic dataset (3 heads, 16 x 16) and flags/smoke.cfg keep each run to seconds.
"""

import dataclasses
import json
import os
import pathlib
import random
import re
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
from tfglo.engine import run_export, trainer
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


# ----------------------------------------------------------------------------------------------
# Signals and kills: at steps the test controls (the progress lines), not at wall-clock delays.

STEP_LINE = re.compile(r"^step\s+(\d+)/(\d+)")


def _handles_sigterm(pid: int) -> bool:
    """Whether process `pid` has a SIGTERM handler installed (/proc's SigCgt mask)."""
    try:
        status = pathlib.Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)))


def _signal_at_step(args, sig, at_step, delay=0.0, timeout=180):
    """Starts the train app, sends `sig` `delay` s after its "step <at_step>" line (log_every=1).

    Returns (exit code, its whole output, the last step it printed before the signal).
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "tfglo.train", *args, "--log_every=1"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
    )
    lines, seen = [], -1
    deadline = time.time() + timeout
    try:
        for line in proc.stdout:
            lines.append(line)
            match = STEP_LINE.match(line)
            if match:
                seen = int(match.group(1))
                if seen >= at_step:
                    break
            if time.time() > deadline:
                break
        assert seen >= at_step, "".join(lines)[-3000:]
        time.sleep(delay)
        proc.send_signal(sig)
        rest = proc.communicate(timeout=120)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, "".join(lines) + rest, seen


def _weights_finite(run) -> bool:
    loaded = run_dir_lib.load_run(run)
    return all(np.all(np.isfinite(v.numpy())) for v in loaded.model.weights)


def test_app_sigterm_during_startup_exits_130(dataset, tmp_path):
    # The handler is installed before TensorFlow is imported: a SIGTERM during the imports
    # (once the handler is there, seen in /proc) ends with 130, not -15, and writes nothing.
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tfglo.train", f"--flagfile={SMOKE}"]
        + [f"--dataset={dataset}", f"--run_dir={run}"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    deadline = time.time() + 30
    while not _handles_sigterm(proc.pid) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out[-2000:] + err[-2000:]
    assert "interrupted" in err
    assert not (run / "checkpoints").exists()


def test_app_kill_leftovers_resume_to_the_same_step(dataset, tmp_path):
    """A SIGKILL and every leftover of a killed save (temporary checkpoint directory, orphan
    data file, truncated index) are recovered from: the resumed run ends at the requested step
    with finite weights, the leftovers removed. (SIGTERM mid-run: the slow test below and
    tests/test_trainer.py's should_stop test.)"""
    run = tmp_path / "run"
    args = (
        f"--flagfile={SMOKE}",
        f"--dataset={dataset}",
        f"--run_dir={run}",
        "--num_steps=1000",
        "--checkpoint_every=2",
        "--image_summary_every=0",
    )
    code, output, _ = _signal_at_step(args, signal.SIGKILL, 3)
    assert code == -signal.SIGKILL, output[-3000:]

    ckpts = run / "checkpoints"
    newest = run_dir_lib.latest_checkpoint(run)
    newest_step = trainer.checkpoint_step(newest)
    # What a kill during a save leaves: the save's temporary directory, data without an index,
    # and (not from TensorFlow's atomic rename, but a disk that lost its tail) a cut index.
    (ckpts / "ckpt-990_temp").mkdir()
    (ckpts / "ckpt-990_temp" / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"x" * 64)
    (ckpts / "ckpt-995.data-00000-of-00001").write_bytes(b"x" * 64)
    index = (ckpts / "checkpoint").read_bytes()
    (ckpts / "checkpoint").write_bytes(index[: len(index) // 2 + 3])
    # Readers find the newest complete checkpoint anyway (tf.train.latest_checkpoint: None).
    assert run_dir_lib.latest_checkpoint(run) == newest

    target = newest_step + 3
    done = _run_app(*args[:3], f"--num_steps={target}", "--image_summary_every=0")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"resumed from {newest} at step {newest_step}" in done.stdout
    assert f"step {target}/{target}" in done.stdout
    assert not (ckpts / "ckpt-990_temp").exists()
    assert not (ckpts / "ckpt-995.data-00000-of-00001").exists()
    assert run_dir_lib.latest_checkpoint(run).endswith(f"ckpt-{target}")
    assert run_dir_lib.load_run(run).step == target
    assert _weights_finite(run)


def test_prepare_and_export_leftovers_of_killed_processes_are_cleaned(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    pid = dead.pid  # exited and reaped: no such process
    config = synthetic.SyntheticConfig(num_objects=2, image_size=8, eval_views_per_object=0)
    # A half-written dataset (a prepare killed while writing shards): removed, then written.
    out = tmp_path / "data"
    half = tmp_path / f".data.tmp-{pid}"
    half.mkdir()
    (half / "records-00000.tfrecord").write_bytes(b"partial")
    with dataset_dir.DatasetWriter(out) as writer:
        writer.metadata.update(synthetic.dataset_metadata(config))
        for record in synthetic.generate(config):
            writer.write(record)
    assert not half.exists() and dataset_dir.read_metadata(out)["num_images"] == 2
    # A replace killed between its two renames: the old (complete) dataset comes back.
    other = tmp_path / "other"
    out.rename(tmp_path / f".other.old-{pid}")
    (tmp_path / f".other.tmp-{pid}").mkdir()
    assert len(dataset_dir.recover_leftovers(other)) == 2
    assert dataset_dir.read_metadata(other)["num_images"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other"]
    # A live process's directory (another prepare at work) is left alone.
    live = tmp_path / f".other.tmp-{os.getppid()}"
    live.mkdir()
    assert dataset_dir.recover_leftovers(other) == [] and live.exists()

    # Export: a killed export's temporary directory goes once stale; versions are untouched.
    model_dir = tmp_path / "export" / "tfglo"
    (model_dir / "1").mkdir(parents=True)
    stale, young = model_dir / ".tmp-2-abc", model_dir / ".tmp-3-def"
    for path in (stale, young):
        (path / "variables").mkdir(parents=True)
        (path / "variables" / "variables.index").write_bytes(b"half")
    old = time.time() - run_export.STALE_SECONDS - 60
    for path in (stale, stale / "variables", stale / "variables" / "variables.index"):
        os.utime(path, (old, old))
    assert run_export.remove_stale_exports(model_dir) == [".tmp-2-abc"]
    assert sorted(p.name for p in model_dir.iterdir()) == [".tmp-3-def", "1"]


# Runs `python -m tfglo.train` with the CPU split into logical devices first (MirroredStrategy
# then has one replica per device), as the app itself would run on a machine with 2 GPUs.
_ON_DEVICES = """
import runpy, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * {n})
sys.argv = ["tfglo.train", *sys.argv[1:]]
runpy.run_module("tfglo.train", run_name="__main__")
"""


def _run_app_on_devices(devices, *args, timeout=300):
    return subprocess.run(
        [sys.executable, "-c", _ON_DEVICES.format(n=devices), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(),
    )


def _poisoned_dataset(path):
    """The fixture's heads with a NaN in every camera, written with the real record writer."""
    config = synthetic.SyntheticConfig(num_objects=3, image_size=16, eval_views_per_object=1)
    with dataset_dir.DatasetWriter(path) as writer:
        writer.metadata.update(synthetic.dataset_metadata(config))
        for record in synthetic.generate(config):
            world_to_camera = np.array(record.world_to_camera, np.float32)
            world_to_camera[0, 3] = np.nan
            writer.write(dataclasses.replace(record, world_to_camera=world_to_camera))
    return path


def _train_lines(stderr: str) -> list[str]:
    # The app's own lines (TensorFlow's C++ start-up chatter aside).
    return [line for line in stderr.splitlines() if line.startswith("train:")]


def test_app_non_finite_loss_exits_1_with_one_line_and_a_finite_checkpoint(dataset, tmp_path):
    """A checkpoint saved on 2 replicas resumes on 1; a poisoned dataset (NaN cameras, real
    records) then stops `tfglo.train` with exit 1 and one line naming the last good checkpoint,
    which holds finite weights; nothing is saved for the bad step."""
    run = tmp_path / "run"
    common = (f"--flagfile={SMOKE}", f"--run_dir={run}", "--image_summary_every=0")
    clean = _run_app_on_devices(
        2, *common, f"--dataset={dataset}", "--num_steps=2", "--checkpoint_every=1"
    )
    assert clean.returncode == 0, clean.stdout[-3000:] + clean.stderr[-3000:]
    assert "2 replica(s)" in clean.stdout

    poisoned = _poisoned_dataset(tmp_path / "poisoned")
    proc = _run_app(*common, f"--dataset={poisoned}", "--num_steps=6", "--checkpoint_every=1")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "1 replica(s)" in proc.stdout and "at step 2" in proc.stdout  # 2 replicas -> 1
    assert "step 2/6" not in proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("train: stopped: non-finite loss at step 3")
    assert "ckpt-2 (step 2)" in lines[0]
    assert run_dir_lib.load_run(run).step == 2 and _weights_finite(run)


@pytest.mark.slow  # ~1 minute on 2 cores (one app run on 2 replicas)
def test_app_non_finite_loss_on_two_replicas(dataset, tmp_path):
    run = tmp_path / "run"
    poisoned = _poisoned_dataset(tmp_path / "poisoned")
    proc = _run_app_on_devices(
        2,
        f"--flagfile={SMOKE}",
        f"--run_dir={run}",
        f"--dataset={poisoned}",
        "--image_summary_every=0",
    )
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 replica(s)" in proc.stdout
    (line,) = _train_lines(proc.stderr)
    assert line.startswith("train: stopped: non-finite loss at step 1")
    assert "no checkpoint had been saved yet" in line
    assert not list((run / "checkpoints").glob("*.index"))


@pytest.mark.slow  # ~1 minute on 2 cores (three app runs of a few hundred steps)
def test_app_sigterm_saves_and_sigkill_at_a_random_moment_resumes(dataset, tmp_path):
    # Signals at steps the test picks (seeded), so the outcome does not depend on machine speed.
    rng = random.Random(14)
    run = tmp_path / "run"
    args = (
        f"--flagfile={SMOKE}",
        f"--dataset={dataset}",
        f"--run_dir={run}",
        "--num_steps=100000",
        "--checkpoint_every=3",
        "--image_summary_every=0",
    )
    # SIGTERM: a checkpoint of the step it stopped at, off the checkpoint_every grid.
    code, output, seen = _signal_at_step(args, signal.SIGTERM, rng.randint(20, 40))
    assert code == 130, output[-3000:]
    stopped = run_dir_lib.load_run(run).step
    assert seen <= stopped < 100000
    # SIGKILL a seeded moment after a step line (every third step saves: often mid-save).
    steps = []
    for _ in range(3):
        delay = rng.uniform(0.0, 0.1)
        code, output, _ = _signal_at_step(args, signal.SIGKILL, stopped + 5, delay)
        assert code == -signal.SIGKILL, output[-3000:]
        assert f"at step {stopped}" in output, output[-3000:]
        stopped = run_dir_lib.load_run(run).step
        steps.append(stopped)
    target = stopped + 10
    done = _run_app(*args[:3], f"--num_steps={target}", "--image_summary_every=0")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "resumed from" in done.stdout
    assert f"step {target}/{target}" in done.stdout
    assert run_dir_lib.load_run(run).step == target
    assert _weights_finite(run)
    assert not list((run / "checkpoints").glob("*_temp"))
