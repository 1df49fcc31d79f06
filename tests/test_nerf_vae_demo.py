"""The NeRF-VAE section of the demo (tfglo/nerf_vae/demo.py).

`test_summary_*`: the metrics.json entry from an evaluation report (instant). The end-to-end run
at smoke size (six app processes: two datasets, two training steps, evaluation with two
per-scene NeRF and two inversion steps, two renders) is slow: on the shared 2-core machine it
took 143 CPU-s (458 s of wall time at a load of ~10; TensorFlow's start-up alone is ~9 CPU-s
per process here), more than the default suite's 60 s per test, so `make test-all` runs it.
"""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tfglo.nerf_vae import demo


def _report(vae, nerf):
    def scores(psnr):
        return {"psnr": psnr, "ssim": 0.5, "mse": 10 ** (-psnr / 10), "extra": 1.0}

    return {
        "context_views": {k: scores(p) for k, p in vae.items()},
        "per_scene_nerf": {
            k: dict(scores(p), steps=100, fitted_psnr=30.0) for k, p in nerf.items()
        },
        "inversion": {
            "context_views": 4,
            "steps": [0, 1, 2],
            "from_prior_mean": {"psnr": [10.0, 11.0, 12.0], "seconds": 1.0},
            "from_encoder": {"psnr": [12.0, 12.5, 13.0], "seconds": 1.0},
            "prior_mean_final_psnr": 12.0,
            "encoder_steps_to_match": 0,
        },
    }


@pytest.mark.parametrize(
    "vae, rises",
    [({"1": 20.0, "2": 21.0, "4": 23.0}, True), ({"1": 20.0, "2": 19.0, "4": 23.0}, False)],
)
def test_summary_of_a_report(tmp_path, vae, rises):
    nerf = {"1": 15.0, "2": 16.0, "4": 18.0}
    metrics = demo.summarize(_report(vae, nerf), {"train": 2.0, "evaluate": 1.0}, tmp_path)
    assert metrics["vae_minus_per_scene_psnr"] == pytest.approx({k: vae[k] - nerf[k] for k in vae})
    assert metrics["psnr_rises_with_k"] is rises
    assert "extra" not in metrics["context_views"]["1"]
    assert metrics["per_scene_nerf"]["4"]["steps"] == 100
    assert metrics["inversion"]["from_encoder"] == [12.0, 12.5, 13.0]
    assert metrics["inversion"]["encoder_steps_to_match"] == 0
    assert metrics["seconds"]["total"] == 3.0


@pytest.mark.slow
def test_section_runs_every_app_and_reports(tmp_path, repo_root):
    def run_app(module, *args):
        command = [sys.executable, "-m", f"tfglo.{module}", *args]
        result = subprocess.run(command, capture_output=True, text=True, cwd=repo_root)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        return 1.0

    metrics = demo.run_section(
        tmp_path,
        run_app,
        str(repo_root / "flags" / "nerf_vae_smoke.cfg"),
        num_scenes=4,
        unseen_scenes=2,
        image_size=16,
        extra_train_flags=("--num_steps=2", "--image_summary_every=0", "--checkpoint_every=2"),
        per_scene_steps=2,
        inversion_steps=2,
    )
    assert set(metrics["context_views"]) == {"1", "2", "4"}
    assert set(metrics["vae_minus_per_scene_psnr"]) == {"1", "2", "4"}
    assert all(np.isfinite(v["psnr"]) for v in metrics["context_views"].values())
    assert len(metrics["inversion"]["from_encoder"]) == len(metrics["inversion"]["steps"])
    assert Image.open(metrics["files"]["unseen_orbit"]).n_frames == 16
    assert Image.open(metrics["files"]["prior_samples"]).size[0] > 8 * 32
    assert metrics["seconds"]["total"] == 6.0  # six app runs of 1 "second" each
