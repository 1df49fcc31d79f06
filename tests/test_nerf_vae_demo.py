"""The NeRF-VAE section of the demo (tfglo/nerf_vae/demo.py) end to end at smoke size: every app
runs in its own process and the files people look at exist. Seven app processes of a few seconds
each (two training steps, two per-scene NeRF steps): TIME_NOTE."""

import subprocess
import sys

import numpy as np
from PIL import Image

from tfglo.nerf_vae import demo


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
