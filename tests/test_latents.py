"""Tests of tfglo.latents: the table, its sparse gradients and updates, sampling, interpolation."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from tfglo.lolnerf import latents


class LatentTableTest(parameterized.TestCase):
    def test_lookup(self):
        table = latents.LatentTable(5, 3, init_std=0.1)
        table.build()
        values = np.arange(15, dtype=np.float32).reshape(5, 3)
        table.embeddings.assign(values)
        np.testing.assert_array_equal(table(tf.constant([4, 0, 4])).numpy(), values[[4, 0, 4]])
        self.assertEqual(tuple(table(tf.zeros([2, 3], tf.int64)).shape), (2, 3, 3))

    def test_initialisation(self):
        zeros = latents.LatentTable(8, 4, 0.0)
        self.assertFalse(zeros.built)
        self.assertEqual(float(tf.reduce_max(tf.abs(zeros(tf.range(8))))), 0.0)
        normal = latents.LatentTable(200, 50, 0.01)
        normal.build()
        self.assertEqual(tuple(normal.embeddings.shape), (200, 50))
        self.assertAlmostEqual(float(tf.math.reduce_std(normal.embeddings)), 0.01, delta=0.001)

    def test_gradient_is_sparse_on_used_rows(self):
        table = latents.LatentTable(10, 4, init_std=0.1)
        ids = tf.constant([7, 2, 7, 7])
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(table(ids) ** 2)
        (grad,) = tape.gradient(loss, table.trainable_variables)
        self.assertIsInstance(grad, tf.IndexedSlices)
        self.assertEqual(sorted(set(grad.indices.numpy().tolist())), [2, 7])
        dense = tf.convert_to_tensor(grad).numpy()
        unused = [i for i in range(10) if i not in (2, 7)]
        np.testing.assert_array_equal(dense[unused], 0.0)
        embeddings = table.embeddings.numpy()
        np.testing.assert_allclose(dense[7], 3 * 2 * embeddings[7], rtol=1e-6)

    @parameterized.parameters(
        (0, 4, 0.1, "num_latents"), (3, 0, 0.1, "latent_dim"), (3, 4, -1.0, "init_std")
    )
    def test_rejects_bad_sizes(self, num_latents, latent_dim, init_std, message):
        with pytest.raises(ValueError, match=message):
            latents.LatentTable(num_latents, latent_dim, init_std)


class LazyAdamTest(parameterized.TestCase):
    def _steps(self, optimizer, ids_per_step, compile_xla=False, densify=False):
        table = latents.LatentTable(6, 3, init_std=0.0)
        table.build()
        table.embeddings.assign(np.linspace(-1, 1, 18, dtype=np.float32).reshape(6, 3))
        target = tf.constant(np.arange(18, dtype=np.float32).reshape(6, 3) / 10.0)

        def step(ids):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum((table(ids) - tf.gather(target, ids)) ** 2)
            grads = tape.gradient(loss, table.trainable_variables)
            if densify:
                grads = [tf.convert_to_tensor(g) for g in grads]
            optimizer.apply_gradients(zip(grads, table.trainable_variables))

        if compile_xla:
            step = tf.function(step, jit_compile=True)
        for ids in ids_per_step:
            step(tf.constant(ids))
        return table.embeddings.numpy()

    @parameterized.parameters(False, True)
    def test_unused_rows_stay_put(self, compile_xla):
        initial = np.linspace(-1, 1, 18, dtype=np.float32).reshape(6, 3)
        steps = [[0, 1, 1], [1, 2], [0, 1, 1]]
        lazy = self._steps(latents.LazyAdam(0.1), steps, compile_xla)
        dense = self._steps(keras.optimizers.Adam(0.1), steps)
        # Row 2 is used once, then its momentum would keep moving it under plain Adam.
        np.testing.assert_array_equal(lazy[3:], initial[3:])
        self.assertFalse(np.allclose(lazy[:3], initial[:3]))
        self.assertFalse(np.allclose(dense[2], lazy[2]))

    def test_equals_adam_when_every_row_is_used(self):
        # Rows 0 and 5 appear twice: their gradients must be summed before squaring. (Keras'
        # Adam squares an IndexedSlices' rows before summing duplicates, so compare with the
        # dense gradient.)
        steps = [[0, 1, 2, 3, 4, 5, 5, 0]] * 3
        lazy = self._steps(latents.LazyAdam(0.05), steps)
        dense = self._steps(keras.optimizers.Adam(0.05), steps, densify=True)
        np.testing.assert_allclose(lazy, dense, rtol=1e-5, atol=1e-6)

    def test_dense_gradients_are_plain_adam(self):
        a, b = tf.Variable([1.0, -2.0]), tf.Variable([1.0, -2.0])
        for var, opt in ((a, latents.LazyAdam(0.1)), (b, keras.optimizers.Adam(0.1))):
            for _ in range(3):
                opt.apply_gradients([(2.0 * var, var)])
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)


class GaussianTest(parameterized.TestCase):
    def _table(self, count=400, dim=4):
        rng = np.random.default_rng(3)
        mixing = rng.normal(size=(dim, dim)).astype(np.float32)
        return (rng.normal(size=(count, dim)) @ mixing + np.arange(dim)).astype(np.float32)

    def test_fit_matches_numpy(self):
        table = self._table()
        mean, covariance = latents.fit_gaussian(table)
        np.testing.assert_allclose(mean.numpy(), table.mean(0), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(covariance.numpy(), np.cov(table.T), rtol=1e-4, atol=1e-5)

    def test_fit_accepts_a_table_layer(self):
        layer = latents.LatentTable(7, 3, init_std=0.5)
        mean, _ = latents.fit_gaussian(layer)
        np.testing.assert_allclose(mean.numpy(), layer.embeddings.numpy().mean(0), atol=1e-6)

    def test_samples_reproduce_mean_and_covariance(self):
        mean, covariance = latents.fit_gaussian(self._table())
        samples = latents.sample_latents(mean, covariance, 40000, seed=[1, 2]).numpy()
        self.assertEqual(samples.shape, (40000, 4))
        scale = np.sqrt(np.diag(covariance.numpy()))
        np.testing.assert_allclose(samples.mean(0), mean.numpy(), atol=0.03 * scale.max())
        np.testing.assert_allclose(
            np.cov(samples.T), covariance.numpy(), atol=0.05 * scale.max() ** 2
        )

    def test_truncation(self):
        mean, covariance = latents.fit_gaussian(self._table())
        at_mean = latents.sample_latents(mean, covariance, 5, seed=[1, 2], truncation=0.0)
        np.testing.assert_allclose(at_mean.numpy(), np.tile(mean.numpy(), (5, 1)), atol=1e-6)
        full = latents.sample_latents(mean, covariance, 5, seed=[1, 2], truncation=1.0)
        half = latents.sample_latents(mean, covariance, 5, seed=[1, 2], truncation=0.5)
        np.testing.assert_allclose((half - mean).numpy(), 0.5 * (full - mean).numpy(), atol=1e-5)

    def test_stateless_and_graph_friendly(self):
        table = self._table(count=3, dim=6)  # Fewer rows than dims: a singular covariance.
        mean, covariance = latents.fit_gaussian(table)

        @tf.function(
            input_signature=[
                tf.TensorSpec([], tf.int32),
                tf.TensorSpec([2], tf.int32),
                tf.TensorSpec([], tf.float32),
            ]
        )
        def sample(count, seed, truncation):
            return latents.sample_latents(mean, covariance, count, seed, truncation)

        a = sample(tf.constant(4), tf.constant([5, 6]), tf.constant(0.7)).numpy()
        b = sample(tf.constant(4), tf.constant([5, 6]), tf.constant(0.7)).numpy()
        c = sample(tf.constant(4), tf.constant([5, 7]), tf.constant(0.7)).numpy()
        self.assertTrue(np.isfinite(a).all())
        np.testing.assert_array_equal(a, b)
        self.assertFalse(np.allclose(a, c))
        eager = latents.sample_latents(mean, covariance, 4, [5, 6], 0.7).numpy()
        np.testing.assert_allclose(a, eager, atol=1e-6)

    def test_single_row_table_samples_its_row(self):
        mean, covariance = latents.fit_gaussian([[1.0, 2.0]])
        np.testing.assert_array_equal(covariance.numpy(), 0.0)
        samples = latents.sample_latents(mean, covariance, 3, seed=[0, 1]).numpy()
        np.testing.assert_allclose(samples, [[1.0, 2.0]] * 3, atol=1e-4)

    def test_rejects_non_table(self):
        with pytest.raises(ValueError, match=r"must be \[M, D\]"):
            latents.fit_gaussian(np.zeros(5))


class InterpolateTest(parameterized.TestCase):
    def test_endpoints_and_midpoint(self):
        path = latents.interpolate([0.0, 2.0], [4.0, -2.0], 5).numpy()
        np.testing.assert_allclose(path, [[0, 2], [1, 1], [2, 0], [3, -1], [4, -2]], atol=1e-6)

    def test_single_step(self):
        np.testing.assert_allclose(latents.interpolate([1.0], [3.0], 1).numpy(), [[1.0]])

    def test_rejects_zero_steps(self):
        with pytest.raises(ValueError, match="steps must be >= 1"):
            latents.interpolate([1.0], [3.0], 0)
