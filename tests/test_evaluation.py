"""Tests for tfglo.engine.evaluation: metrics of tiny image pairs by hand, whole-run reports,
bad input."""

import json
import math
import pathlib
import tempfile
import types

import infer_testlib
import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from tfglo.data import dataset_dir, records
from tfglo.data.synthetic import heads as synthetic
from tfglo.engine import evaluation, inversion
from tfglo.geometry import camera as camera_lib

FX = 4.0
COS = FX / math.sqrt(FX**2 + 0.5)  # every pixel of a centred 2x2 image is (0.5, 0.5) px off-axis


class _FixedModel:
    """Renders the same 2x2 image whatever the code and camera (for hand-computed metrics)."""

    def __init__(self, rgb, alpha, distance):
        self.rgb, self.alpha, self.distance = rgb, alpha, distance

    def render_image(self, latent, camera, height, width, chunk_size=None):
        del latent, camera, chunk_size
        assert (height, width) == (2, 2)
        return {"rgb": self.rgb, "alpha": self.alpha, "depth": self.distance}


def _view(**overrides):
    view = {
        "image": np.zeros((2, 2, 3), np.float32),
        "mask": np.array([[1.0, 1.0], [0.0, 0.0]], np.float32),
        "depth": np.array([[2.0, 4.0], [0.0, 0.0]], np.float32),
        "intrinsics": np.array([FX, FX, 1.0, 1.0], np.float32),
        "world_to_camera": np.asarray(camera_lib.look_at([0.0, 0.0, -3.0])),
        "latent_id": 0,
        "object_id": 0,
        "view_id": 1,
        "source": "pair",
        "split": "eval",
    }
    view.update(overrides)
    return view


class EvaluateMetricsByHandTest(parameterized.TestCase):
    def test_metrics_of_a_tiny_pair(self):
        rgb = np.zeros((2, 2, 3), np.float32)
        rgb[0, 0] = 0.5  # one foreground pixel off by 0.5 in every channel
        rgb[1, 1] = 0.25  # one background pixel off by 0.25
        alpha = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
        # Ray distances whose camera z is 1 and 2 (the truth is 2 and 4: scale 2 fits exactly).
        distance = np.array([[1.0, 2.0], [7.0, 7.0]], np.float32) / COS
        model = _FixedModel(rgb, alpha, distance)
        config = evaluation.EvaluateConfig(billboard=False)
        result = evaluation.evaluate_model(model, [_view()], lambda v: np.zeros(8), config)
        scores = result["per_view"][0]["model"]
        mse = (3 * 0.25 + 3 * 0.0625) / 12
        self.assertAlmostEqual(scores["psnr"], 10 * math.log10(1 / mse), places=4)
        self.assertAlmostEqual(scores["masked_psnr"], 10 * math.log10(1 / (0.75 / 6)), places=4)
        self.assertAlmostEqual(scores["mask_iou"], 1 / 3)  # {(0,0)} of {(0,0),(0,1),(1,1)}
        self.assertAlmostEqual(scores["depth_abs"], (1.0 + 2.0) / 2, places=4)
        self.assertAlmostEqual(scores["depth_scale"], 2.0, places=4)
        self.assertAlmostEqual(scores["depth_abs_scaled"], 0.0, places=4)
        expected_ssim = float(tf.image.ssim(rgb, np.zeros_like(rgb), 1.0, filter_size=2))
        self.assertAlmostEqual(scores["ssim"], expected_ssim, places=5)
        self.assertEqual(result["model"]["psnr"], scores["psnr"])
        self.assertEqual(result["num_views"], 1)

    def test_views_without_depth_or_mask_skip_those_metrics(self):
        model = _FixedModel(np.zeros((2, 2, 3)), np.ones((2, 2)), np.ones((2, 2)))
        view = _view(mask=None, depth=None)
        result = evaluation.evaluate_model(model, [view], lambda v: np.zeros(8))
        self.assertEqual(result["per_view"][0]["model"]["psnr"], math.inf)
        # Means skip non-finite values and say how many views were left.
        self.assertTrue(math.isnan(result["model"]["psnr"]))
        self.assertEqual(result["model"]["psnr_count"], 0)
        self.assertNotIn("depth_abs", result["model"])
        self.assertNotIn("mask_iou", result["model"])

    def test_table_and_json_handle_nan_and_inf(self):
        report = {"model": {"psnr": math.inf, "ssim": 0.5, "depth_abs": math.nan}, "num_views": 1}
        text = evaluation.format_table(report)
        self.assertIn("0.5000", text)
        tmp = tempfile.mkdtemp()
        path = evaluation.write_report(tmp, report)
        loaded = json.loads(pathlib.Path(path).read_text())
        self.assertEqual(loaded["model"], {"psnr": "inf", "ssim": 0.5, "depth_abs": None})

    def test_camera_pointing_away_is_rejected(self):
        view = _view()
        evaluation.check_camera_sees_object(view, 1.0)
        away = view["world_to_camera"].copy()
        away[:, :3] = np.eye(3)
        away[:, 3] = [0.0, 0.0, -3.0]  # centre at z = +3 looking along +z: the object is behind
        with pytest.raises(evaluation.EvaluationError, match="pair points away from the object"):
            evaluation.check_camera_sees_object(_view(world_to_camera=away), 1.0)


class EvaluateRunTest(parameterized.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.path, cls.model = infer_testlib.trained()
        cls.fake_run = types.SimpleNamespace(
            model=cls.model,
            model_config=cls.model.config,
            dataset_metadata=dataset_dir.read_metadata(cls.path),
            step=300,
            run_dir="in-memory",
        )

    def setUp(self):
        super().setUp()
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.tmp = pathlib.Path(tmp.name)

    def test_held_out_views_of_training_identities(self):
        report = evaluation.evaluate_run(self.fake_run, self.path, output_dir=self.tmp)
        self.assertEqual(report["mode"], "training_identities")
        self.assertEqual(report["num_views"], 8)  # 4 objects x 2 eval views
        for method in ("model", "billboard"):
            for name in evaluation.METRIC_COLUMNS:
                self.assertTrue(math.isfinite(report[method][name]), f"{method} {name}")
        self.assertLen(report["grids"], 4)
        # The model-free billboard report gives the same baseline numbers.
        alone = evaluation.evaluate_billboard(self.path)
        self.assertEqual(alone["num_views"], 8)
        for name in evaluation.METRIC_COLUMNS:
            self.assertAlmostEqual(alone["billboard"][name], report["billboard"][name], places=6)
        self.assertTrue(pathlib.Path(report["grids"][0]).is_file())
        saved = json.loads((self.tmp / "report.json").read_text())
        self.assertEqual(saved["num_views"], 8)
        self.assertEqual(saved["model"]["psnr"], report["model"]["psnr"])
        # A per-view entry repeats the summary's inputs.
        first = report["per_view"][0]
        self.assertEqual(
            set(first), {"source", "object_id", "view_id", "latent_id", "model", "billboard"}
        )
        view = [
            v for v in evaluation.load_views(self.path, "eval") if v["source"] == first["source"]
        ][0]
        cam = camera_lib.make_camera(view["intrinsics"], view["world_to_camera"])
        table = self.model.latent_table.embeddings.numpy()
        direct = inversion.render_whole_image(self.model, table[view["latent_id"]], cam, 16, 16)
        psnr = -10 * np.log10(np.mean((np.asarray(direct["rgb"]) - view["image"]) ** 2))
        self.assertAlmostEqual(first["model"]["psnr"], psnr, places=3)

    def test_inverting_unseen_objects(self):
        unseen = infer_testlib.write_synthetic(self.tmp / "unseen", num_objects=2, seed=7)
        config = evaluation.EvaluateConfig(
            invert=True,
            inversion=inversion.InversionConfig(num_steps=30, rays_per_image=128),
            max_views_per_object=1,
        )
        report = evaluation.evaluate_run(self.fake_run, unseen, config, output_dir=self.tmp / "out")
        self.assertEqual(report["mode"], "inverted")
        self.assertEqual(report["inversion"]["num_images"], 2)
        self.assertEqual(report["inversion"]["steps"], 30)
        self.assertEqual(report["num_views"], 2)
        codes = np.load(self.tmp / "out" / "latents.npy")
        self.assertEqual(codes.shape, (2, 8))
        self.assertTrue(math.isfinite(report["inversion"]["psnr"]))

    def test_initial_latents_of_the_wrong_size(self):
        unseen = infer_testlib.write_synthetic(self.tmp / "unseen", num_objects=2, seed=7)
        for initial in (np.zeros(5), np.zeros((1, 8)), np.zeros((2, 3))):
            config = evaluation.EvaluateConfig(invert=True, initial_latents=initial)
            with pytest.raises(evaluation.EvaluationError, match="do not fit this run: expected"):
                evaluation.evaluate_run(self.fake_run, unseen, config)

    def test_dataset_with_more_latents_than_the_table_needs_invert(self):
        bigger = infer_testlib.write_synthetic(self.tmp / "big", num_objects=6, eval_views=1)
        with pytest.raises(evaluation.EvaluationError, match="6 latent ids but the run's latent"):
            evaluation.evaluate_run(self.fake_run, bigger)

    def test_other_canonical_frame_is_rejected(self):
        def with_metadata(name, **metadata):
            path = self.tmp / name
            with dataset_dir.DatasetWriter(path) as writer:
                for record in synthetic.generate(
                    synthetic.SyntheticConfig(num_objects=1, image_size=8, eval_views_per_object=1)
                ):
                    writer.write(record)
                writer.metadata.update(metadata)
            return path

        keypoints = np.eye(5, 3).tolist()
        run = types.SimpleNamespace(
            model=self.model,
            model_config=self.model.config,
            dataset_metadata={"canonical_keypoints": keypoints, "scene_radius": 1.0},
        )
        shifted = (np.asarray(keypoints) + 0.2).tolist()
        with pytest.raises(evaluation.EvaluationError, match="canonical keypoints that differ"):
            evaluation.evaluate_run(run, with_metadata("kp", canonical_keypoints=shifted))
        with pytest.raises(evaluation.EvaluationError, match="scene_radius 2.0 but the run"):
            evaluation.evaluate_run(run, with_metadata("radius", scene_radius=2.0))
        same = with_metadata("same", canonical_keypoints=keypoints, scene_radius=1.0)
        self.assertEqual(evaluation.evaluate_run(run, same)["num_views"], 1)
        # --nocheck_canonical: the caller vouches for the frame.
        unchecked = evaluation.EvaluateConfig(check_canonical=False)
        report = evaluation.evaluate_run(
            run, with_metadata("kp2", canonical_keypoints=shifted), unchecked
        )
        self.assertEqual(report["num_views"], 1)

    def test_camera_pointing_away_in_a_dataset_is_rejected(self):
        path = self.tmp / "away"
        with dataset_dir.DatasetWriter(path) as writer:
            for record in synthetic.generate(
                synthetic.SyntheticConfig(num_objects=1, image_size=8, eval_views_per_object=1)
            ):
                if record.split == "eval":
                    pose = np.concatenate([np.eye(3), [[0.0], [0.0], [-4.5]]], 1)
                    record = records.ImageRecord(**{**vars(record), "world_to_camera": pose})
                writer.write(record)
        with pytest.raises(evaluation.EvaluationError, match="view01 points away from the object"):
            evaluation.evaluate_run(self.fake_run, path)

    def test_missing_dataset(self):
        with pytest.raises(dataset_dir.DatasetError, match="does not exist"):
            evaluation.evaluate_run(self.fake_run, self.tmp / "nothing")


if __name__ == "__main__":
    tf.test.main()
