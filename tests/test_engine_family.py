"""The engine with a second model family defined here: the interface is generic, not LOLNeRF's.

`RayColourFamily` is a tiny latent-conditioned MLP from a ray (origin, direction) and a code to a
colour, with two variable groups ("body", "head") of different learning rates and schedules, its
own config section, data, loss terms, image summary and serving module. It goes through the real
`Trainer`, run directory, registry, `load_run` and export app code, so checkpoints, resume,
TensorBoard scalars, config.json and the SavedModel are the engine's own.
"""

import dataclasses
import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from tfglo.engine import family as family_lib
from tfglo.engine import run_dir as run_dir_lib
from tfglo.engine import run_export, serving, trainer

FAMILY_NAME = "test_ray_colour"
BATCH = 32
LATENT_DIM = 2


@dataclasses.dataclass(frozen=True)
class RayColourConfig:
    """The tiny family's model and optimiser settings (its "model" section)."""

    hidden: int = 16
    num_objects: int = 3
    body_learning_rate: float = 2e-2
    head_learning_rate: float = 5e-3
    head_decay_rate: float = 0.25


class RayColourModel(keras.Model):
    def __init__(self, config: RayColourConfig):
        super().__init__()
        self.config = config
        self.codes = self.add_weight(
            shape=(config.num_objects, LATENT_DIM),
            initializer=keras.initializers.RandomNormal(stddev=0.5, seed=3),
            trainable=False,
            name="codes",
        )
        self.body = keras.layers.Dense(
            config.hidden, "relu", kernel_initializer=keras.initializers.GlorotUniform(1)
        )
        self.head = keras.layers.Dense(3, kernel_initializer=keras.initializers.GlorotUniform(2))

    def render_rays(self, origins, directions, latents, training=False):
        del training
        features = tf.concat([origins, directions, latents], -1)
        rgb = tf.sigmoid(self.head(self.body(features)))
        ones = tf.ones_like(rgb[:, 0])
        return {"rgb": rgb, "depth": 2.0 * ones, "alpha": ones}

    def call(self, batch, training=False):
        latents = tf.gather(self.codes, batch["object_id"])
        return self.render_rays(batch["origins"], batch["directions"], latents, training)

    def build_all(self):
        self(
            {
                "origins": tf.zeros([1, 3]),
                "directions": tf.zeros([1, 3]),
                "object_id": tf.zeros([1], tf.int32),
            }
        )


def _rays(count: int, seed: int):
    origins = tf.random.stateless_uniform([count, 3], [seed, 1], -1.0, 1.0)
    directions = tf.math.l2_normalize(tf.random.stateless_normal([count, 3], [seed, 2]), -1)
    object_id = tf.random.stateless_uniform([count], [seed, 3], 0, 3, dtype=tf.int32)
    shade = tf.cast(object_id, tf.float32)[:, None] / 3.0
    rgb = tf.sigmoid(2.0 * directions - origins + shade)
    return {"origins": origins, "directions": directions, "object_id": object_id, "rgb": rgb}


class RayColourFamily(family_lib.ModelFamily):
    name = FAMILY_NAME
    sections = {"model": RayColourConfig, "train": trainer.TrainConfig}

    def build_model(self, configs):
        model = RayColourModel(configs["model"])
        model.build_all()
        return model

    def variable_groups(self, model, configs):
        c, t = configs["model"], configs["train"]
        return {
            "body": family_lib.VariableGroup(
                model.body.trainable_variables,
                family_lib.OptimizerSettings(c.body_learning_rate, t.decay_rate, t.decay_steps),
            ),
            "head": family_lib.VariableGroup(
                model.head.trainable_variables,
                family_lib.OptimizerSettings(
                    c.head_learning_rate,
                    c.head_decay_rate,
                    t.decay_steps,
                    keras.optimizers.SGD,
                    {"momentum": 0.9},
                ),
            ),
        }

    def train_loss(self, model, batch, configs, seed):
        del seed
        render = model(batch, training=True)
        rgb_mse = tf.reduce_mean(tf.square(render["rgb"] - batch["rgb"]))
        brightness = tf.reduce_mean(render["rgb"])
        return rgb_mse, {"rgb_mse": rgb_mse, "brightness": brightness, "total": rgb_mse}, render

    def dataset_fn(self, configs, dataset):
        def dataset_fn(context, start_step):
            per_replica = context.get_per_replica_batch_size(BATCH)
            pool = tf.data.Dataset.from_tensor_slices(_rays(BATCH * 8, seed=7)).repeat()
            replicas = context.num_replicas_in_sync
            return pool.batch(per_replica, drop_remainder=True).skip(start_step * replicas)

        return dataset_fn

    def image_summaries(self, configs, dataset):
        def summaries(model):
            rays = _rays(16, seed=11)
            rgb = model(rays)["rgb"].numpy().reshape(1, 4, 4, 3)
            return {"images/colours": rgb}

        return summaries

    def serving_module(self, model, configs, export_config):
        return serving.RenderModule(model, LATENT_DIM, export_config, default_chunk_size=64)


@pytest.fixture
def family():
    instance = RayColourFamily()
    family_lib.register_family(FAMILY_NAME, instance)
    yield instance
    family_lib.unregister_family(FAMILY_NAME)


def _configs(**train):
    settings = dict(
        num_steps=6,
        decay_rate=0.5,
        decay_steps=10,
        checkpoint_every=3,
        log_every=2,
        image_summary_every=3,
        strategy="one_device",
    )
    settings.update(train)
    return {"model": RayColourConfig(), "train": trainer.TrainConfig(**settings)}


def _new_run(path, family, configs):
    run_dir_lib.check_resume(path, FAMILY_NAME, configs)
    run_dir_lib.write_config(path, run_dir_lib.make_config(FAMILY_NAME, configs, "", {}))
    return trainer.Trainer(FAMILY_NAME, configs, path, log=lambda line: None)


def _state(t):
    """Every model and optimiser variable by position (names are numbered per process)."""
    model = [np.asarray(v.numpy()) for v in t.model.variables]
    optimizers = {k: [np.asarray(v.numpy()) for v in o.variables] for k, o in t.optimizers.items()}
    return model, optimizers


def _scalars(run_dir):
    values = {}
    for path in sorted((run_dir / "tensorboard").glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                values.setdefault(value.tag, {})[event.step] = value
    return values


def test_registry_resolves_the_family_lazily_and_by_name(family):
    assert family_lib.get_family(FAMILY_NAME) is family
    assert FAMILY_NAME in family_lib.family_names() and "lolnerf" in family_lib.family_names()
    with pytest.raises(ValueError, match="unknown model family 'nope'"):
        family_lib.get_family("nope")
    family_lib.register_family("not_a_family", "json:dumps")
    try:
        with pytest.raises(TypeError, match="not a ModelFamily"):
            family_lib.get_family("not_a_family")
    finally:
        family_lib.unregister_family("not_a_family")


def test_second_family_trains_checkpoints_resumes_and_loads(family, tmp_path):
    configs = _configs()
    # One run straight to 6 steps, one stopped at 4 and resumed by a new Trainer.
    straight = _new_run(tmp_path / "straight", family, configs)
    straight.train()
    first = _new_run(tmp_path / "run", family, configs)
    result = first.train(num_steps=4)
    assert (result.start_step, result.step) == (0, 4)
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("*.index"))
    assert names == ["ckpt-3.index", "ckpt-4.index"]
    roots = {name.split("/")[0] for name, _ in tf.train.list_variables(result.checkpoint)}
    assert {"model", "body_optimizer", "head_optimizer", "step"} <= roots

    resumed = _new_run(tmp_path / "run", family, configs)
    assert resumed.restored_from.endswith("ckpt-4") and int(resumed.step.numpy()) == 4
    for before, after in zip(_state(first), _state(resumed), strict=True):
        if isinstance(before, dict):
            assert before.keys() == after.keys()
            before, after = sum(before.values(), []), sum(after.values(), [])
        for a, b in zip(before, after, strict=True):
            np.testing.assert_array_equal(b, a)
    assert {k: int(o.iterations.numpy()) for k, o in resumed.optimizers.items()} == {
        "body": 4,
        "head": 4,
    }
    assert isinstance(resumed.optimizers["head"], keras.optimizers.SGD)
    resumed.train()
    # Exact resume: the same weights and optimiser state as the uninterrupted run.
    straight_model, straight_opt = _state(straight)
    resumed_model, resumed_opt = _state(resumed)
    for a, b in zip(straight_model, resumed_model, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)
    for key in straight_opt:
        for a, b in zip(straight_opt[key], resumed_opt[key], strict=True):
            np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)
    # The model learned something (the loss fell) and the frozen codes did not move.
    scalars = _scalars(tmp_path / "straight")
    losses = {s: float(tf.make_ndarray(v.tensor)) for s, v in scalars["loss/total"].items()}
    assert losses[6] < losses[2]

    # Scalars of the resumed run: each loss term, and each group's own schedule.
    scalars = _scalars(tmp_path / "run")
    for tag in ("loss/total", "loss/rgb_mse", "loss/brightness", "metrics/psnr"):
        assert set(scalars[tag]) == {2, 4, 6}, (tag, sorted(scalars[tag]))
    for step in (2, 4, 6):
        body = float(tf.make_ndarray(scalars["learning_rate/body"][step].tensor))
        head = float(tf.make_ndarray(scalars["learning_rate/head"][step].tensor))
        assert math.isclose(body, 2e-2 * 0.5 ** (step / 10), rel_tol=1e-5)
        assert math.isclose(head, 5e-3 * 0.25 ** (step / 10), rel_tol=1e-5)
    assert "images/colours" in scalars and "learning_rate/network" not in scalars

    # config.json names the family; load_run rebuilds it through the registry.
    values = json.loads((tmp_path / "run" / "config.json").read_text())
    assert values["model"] == FAMILY_NAME and sorted(values["configs"]) == ["model", "train"]
    run = run_dir_lib.load_run(tmp_path / "run")
    assert run.family is family and run.configs == configs and run.step == 6
    assert run.model_config == configs["model"] and run.loss_config is None
    assert run.num_latents == 0
    for a, b in zip(resumed_model, [v.numpy() for v in run.model.variables], strict=True):
        np.testing.assert_array_equal(b, a)


def test_second_family_exports_through_the_engine_export(family, tmp_path):
    configs = _configs(num_steps=2, checkpoint_every=2, image_summary_every=0)
    t = _new_run(tmp_path / "run", family, configs)
    t.train()
    target = run_export.export_run(tmp_path / "run", tmp_path / "models", warmup_image_size=4)
    assert target == tmp_path / "models" / "tfglo" / "1"
    info = json.loads((target / serving.ASSETS_EXTRA / serving.METADATA_FILE).read_text())
    assert info["latent_dim"] == LATENT_DIM and info["step"] == 2
    assert info["model"] == FAMILY_NAME  # the export names its family
    assert sorted(info["signatures"]) == ["orbit_cameras", "render", "serving_default"]
    assert info["model_config"] == dataclasses.asdict(configs["model"])
    assert (target / serving.ASSETS_EXTRA / serving.WARMUP_FILE).is_file()
    loaded = tf.saved_model.load(str(target))
    orbit = loaded.signatures["orbit_cameras"](
        **{
            k: tf.constant(v)
            for k, v in serving.coerce_inputs(
                "orbit_cameras",
                {
                    "num_views": 2,
                    "radius": 3.0,
                    "yaw_min": -0.3,
                    "yaw_max": 0.3,
                    "pitch_min": 0.0,
                    "pitch_max": 0.0,
                    "height": 3,
                    "width": 5,
                    "focal_factor": 1.0,
                },
            ).items()
        }
    )
    latent = np.array([[0.5, -1.0], [0.0, 2.0]], np.float32)
    out = loaded.signatures["render"](
        latent=tf.constant(latent),
        intrinsics=orbit["intrinsics"],
        world_to_camera=orbit["world_to_camera"],
        height=tf.constant(3),
        width=tf.constant(5),
    )
    assert out["rgb"].shape == (2, 3, 5, 3)
    # The same colours as the trained model's own render_rays on those cameras' rays.
    from tfglo.geometry import camera

    cams = camera.Camera(
        camera.intrinsics_from_matrix(orbit["intrinsics"]), orbit["world_to_camera"]
    )
    origins, directions = camera.image_rays(cams, 3, 5)
    codes = tf.repeat(tf.constant(latent), 15, axis=0)
    expected = t.model.render_rays(
        tf.reshape(origins, [-1, 3]), tf.reshape(directions, [-1, 3]), codes
    )["rgb"]
    np.testing.assert_allclose(
        out["rgb"].numpy(), tf.reshape(expected, [2, 3, 5, 3]).numpy(), atol=1e-6
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match="latent must be"):
        loaded.signatures["render"](
            latent=tf.zeros([2, 3]),
            intrinsics=orbit["intrinsics"],
            world_to_camera=orbit["world_to_camera"],
            height=tf.constant(3),
            width=tf.constant(5),
        )


class InterfaceErrorsTest(parameterized.TestCase):
    def _trainer(self, family, configs=None):
        import tempfile

        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        return trainer.Trainer(family, configs or _configs(), tmp.name, log=lambda line: None)

    @parameterized.named_parameters(
        ("missing_section", {"model": RayColourConfig()}, r"missing \['train'\]"),
        ("unknown_section", {**_configs(), "loss": RayColourConfig()}, r"unknown \['loss'\]"),
        ("wrong_type", {**_configs(), "model": trainer.TrainConfig()}, "must be a RayColourConfig"),
    )
    def test_rejects_configs(self, configs, message):
        with pytest.raises(ValueError, match=message):
            self._trainer(RayColourFamily(), configs)

    @parameterized.named_parameters(
        ("no_groups", lambda m: {}, "declared no variable group"),
        ("bad_name", lambda m: {"my group": m.body.trainable_variables}, "not a usable"),
        ("empty", lambda m: {"body": []}, "has no variables"),
        (
            "overlap",
            lambda m: {"a": m.body.trainable_variables, "b": m.body.trainable_variables[:1]},
            "is in variable groups 'a' and 'b'",
        ),
    )
    def test_rejects_variable_groups(self, groups, message):
        class Broken(RayColourFamily):
            def variable_groups(self, model, configs):
                settings = family_lib.OptimizerSettings(1e-3)
                return {
                    name: family_lib.VariableGroup(variables, settings)
                    for name, variables in groups(model).items()
                }

        with pytest.raises(ValueError, match=message):
            self._trainer(Broken())

    @parameterized.named_parameters(
        ("learning_rate", {"learning_rate": 0.0}, "learning_rate must be > 0"),
        ("decay_rate", {"learning_rate": 1.0, "decay_rate": -1.0}, "decay_rate must be > 0"),
        ("decay_steps", {"learning_rate": 1.0, "decay_steps": 0}, "decay_steps must be >= 1"),
    )
    def test_rejects_optimizer_settings(self, kwargs, message):
        with pytest.raises(ValueError, match=message):
            family_lib.OptimizerSettings(**kwargs)

    def test_unimplemented_hooks_name_the_family(self):
        bare = family_lib.ModelFamily()
        bare.name = "bare"
        with pytest.raises(NotImplementedError, match="'bare' has no serving module"):
            bare.serving_module(None, {}, None)
        with pytest.raises(NotImplementedError, match="'bare' has no evaluation"):
            bare.evaluate(None, None)
        self.assertIsNone(bare.image_summaries({}, None))


def test_second_family_through_the_train_flags_and_launch(family, tmp_path):
    """What `python -m tfglo.train --model=<family>` does, with the test family beside LOLNeRF:
    one flag per shared training setting, the family's own flags, another family's flags
    refused, its configs from flag values, and `engine.launch.train_run` on a dataset."""
    from tfglo.data import dataset_dir
    from tfglo.data.synthetic import heads
    from tfglo.engine import launch
    from tfglo.lolnerf import family as lolnerf_family
    from tfglo.utils import configs as configs_lib

    model_flag = configs_lib.Flag(
        "model", "enum", "lolnerf", "The family.", enum_values=("lolnerf", FAMILY_NAME)
    )
    flag_set = configs_lib.FlagSet(
        "tfglo.train",
        {"lolnerf": lolnerf_family.FAMILY.flag_spec(), FAMILY_NAME: family.flag_spec()},
        extra=(model_flag,),
        selector="model",
    )
    for shared in ("num_steps", "seed", "lr_decay_rate", "strategy"):
        assert flag_set.owners[shared] == ["lolnerf", FAMILY_NAME], shared
    assert flag_set.owners["hidden"] == [FAMILY_NAME]
    assert "TrainConfig.seed" in flag_set.flags["seed"].fields
    values = flag_set.flagfile_values(
        None,
        model=FAMILY_NAME,
        hidden=8,
        num_steps=2,
        checkpoint_every=2,
        log_every=1,
        image_summary_every=0,
        strategy="one_device",
    )
    flag_set.check_unused(FAMILY_NAME, values)
    with pytest.raises(ValueError, match=f"--fg_width does not apply to --model={FAMILY_NAME}"):
        flag_set.check_unused(FAMILY_NAME, dict(values, fg_width=3))
    configs = family.configs_from_flags(values, {})
    assert configs["model"] == RayColourConfig(hidden=8)
    assert (configs["train"].num_steps, configs["train"].strategy) == (2, "one_device")

    dataset = tmp_path / "data"
    config = heads.SyntheticConfig(num_objects=3, image_size=8, eval_views_per_object=2)
    with dataset_dir.DatasetWriter(dataset) as writer:
        writer.metadata.update(heads.dataset_metadata(config))
        for record in heads.generate(config):
            writer.write(record)
    lines = []
    used = flag_set.values_of(FAMILY_NAME, values)
    result = launch.train_run(
        FAMILY_NAME, configs, dataset, tmp_path / "run", used, log=lines.append
    )
    assert result.step == 2
    start = [line for line in lines if line.startswith("training ")]
    assert start and start[0].startswith(
        f"training {FAMILY_NAME} on {dataset} (3 training images, 6 held out) for 2 steps: 1 "
        "replica(s)"
    ), lines
    written = json.loads((tmp_path / "run" / "config.json").read_text())
    assert written["model"] == FAMILY_NAME and written["flags"]["hidden"] == 8
    assert "fg_width" not in written["flags"] and written["flags"]["model"] == FAMILY_NAME
    assert run_dir_lib.load_run(tmp_path / "run").configs == configs
