"""Tests of tfglo.sampling: stratified and inverse-CDF samples along rays."""

import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from tfglo.nerf import sampling

SEED = tf.constant([3, 7], tf.int32)


class StratifiedTest(parameterized.TestCase):
    def test_midpoints_when_not_perturbed(self):
        z = sampling.stratified_samples([1.0, 0.0], [3.0, 1.0], 4)
        np.testing.assert_allclose(
            z, [[1.25, 1.75, 2.25, 2.75], [0.125, 0.375, 0.625, 0.875]], atol=1e-6
        )

    def test_perturbed_one_sample_per_stratum(self):
        near = tf.constant([[1.0, 2.0, 0.0], [0.5, 3.0, 1.0]])
        far = near + tf.constant([[2.0, 0.5, 4.0], [1.0, 1.0, 0.25]])
        z = sampling.stratified_samples(near, far, 8, perturb=True, seed=SEED).numpy()
        self.assertEqual(z.shape, (2, 3, 8))
        self.assertTrue(np.all(np.diff(z, axis=-1) >= 0.0))
        edges = sampling.bin_edges(near, far, 8).numpy()
        self.assertTrue(np.all(z >= edges[..., :-1]) and np.all(z <= edges[..., 1:]))
        midpoints = sampling.stratified_samples(near, far, 8).numpy()
        self.assertGreater(np.abs(z - midpoints).max(), 1e-3)  # really jittered

    def test_seeded_jitter_is_reproducible(self):
        near, far = tf.zeros([5]), tf.fill([5], 2.0)
        a = sampling.stratified_samples(near, far, 16, perturb=True, seed=SEED)
        b = sampling.stratified_samples(near, far, 16, perturb=True, seed=SEED)
        c = sampling.stratified_samples(near, far, 16, perturb=True, seed=[4, 7])
        np.testing.assert_array_equal(a, b)
        self.assertGreater(np.abs(a - c).max(), 1e-3)

    def test_jitter_covers_stratum_uniformly(self):
        near, far = tf.zeros([4000]), tf.ones([4000])
        z = sampling.stratified_samples(near, far, 2, perturb=True, seed=SEED).numpy()
        # First stratum [0, 0.5): mean 0.25, variance 0.5^2 / 12.
        self.assertAlmostEqual(z[:, 0].mean(), 0.25, delta=0.01)
        self.assertAlmostEqual(z[:, 0].var(), 0.25 / 12, delta=0.002)

    def test_empty_interval_gives_finite_zeros(self):
        z = sampling.stratified_samples([0.0], [0.0], 4, perturb=True, seed=SEED)
        np.testing.assert_array_equal(z, np.zeros((1, 4)))

    def test_bin_edges(self):
        edges = sampling.bin_edges([1.0], [3.0], 4).numpy()
        np.testing.assert_allclose(edges, [[1.0, 1.5, 2.0, 2.5, 3.0]])

    def test_rejects_missing_seed_and_bad_count(self):
        with pytest.raises(ValueError, match="needs a seed"):
            sampling.stratified_samples([0.0], [1.0], 4, perturb=True)
        with pytest.raises(ValueError, match="num_samples must be >= 1"):
            sampling.stratified_samples([0.0], [1.0], 0)


def _histogram(samples, edges):
    counts, _ = np.histogram(samples, bins=edges)
    return counts / counts.sum()


class ImportanceTest(parameterized.TestCase):
    @parameterized.named_parameters(("midpoints", False), ("jittered", True))
    def test_histogram_matches_pdf(self, perturb):
        weights = np.array([[1.0, 0.0, 3.0, 2.0, 4.0]], np.float32)
        edges = np.array([[0.0, 1.0, 1.5, 2.5, 4.0, 5.0]], np.float32)
        z = sampling.importance_samples(edges, weights, 2000, perturb=perturb, seed=SEED).numpy()
        probabilities = weights[0] / weights.sum()
        np.testing.assert_allclose(_histogram(z, edges[0]), probabilities, atol=2e-3)
        # Uniform inside a bin: each half of bin 2 ([1.5, 2.5]) gets half of its mass.
        halves = _histogram(z, [0.0, 1.5, 2.0, 2.5, 5.0])
        np.testing.assert_allclose(halves[1:3], probabilities[2] / 2, atol=3e-3)

    def test_sorted_inside_range_and_reproducible(self):
        rng = np.random.default_rng(0)
        weights = rng.uniform(size=(3, 4, 8)).astype(np.float32)
        near = rng.uniform(1.0, 2.0, size=(3, 4)).astype(np.float32)
        edges = sampling.bin_edges(near, near + 2.0, 8)
        a = sampling.importance_samples(edges, weights, 32, perturb=True, seed=SEED).numpy()
        b = sampling.importance_samples(edges, weights, 32, perturb=True, seed=SEED).numpy()
        c = sampling.importance_samples(edges, weights, 32, perturb=True, seed=[1, 1]).numpy()
        self.assertEqual(a.shape, (3, 4, 32))
        np.testing.assert_array_equal(a, b)
        self.assertGreater(np.abs(a - c).max(), 1e-4)
        self.assertTrue(np.all(np.diff(a, axis=-1) >= 0.0))
        self.assertTrue(np.all(a >= near[..., None]) and np.all(a <= near[..., None] + 2.0))

    def test_all_mass_in_last_bin(self):
        weights = np.array([[0.0, 0.0, 0.0, 1.0]], np.float32)
        edges = np.array([[0.0, 1.0, 2.0, 3.0, 4.0]], np.float32)
        z = sampling.importance_samples(edges, weights, 64).numpy()
        self.assertGreaterEqual(np.mean(z >= 3.0), 0.99)

    def test_tfg_inverse_transform_drops_the_last_bin(self):
        # Why sampling.py has its own inverse CDF: tensorflow-graphics ignores the last bin's
        # weight, so a surface there would never be refined. If this ever fails, tfg was fixed.
        from tensorflow_graphics.math import sampling as tfg_sampling

        weights = np.array([[0.0, 0.0, 0.0, 1.0]], np.float32)
        starts = np.array([[0.0, 1.0, 2.0, 3.0]], np.float32)
        z = tfg_sampling.inverse_transform_stratified_1d(starts, np.ones_like(starts), weights, 64)
        self.assertEqual(np.mean(z.numpy() >= 3.0), 0.0)

    @parameterized.named_parameters(
        ("zero_weights", [[0.0, 0.0, 0.0, 0.0]], [[0.0, 1.0, 2.0, 3.0, 4.0]]),
        ("missed_ray", [[0.0, 0.0, 0.0, 0.0]], [[0.0, 0.0, 0.0, 0.0, 0.0]]),
    )
    def test_degenerate_inputs_stay_finite(self, weights, edges):
        z = sampling.importance_samples(edges, weights, 100, perturb=True, seed=SEED).numpy()
        self.assertTrue(np.all(np.isfinite(z)))
        if edges[0][-1] > 0:  # zero weights: a uniform pdf
            np.testing.assert_allclose(_histogram(z, edges[0]), 0.25, atol=0.02)
        else:
            np.testing.assert_array_equal(z, 0.0)

    def test_no_gradient_through_positions(self):
        weights = tf.Variable([[1.0, 2.0, 3.0]])
        edges = tf.Variable([[0.0, 1.0, 2.0, 3.0]])
        with tf.GradientTape(persistent=True) as tape:
            z = sampling.importance_samples(edges, weights, 8)
            total = tf.reduce_sum(z)
        self.assertIsNone(tape.gradient(total, weights))
        self.assertIsNone(tape.gradient(total, edges))

    def test_rejects_mismatched_shapes_and_missing_seed(self):
        with pytest.raises(ValueError, match="one more entry than weights"):
            sampling.importance_samples([[0.0, 1.0, 2.0]], [[1.0, 1.0, 1.0]], 4)
        with pytest.raises(ValueError, match="needs a seed"):
            sampling.importance_samples([[0.0, 1.0]], [[1.0]], 4, perturb=True)

    def test_xla_with_dynamic_batch(self):
        signature = [
            tf.TensorSpec([None]),
            tf.TensorSpec([None, 8]),
            tf.TensorSpec([2], tf.int32),
            tf.TensorSpec([], tf.bool),
        ]

        @tf.function(jit_compile=True, input_signature=signature)
        def both(near, weights, seed, perturb):
            # Python bools select the branch; trace both to compare with eager midpoints.
            def run(jitter):
                z = sampling.stratified_samples(near, near + 1.0, 8, perturb=jitter, seed=seed)
                edges = sampling.bin_edges(near, near + 1.0, 8)
                fine = sampling.importance_samples(edges, weights, 16, perturb=jitter, seed=seed)
                return z, fine

            jittered, plain = run(True), run(False)
            return tf.nest.map_structure(lambda a, b: tf.where(perturb, a, b), jittered, plain)

        rng = np.random.default_rng(2)
        near = rng.uniform(size=5).astype(np.float32)
        weights = rng.uniform(size=(5, 8)).astype(np.float32)
        z, fine = both(near, weights, SEED, False)
        np.testing.assert_allclose(z, sampling.stratified_samples(near, near + 1.0, 8), atol=1e-6)
        eager = sampling.importance_samples(sampling.bin_edges(near, near + 1.0, 8), weights, 16)
        np.testing.assert_allclose(fine, eager, atol=1e-5)
        # Jittered under XLA: reproducible for a seed (XLA's generator draws other numbers than
        # eager TensorFlow for the same seed, so compare XLA with XLA), inside the strata.
        z1, fine1 = both(near, weights, SEED, True)
        z2, fine2 = both(near, weights, SEED, True)
        np.testing.assert_array_equal(z1, z2)
        np.testing.assert_array_equal(fine1, fine2)
        edges = sampling.bin_edges(near, near + 1.0, 8).numpy()
        self.assertTrue(np.all(z1 >= edges[:, :-1]) and np.all(z1 <= edges[:, 1:]))
        self.assertGreater(np.abs(z1 - z).max(), 1e-3)
        self.assertTrue(np.all(np.diff(fine1, axis=-1) >= 0.0))
