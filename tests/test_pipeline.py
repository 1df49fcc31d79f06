"""Tests of the tf.data pipelines (tfglo.pipeline) on small hand-made datasets."""

import json
import pathlib

import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from tfglo.data import dataset_dir, pipeline, records
from tfglo.geometry import camera

H, W = 8, 10  # not square: catches row / column mix-ups
NUM_TRAIN, NUM_EVAL = 7, 3
EVAL_LATENT_OFFSET = 100  # eval images get their own latent ids, so a leak would show
SCENE_RADIUS = 1.3


def make_records(num_train=NUM_TRAIN, num_eval=NUM_EVAL, seed=0):
    rng = np.random.default_rng(seed)
    recs = []
    for i in range(num_train + num_eval):
        train = i < num_train
        eye = rng.normal(size=3)
        eye *= 3.0 / np.linalg.norm(eye)
        mask = rng.integers(0, 256, (H, W), dtype=np.uint8)
        recs.append(
            records.ImageRecord(
                image=rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
                intrinsics=np.array([12.0, 11.0, W / 2 + 0.3, H / 2 - 0.2], np.float32),
                world_to_camera=camera.look_at(eye.astype(np.float32)).numpy(),
                latent_id=i if train else EVAL_LATENT_OFFSET + i,
                object_id=i,
                split="train" if train else "eval",
                mask=None if i == 1 else mask,  # one record without a mask: mask reads as 1
                source=f"img{i}",
            )
        )
    # Interleave eval records between train ones, so selection by index matters.
    order = [0, 1, 7, 2, 3, 8, 4, 5, 9, 6] if len(recs) == 10 else range(len(recs))
    return [recs[i] for i in order]


def write(path, recs, records_per_shard=3, scene_radius=SCENE_RADIUS):
    with dataset_dir.DatasetWriter(path, records_per_shard=records_per_shard) as writer:
        for record in recs:
            writer.write(record)
        if scene_radius is not None:
            writer.metadata["scene_radius"] = scene_radius
    return str(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """(dataset path with 4 shards, single-shard path, records by latent id)."""
    root = tmp_path_factory.mktemp("pipeline")
    recs = make_records()
    return {
        "sharded": write(root / "sharded", recs, records_per_shard=3),
        "single": write(root / "single", recs, records_per_shard=100),
        "by_latent": {r.latent_id: r for r in recs},
        "root": root,
    }


def small_config(**kwargs):
    defaults = dict(images_per_batch=4, rays_per_image=16, seed=3, shuffle_buffer=32)
    defaults.update(kwargs)
    return pipeline.RayBatchConfig(**defaults)


def take(dataset, count):
    return [{k: v.numpy() for k, v in batch.items()} for batch in dataset.take(count)]


def test_shapes_and_dtypes(data):
    dataset = pipeline.train_dataset(data["sharded"], small_config())
    spec = dataset.element_spec
    assert set(spec) == set(pipeline.TRAIN_KEYS)
    n = 4 * 16
    expected = {
        "origins": ([n, 3], tf.float32),
        "directions": ([n, 3], tf.float32),
        "near": ([n], tf.float32),
        "far": ([n], tf.float32),
        "hit": ([n], tf.bool),
        "rgb": ([n, 3], tf.float32),
        "mask": ([n], tf.float32),
        "latent_id": ([n], tf.int64),
    }
    for key, (shape, dtype) in expected.items():
        assert spec[key].shape.as_list() == shape, key  # static: known to the model
        assert spec[key].dtype == dtype, key
    batch = take(dataset, 1)[0]
    np.testing.assert_allclose(np.linalg.norm(batch["directions"], axis=-1), 1.0, atol=1e-5)
    assert batch["rgb"].min() >= 0 and batch["rgb"].max() <= 1


@pytest.mark.parametrize("cache", [True, False])
def test_rays_reproduce_pixel_colours_and_latents(data, cache):
    by_latent = data["by_latent"]
    for batch in take(pipeline.train_dataset(data["sharded"], small_config(cache=cache)), 3):
        for i in range(len(batch["rgb"])):
            record = by_latent[int(batch["latent_id"][i])]
            assert record.split == "train"
            cam = camera.Camera(record.intrinsics, record.world_to_camera)
            np.testing.assert_allclose(
                batch["origins"][i], camera.camera_center(record.world_to_camera), atol=1e-5
            )
            point = batch["origins"][i] + 2.0 * batch["directions"][i]
            pixel, depth = camera.project(cam, point[None].astype(np.float32))
            x, y = pixel.numpy()[0]
            assert depth.numpy()[0] > 0
            # Rays go through pixel centres.
            np.testing.assert_allclose([x % 1, y % 1], [0.5, 0.5], atol=1e-3)
            row, col = int(y), int(x)
            np.testing.assert_allclose(batch["rgb"][i], record.image[row, col] / 255.0, atol=1e-6)
            mask = 1.0 if record.mask is None else record.mask[row, col] / 255.0
            np.testing.assert_allclose(batch["mask"][i], mask, atol=1e-6)


def test_near_far_hit_use_the_dataset_radius(data):
    batch = take(pipeline.train_dataset(data["sharded"], small_config()), 1)[0]
    near, far, hit = camera.intersect_sphere(batch["origins"], batch["directions"], SCENE_RADIUS)
    np.testing.assert_array_equal(batch["hit"], hit.numpy())
    np.testing.assert_allclose(batch["near"], near.numpy(), atol=1e-6)
    np.testing.assert_allclose(batch["far"], far.numpy(), atol=1e-6)
    assert batch["hit"].any() and not batch["hit"].all()
    entry = batch["origins"] + batch["near"][:, None] * batch["directions"]
    np.testing.assert_allclose(
        np.linalg.norm(entry[batch["hit"]], axis=-1), SCENE_RADIUS, atol=1e-4
    )
    # The configuration can override the radius.
    wide = take(pipeline.train_dataset(data["sharded"], small_config(scene_radius=2.9)), 1)[0]
    assert wide["hit"].mean() > batch["hit"].mean()


def test_only_training_images_and_all_of_them(data):
    seen = set()
    for batch in take(pipeline.train_dataset(data["sharded"], small_config()), 20):
        seen.update(batch["latent_id"].tolist())
    assert seen == set(range(NUM_TRAIN))


def test_batches_mix_images(data):
    batch = take(pipeline.train_dataset(data["sharded"], small_config()), 1)[0]
    groups = batch["latent_id"].reshape(4, 16)
    assert (groups == groups[:, :1]).all()  # rays_per_image rays per image visit
    assert len(set(groups[:, 0].tolist())) > 1


def test_deterministic_for_a_seed(data):
    for cache in (True, False):
        config = small_config(cache=cache)
        first = take(pipeline.train_dataset(data["sharded"], config), 3)
        second = take(pipeline.train_dataset(data["sharded"], config), 3)
        for a, b in zip(first, second):
            for key in pipeline.TRAIN_KEYS:
                np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    other = take(pipeline.train_dataset(data["sharded"], small_config(seed=4)), 1)[0]
    assert not np.array_equal(other["rgb"], first[0]["rgb"])
    resumed = take(pipeline.train_dataset(data["sharded"], small_config(), start_step=500), 1)[0]
    assert not np.array_equal(resumed["rgb"], first[0]["rgb"])


@pytest.mark.parametrize("layout", ["sharded", "single"])
def test_two_input_pipelines_cover_disjoint_data(data, layout):
    seen = []
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=pipeline_id, num_replicas_in_sync=2
        )
        dataset = pipeline.train_dataset(data[layout], small_config(), input_context=context)
        assert dataset.element_spec["rgb"].shape.as_list() == [2 * 16, 3]  # per-replica batch
        ids = set()
        for batch in take(dataset, 25):
            ids.update(batch["latent_id"].tolist())
        seen.append(ids)
    assert seen[0] and seen[1]
    assert not seen[0] & seen[1]
    assert seen[0] | seen[1] == set(range(NUM_TRAIN))


def test_select_records_shards_by_file_when_it_can(data):
    metadata = dataset_dir.read_metadata(data["sharded"])
    # 10 records in 4 shards of 3: each pipeline reads its own files.
    shards0, keep0 = pipeline.select_records(metadata, "train", 0, 2)
    shards1, keep1 = pipeline.select_records(metadata, "train", 1, 2)
    assert shards0 == [0, 2] and shards1 == [1, 3]
    assert not (keep0 & keep1).any()
    single = dataset_dir.read_metadata(data["single"])
    shards0, keep0 = pipeline.select_records(single, "train", 0, 2)
    shards1, keep1 = pipeline.select_records(single, "train", 1, 2)
    assert shards0 == shards1 == [0]  # one file: shared, split by record
    assert (keep0.sum(), keep1.sum()) == (4, 3)


def test_distribute_datasets_from_function(data):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    distributed = strategy.distribute_datasets_from_function(
        lambda context: pipeline.train_dataset(data["sharded"], small_config(), context)
    )
    batch = next(iter(distributed))
    values = strategy.experimental_local_results(batch["rgb"])
    assert values[0].shape == (64, 3)


def test_images_per_batch_must_divide_over_replicas(data):
    context = tf.distribute.InputContext(num_replicas_in_sync=3)
    with pytest.raises(ValueError, match="images_per_batch 4 does not divide over 3 replicas"):
        pipeline.train_dataset(data["sharded"], small_config(), input_context=context)


def test_pipeline_without_training_images(tmp_path):
    path = write(tmp_path / "evalonly", make_records(num_train=0, num_eval=2))
    with pytest.raises(dataset_dir.DatasetError, match="input pipeline 0 of 1 gets no 'train'"):
        pipeline.train_dataset(path, small_config())


def test_eval_dataset_yields_whole_images(data):
    images = list(pipeline.eval_dataset(data["sharded"]))
    assert len(images) == NUM_EVAL
    expected = [r for r in data["by_latent"].values() if r.split == "eval"]
    for features, record in zip(images, sorted(expected, key=lambda r: r.latent_id)):
        assert int(features["latent_id"]) == record.latent_id
        np.testing.assert_allclose(features["image"].numpy(), record.image / 255.0, atol=1e-6)
        np.testing.assert_array_equal(features["world_to_camera"].numpy(), record.world_to_camera)
        assert features["image"].shape == (H, W, 3)
    train = list(pipeline.eval_dataset(data["single"], split="train"))
    assert [int(f["latent_id"]) for f in train] == list(range(NUM_TRAIN))


def test_eval_dataset_bad_split(data, tmp_path):
    with pytest.raises(ValueError, match="split must be one of"):
        pipeline.eval_dataset(data["sharded"], split="test")
    path = write(tmp_path / "trainonly", make_records(num_train=2, num_eval=0))
    with pytest.raises(dataset_dir.DatasetError, match="gets no 'eval' image"):
        pipeline.eval_dataset(path)


def test_default_scene_radius_without_metadata(tmp_path):
    path = write(tmp_path / "noradius", make_records(3, 0), scene_radius=None)
    metadata = pipeline.load_metadata(path)
    assert pipeline.scene_radius(metadata) == pipeline.DEFAULT_SCENE_RADIUS
    assert pipeline.scene_radius(metadata, small_config(scene_radius=2.0)) == 2.0


class BadDataTest(parameterized.TestCase):
    """Broken datasets: errors name the file and the problem before training starts."""

    @pytest.fixture(autouse=True)
    def _dataset(self, tmp_path):
        self.path = pathlib.Path(write(tmp_path / "ds", make_records()))

    def _metadata(self):
        return json.loads((self.path / "dataset.json").read_text())

    def _set_metadata(self, metadata):
        (self.path / "dataset.json").write_text(json.dumps(metadata))

    def test_corrupt_shard(self):
        shard = self.path / "records-00001.tfrecord"
        data = bytearray(shard.read_bytes())
        data[60] ^= 0xFF
        shard.write_bytes(bytes(data))
        with pytest.raises(
            dataset_dir.DatasetError, match=r"records-00001.tfrecord is corrupt or truncated"
        ):
            pipeline.train_dataset(self.path, small_config())

    def test_truncated_shard(self):
        shard = self.path / "records-00002.tfrecord"
        shard.write_bytes(shard.read_bytes()[:-20])
        with pytest.raises(
            dataset_dir.DatasetError, match=r"records-00002.tfrecord is truncated or corrupt"
        ):
            pipeline.train_dataset(self.path, small_config())

    def test_truncated_shard_without_sizes(self):
        metadata = self._metadata()
        for shard in metadata["shards"]:
            del shard["num_bytes"]
        self._set_metadata(metadata)
        shard = self.path / "records-00002.tfrecord"
        shard.write_bytes(shard.read_bytes()[:-20])
        with pytest.raises(
            dataset_dir.DatasetError, match=r"records-00002.tfrecord is corrupt or truncated"
        ):
            pipeline.train_dataset(self.path, small_config())

    def test_missing_shard(self):
        (self.path / "records-00000.tfrecord").unlink()
        with pytest.raises(dataset_dir.DatasetError, match=r"records-00000.tfrecord .* missing"):
            pipeline.train_dataset(self.path, small_config())
        with pytest.raises(dataset_dir.DatasetError, match=r"records-00000.tfrecord .* missing"):
            pipeline.eval_dataset(self.path)

    def test_schema_version_mismatch(self):
        metadata = self._metadata()
        metadata["version"] = 0
        self._set_metadata(metadata)
        with pytest.raises(dataset_dir.DatasetError, match=r"dataset.json has schema version 0"):
            pipeline.train_dataset(self.path, small_config())

    def test_record_count_mismatch(self):
        metadata = self._metadata()
        metadata["shards"][0]["num_records"] = 2
        metadata["images"].pop(0)
        self._set_metadata(metadata)
        with pytest.raises(
            dataset_dir.DatasetError, match=r"records-00000.tfrecord holds 3 records, .* says 2"
        ):
            pipeline.train_dataset(self.path, small_config())

    def test_image_list_mismatch(self):
        metadata = self._metadata()
        metadata["images"].pop()
        self._set_metadata(metadata)
        with pytest.raises(dataset_dir.DatasetError, match="'images' list does not match"):
            pipeline.train_dataset(self.path, small_config())

    @parameterized.named_parameters(
        ("images", dict(images_per_batch=0), "images_per_batch must be >= 1"),
        ("rays", dict(rays_per_image=0), "rays_per_image must be >= 1"),
        ("radius", dict(scene_radius=-1.0), "scene_radius must be > 0"),
    )
    def test_bad_config(self, kwargs, message):
        with pytest.raises(ValueError, match=message):
            pipeline.RayBatchConfig(**kwargs)
