"""Tests for test-time latent fitting on a tiny LOLNeRF trained in-process on 16x16 images."""

import infer_testlib
import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from tfglo.engine import inversion, metrics
from tfglo.geometry import camera as camera_lib


def _stack(records):
    return (
        np.stack([r.image / 255.0 for r in records]).astype(np.float32),
        np.stack([r.intrinsics for r in records]),
        np.stack([r.world_to_camera for r in records]),
        np.stack([r.mask / 255.0 for r in records]).astype(np.float32),
    )


def _psnr_with(model, latent, record):
    cam = camera_lib.make_camera(record.intrinsics, record.world_to_camera)
    out = inversion.render_whole_image(model, latent, cam, record.height, record.width)
    return metrics.psnr(np.asarray(out["rgb"]), record.image / 255.0)


class InversionTest(parameterized.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.path, cls.model = infer_testlib.trained()
        cls.records = infer_testlib.train_views(cls.path)

    def test_recovers_training_views_from_the_mean_within_1db(self):
        model, records = self.model, self.records
        table = model.latent_table.embeddings.numpy()
        reconstruction = [_psnr_with(model, table[r.latent_id], r) for r in records]
        at_mean = [_psnr_with(model, inversion.latent_mean(model), r) for r in records]
        weights_before = [v.numpy() for v in model.network_variables]
        images, intrinsics, poses, masks = _stack(records)
        config = inversion.InversionConfig(num_steps=100, rays_per_image=256)
        fitted, stats = inversion.invert(model, images, intrinsics, poses, masks, config)
        self.assertEqual(fitted.shape, (len(records), table.shape[1]))
        self.assertEqual(stats["steps"], 100)
        self.assertGreater(stats["seconds"], 0)
        self.assertLess(stats["loss_last"], stats["loss_first"])
        for i, record in enumerate(records):
            # The mean is a poor code for each image; the fit brings it back to the training
            # reconstruction's quality.
            self.assertLess(at_mean[i], reconstruction[i] - 5.0)
            self.assertGreater(stats["psnr"][i], reconstruction[i] - 1.0, f"image {i}")
            self.assertAlmostEqual(stats["psnr"][i], _psnr_with(model, fitted[i], record), 3)
        # The network is frozen by default.
        for before, variable in zip(weights_before, model.network_variables):
            np.testing.assert_array_equal(before, variable.numpy())

    def test_starts_from_given_latents(self):
        model, record = self.model, self.records[1]
        images, intrinsics, poses, masks = _stack([record])
        own = model.latent_table.embeddings.numpy()[record.latent_id]
        config = inversion.InversionConfig(num_steps=0)
        fitted, stats = inversion.invert(
            model, images, intrinsics, poses, masks, config, initial_latents=own
        )
        np.testing.assert_allclose(fitted[0], own)
        self.assertAlmostEqual(stats["psnr"][0], _psnr_with(model, own, record), 4)
        fitted, _ = inversion.invert(model, images, intrinsics, poses, masks, config)
        np.testing.assert_allclose(fitted[0], inversion.latent_mean(model), rtol=1e-6)

    def test_images_are_fitted_independently(self):
        # Fitting image 0 alone or together with others gives the same code (own rays only).
        model = self.model
        images, intrinsics, poses, masks = _stack(self.records[:2])
        config = inversion.InversionConfig(num_steps=5, rays_per_image=64, perturb=False)
        together, _ = inversion.invert(model, images, intrinsics, poses, masks, config)
        alone, _ = inversion.invert(model, images[:1], intrinsics[:1], poses[:1], masks[:1], config)
        np.testing.assert_allclose(together[0], alone[0], atol=1e-5)

    def test_finetuning_changes_weights_only_when_asked(self):
        model = self.model
        saved = [v.numpy() for v in model.network_variables]
        images, intrinsics, poses, masks = _stack(self.records[:1])
        try:
            config = inversion.InversionConfig(
                num_steps=3, rays_per_image=32, finetune_weights=True, finetune_learning_rate=1e-3
            )
            inversion.invert(model, images, intrinsics, poses, masks, config)
            changed = [
                not np.array_equal(a, v.numpy()) for a, v in zip(saved, model.network_variables)
            ]
            self.assertTrue(any(changed))
        finally:
            for value, variable in zip(saved, model.network_variables):
                variable.assign(value)

    def test_bad_inputs(self):
        model = self.model
        images, intrinsics, poses, masks = _stack(self.records[:2])
        with pytest.raises(ValueError, match="2 images need 2 cameras"):
            inversion.invert(model, images, intrinsics[:1], poses, masks)
        with pytest.raises(ValueError, match="initial_latents must be"):
            inversion.invert(model, images, intrinsics, poses, initial_latents=np.zeros((3, 8)))
        away = poses.copy()
        away[:, :, 3] = [0.0, 0.0, -4.5]  # camera at z = +4.5 looking along +z, away from it
        away[:, :, :3] = np.eye(3)
        with pytest.raises(ValueError, match="points away from the object"):
            inversion.invert(model, images, intrinsics, away)
        with pytest.raises(ValueError, match=r"images must be \[B, H, W, 3\]"):
            inversion.invert(model, images[..., 0], intrinsics, poses)


if __name__ == "__main__":
    tf.test.main()
