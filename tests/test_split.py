"""The foreground/background split holds on a class that is not heads (issue 15, item 0).

A small set of the built-in toy cars (white background recorded in dataset.json, cameras all
around), trained with flags/demo.cfg as it ships (only the step budget is smaller): the car must
land in the foreground field, and held-out views must beat the billboard. Measured (6 cars at
16 px, 50 steps; data + training + evaluation): 70 s of CPU time (user 56 s + sys 15 s), 146 s
wall on the 2 cores shared at load 5-7, so about 40-55 s on an idle 2-core machine; held-out
PSNR 15.1 dB against the billboard's 11.6, mask IoU 0.76, foreground coverage 0.69 (demo.cfg
with mask weight 0.1; with today's 1.0 the test passes in 136 s wall at the same load).
"""

import pathlib

import pytest
import tensorflow as tf

from tfglo import train as train_app
from tfglo.data import dataset_dir, record_sources
from tfglo.data.synthetic import cars
from tfglo.engine import evaluation, launch
from tfglo.engine import run_dir as run_dir_lib
from tfglo.lolnerf import family

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEMO_FLAGFILE = ROOT / "flags" / "demo.cfg"
NUM_STEPS = 50


@pytest.fixture(scope="module")
def cars_dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("cars") / "dataset"
    config = cars.CarsConfig(num_objects=6, image_size=16, seed=0)
    record_sources.write_dataset(record_sources.synthetic_source(config), path)
    return path


def _configs(dataset, **overrides):
    values = train_app.flagfile_values(DEMO_FLAGFILE, **overrides)
    return family.FAMILY.configs_from_flags(values, dataset_dir.read_metadata(dataset))


def test_dataset_background_replaces_the_field_unless_asked(cars_dataset):
    model = _configs(cars_dataset)["model"]
    assert not model.background.enabled
    assert model.render.background_color == (1.0, 1.0, 1.0)
    kept = _configs(cars_dataset, dataset_background=False)["model"]
    assert kept.background.enabled


def test_default_flags_beat_the_billboard_on_cars(cars_dataset, tmp_path):
    configs = _configs(
        cars_dataset, num_steps=NUM_STEPS, lr_decay_steps=NUM_STEPS, image_summary_every=0
    )
    lines = []
    launch.train_run(family.FAMILY, configs, cars_dataset, tmp_path / "run", log=lines.append)
    run = run_dir_lib.load_run(tmp_path / "run")
    report = evaluation.evaluate_run(run, cars_dataset, evaluation.EvaluateConfig())
    model, billboard = report["model"], report["billboard"]
    assert model["psnr"] > billboard["psnr"] + 1.0, (model, billboard)
    assert model["coverage"] > 0.5, model
    assert model["mask_iou"] > 0.5, model
    assert not report["warnings"]
    assert not [line for line in lines if "WARNING" in line]
    tags = set()
    for path in (tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            tags.update(value.tag for value in event.summary.value)
    for tag in (
        "foreground/coverage",
        "hardness/hard_fraction",
        "hardness/max_weight_mean",
        "eval/psnr",
        "eval/ssim",
        "config",
    ):
        assert any(t.startswith(tag) for t in tags), (tag, sorted(tags))
    assert "loss/stat_alpha" not in tags
    table = report["by_angle"]["training_view"]
    assert set(table) == {"model", "billboard"}
    assert sum(b["num_views"] for b in table["model"].values()) == report["num_views"]


def test_window_statistics_warn_when_the_foreground_misses_the_mask():
    # A collapsed split (what the old defaults gave on cars: foreground opacity 0.1 where the
    # mask is 1) warns; a held one does not.
    collapsed = {"stat_alpha": 0.03, "stat_mask": 0.3, "stat_alpha_mask": 0.03}
    scalars, warnings = family.FAMILY.window_statistics(collapsed)
    assert scalars["foreground/coverage"] == pytest.approx(0.1)
    assert len(warnings) == 1 and "covers only 10%" in warnings[0]
    held = {
        "stat_alpha": 0.3,
        "stat_mask": 0.3,
        "stat_alpha_mask": 0.28,
        "stat_fg_rays": 0.3,
        "stat_fg_hard": 0.15,
        "stat_fg_max_weight": 0.18,
    }
    scalars, warnings = family.FAMILY.window_statistics(held)
    assert not warnings
    assert scalars["hardness/hard_fraction"] == pytest.approx(0.5)
    assert scalars["hardness/max_weight_mean"] == pytest.approx(0.6)
