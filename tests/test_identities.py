"""Tests for tfglo.lolnerf.identities: rows of the latent table or a file, sampled identities."""

import pathlib
import tempfile

import infer_testlib
import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from tfglo.lolnerf import identities


class IdentitiesTest(parameterized.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.path, cls.model = infer_testlib.trained()

    def setUp(self):
        super().setUp()
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.tmp = pathlib.Path(tmp.name)

    def test_sampled_gaussian_matches_the_table(self):
        rng = np.random.default_rng(0)
        true_cov = np.array([[1.0, 0.6, 0.0], [0.6, 2.0, -0.3], [0.0, -0.3, 0.5]])
        table = rng.multivariate_normal([1.0, -2.0, 0.5], true_cov, size=400).astype(np.float32)
        codes, mean, cov = identities.sample_identities(table, 20000, seed=3, truncation=1.0)
        np.testing.assert_allclose(mean, table.mean(0), atol=1e-5)
        np.testing.assert_allclose(cov, np.cov(table, rowvar=False), atol=1e-4)
        self.assertEqual(codes.shape, (20000, 3))
        np.testing.assert_allclose(codes.mean(0), table.mean(0), atol=0.05)
        np.testing.assert_allclose(np.cov(codes, rowvar=False), cov, atol=0.08)
        half, _, _ = identities.sample_identities(table, 20000, seed=3, truncation=0.5)
        np.testing.assert_allclose(np.cov(half, rowvar=False), 0.25 * cov, atol=0.03)
        again, _, _ = identities.sample_identities(table, 20000, seed=3, truncation=1.0)
        np.testing.assert_array_equal(codes, again)
        zero, _, _ = identities.sample_identities(table, 2, seed=3, truncation=0.0)
        np.testing.assert_allclose(zero, np.broadcast_to(mean, (2, 3)), atol=1e-6)
        with pytest.raises(ValueError, match="truncation must be >= 0"):
            identities.sample_identities(table, 2, truncation=-1.0)

    def test_select_latents(self):
        codes, names = identities.select_latents(self.model, [3, 1])
        np.testing.assert_allclose(codes, self.model.latent_table.embeddings.numpy()[[3, 1]])
        self.assertEqual(names, ["id_0003", "id_0001"])
        with pytest.raises(ValueError, match=r"ids \[7\] out of range: the latent table has 4"):
            identities.select_latents(self.model, [7])
        path = self.tmp / "codes.npy"
        np.save(path, np.ones((2, 8), np.float32))
        codes, names = identities.select_latents(self.model, None, path)
        self.assertEqual(codes.shape, (2, 8))
        self.assertEqual(names, ["latent_0000", "latent_0001"])
        np.save(path, np.ones((2, 5), np.float32))
        with pytest.raises(ValueError, match=r"this run's codes are \[K, 8\]"):
            identities.select_latents(self.model, None, path)
        with pytest.raises(ValueError, match="does not exist"):
            identities.select_latents(self.model, None, self.tmp / "missing.npy")


if __name__ == "__main__":
    tf.test.main()
