"""The apps on a NeRF-VAE run: `tfglo.evaluate --context_views` (report keys, grids, baselines),
`tfglo.render --mode=sample|orbit|interpolate` with encoded objects, `tfglo.export`, and the bad
inputs of issue 12 (more context views than an object has, unknown objects, context views of the
wrong size), each a clear error naming the problem."""

import json
import pathlib
import sys

import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from PIL import Image

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import nerf_vae_testlib as lib  # noqa: E402

from tfglo import evaluate, render  # noqa: E402
from tfglo.data import dataset_dir  # noqa: E402
from tfglo.engine import run_dir as run_dir_lib  # noqa: E402
from tfglo.engine import run_export  # noqa: E402
from tfglo.nerf_vae import model as model_lib  # noqa: E402
from tfglo.nerf_vae import scenes  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("nerf_vae_apps")
    data = lib.write_shapes(root / "data")
    unseen = lib.write_shapes(root / "unseen", num_objects=2, seed=100)
    configs = lib.smoke_configs(data, num_steps=3, image_summary_every=0, checkpoint_every=3)
    lib.make_trainer(data, root / "run", configs).train()
    return {"root": root, "data": data, "unseen": unseen, "run": root / "run"}


def _app(module, *argv):
    flag_values = flags.FlagValues()
    module.define_flags(flag_values)
    flag_values(["app", *argv])
    module.main([], flag_values)


def test_evaluate_writes_the_report_of_issue_12(trained, tmp_path):
    out = tmp_path / "eval"
    _app(
        evaluate,
        f"--run_dir={trained['run']}",
        f"--dataset={trained['unseen']}",
        f"--output={out}",
        "--context_views=1,3",
        "--per_scene_steps=3",
        "--per_scene_rays=64",
        "--inversion_steps=4",
        "--inversion_rays=32",
        "--curve_rays=64",
    )
    report = json.loads((out / "report.json").read_text())
    assert report["mode"] == "encode" and report["num_objects"] == 2 and report["num_views"] == 2
    for section in ("context_views", "per_scene_nerf"):
        assert set(report[section]) == {"1", "3"}, section
        for values in report[section].values():
            for key in ("psnr", "ssim", "mse"):
                assert np.isfinite(values[key]), (section, key)
            assert values["psnr"] == pytest.approx(-10 * np.log10(values["mse"]), abs=3.0)
    assert report["per_scene_nerf"]["3"]["steps"] == 3
    inversion = report["inversion"]
    assert inversion["context_views"] == 3 and inversion["steps"] == [0, 1, 2, 4]
    for start in ("from_prior_mean", "from_encoder"):
        assert len(inversion[start]["psnr"]) == 4
    # The encoder's start is the k = 3 code: its step-0 PSNR is on the same rays as the
    # held-out views' (a subset), so close to the full-image PSNR of k = 3.
    assert "encoder_steps_to_match" in inversion
    grids = sorted((out / "grids").glob("object_*.png"))
    assert len(grids) == 2
    width = Image.open(grids[0]).size[0]
    assert width > 16 * (3 + 1 + 2 + 1 + 1)  # context views | truth | 2 renders | depth | NeRF


def _train_on_single_views(trained, tmp_path):
    single = lib.write_shapes(tmp_path / "single", num_objects=2, train_views=1, eval_views=1)
    lib.make_trainer(single, tmp_path / "run", lib.smoke_configs(trained["data"]))


def _encode_views_of_the_wrong_size(trained, tmp_path):
    model = run_dir_lib.load_run(trained["run"]).model
    model.posterior(tf.zeros([1, 2, 8, 8, 3]), tf.ones([1, 2, 4]), tf.zeros([1, 2, 3, 4]))


def _evaluate_more_context_views_than_an_object_has(trained, tmp_path):
    _app(
        evaluate,
        f"--run_dir={trained['run']}",
        f"--dataset={trained['unseen']}",
        f"--output={tmp_path / 'eval'}",
        "--context_views=1,4",
    )


def _orbit_more_context_views_than_an_object_has(trained, tmp_path):
    _app(
        render,
        f"--run_dir={trained['run']}",
        f"--output={tmp_path}",
        "--mode=orbit",
        "--context_views=5",
    )


@pytest.mark.parametrize(
    "action, error, message",
    [
        (_train_on_single_views, dataset_dir.DatasetError, r"is a single-view dataset"),
        (_encode_views_of_the_wrong_size, ValueError, r"the encoder takes views \[B, 16, 16, 3\]"),
        (
            _evaluate_more_context_views_than_an_object_has,
            scenes.SceneError,
            r"4 context views were requested.*object 0 has 3",
        ),
        (
            _orbit_more_context_views_than_an_object_has,
            scenes.SceneError,
            r"5 context views were requested.*object 0 has 3",
        ),
    ],
    ids=["single_view_dataset", "wrong_context_size", "evaluate_too_many", "render_too_many"],
)
def test_bad_input_is_a_clear_error(trained, tmp_path, action, error, message):
    """Issue 12 item 11: each bad input raises an error naming the problem, and writes nothing."""
    with pytest.raises(error, match=message):
        action(trained, tmp_path)
    assert not (tmp_path / "eval" / "report.json").exists()
    assert not (tmp_path / "run" / "config.json").exists()


def test_render_samples_the_prior(trained, tmp_path):
    _app(
        render,
        f"--run_dir={trained['run']}",
        f"--output={tmp_path}",
        "--mode=sample",
        "--num_samples=3",
        "--truncation=0.5",
        "--image_size=12",
    )
    codes = np.load(tmp_path / "samples" / "latents.npy")
    np.testing.assert_allclose(codes, scenes.prior_latents(3, 8, 0, 0.5))
    assert (tmp_path / "samples" / "grid.png").is_file()
    assert len(list((tmp_path / "samples").glob("sample_*.png"))) == 3


def test_render_orbits_an_encoded_unseen_object(trained, tmp_path):
    _app(
        render,
        f"--run_dir={trained['run']}",
        f"--output={tmp_path}",
        "--mode=orbit",
        f"--context_dataset={trained['unseen']}",
        "--objects=1",
        "--context_views=2",
        "--num_frames=3",
        "--image_size=12",
    )
    gif = tmp_path / "object_0001" / "orbit.gif"
    assert Image.open(gif).n_frames == 3
    assert len(list((tmp_path / "object_0001").glob("depth_*.npy"))) == 3


def test_render_interpolates_between_encoded_objects(trained, tmp_path):
    _app(
        render,
        f"--run_dir={trained['run']}",
        f"--output={tmp_path}",
        "--mode=interpolate",
        "--context_views=3",
        "--num_frames=3",
        "--image_size=12",
    )
    assert (tmp_path / "interpolate_object_0000_object_0001" / "strip.png").is_file()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--objects=0,99"], r"objects \[99\] are not in"),
    ],
)
def test_render_rejects_bad_context_requests(trained, tmp_path, argv, message):
    with pytest.raises(scenes.SceneError, match=message):
        _app(render, f"--run_dir={trained['run']}", f"--output={tmp_path}", "--mode=orbit", *argv)


def test_context_views_of_the_wrong_size(trained):
    model = run_dir_lib.load_run(trained["run"]).model
    view = {"image": np.zeros([8, 8, 3]), "intrinsics": [16, 16, 4, 4], "world_to_camera": 0}
    with pytest.raises(ValueError, match="one size"):
        model_lib.context_inputs(model, [view, dict(view, image=np.zeros([9, 8, 3]))])
    # Views of another (single) size are resized with their intrinsics, as in training.
    resized = model_lib.context_inputs(
        model, [dict(view, world_to_camera=np.eye(3, 4, dtype=np.float32))]
    )
    assert resized["images"].shape == (1, 1, 16, 16, 3)
    np.testing.assert_allclose(resized["intrinsics"][0, 0], [32, 32, 8, 8])


def test_export_app_writes_the_nerf_vae_signatures(trained, tmp_path):
    target = run_export.export_run(trained["run"], tmp_path, warmup_image_size=8)
    loaded = tf.saved_model.load(str(target))
    assert {"encode", "sample_latents", "render", "orbit_cameras"} <= set(loaded.signatures)
    out = loaded.signatures["sample_latents"](
        count=tf.constant(2), seed=tf.constant(0, tf.int64), truncation=tf.constant(1.0)
    )
    assert out["latents"].shape == (2, 8)
