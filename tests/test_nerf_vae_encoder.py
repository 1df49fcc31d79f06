"""Tests of the NeRF-VAE view encoder (tfglo/nerf_vae/encoder.py).

The multi-replica test runs this file as a script in a subprocess (`_worker`): logical CPU devices
must be configured before TensorFlow runs any op. `python tests/test_nerf_vae_encoder.py` prints
`RESULT <json>`.
"""

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from tfglo.geometry import camera
from tfglo.nerf_vae import encoder as encoder_lib

HERE = pathlib.Path(__file__).resolve()
SIZE = 16


def small_config(**overrides):
    values = dict(image_size=SIZE, stage_widths=(8, 16), cells_per_stage=1, latent_dim=4, groups=4)
    values.update(overrides)
    return encoder_lib.EncoderConfig(**values)


def views(batch, seed=0, size=SIZE):
    """Random views with cameras on a sphere of radius 4 looking at the origin."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(size=(batch, size, size, 3)).astype(np.float32)
    eyes = rng.normal(size=(batch, 3))
    eyes = (4.0 * eyes / np.linalg.norm(eyes, axis=-1, keepdims=True)).astype(np.float32)
    intrinsics = np.tile(
        np.array([[2.0 * size, 2.0 * size, size / 2, size / 2]], np.float32), [batch, 1]
    )
    return images, intrinsics, camera.look_at(eyes).numpy()


def make_encoder(config, seed=0):
    keras.utils.set_random_seed(seed)
    encoder = encoder_lib.Encoder(config)
    encoder.build_all()
    return encoder


class EncoderConfigTest(parameterized.TestCase):
    @parameterized.named_parameters(
        ("size_not_divisible", dict(image_size=18, stage_widths=(8, 16, 16)), "divisible by 4"),
        ("groups", dict(groups=3), "groups 3 must divide"),
        ("no_stages", dict(stage_widths=()), "stage_widths"),
        ("zero_width", dict(stage_widths=(8, 0)), "stage_widths"),
        ("latent_dim", dict(latent_dim=0), "latent_dim"),
        ("cells", dict(cells_per_stage=-1), "cells_per_stage"),
        ("se_ratio", dict(se_ratio=-1), "se_ratio"),
        ("normalization", dict(normalization="batch"), "normalization must be one of"),
        ("camera_encoding", dict(camera_encoding="raw"), "camera_encoding must be one of"),
        ("pooling", dict(head_pooling="max"), "head_pooling must be one of"),
        ("residual_scale", dict(residual_scale=0.0), "residual_scale"),
        ("log_variance_limit", dict(log_variance_limit=0.0), "log_variance_limit"),
    )
    def test_rejects(self, overrides, message):
        with self.assertRaisesRegex(ValueError, message):
            small_config(**overrides)

    def test_batch_norm_ignores_groups(self):
        # groups only constrain widths for group normalisation.
        config = small_config(normalization="batch_sync", groups=3)
        assert config.input_channels == 9 and config.final_size == SIZE // 2


class EncoderTest(parameterized.TestCase):
    @parameterized.named_parameters(
        ("default", {}),
        ("no_cameras", dict(cameras=False)),
        ("origin_direction", dict(camera_encoding="origin_direction")),
        ("mean_pooling", dict(head_pooling="mean")),
        ("batch_sync", dict(normalization="batch_sync")),
        ("no_se_no_cells", dict(se_ratio=0, cells_per_stage=0)),
        ("three_stages", dict(stage_widths=(8, 8, 16), cells_per_stage=2)),
        ("no_clamp", dict(log_variance_limit=None)),
    )
    def test_output_shapes_and_finite(self, overrides):
        config = small_config(**overrides)
        encoder = make_encoder(config)
        images, intrinsics, world_to_camera = views(3)
        mean, log_variance = encoder(images, intrinsics, world_to_camera, training=True)
        assert mean.shape == (3, 4) and log_variance.shape == (3, 4)
        assert np.isfinite(mean).all() and np.isfinite(log_variance).all()
        # Different views give different posteriors.
        assert not np.allclose(mean[0], mean[1])

    def test_untrained_posteriors_are_near_the_prior(self):
        encoder = make_encoder(small_config())
        mean, log_variance = encoder(*views(8))
        kl = 0.5 * (mean**2 + np.exp(log_variance) - 1.0 - log_variance)
        assert float(np.max(kl)) < 0.05

    def test_cameras_change_the_output_only_when_enabled(self):
        images, intrinsics, world_to_camera = views(2)
        _, _, other_poses = views(2, seed=1)
        with_cameras = make_encoder(small_config())
        a, _ = with_cameras(images, intrinsics, world_to_camera)
        b, _ = with_cameras(images, intrinsics, other_poses)
        assert np.abs(a - b).max() > 1e-4
        without = make_encoder(small_config(cameras=False))
        a, _ = without(images, intrinsics, world_to_camera)
        b, _ = without(images, intrinsics, other_poses)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, without(images)[0])  # cameras are not needed

    def test_intrinsics_as_vectors_or_matrices(self):
        encoder = make_encoder(small_config())
        images, intrinsics, world_to_camera = views(2)
        a, _ = encoder(images, intrinsics, world_to_camera)
        b, _ = encoder(images, camera.intrinsics_matrix(intrinsics), world_to_camera)
        np.testing.assert_allclose(a, b, atol=1e-6)

    @parameterized.named_parameters(
        ("wrong_size", dict(images=np.zeros((1, 8, 8, 3), np.float32)), r"\[B, 16, 16, 3\]"),
        ("channels", dict(images=np.zeros((1, 16, 16, 4), np.float32)), r"\[B, 16, 16, 3\]"),
        ("rank", dict(images=np.zeros((16, 16, 3), np.float32)), r"\[B, 16, 16, 3\]"),
        ("no_cameras", dict(intrinsics=None), "pass intrinsics and world_to_camera"),
    )
    def test_rejects_inputs(self, overrides, message):
        encoder = make_encoder(small_config())
        images, intrinsics, world_to_camera = views(1)
        kwargs = dict(images=images, intrinsics=intrinsics, world_to_camera=world_to_camera)
        kwargs.update(overrides)
        with self.assertRaisesRegex(ValueError, message):
            encoder(**kwargs)

    def test_encode_views_equals_one_call_per_view(self):
        encoder = make_encoder(small_config())
        images, intrinsics, world_to_camera = views(6)
        shape = lambda x: x.reshape((2, 3) + x.shape[1:])  # noqa: E731
        mean, log_variance = tf.function(encoder.encode_views)(
            shape(images), shape(intrinsics), shape(world_to_camera)
        )
        assert mean.shape == (2, 3, 4)
        for i in range(6):
            one = encoder(images[i : i + 1], intrinsics[i : i + 1], world_to_camera[i : i + 1])
            np.testing.assert_allclose(mean[i // 3, i % 3], one[0][0], atol=1e-5)
            np.testing.assert_allclose(log_variance[i // 3, i % 3], one[1][0], atol=1e-5)
        with self.assertRaisesRegex(ValueError, r"\[B, V, S, S, 3\]"):
            encoder.encode_views(images, intrinsics, world_to_camera)

    @parameterized.parameters((10.0, 10.0), (None, 100.0))
    def test_log_variance_soft_clamp(self, limit, expected):
        encoder = make_encoder(small_config(log_variance_limit=limit))
        bias = np.zeros(8, np.float32)
        bias[4:] = 100.0  # the log-variance half of the head
        encoder.head.bias.assign(bias)
        encoder.head.kernel.assign(tf.zeros_like(encoder.head.kernel))
        _, log_variance = encoder(*views(1))
        np.testing.assert_allclose(log_variance, np.full((1, 4), expected), rtol=1e-5)

    def test_every_weight_gets_a_gradient(self):
        encoder = make_encoder(small_config(stage_widths=(8, 16, 16)))
        images, intrinsics, world_to_camera = views(2)
        with tf.GradientTape() as tape:
            mean, log_variance = encoder(images, intrinsics, world_to_camera, training=True)
            loss = tf.reduce_sum(mean**2) + tf.reduce_sum(tf.exp(log_variance) - log_variance)
        gradients = tape.gradient(loss, encoder.trainable_variables)
        names = [v.path for v, g in zip(encoder.trainable_variables, gradients) if g is None]
        assert not names, names
        zero = [
            v.path for v, g in zip(encoder.trainable_variables, gradients) if not np.any(g.numpy())
        ]
        assert not zero, zero


def test_checkpoint_restores_every_weight(tmp_path):
    config = small_config(stage_widths=(8, 16, 16))
    encoder = make_encoder(config, seed=0)
    path = tf.train.Checkpoint(model=encoder).save(str(tmp_path / "ck"))
    restored = make_encoder(config, seed=1)
    inputs = views(2)
    assert not np.allclose(restored(*inputs)[0], encoder(*inputs)[0])
    tf.train.Checkpoint(model=restored).restore(path).assert_consumed()
    np.testing.assert_array_equal(restored(*inputs)[0], encoder(*inputs)[0])


class CameraChannelsTest(parameterized.TestCase):
    def test_plucker_coordinates(self):
        intrinsics = np.array([[20.0, 22.0, 4.0, 3.0]], np.float32)  # 8 x 6 image
        world_to_camera = camera.look_at(tf.constant([[1.0, -2.0, -3.0]]))
        rays = encoder_lib.camera_channels(intrinsics, world_to_camera, 6, 8, "plucker").numpy()
        origins, directions = camera.image_rays(camera.Camera(intrinsics, world_to_camera), 6, 8)
        origins, directions = origins.numpy(), directions.numpy()
        assert rays.shape == (1, 6, 8, 6)
        np.testing.assert_allclose(rays[..., :3], directions, atol=1e-6)
        moment = rays[..., 3:]
        np.testing.assert_allclose(np.sum(moment * directions, -1), 0.0, atol=1e-5)
        # |o x d| is the distance of the ray's line from the world origin.
        along = np.sum(origins * directions, -1, keepdims=True)
        distance = np.linalg.norm(origins - along * directions, axis=-1)
        np.testing.assert_allclose(np.linalg.norm(moment, axis=-1), distance, rtol=1e-4)
        # The ray through the principal point of a camera looking at the origin meets it.
        centred = encoder_lib.camera_channels(
            np.array([[20.0, 20.0, 4.0, 4.0]], np.float32), world_to_camera, 8, 8, "plucker"
        ).numpy()
        corners = centred[0, 3:5, 3:5, 3:].mean((0, 1))
        np.testing.assert_allclose(corners, 0.0, atol=0.05)

    def test_origin_direction(self):
        intrinsics = np.array([[20.0, 20.0, 4.0, 4.0]], np.float32)
        world_to_camera = camera.look_at(tf.constant([[0.0, 0.0, -4.0]]))
        rays = encoder_lib.camera_channels(intrinsics, world_to_camera, 8, 8, "origin_direction")
        np.testing.assert_allclose(
            rays[..., :3], np.broadcast_to([0.0, 0.0, -4.0], (1, 8, 8, 3)), atol=1e-5
        )
        np.testing.assert_allclose(np.linalg.norm(rays[..., 3:], axis=-1), 1.0, atol=1e-6)
        with self.assertRaisesRegex(ValueError, "camera encoding"):
            encoder_lib.camera_channels(intrinsics, world_to_camera, 8, 8, "raw")


def _profiled_multiply_adds(encoder, config):
    """Multiply-adds of the convolutions and matmuls of the traced encoder (TF's profiler)."""
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    size = config.image_size
    specs = [tf.TensorSpec([1, size, size, 3])]
    if config.cameras:
        specs += [tf.TensorSpec([1, 4]), tf.TensorSpec([1, 3, 4])]
    function = tf.function(lambda *args: encoder(*args))
    graph = convert_variables_to_constants_v2(function.get_concrete_function(*specs)).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(graph, options=options)
    total = 0
    for node in profile.children:
        if graph.get_operation_by_name(node.name).type in ("Conv2D", "MatMul"):
            total += node.float_ops
    return total // 2  # the profiler counts 2 FLOPs per multiply-add


class MultiplyAddsTest(parameterized.TestCase):
    @parameterized.named_parameters(
        ("default", {}),
        ("no_cameras_mean", dict(cameras=False, head_pooling="mean")),
        ("three_stages_no_se", dict(stage_widths=(8, 16, 32), se_ratio=0, cells_per_stage=2)),
    )
    def test_matches_the_profiler(self, overrides):
        config = small_config(**overrides)
        encoder = make_encoder(config)
        expected = _profiled_multiply_adds(encoder, config)
        assert expected > 0
        assert encoder.multiply_adds() == expected


# ----------------------------------------------------------------------------------------------
# Two replicas against one device (subprocess).


def _compare_replicas(normalization: str, mirrored: tf.distribute.Strategy) -> dict:
    """One training step on one device and on 2 replicas; the differences.

    One MirroredStrategy serves every comparison: a second one in the same process reuses the
    collective instance keys of the first, and its all-reduces fail with a shape mismatch
    (tensorflow#62790).
    """
    config = small_config(normalization=normalization)
    images, intrinsics, world_to_camera = views(4, seed=2)
    global_batch = len(images)

    def run(strategy, synchronized=True):
        with strategy.scope():
            encoder = make_encoder(config, seed=0)
            optimizer = keras.optimizers.SGD(0.5)
            optimizer.build(encoder.trainable_variables)
        if not synchronized:  # the control: batch statistics of each replica's half only
            for layer in encoder._flatten_layers():
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.synchronized = False
        replicas = strategy.num_replicas_in_sync

        def shard(context):
            i, n = context.replica_id_in_sync_group, replicas
            per = global_batch // n
            sl = slice(i * per, (i + 1) * per)
            return images[sl], intrinsics[sl], world_to_camera[sl]

        inputs = strategy.experimental_distribute_values_from_function(shard)

        @tf.function
        def step(inputs):
            def replica_step(images, intrinsics, world_to_camera):
                with tf.GradientTape() as tape:
                    mean, log_variance = encoder(images, intrinsics, world_to_camera, training=True)
                    per_view = tf.reduce_sum(mean**2 + tf.exp(log_variance) - log_variance, -1)
                    loss = tf.reduce_sum(per_view) / global_batch
                gradients = tape.gradient(loss, encoder.trainable_variables)
                optimizer.apply_gradients(zip(gradients, encoder.trainable_variables))
                return mean, log_variance

            return strategy.run(replica_step, args=inputs)

        mean, log_variance = step(inputs)
        gather = lambda x: np.concatenate(  # noqa: E731
            [t.numpy() for t in strategy.experimental_local_results(x)]
        )
        weights = np.concatenate([v.numpy().ravel() for v in encoder.trainable_variables])
        return gather(mean), gather(log_variance), weights

    one = run(tf.distribute.OneDeviceStrategy("/cpu:0"))
    two = run(mirrored)
    result = {
        "replicas": mirrored.num_replicas_in_sync,
        "mean_error": float(np.abs(one[0] - two[0]).max()),
        "log_variance_error": float(np.abs(one[1] - two[1]).max()),
        "weight_error": float(np.abs(one[2] - two[2]).max()),
    }
    if normalization == "batch_sync":
        unsynced = run(mirrored, synchronized=False)
        result["unsynced_mean_error"] = float(np.abs(one[0] - unsynced[0]).max())
    initial = make_encoder(config, seed=0)
    initial = np.concatenate([v.numpy().ravel() for v in initial.trainable_variables])
    result["weight_change"] = float(np.abs(one[2] - initial).max())
    return result


def _worker(options: dict) -> None:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    results = {name: _compare_replicas(name, mirrored) for name in options["normalizations"]}
    print("RESULT " + json.dumps(results), flush=True)


def _run_worker(options: dict) -> dict:
    path = os.pathsep.join(p for p in (str(HERE.parent.parent), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", PYTHONPATH=path)
    proc = subprocess.run(
        [sys.executable, str(HERE), json.dumps(options)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, proc.stdout[-3000:]
    return json.loads(lines[-1][len("RESULT ") :])


def test_mirrored_forward_and_step_match_one_device():
    # One subprocess for both normalisations (TensorFlow's start-up dominates).
    results = _run_worker({"normalizations": ["group", "batch_sync"]})
    for normalization, result in results.items():
        assert result["replicas"] == 2
        assert result["mean_error"] < 1e-5, (normalization, result)
        assert result["log_variance_error"] < 1e-5, (normalization, result)
        assert result["weight_change"] > 1e-3, (normalization, result)  # the step moved them
        assert result["weight_error"] < 1e-5, (normalization, result)
    # The control: without synchronisation each replica normalises with its own half, and the
    # outputs differ: the comparison above can see a wrong normalisation.
    assert results["batch_sync"]["unsynced_mean_error"] > 1e-4, results


if __name__ == "__main__":
    _worker(json.loads(sys.argv[1]))
