"""The run directory across versions: config.json version 1 (before model families) still loads.

tests/testdata/lolnerf_run_v1 is a run directory written by tfglo before model families (commit
b4351ea: `python -m tfglo.train --flagfile=flags/smoke.cfg --num_steps=6 --checkpoint_every=3` on
a 3-head synthetic set), only its newest checkpoint kept: config.json version 1 (the LOLNeRF
sections at the top level, "model" being the model config) and ckpt-6 with the checkpoint
objects `model`, `network_optimizer`, `latent_optimizer`, `step`. expected_render.json holds what
that code rendered from it for four probe rays.
"""

import json
import pathlib
import shutil
import tempfile

import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from tfglo.engine import run_dir as run_dir_lib
from tfglo.engine import trainer
from tfglo.lolnerf import config as model_config_lib
from tfglo.lolnerf import family as lolnerf_family
from tfglo.utils import configs as configs_lib

V1_RUN = pathlib.Path(__file__).resolve().parent / "testdata" / "lolnerf_run_v1"


@pytest.fixture
def v1_run(tmp_path):
    """A copy of the version-1 run directory (the trainer may tidy a run directory)."""
    return pathlib.Path(shutil.copytree(V1_RUN, tmp_path / "run"))


def test_v1_config_reads_as_a_lolnerf_run():
    raw = json.loads((V1_RUN / "config.json").read_text())
    assert raw["version"] == 1 and isinstance(raw["model"], dict)  # really the old layout
    values = run_dir_lib.read_config(V1_RUN)
    assert values["model"] == "lolnerf"
    assert values["configs"] == {k: raw[k] for k in ("model", "loss", "train", "data")}
    assert values["dataset_metadata"] == raw["dataset_metadata"]
    configs = run_dir_lib.parse_configs(values)
    assert configs["model"] == configs_lib.from_dict(model_config_lib.ModelConfig, raw["model"])
    assert configs["train"].num_steps == 6 and configs["model"].num_latents == 3


def test_v1_run_loads_and_renders_what_the_old_code_rendered():
    run = run_dir_lib.load_run(V1_RUN)
    assert run.family.name == "lolnerf" and run.family is lolnerf_family.FAMILY
    assert run.step == 6 and run.checkpoint.endswith("ckpt-6")
    assert run.num_latents == 3 and run.model_config.latent_dim == 8
    assert run.loss_config.mask_weight == 0.1 and run.train_config.checkpoint_every == 3
    assert run.data_config.images_per_batch == 4
    assert run.metadata == run.dataset_metadata and run.metadata["num_latents"] == 3
    # The table holds the checkpoint's value (saved under the first path to it in the object
    # graph: the latent optimiser's list of its variables).
    table = tf.train.load_variable(
        run.checkpoint, "latent_optimizer/_trainable_variables/0/.ATTRIBUTES/VARIABLE_VALUE"
    )
    np.testing.assert_array_equal(run.model.latent_table.embeddings.numpy(), table)
    expected = json.loads((V1_RUN / "expected_render.json").read_text())
    batch = {
        "origins": tf.constant(expected["origins"], tf.float32),
        "directions": tf.constant(expected["directions"], tf.float32),
        "latent_id": tf.constant(expected["latent_id"], tf.int64),
    }
    out = run.model(batch, training=False)
    for key in ("rgb", "alpha", "depth"):
        np.testing.assert_allclose(out[key].numpy(), expected[key], atol=1e-5, err_msg=key)


def test_v1_run_resumes_in_the_trainer_with_its_optimiser_state(v1_run):
    configs = run_dir_lib.parse_configs(run_dir_lib.read_config(v1_run))
    run_dir_lib.check_resume(v1_run, "lolnerf", configs)  # same model: may resume
    resumed = trainer.Trainer(lolnerf_family.FAMILY, configs, v1_run)
    assert resumed.restored_from.endswith("ckpt-6") and int(resumed.step.numpy()) == 6
    assert {k: int(o.iterations.numpy()) for k, o in resumed.optimizers.items()} == {
        "network": 6,
        "latent": 6,
    }
    # Adam's moments of the latent table came back too (not zeros).
    checkpoint = str(v1_run / "checkpoints" / "ckpt-6")
    moment = tf.train.load_variable(
        checkpoint, "latent_optimizer/_variables/1/.ATTRIBUTES/VARIABLE_VALUE"
    )
    assert np.abs(moment).max() > 0
    np.testing.assert_array_equal(resumed.optimizers["latent"].variables[1].numpy(), moment)


def test_a_new_config_round_trips(tmp_path):
    family = lolnerf_family.FAMILY
    configs = family.default_configs()
    values = run_dir_lib.make_config(family, configs, "/data", {"images": [1, 2], "num_latents": 1})
    assert values["version"] == run_dir_lib.CONFIG_VERSION == 2
    assert values["model"] == "lolnerf" and sorted(values["configs"]) == sorted(family.sections)
    assert values["dataset_metadata"] == {"num_latents": 1, "num_image_entries": 2}
    run_dir_lib.write_config(tmp_path, values)
    read = run_dir_lib.read_config(tmp_path)
    assert run_dir_lib.parse_configs(read) == configs


class ConfigErrorsTest(parameterized.TestCase):
    def _tmp(self) -> str:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        return tmp.name

    def _write(self, tmp_path, values):
        path = pathlib.Path(tmp_path)
        (path / "config.json").write_text(json.dumps(values))
        return path

    @parameterized.named_parameters(
        ("unknown_family", {"model": "nerf_vae2"}, "unknown model family 'nerf_vae2'"),
        ("newer_version", {"version": 3}, "this tfglo reads versions up to 2"),
        ("no_configs", {"configs": None}, "no configs section"),
        ("family_not_a_name", {"model": {"num_latents": 1}}, "must name the model family"),
        ("missing_section", {"drop": "loss"}, r"missing \['loss'\]"),
        ("unknown_section", {"add": "encoder"}, r"unknown \['encoder'\]"),
    )
    def test_rejects(self, change, message):
        tmp = self._tmp()
        values = run_dir_lib.make_config(
            "lolnerf", lolnerf_family.FAMILY.default_configs(), "/data", {}
        )
        if "drop" in change:
            del values["configs"][change["drop"]]
        elif "add" in change:
            values["configs"][change["add"]] = {}
        else:
            values.update(change)
        self._write(tmp, values)
        with pytest.raises(run_dir_lib.RunDirError, match=message):
            run_dir_lib.parse_configs(run_dir_lib.read_config(tmp))

    def test_v1_without_a_section_is_rejected(self):
        tmp = self._tmp()
        values = json.loads((V1_RUN / "config.json").read_text())
        del values["loss"]
        self._write(tmp, values)
        with pytest.raises(run_dir_lib.RunDirError, match="has no loss section"):
            run_dir_lib.read_config(tmp)

    def test_resume_refuses_another_family(self):
        tmp = self._tmp()
        values = run_dir_lib.make_config(
            "lolnerf", lolnerf_family.FAMILY.default_configs(), "/data", {}
        )
        values["model"] = "other"
        self._write(tmp, values)
        with pytest.raises(run_dir_lib.RunDirError, match="holds a other run, not lolnerf"):
            run_dir_lib.check_resume(tmp, "lolnerf", lolnerf_family.FAMILY.default_configs())
