"""End-to-end tests of `python -m tfglo.prepare` (subprocesses) and its source functions."""

import json
import pathlib
import shutil
import subprocess

import app_testlib
import pytest

from tfglo.data import dataset_dir, record_sources


def run_prepare(*args) -> subprocess.CompletedProcess:
    return app_testlib.run_module("tfglo.prepare", *args)


def test_synthetic_end_to_end(tmp_path):
    output = tmp_path / "heads"
    result = run_prepare(
        "--source=synthetic",
        f"--output={output}",
        "--num_objects=3",
        "--image_size=16",
        "--eval_views=2",
        "--seed=5",
        "--log_every=4",
        "--records_per_shard=4",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"wrote 9 images (train 3, eval 6; 3 latents) to {output}" in result.stdout
    assert "skipped 0 images" in result.stdout
    assert "8 images written" in result.stderr  # progress
    metadata = dataset_dir.read_metadata(output)
    assert metadata["splits"] == {"train": 3, "eval": 6}
    assert metadata["prepare_source"] == "synthetic"
    assert metadata["synthetic_config"]["seed"] == 5
    assert len(metadata["shards"]) == 3
    recs = list(dataset_dir.iterate_records(output))
    assert [r.latent_id for r in recs] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert all(r.image.shape == (16, 16, 3) and r.mask is not None for r in recs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["heads"]  # no temporary left


@pytest.mark.parametrize(
    "args, splits, background, config",
    [
        (
            [
                "--synthetic_class=cars",
                "--synthetic_elevation_deg=10,20",
                "--cars_eval_angle_deg=30,40",
                "--synthetic_background_color=0,0,0",
            ],
            {"train": 2, "eval": 4},
            [0.0, 0.0, 0.0],
            {"elevation_range_deg": [10.0, 20.0], "eval_angle_range_deg": [30.0, 40.0]},
        ),
        (
            [
                "--synthetic_class=shapes",
                "--train_views=2",
                "--eval_views=1",
                "--shapes_primitives=2,3",
                "--shapes_background=scene",
            ],
            {"train": 4, "eval": 2},
            None,
            {"min_primitives": 2, "max_primitives": 3, "background": "scene"},
        ),
    ],
    ids=["cars", "shapes"],
)
def test_synthetic_classes_end_to_end(tmp_path, args, splits, background, config):
    output = tmp_path / "data"
    result = run_prepare(
        "--source=synthetic", f"--output={output}", "--num_objects=2", "--image_size=12", *args
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metadata = dataset_dir.read_metadata(output)
    assert metadata["synthetic_class"] == args[0].split("=")[1]
    assert metadata["splits"] == splits
    assert metadata["num_latents"] == 2
    assert metadata["constant_background"] == background
    for key, value in config.items():
        assert metadata["synthetic_config"][key] == value
    recs = list(dataset_dir.iterate_records(output))
    assert all(r.image.shape == (12, 12, 3) and r.landmarks is None for r in recs)
    if background is not None:
        assert all((r.image[r.mask == 0] == 0).all() for r in recs)


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--shapes_primitives=1,2"],
            "--shapes_primitives does not apply to --synthetic_class=heads",
        ),
        (
            ["--synthetic_class=cars", "--cars_eval_angle_deg=30"],
            "--cars_eval_angle_deg needs 2 values, got ['30']",
        ),
    ],
    ids=["flag_of_another_class", "one_value"],
)
def test_synthetic_flags_bad_input(tmp_path, args, message):
    output = tmp_path / "data"
    result = run_prepare("--source=synthetic", f"--output={output}", "--num_objects=1", *args)
    assert result.returncode == 1
    assert f"prepare: error: {message}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not output.exists()


@pytest.fixture()
def small_lego(tmp_path, lego_dir) -> pathlib.Path:
    """A transforms.json over 5 lego frames, one of whose images is missing."""
    source = json.loads((lego_dir / "transforms.json").read_text())
    (tmp_path / "lego" / "images").mkdir(parents=True)
    frames = source["frames"][:5]
    for frame in frames[:4]:
        shutil.copy(lego_dir / frame["file_path"], tmp_path / "lego" / frame["file_path"])
    frames[4] = dict(frames[4], file_path="images/gone")  # no extension, no file
    path = tmp_path / "lego" / "transforms.json"
    path.write_text(json.dumps({"camera_angle_x": source["camera_angle_x"], "frames": frames}))
    return path


def test_transforms_end_to_end_with_overwrite_and_skips(tmp_path, small_lego):
    output = tmp_path / "lego_ds"
    output.mkdir()
    (output / "dataset.json").write_text("{}")  # an old dataset to replace
    result = run_prepare(
        "--source=transforms",
        f"--transforms={small_lego}",
        f"--output={output}",
        "--overwrite",
        "--image_size=16",
        "--eval_every=2",
        "--alpha_background=black",
        "--skip_missing",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "wrote 4 images (train 2, eval 2; 1 latents)" in result.stdout
    assert "skipped 1 images" in result.stdout
    assert "images/gone: image file" in result.stdout and "does not exist" in result.stdout
    metadata = dataset_dir.read_metadata(output)
    assert metadata["scene_radius"] == 1.5
    assert metadata["background"] == "black"
    assert metadata["skipped"][0]["source"] == "images/gone"
    recs = list(dataset_dir.iterate_records(output))
    assert [r.split for r in recs] == ["eval", "train", "eval", "train"]
    assert recs[0].image.shape == (16, 16, 3)
    assert (recs[0].image[recs[0].mask == 0] == 0).all()  # black background


def test_refuses_non_empty_output(tmp_path):
    output = tmp_path / "taken"
    output.mkdir()
    (output / "dataset.json").write_text('{"keep": true}')
    result = run_prepare("--source=synthetic", f"--output={output}", "--num_objects=1")
    assert result.returncode == 1
    assert f"prepare: error: {output} is not empty; pass --overwrite to replace it" in (
        result.stderr
    )
    assert (output / "dataset.json").read_text() == '{"keep": true}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_bad_transforms_exits_with_the_file_and_problem(tmp_path):
    path = tmp_path / "transforms.json"
    path.write_text(json.dumps({"frames": [{"file_path": "a.png", "transform_matrix": [[1]]}]}))
    output = tmp_path / "out"
    result = run_prepare("--source=transforms", f"--transforms={path}", f"--output={output}")
    assert result.returncode == 1
    assert f"prepare: error: {path}: frame 0 (a.png): transform_matrix must be 4x4" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
    assert not output.exists()


def test_summary_lines():
    summary = record_sources.Summary(
        output="/x",
        splits={"train": 2, "eval": 1},
        num_latents=2,
        skipped=[{"source": "a.jpg", "reason": "no face"}],
        seconds=1.0,
    )
    assert summary.lines() == [
        "prepare: wrote 3 images (train 2, eval 1; 2 latents) to /x in 1.0 s",
        "prepare: skipped 1 images",
        "  a.jpg: no face",
    ]


def test_write_dataset_refuses_an_empty_source(tmp_path):
    with pytest.raises(dataset_dir.DatasetError, match="the source produced no image"):
        record_sources.write_dataset((iter([]), {}, []), str(tmp_path / "empty"))
    assert not (tmp_path / "empty").exists()
