"""Tests of the NeRF-VAE scene-batch pipeline (tfglo/data/scene_batches.py) on small datasets."""

import os
import shutil
import tempfile

import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from tfglo.data import dataset_dir, records, scene_batches
from tfglo.data.synthetic import heads, shapes
from tfglo.geometry import camera

H, W = 8, 10  # not square: catches row / column mix-ups
SCENE_RADIUS = 1.2
# object id -> (training views, held-out views); ids sparse, counts uneven.
OBJECTS = {3: (4, 0), 7: (3, 0), 10: (5, 1), 11: (3, 2), 20: (4, 0)}


def make_records(objects=OBJECTS, seed=0):
    rng = np.random.default_rng(seed)
    recs = []
    for object_id, (num_train, num_eval) in objects.items():
        for view in range(num_train + num_eval):
            eye = rng.normal(size=3)
            eye = (3.0 * eye / np.linalg.norm(eye)).astype(np.float32)
            focal = rng.uniform(10.0, 14.0)
            recs.append(
                records.ImageRecord(
                    image=rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
                    intrinsics=np.array([focal, focal + 1, W / 2 + 0.3, H / 2 - 0.2], np.float32),
                    world_to_camera=camera.look_at(eye).numpy(),
                    latent_id=object_id,
                    object_id=object_id,
                    view_id=view,
                    split="train" if view < num_train else "eval",
                    mask=None if view == 1 else rng.integers(0, 256, (H, W), dtype=np.uint8),
                    source=f"obj{object_id}/view{view}",
                )
            )
    # Views of one object spread over several shards, in no particular order.
    return [recs[i] for i in rng.permutation(len(recs))]


def write(path, recs, records_per_shard=4):
    with dataset_dir.DatasetWriter(path, records_per_shard=records_per_shard) as writer:
        for record in recs:
            writer.write(record)
        writer.metadata["scene_radius"] = SCENE_RADIUS
    return str(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    recs = make_records()
    centres = np.stack([camera.camera_center(r.world_to_camera).numpy() for r in recs])
    return {"path": write(root / "multi", recs), "records": recs, "centres": centres}


def config(**overrides):
    values = dict(scenes_per_batch=4, context_views=3, target_rays=32, image_size=None, seed=5)
    values.update(overrides)
    return scene_batches.SceneBatchConfig(**values)


def take(dataset, count):
    return [{k: v.numpy() for k, v in batch.items()} for batch in dataset.take(count)]


def view_of(data, centre):
    """The record whose camera centre is `centre`."""
    distances = np.linalg.norm(data["centres"] - centre, axis=-1)
    index = int(np.argmin(distances))
    assert distances[index] < 1e-4
    return data["records"][index]


def test_element_spec_is_static(data):
    # Shapes known to the model (TPUs need them), with a resize to a square encoder size.
    for batch_config, size in ((config(image_size=6), (6, 6)), (config(), (H, W))):
        spec = scene_batches.train_dataset(data["path"], batch_config).element_spec
        assert set(spec) == set(scene_batches.SCENE_KEYS)
        assert spec["context_images"].shape == (4, 3, *size, 3)
        assert spec["context_intrinsics"].shape == (4, 3, 4)
        assert spec["context_world_to_camera"].shape == (4, 3, 3, 4)
        assert spec["object_id"].shape == (4,) and spec["object_id"].dtype == tf.int64
        for key in ("origins", "directions", "rgb"):
            assert spec[key].shape == (4, 32, 3), key
        for key in ("near", "far", "hit", "mask", "novel"):
            assert spec[key].shape == (4, 32), key
        assert spec["hit"].dtype == tf.bool and spec["novel"].dtype == tf.bool


@pytest.mark.parametrize("cache", [True, False])
def test_targets_are_pixels_of_the_scenes_training_views(data, cache):
    for batch in take(scene_batches.train_dataset(data["path"], config(cache=cache)), 3):
        for b, object_id in enumerate(batch["object_id"]):
            context_centres = camera.camera_center(batch["context_world_to_camera"][b]).numpy()
            for r in range(batch["rgb"].shape[1]):
                record = view_of(data, batch["origins"][b, r])
                assert record.object_id == object_id and record.split == "train"
                # Without novel_view_targets every target ray comes from a context view.
                assert (
                    np.linalg.norm(context_centres - batch["origins"][b, r], axis=-1).min() < 1e-4
                )
                assert not batch["novel"][b, r]
                cam = camera.Camera(record.intrinsics, record.world_to_camera)
                point = batch["origins"][b, r] + 2.0 * batch["directions"][b, r]
                pixel, depth = camera.project(cam, point[None].astype(np.float32))
                x, y = pixel.numpy()[0]
                assert depth.numpy()[0] > 0
                np.testing.assert_allclose([x % 1, y % 1], [0.5, 0.5], atol=1e-3)  # centres
                row, col = int(y), int(x)
                np.testing.assert_allclose(
                    batch["rgb"][b, r], record.image[row, col] / 255, atol=1e-6
                )
                mask = 1.0 if record.mask is None else record.mask[row, col] / 255
                np.testing.assert_allclose(batch["mask"][b, r], mask, atol=1e-6)
        near, far, hit = camera.intersect_sphere(
            batch["origins"], batch["directions"], SCENE_RADIUS
        )
        np.testing.assert_allclose(batch["near"], near, atol=1e-5)
        np.testing.assert_allclose(batch["far"], far, atol=1e-5)
        np.testing.assert_array_equal(batch["hit"], hit)


def test_context_views_are_distinct_training_views_of_the_scene(data):
    seen = set()
    for batch in take(scene_batches.train_dataset(data["path"], config()), 6):
        for b, object_id in enumerate(batch["object_id"]):
            sources = []
            for v in range(3):
                centre = camera.camera_center(batch["context_world_to_camera"][b, v]).numpy()
                record = view_of(data, centre)
                assert record.object_id == object_id and record.split == "train"
                np.testing.assert_array_equal(
                    batch["context_images"][b, v], record.image / np.float32(255)
                )
                np.testing.assert_allclose(batch["context_intrinsics"][b, v], record.intrinsics)
                np.testing.assert_allclose(
                    batch["context_world_to_camera"][b, v], record.world_to_camera, atol=1e-6
                )
                sources.append(record.source)
            assert len(set(sources)) == 3
            seen.update(sources)
    # Different steps pick different context views (object 10 has 5 training views).
    assert len([s for s in seen if s.startswith("obj10/")]) > 3


def test_resized_context_views_keep_their_rays(data):
    size = 6  # W 10 -> 6 and H 8 -> 6: a different scale per axis
    batch = take(scene_batches.train_dataset(data["path"], config(image_size=size)), 1)[0]
    for b in range(4):
        for v in range(3):
            centre = camera.camera_center(batch["context_world_to_camera"][b, v]).numpy()
            record = view_of(data, centre)
            image = batch["context_images"][b, v]
            assert image.shape == (size, size, 3)
            expected = tf.image.resize(record.image / 255, [size, size], antialias=True)
            np.testing.assert_allclose(image, np.clip(expected, 0, 1), atol=1e-5)
            np.testing.assert_allclose(image.mean(), record.image.mean() / 255, atol=0.05)
            # A resized pixel centre sees the point the original image has at the same place.
            intrinsics = batch["context_intrinsics"][b, v]
            pixels = camera.pixel_centers(size, size).numpy().reshape(-1, 2)
            original = pixels * [W / size, H / size]
            new_rays = camera.rays_from_pixels(
                camera.Camera(intrinsics, record.world_to_camera), pixels
            )[1]
            old_rays = camera.rays_from_pixels(
                camera.Camera(record.intrinsics, record.world_to_camera), original
            )[1]
            np.testing.assert_allclose(new_rays, old_rays, atol=1e-5)


@pytest.mark.parametrize("context_targets", [True, False])
def test_novel_view_targets(data, context_targets):
    batch_config = config(context_views=2, novel_view_targets=1, context_targets=context_targets)
    novel_count = 0
    for batch in take(scene_batches.train_dataset(data["path"], batch_config), 4):
        for b, object_id in enumerate(batch["object_id"]):
            context_centres = camera.camera_center(batch["context_world_to_camera"][b]).numpy()
            novel_sources = set()
            for r in range(32):
                record = view_of(data, batch["origins"][b, r])
                assert record.object_id == object_id and record.split == "train"
                from_context = np.linalg.norm(
                    context_centres - batch["origins"][b, r], axis=-1
                ).min()
                assert (from_context > 1e-4) == bool(batch["novel"][b, r])
                if batch["novel"][b, r]:
                    novel_sources.add(record.source)
            assert len(novel_sources) <= 1  # one novel view per scene and step
            novel_count += int(batch["novel"][b].sum())
    total = 4 * 4 * 32
    if context_targets:
        # One target view in three is novel: about a third of the rays.
        assert 0.2 < novel_count / total < 0.47
    else:
        assert novel_count == total


def test_deterministic_per_seed_and_start_step(data):
    def first(**kwargs):
        start_step = kwargs.pop("start_step", 0)
        dataset = scene_batches.train_dataset(data["path"], config(**kwargs), start_step=start_step)
        return take(dataset, 2)

    a, b = first(), first()
    for x, y in zip(a, b):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])
    for other in (first(seed=6), first(start_step=10)):
        assert not np.array_equal(a[0]["rgb"], other[0]["rgb"])


def test_global_batch_is_the_same_on_one_or_two_replicas(data):
    one = take(scene_batches.train_dataset(data["path"], config()), 2)
    context = tf.distribute.InputContext(
        num_input_pipelines=1, input_pipeline_id=0, num_replicas_in_sync=2
    )
    two = take(scene_batches.train_dataset(data["path"], config(), context), 4)
    assert two[0]["rgb"].shape == (2, 32, 3)
    for step in range(2):
        for key in one[step]:
            joined = np.concatenate([two[2 * step][key], two[2 * step + 1][key]])
            np.testing.assert_array_equal(one[step][key], joined, err_msg=key)


def test_input_pipelines_see_disjoint_scenes(data):
    seen = []
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=pipeline_id, num_replicas_in_sync=2
        )
        dataset = scene_batches.train_dataset(data["path"], config(), context)
        seen.append({int(i) for batch in take(dataset, 6) for i in batch["object_id"]})
    assert not seen[0] & seen[1]
    assert seen[0] | seen[1] == set(OBJECTS)


def test_every_scene_comes_once_per_epoch(data):
    # 5 scenes, shuffle buffer >= 5: each run of 5 consecutive scenes is a permutation.
    batch_config = config(scenes_per_batch=5)
    for batch in take(scene_batches.train_dataset(data["path"], batch_config), 3):
        assert sorted(batch["object_id"]) == sorted(OBJECTS)


class RejectTest(parameterized.TestCase):
    def _path(self):
        root = tempfile.mkdtemp(prefix="tfglo-scenes-")
        self.addCleanup(shutil.rmtree, root, ignore_errors=True)
        return os.path.join(root, "data")

    @parameterized.named_parameters(
        ("context_views", dict(context_views=0), "context_views must be >= 1"),
        ("target_rays", dict(target_rays=0), "target_rays must be >= 1"),
        ("scenes", dict(scenes_per_batch=0), "scenes_per_batch must be >= 1"),
        ("novel", dict(novel_view_targets=-1), "novel_view_targets must be >= 0"),
        ("no_targets", dict(context_targets=False), "no target view"),
        ("image_size", dict(image_size=0), "image_size must be >= 1"),
        ("radius", dict(scene_radius=0.0), "scene_radius must be > 0"),
    )
    def test_config(self, overrides, message):
        with self.assertRaisesRegex(ValueError, message):
            config(**overrides)

    @parameterized.named_parameters(
        (
            "single_view",
            {1: (1, 2), 2: (1, 0)},
            {},
            r"single-view dataset: each of its 2 objects has one training view",
        ),
        (
            "too_few_views",
            {1: (4, 0), 2: (2, 3), 5: (3, 0)},
            dict(context_views=3, novel_view_targets=1),
            r"2 of the 3 objects .* fewer training views than the 4 a scene needs "
            r"\(context_views=3 \+ novel_view_targets=1\): object 2 has 2, object 5 has 3",
        ),
        ("no_train_views", {1: (0, 2)}, {}, "has no training \\('train' split\\) view"),
    )
    def test_dataset(self, objects, overrides, message):
        path = write(self._path(), make_records(objects))
        with self.assertRaisesRegex(dataset_dir.DatasetError, message):
            scene_batches.train_dataset(path, config(**overrides))

    def test_more_pipelines_than_scenes(self):
        path = write(self._path(), make_records({1: (3, 0)}))
        context = tf.distribute.InputContext(2, 1, 2)
        with self.assertRaisesRegex(dataset_dir.DatasetError, "input pipeline 1 of 2 gets no"):
            scene_batches.train_dataset(path, config(), context)

    def test_batch_does_not_divide_over_replicas(self):
        path = write(self._path(), make_records({1: (3, 0)}))
        context = tf.distribute.InputContext(1, 0, 3)
        with self.assertRaisesRegex(ValueError, "scenes_per_batch 4 does not divide over 3"):
            scene_batches.train_dataset(path, config(), context)


@pytest.mark.parametrize("synthetic_class", ["shapes", "heads"])
def test_built_in_multi_view_classes(tmp_path, synthetic_class):
    if synthetic_class == "shapes":
        module = shapes
        generator_config = shapes.ShapesConfig(
            num_objects=3, image_size=16, train_views_per_object=4, eval_views_per_object=1
        )
    else:
        module = heads
        generator_config = heads.SyntheticConfig(
            num_objects=3, image_size=16, train_views_per_object=3, eval_views_per_object=1
        )
    path = tmp_path / synthetic_class
    with dataset_dir.DatasetWriter(path) as writer:
        writer.metadata.update(module.dataset_metadata(generator_config))
        for record in module.generate(generator_config):
            writer.write(record)
    batch_config = config(scenes_per_batch=3, context_views=2, novel_view_targets=1, image_size=8)
    batch = take(scene_batches.train_dataset(path, batch_config), 1)[0]
    assert sorted(batch["object_id"]) == [0, 1, 2]
    assert batch["context_images"].shape == (3, 2, 8, 8, 3)
    # Rays towards the object hit the bounding sphere; foreground pixels lie on hitting rays.
    assert batch["hit"].mean() > 0.2
    assert (batch["hit"] | (batch["mask"] < 0.5)).all()
    if synthetic_class == "shapes":
        # A plain background: the corners of every context view have the dataset's colour.
        background = np.asarray(generator_config.background_color, np.float32)
        corners = batch["context_images"][:, :, [0, 0, -1, -1], [0, -1, 0, -1]]
        np.testing.assert_allclose(corners, np.broadcast_to(background, corners.shape), atol=0.02)
