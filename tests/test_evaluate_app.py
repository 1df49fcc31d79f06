"""Tests for `python -m tfglo.evaluate`: the app on a saved run, its flags and bad input."""

import json

import infer_testlib
import pytest
import tensorflow as tf

from tfglo import evaluate
from tfglo.engine import evaluation


class EvaluateAppTest(infer_testlib.TrainedRunTestCase):
    def test_report_and_table(self):
        infer_testlib.run_app(
            evaluate,
            [
                f"--run_dir={self.run_dir}",
                f"--dataset={self.path}",
                f"--output={self.out}",
                "--max_objects=2",
                "--max_views_per_object=1",
            ],
        )
        report = json.loads((self.out / "report.json").read_text())
        self.assertEqual(report["num_views"], 2)
        self.assertEqual(report["step"], 300)
        self.assertGreater(report["model"]["psnr"], 5.0)
        self.assertIn("psnr", report["billboard"])
        self.assertTrue((self.out / "grids" / "object_0001.png").is_file())
        self.assertIn("model", evaluation.format_table(report))

    def test_invert_then_render_the_fitted_codes(self):
        from tfglo import render

        unseen = infer_testlib.write_synthetic(self.out / "unseen", num_objects=1, seed=9)
        infer_testlib.run_app(
            evaluate,
            [
                f"--run_dir={self.run_dir}",
                f"--dataset={unseen}",
                f"--output={self.out}/eval",
                "--invert",
                "--inversion_steps=10",
                "--inversion_rays=64",
                "--max_views_per_object=1",
            ],
        )
        report = json.loads((self.out / "eval" / "report.json").read_text())
        self.assertEqual(report["inversion"]["num_images"], 1)
        infer_testlib.run_app(
            render,
            [
                f"--run_dir={self.run_dir}",
                f"--output={self.out}/render",
                f"--latents={self.out}/eval/latents.npy",
                "--num_frames=2",
                "--image_size=8",
            ],
        )
        self.assertTrue((self.out / "render" / "latent_0000" / "orbit.gif").is_file())

    def test_bad_runs_and_flags(self):
        from tfglo.engine import run_dir as run_dir_lib

        empty = infer_testlib.save_run(
            self.model, self.path, self.out / "empty", with_checkpoint=False
        )
        with pytest.raises(run_dir_lib.RunDirError, match="has no checkpoint"):
            infer_testlib.run_app(
                evaluate,
                [f"--run_dir={empty}", f"--dataset={self.path}", f"--output={self.out}"],
            )
        with pytest.raises(run_dir_lib.RunDirError, match="does not exist"):
            infer_testlib.run_app(
                evaluate,
                [f"--run_dir={self.out}/none", f"--dataset={self.path}", f"--output={self.out}"],
            )
        with pytest.raises(Exception, match="--init_latents file .* does not exist"):
            infer_testlib.run_app(
                evaluate,
                [
                    f"--run_dir={self.run_dir}",
                    f"--dataset={self.path}",
                    f"--output={self.out}",
                    "--invert",
                    f"--init_latents={self.out}/missing.npy",
                ],
            )


if __name__ == "__main__":
    tf.test.main()
