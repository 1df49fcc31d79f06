"""Tests of the training loop machinery with a tiny stand-in family (tfglo/engine/trainer.py).

The stand-in family has LOLNeRF's shape (a latent table trained through `tf.gather`, so its
gradient is a sparse IndexedSlices, in a "latent" variable group beside a "network" group, each
with its own learning rate), so strategies, checkpoints, resume and summaries are tested in
seconds. Tests that
need several devices or processes run this file as a script in a subprocess (`_worker`): logical
CPU devices must be configured before TensorFlow runs any op.

Run as a script: `python tests/test_trainer.py '<json options>'` prints `RESULT <json>`.
"""

import json
import os
import pathlib
import random
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from tfglo import train as train_app

# Importing TensorFlow and tfglo creates no device yet: the worker can still split the CPU.
from tfglo.data import dataset_dir
from tfglo.data.synthetic import heads as synthetic
from tfglo.engine import family as family_lib
from tfglo.engine import trainer
from tfglo.lolnerf import benchmarks
from tfglo.lolnerf import family as lolnerf_family

HERE = pathlib.Path(__file__).resolve()
NUM_LATENTS = 8
USED_LATENTS = 6  # rows 6 and 7 never appear in a batch: they must not move
GLOBAL_BATCH = 32


# ----------------------------------------------------------------------------------------------
# The stand-in model, loss and data.


def _stand_in_model(seed: int = 0):

    class Table(keras.layers.Layer):
        def __init__(self):
            super().__init__(name="latent_table")
            self.embeddings = self.add_weight(
                shape=(NUM_LATENTS, 4),
                initializer=keras.initializers.RandomNormal(stddev=0.1, seed=seed),
                name="embeddings",
            )

        def call(self, ids):
            return tf.gather(self.embeddings, ids)

    class StandIn(keras.Model):
        def __init__(self):
            super().__init__()
            self.latent_table = Table()
            self.hidden = keras.layers.Dense(
                16, "relu", kernel_initializer=keras.initializers.GlorotUniform(seed + 1)
            )
            self.head = keras.layers.Dense(
                7, kernel_initializer=keras.initializers.GlorotUniform(seed + 2)
            )

        def call(self, batch, training=False):
            z = self.latent_table(batch["latent_id"])
            h = self.head(self.hidden(tf.concat([batch["origins"], z], -1)))
            return {"rgb": tf.sigmoid(h[:, :3]), "weights": tf.sigmoid(h[:, 3:])}

        def build_all(self):
            self({"origins": tf.zeros([1, 3]), "latent_id": tf.zeros([1], tf.int64)})

        @property
        def network_variables(self):
            return self.hidden.trainable_variables + self.head.trainable_variables

        @property
        def latent_variables(self):
            return [self.latent_table.embeddings]

    return StandIn()


def _loss_fn(render, batch):

    rgb_mse = tf.reduce_mean(tf.square(render["rgb"] - batch["rgb"]))
    hard = tf.reduce_mean(render["weights"] * (1.0 - render["weights"]))
    total = rgb_mse + 0.01 * hard
    return total, {"rgb_mse": rgb_mse, "hard_surface": hard, "psnr": -rgb_mse, "total": total}


def _dataset_fn(nan_from_step=None):
    """Deterministic ray batches; the global batch of step k is the same for any replica count."""

    def dataset_fn(context, start_step):
        per_replica = context.get_per_replica_batch_size(GLOBAL_BATCH)
        origins = tf.random.stateless_uniform([512, 3], [1, 2], -1.0, 1.0)
        ids = tf.range(512, dtype=tf.int64) % USED_LATENTS
        shade = tf.cast(ids, tf.float32)[:, None] / USED_LATENTS
        rgb = tf.sigmoid(origins * [1.0, -2.0, 0.5] + shade)
        ds = tf.data.Dataset.from_tensor_slices({"origins": origins, "latent_id": ids, "rgb": rgb})
        ds = ds.repeat().batch(per_replica, drop_remainder=True)
        # Per-replica batches are consumed num_replicas at a time: replica r of step k gets
        # element k * R + r, in one process or spread over workers.
        replicas = context.num_replicas_in_sync
        ds = ds.enumerate().skip(start_step * replicas)
        if nan_from_step is not None:

            def poison(i, b):
                bad = i >= nan_from_step * replicas
                b = dict(b)
                b["rgb"] = tf.where(bad, tf.fill(tf.shape(b["rgb"]), np.nan), b["rgb"])
                return i, b

            ds = ds.map(poison)
        ds = ds.shard(context.num_input_pipelines, context.input_pipeline_id)
        return ds.map(lambda i, b: b)

    return dataset_fn


def _image_summary_fn(model):
    del model
    ramp = np.linspace(0.0, 1.0, 8 * 8, dtype=np.float32).reshape(1, 8, 8, 1)
    return {
        "images/reconstruction": np.repeat(np.repeat(ramp, 3, -1), 2, 0),
        "images/depth": ramp,
    }


class StandInFamily(family_lib.ModelFamily):
    """The stand-in model, loss, data and images as a model family of the engine."""

    name = "stand_in"
    sections = {"train": trainer.TrainConfig}
    checkpoint_sections = ()

    def __init__(self, nan_from_step=None, images=False, build=_stand_in_model):
        self.nan_from_step = nan_from_step
        self.images = images
        self.build = build

    def build_model(self, configs):
        model = self.build()
        model.build_all()
        return model

    def variable_groups(self, model, configs):
        train = configs["train"]

        def settings(learning_rate):
            return family_lib.OptimizerSettings(learning_rate, train.decay_rate, train.decay_steps)

        return {
            "network": family_lib.VariableGroup(
                model.network_variables, settings(train.network_learning_rate)
            ),
            "latent": family_lib.VariableGroup(
                model.latent_variables, settings(train.latent_learning_rate)
            ),
        }

    def train_loss(self, model, batch, configs, seed):
        render = model(batch, training=True)
        loss, terms = _loss_fn(render, batch)
        return loss, terms, render

    def dataset_fn(self, configs, dataset):
        return _dataset_fn(self.nan_from_step)

    def image_summaries(self, configs, dataset):
        return _image_summary_fn if self.images else None


def _trainer(run_dir, strategy=None, nan_from_step=None, images=False, **overrides):

    settings = dict(
        num_steps=6,
        network_learning_rate=1e-2,
        latent_learning_rate=5e-2,
        decay_steps=10,
        decay_rate=0.5,
        checkpoint_every=3,
        log_every=2,
        image_summary_every=3,
    )
    settings.update(overrides)
    config = trainer.TrainConfig(**settings)
    return trainer.Trainer(
        StandInFamily(nan_from_step, images),
        {"train": config},
        run_dir,
        strategy=strategy,
        log=lambda line: print(line, flush=True),
    )


def _weights(trainer_):
    # Keyed by position: Keras numbers layer names per process ("dense", "dense_1", ...).
    variables = trainer_.model.trainable_variables
    return {f"{i}:{v.name}": np.asarray(v.numpy()) for i, v in enumerate(variables)}


# ----------------------------------------------------------------------------------------------
# Subprocess worker.


def _worker(options: dict) -> None:
    devices = options.get("devices", 1)

    if devices > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * devices
        )

    strategy = trainer.make_strategy(options.get("strategy", "mirrored"))
    if options.get("compare_one_device"):
        # The same real-LOLNeRF steps on the 2-replica strategy and on one of its devices, in
        # one process (half the start-up cost of two processes).
        results = {}
        for name, s in (("one", tf.distribute.OneDeviceStrategy("/cpu:0")), ("two", strategy)):
            run_dir = os.path.join(options["run_dir"], name)
            t = _lolnerf_trainer(options["lolnerf_dataset"], run_dir, s)
            initial = _weights(t)
            losses = [t.train_step()["total"] for _ in range(options["steps"])]
            results[name] = {
                "replicas": s.num_replicas_in_sync,
                "losses": losses,
                "weights": {k: v.tolist() for k, v in _weights(t).items()},
                "initial_weights": {k: v.tolist() for k, v in initial.items()},
            }
        print("RESULT " + json.dumps(results), flush=True)
        return
    if options.get("lolnerf_dataset"):
        t = _lolnerf_trainer(options["lolnerf_dataset"], options["run_dir"], strategy)
    else:
        t = _trainer(
            options["run_dir"],
            strategy=strategy,
            nan_from_step=options.get("nan_from_step"),
            images=options.get("images", False),
            **options.get("config", {}),
        )
    initial = _weights(t)
    losses = []
    for _ in range(options.get("steps", 0)):
        losses.append(t.train_step()["total"])
    result = t.train() if options.get("train", False) else None
    print(
        "RESULT "
        + json.dumps(
            {
                "replicas": strategy.num_replicas_in_sync,
                "losses": losses,
                "step": int(t.step.numpy()),
                "start_step": result.start_step if result else None,
                "is_chief": t.is_chief,
                "save_dir": str(t._save_dir),
                "weights": {k: v.tolist() for k, v in _weights(t).items()},
                "initial_weights": {k: v.tolist() for k, v in initial.items()},
            }
        ),
        flush=True,
    )


def _lolnerf_trainer(dataset, run_dir, strategy):
    """The real LOLNeRF and losses at smoke size, without sampling jitter (replicas would draw
    their own), on a fixed pool of rays: the global batch of a step is the same for any replica
    count (the ray pipeline's pixel draws depend on the per-replica batch shape)."""

    values = train_app.flagfile_values(
        HERE.parent.parent / "flags" / "smoke.cfg", perturb=False, image_summary_every=0
    )
    built = lolnerf_family.FAMILY.configs_from_flags(values, dataset_dir.read_metadata(dataset))
    model_config, loss_config = built["model"], built["loss"]
    train_config, data_config = built["train"], built["data"]
    pool = benchmarks.synthetic_ray_batch(512, model_config.num_latents, seed=0)
    global_batch = data_config.images_per_batch * data_config.rays_per_image

    def dataset_fn(context, start_step):
        per_replica = context.get_per_replica_batch_size(global_batch)
        data = tf.data.Dataset.from_tensor_slices(pool).repeat()
        return data.batch(per_replica, drop_remainder=True).skip(
            start_step * context.num_replicas_in_sync
        )

    class FixedPoolLOLNeRF(lolnerf_family.LOLNeRFFamily):
        def dataset_fn(self, configs, dataset):
            return dataset_fn

    keras.utils.set_random_seed(0)
    configs = {"model": model_config, "loss": loss_config, "train": train_config}
    return trainer.Trainer(
        FixedPoolLOLNeRF(), dict(configs, data=data_config), run_dir, strategy=strategy
    )


def _write_dataset(path):

    config = synthetic.SyntheticConfig(num_objects=3, image_size=16, eval_views_per_object=1)
    with dataset_dir.DatasetWriter(path) as writer:
        writer.metadata.update(synthetic.dataset_metadata(config))
        for record in synthetic.generate(config):
            writer.write(record)
    return path


def _run_worker(options: dict, env=None, timeout=240) -> dict:
    proc = subprocess.run(
        [sys.executable, str(HERE), json.dumps(options)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return _parse_result(proc.stdout)


def _parse_result(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"no RESULT line in:\n{stdout[-3000:]}"
    return json.loads(lines[-1][len("RESULT ") :])


def _env(**extra):
    # The worker runs this file as a script: put the repository first on its path so it imports
    # this checkout's tfglo, not whichever one the environment has installed.
    path = os.pathsep.join(p for p in (str(HERE.parent.parent), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", PYTHONPATH=path)
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------------------------
# In-process tests (one CPU device).


class TrainConfigTest(parameterized.TestCase):
    @parameterized.named_parameters(
        ("steps", {"num_steps": -1}, "num_steps"),
        ("checkpoint", {"checkpoint_every": 0}, "checkpoint_every"),
        ("lr", {"network_learning_rate": 0.0}, "network_learning_rate"),
        ("strategy", {"strategy": "parameter_server"}, "unknown strategy"),
        ("summaries", {"image_summary_every": -1}, "image_summary_every"),
        ("latent_optimizer", {"latent_optimizer": "sgd"}, "unknown latent_optimizer 'sgd'"),
        ("tpu_lazy", {"strategy": "tpu"}, "does not run on TPU"),
    )
    def test_rejects(self, kwargs, message):

        with pytest.raises(ValueError, match=message):
            trainer.TrainConfig(**kwargs)

    def test_make_strategy_rejects_unknown_name(self):

        with pytest.raises(ValueError, match="unknown strategy 'horovod'"):
            trainer.make_strategy("horovod")

    def test_one_device_and_mirrored(self):

        self.assertEqual(trainer.make_strategy("one_device").num_replicas_in_sync, 1)
        mirrored = trainer.make_strategy("mirrored")
        self.assertGreaterEqual(mirrored.num_replicas_in_sync, 1)
        self.assertTrue(trainer.is_chief(mirrored))


def test_train_checkpoints_and_resumes_exactly(tmp_path):

    straight = _trainer(tmp_path / "straight")
    result = straight.train(num_steps=8)
    assert (result.start_step, result.step) == (0, 8)

    first = _trainer(tmp_path / "resumed")
    first.train(num_steps=5)  # checkpoints at 3 and (at exit) 5
    names = sorted(p.name for p in (tmp_path / "resumed" / "checkpoints").glob("*.index"))
    assert names == ["ckpt-3.index", "ckpt-5.index"]
    second = _trainer(tmp_path / "resumed")
    assert second.restored_from.endswith("ckpt-5")
    assert int(second.step.numpy()) == 5
    assert int(second.optimizers["network"].iterations.numpy()) == 5
    assert int(second.optimizers["latent"].iterations.numpy()) == 5
    result = second.train(num_steps=8)
    assert (result.start_step, result.step) == (5, 8)
    # Weights, Adam moments, schedules and the data position all continue: same as straight.
    for name, value in _weights(straight).items():
        np.testing.assert_allclose(_weights(second)[name], value, rtol=1e-5, atol=1e-6)
    rates = second.learning_rates()
    np.testing.assert_allclose(rates["network"], 1e-2 * 0.5 ** (8 / 10), rtol=1e-5)
    np.testing.assert_allclose(rates["latent"], 5e-2 * 0.5 ** (8 / 10), rtol=1e-5)
    assert trainer.checkpoint_step(result.checkpoint) == 8
    # The checkpoint's object names are the ones run directories have always held.
    roots = {name.split("/")[0] for name, _ in tf.train.list_variables(result.checkpoint)}
    assert roots == {
        "model",
        "network_optimizer",
        "latent_optimizer",
        "step",
        "save_counter",
        "_CHECKPOINTABLE_OBJECT_GRAPH",
    }


def test_resume_keeps_checkpoints_an_index_lists_without_timestamps(tmp_path):
    """An index without timestamps (written by other tools): the manager does not count its
    checkpoints as its own, and the orphan cleanup must not delete them."""
    _trainer(tmp_path).train(num_steps=3)
    index = tmp_path / "checkpoints" / "checkpoint"
    index.write_text('model_checkpoint_path: "ckpt-3"\nall_model_checkpoint_paths: "ckpt-3"\n')
    resumed = _trainer(tmp_path)
    assert int(resumed.step.numpy()) == 3
    assert (tmp_path / "checkpoints" / "ckpt-3.index").is_file()


def test_latent_rows_train_sparsely(tmp_path):
    t = _trainer(tmp_path)
    before = np.asarray(t.model.latent_table.embeddings.numpy())
    t.train(num_steps=4)
    after = np.asarray(t.model.latent_table.embeddings.numpy())
    assert np.all(np.abs(after[:USED_LATENTS] - before[:USED_LATENTS]).max(-1) > 1e-4)
    # Rows never in a batch keep their initial value (their Adam moments stay zero).
    np.testing.assert_array_equal(after[USED_LATENTS:], before[USED_LATENTS:])


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):

    t = _trainer(tmp_path, nan_from_step=4, checkpoint_every=2, num_steps=10)
    with pytest.raises(trainer.NonFiniteLossError, match=r"non-finite loss at step 5") as error:
        t.train()
    assert "ckpt-4" in str(error.value) and "(step 4)" in str(error.value)
    names = sorted(p.name for p in (tmp_path / "checkpoints").glob("*.index"))
    assert names == ["ckpt-2.index", "ckpt-4.index"]
    # The newest checkpoint holds finite weights from before the bad step.
    resumed = _trainer(tmp_path, checkpoint_every=2, num_steps=10)
    assert int(resumed.step.numpy()) == 4
    for value in _weights(resumed).values():
        assert np.all(np.isfinite(value))


def test_stop_request_and_keyboard_interrupt_save_the_step_reached(tmp_path):
    # should_stop (SIGTERM in tfglo.train) is polled between steps: the run stops at a step
    # boundary, saves that step (off the checkpoint_every grid) and raises KeyboardInterrupt.
    calls = []
    t = _trainer(tmp_path, checkpoint_every=100, num_steps=50)
    with pytest.raises(KeyboardInterrupt):
        t.train(should_stop=lambda: calls.append(1) or len(calls) > 5)
    assert int(t.step.numpy()) == 5
    assert trainer.latest_checkpoint(tmp_path / "checkpoints").endswith("ckpt-5")
    # Asked to stop before any step: nothing trained, nothing saved (no ckpt-5 rewrite, no 0).
    resumed = _trainer(tmp_path, checkpoint_every=100, num_steps=50)
    assert int(resumed.step.numpy()) == 5
    with pytest.raises(KeyboardInterrupt):
        resumed.train(should_stop=lambda: True)
    names = sorted(p.name for p in (tmp_path / "checkpoints").glob("*.index"))
    assert names == ["ckpt-5.index"]
    # A KeyboardInterrupt raised inside a step (Ctrl-C twice) saves the step reached too.
    original, count = resumed.train_step, []

    def interrupted_step():
        count.append(1)
        if len(count) == 3:
            raise KeyboardInterrupt
        return original()

    resumed.train_step = interrupted_step
    with pytest.raises(KeyboardInterrupt):
        resumed.train()
    assert trainer.latest_checkpoint(tmp_path / "checkpoints").endswith("ckpt-7")


def test_damaged_checkpoint_index_falls_back_to_the_newest_complete_checkpoint(tmp_path):
    t = _trainer(tmp_path, checkpoint_every=2, num_steps=4)
    t.train()
    ckpts = tmp_path / "checkpoints"
    index = (ckpts / "checkpoint").read_bytes()
    (ckpts / "checkpoint").write_bytes(index[:10])  # cut mid-line: tf.train says None
    assert tf.train.latest_checkpoint(str(ckpts)) is None
    assert trainer.latest_checkpoint(ckpts).endswith("ckpt-4")
    # Data without an index (a kill mid-save) is not a checkpoint; a cut .index is not either.
    (ckpts / "ckpt-6.data-00000-of-00001").write_bytes(b"x")
    (ckpts / "ckpt-8.index").write_bytes((ckpts / "ckpt-4.index").read_bytes()[:20])
    for name in ("ckpt-8.data-00000-of-00001",):
        (ckpts / name).write_bytes((ckpts / "ckpt-4.data-00000-of-00001").read_bytes())
    assert [pathlib.Path(p).name for p in trainer.complete_checkpoints(ckpts)] == [
        "ckpt-2",
        "ckpt-4",
    ]
    resumed = _trainer(tmp_path, checkpoint_every=2, num_steps=6)
    assert resumed.restored_from.endswith("ckpt-4") and int(resumed.step.numpy()) == 4
    assert tf.train.latest_checkpoint(str(ckpts)).endswith("ckpt-4")  # index rewritten
    assert not (ckpts / "ckpt-6.data-00000-of-00001").exists()
    assert resumed.train().step == 6
    # An index that names nothing complete at all is removed; the run starts afresh.
    for path in ckpts.glob("ckpt-*"):
        path.unlink()
    (ckpts / "checkpoint").write_bytes(b"model_checkpoint_path: ")
    fresh = _trainer(tmp_path, checkpoint_every=2, num_steps=6)
    assert fresh.restored_from is None and not (ckpts / "checkpoint").exists()


def test_event_files_have_scalar_and_image_tags(tmp_path):

    _trainer(tmp_path, images=True).train(num_steps=4)
    tags, steps = {}, set()
    for path in (tmp_path / "tensorboard").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(value)
                steps.add(event.step)
    for tag in (
        "loss/total",
        "loss/rgb_mse",
        "loss/hard_surface",
        "metrics/psnr",
        "learning_rate/network",
        "learning_rate/latent",
        "throughput/rays_per_second",
        "throughput/samples_per_second",
        "images/reconstruction",
        "images/depth",
    ):
        assert tag in tags, f"{tag} not in {sorted(tags)}"
    assert {2, 3, 4} <= steps
    # Images are stored as encoded PNGs: [width, height, png...] per image.
    image = tags["images/reconstruction"][0]
    assert image.metadata.plugin_data.plugin_name == "images"


def test_checkpoint_of_other_model_is_rejected(tmp_path):

    _trainer(tmp_path).train(num_steps=3)

    def other_model():
        model = _stand_in_model()
        model.extra = keras.layers.Dense(2)
        model.extra.build((None, 3))
        return model

    with pytest.raises(ValueError, match="does not match the model"):
        trainer.Trainer(
            StandInFamily(build=other_model), {"train": trainer.TrainConfig(num_steps=3)}, tmp_path
        )


# ----------------------------------------------------------------------------------------------
# Several devices and processes.


# Default suite time: the real LOLNeRF on 2 replicas
# (test_lolnerf_two_replicas_match_one_device_in_one_process) covers it.
@pytest.mark.slow
def test_two_replicas_match_one_device(tmp_path):
    options = {"steps": 3, "config": {"checkpoint_every": 100}}
    one = _run_worker(dict(options, devices=1, run_dir=str(tmp_path / "one")), env=_env())
    two = _run_worker(dict(options, devices=2, run_dir=str(tmp_path / "two")), env=_env())
    assert (one["replicas"], two["replicas"]) == (1, 2)
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=1e-5)
    assert one["losses"][2] < one["losses"][0]
    for name, value in one["weights"].items():
        np.testing.assert_allclose(two["weights"][name], value, rtol=1e-4, atol=1e-6)


def test_lolnerf_two_replicas_match_one_device_in_one_process(tmp_path):
    # The default suite's check of the real model under MirroredStrategy (2 logical CPUs): the
    # 2 steps on 2 replicas equal those on one device (all-reduced dense and IndexedSlices
    # gradients, LazyAdam on the latent table).
    dataset = str(_write_dataset(tmp_path / "data"))
    options = {"steps": 2, "lolnerf_dataset": dataset, "compare_one_device": True}
    result = _run_worker(dict(options, devices=2, run_dir=str(tmp_path / "runs")), env=_env())
    one, two = result["one"], result["two"]
    assert (one["replicas"], two["replicas"]) == (1, 2)
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=1e-4)
    for name, value in one["weights"].items():
        np.testing.assert_allclose(two["weights"][name], value, rtol=1e-3, atol=1e-5)
    (table,) = [k for k in one["weights"] if k.endswith("embeddings")]
    moved = np.abs(np.subtract(two["weights"][table], two["initial_weights"][table])).max(-1)
    assert np.all(moved > 1e-5), moved


@pytest.mark.slow  # two processes with the real model: ~1 minute on 2 cores
def test_lolnerf_on_two_replicas_matches_one_device(tmp_path):
    dataset = str(_write_dataset(tmp_path / "data"))
    options = {"steps": 3, "lolnerf_dataset": dataset}
    one = _run_worker(dict(options, devices=1, run_dir=str(tmp_path / "one")), env=_env())
    two = _run_worker(dict(options, devices=2, run_dir=str(tmp_path / "two")), env=_env())
    assert (one["replicas"], two["replicas"]) == (1, 2)
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=1e-4)
    for name, value in one["weights"].items():
        np.testing.assert_allclose(two["weights"][name], value, rtol=1e-3, atol=1e-5)
    # The latent table moved (LazyAdam on the all-reduced IndexedSlices), the same on both.
    (table,) = [k for k in one["weights"] if k.endswith("embeddings")]
    moved = np.abs(np.subtract(two["weights"][table], two["initial_weights"][table])).max(-1)
    assert np.all(moved > 1e-5), moved


# Default suite time: test_train_app's deterministic kill-and-resume test covers it.
@pytest.mark.slow
def test_sigkill_at_a_random_moment_then_resume(tmp_path):
    run_dir = tmp_path / "run"
    options = {
        "run_dir": str(run_dir),
        "train": True,
        "config": {"num_steps": 2000, "checkpoint_every": 25, "log_every": 500},
    }
    proc = subprocess.Popen(
        [sys.executable, str(HERE), json.dumps(options)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
    )
    index = run_dir / "checkpoints" / "checkpoint"
    deadline = time.time() + 120
    while not index.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    delay = random.uniform(0.0, 1.5)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    output = proc.communicate()[0]
    assert proc.returncode == -signal.SIGKILL, f"finished before the kill (delay {delay}):{output}"
    result = _run_worker(options, env=_env())
    assert result["start_step"] > 0, f"did not resume (kill after {delay:.2f} s)"
    assert result["step"] == 2000
    assert (run_dir / "checkpoints" / "ckpt-2000.index").exists()


def _start_workers(options, count=2):
    ports = [_free_port() for _ in range(count)]
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    procs = []
    for index in range(count):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        procs.append(
            subprocess.Popen(
                [sys.executable, str(HERE), json.dumps(options)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=_env(TF_CONFIG=tf_config),
            )
        )
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, out[-3000:] + err[-3000:]
            results.append(_parse_result(out))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


def test_lolnerf_on_two_workers_over_localhost(tmp_path):
    # The real model and losses under MultiWorkerMirroredStrategy: two processes joined by
    # TF_CONFIG over localhost train the smoke run (10 steps) in lockstep, to the same weights;
    # only the chief writes checkpoints.
    dataset = str(_write_dataset(tmp_path / "data"))
    run_dir = tmp_path / "run"
    options = {
        "run_dir": str(run_dir),
        "strategy": "multi_worker",
        "train": True,
        "lolnerf_dataset": dataset,
    }
    chief, other = _start_workers(options)
    assert chief["is_chief"] and not other["is_chief"]
    assert chief["replicas"] == other["replicas"] == 2
    assert chief["step"] == other["step"] == 10
    for name, value in chief["weights"].items():
        np.testing.assert_allclose(other["weights"][name], value, rtol=1e-6, atol=1e-7)
        assert np.all(np.isfinite(value))
    assert chief["weights"] != chief["initial_weights"]
    names = sorted(p.name for p in (run_dir / "checkpoints").glob("*.index"))
    assert names == ["ckpt-10.index", "ckpt-5.index"]
    assert not pathlib.Path(other["save_dir"]).exists()


@pytest.mark.slow  # two TF processes joining a gRPC cluster: ~40 s on 2 cores
def test_two_workers_train_together_and_only_the_chief_writes(tmp_path):
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    run_dir = tmp_path / "run"
    options = {
        "run_dir": str(run_dir),
        "strategy": "multi_worker",
        "train": True,
        "images": True,
        "config": {"num_steps": 4, "checkpoint_every": 2, "image_summary_every": 2},
    }
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        procs.append(
            subprocess.Popen(
                [sys.executable, str(HERE), json.dumps(options)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=_env(TF_CONFIG=tf_config),
            )
        )
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=240)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, out[-3000:] + err[-3000:]
        results.append(_parse_result(out))
    chief, other = results
    assert chief["is_chief"] and not other["is_chief"]
    assert chief["replicas"] == other["replicas"] == 2
    assert chief["step"] == other["step"] == 4
    for name, value in chief["weights"].items():
        np.testing.assert_allclose(other["weights"][name], value, rtol=1e-6, atol=1e-7)
    names = sorted(p.name for p in (run_dir / "checkpoints").glob("*.index"))
    assert names == ["ckpt-2.index", "ckpt-4.index"]
    assert len(list((run_dir / "tensorboard").glob("events.out.tfevents.*"))) == 1
    assert not pathlib.Path(other["save_dir"]).exists()
    # Same global batch as one device: the same weights.
    single = _run_worker(
        {"run_dir": str(tmp_path / "single"), "steps": 4, "config": {"checkpoint_every": 100}},
        env=_env(),
    )
    for name, value in single["weights"].items():
        np.testing.assert_allclose(chief["weights"][name], value, rtol=1e-4, atol=1e-6)


if __name__ == "__main__":
    _worker(json.loads(sys.argv[1]))
