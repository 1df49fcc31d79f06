"""Tests of the record schema (tfglo.records) and the dataset directory (tfglo.dataset_dir)."""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from tfglo.data import dataset_dir, records

H, W = 6, 5


def full_record(seed: int = 0, split: str = "train", latent_id: int = 3) -> records.ImageRecord:
    """A record with every optional field set to random values."""
    rng = np.random.default_rng(seed)
    return records.ImageRecord(
        image=rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
        intrinsics=rng.normal(size=4).astype(np.float32),
        world_to_camera=rng.normal(size=(3, 4)).astype(np.float32),
        latent_id=latent_id,
        object_id=7 + seed,
        view_id=2,
        source=f"dir/imäge-{seed}.png",
        split=split,
        mask=rng.integers(0, 256, (H, W), dtype=np.uint8),
        depth=rng.uniform(0, 5, (H, W)).astype(np.float32),
        landmarks=rng.normal(size=(5, 2)).astype(np.float32),
        keypoints_3d=rng.normal(size=(5, 3)).astype(np.float32),
        face_mesh=rng.normal(size=(478, 3)).astype(np.float32),
        face_pose=rng.normal(size=(4, 4)).astype(np.float32),
    )


def minimal_record(seed: int = 0, latent_id: int = 0, split: str = "train"):
    rng = np.random.default_rng(seed)
    return records.ImageRecord(
        image=rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
        intrinsics=np.array([10.0, 11.0, 2.5, 3.0], np.float32),
        world_to_camera=np.eye(3, 4, dtype=np.float32),
        latent_id=latent_id,
        split=split,
    )


ARRAY_FIELDS = (
    "image",
    "intrinsics",
    "world_to_camera",
    "mask",
    "depth",
    "landmarks",
    "keypoints_3d",
    "face_mesh",
    "face_pose",
)
SCALAR_FIELDS = ("latent_id", "object_id", "view_id", "source", "split")


def assert_records_equal(a: records.ImageRecord, b: records.ImageRecord):
    for name in ARRAY_FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        if x is None or y is None:
            assert x is None and y is None, name
            continue
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=name)
        assert np.asarray(x).dtype == np.asarray(y).dtype, name
    for name in SCALAR_FIELDS:
        assert getattr(a, name) == getattr(b, name), name


def write_dataset(path, recs, records_per_shard=2, **metadata):
    with dataset_dir.DatasetWriter(path, records_per_shard=records_per_shard) as writer:
        for i, record in enumerate(recs):
            writer.write(record, quality=i * 0.5)
        writer.metadata.update(metadata)
    return path


class ExampleRoundTripTest(parameterized.TestCase):
    def test_every_field_round_trips_exactly(self):
        record = full_record()
        back = records.from_example(records.to_example(record).SerializeToString())
        assert_records_equal(record, back)

    def test_optional_fields_stay_absent(self):
        record = minimal_record()
        back = records.from_example(records.to_example(record).SerializeToString())
        assert_records_equal(record, back)
        for name in ("mask", "depth", "landmarks", "keypoints_3d", "face_mesh", "face_pose"):
            self.assertIsNone(getattr(back, name), name)

    def test_bool_mask_becomes_255(self):
        mask = np.zeros((H, W), bool)
        mask[1, 2] = True
        record = records.ImageRecord(
            image=np.zeros((H, W, 3), np.uint8),
            intrinsics=np.ones(4),
            world_to_camera=np.eye(3, 4),
            latent_id=0,
            mask=mask,
        )
        self.assertEqual(record.mask.dtype, np.uint8)
        self.assertEqual(record.mask[1, 2], 255)
        self.assertEqual(record.mask.sum(), 255)

    def test_parse_features_matches_record(self):
        record = full_record()
        parsed = records.parse_features(tf.constant(records.to_example(record).SerializeToString()))
        np.testing.assert_allclose(parsed["image"].numpy(), record.image / 255.0, atol=1e-6)
        np.testing.assert_allclose(parsed["mask"].numpy(), record.mask / 255.0, atol=1e-6)
        np.testing.assert_array_equal(parsed["depth"].numpy(), record.depth)
        np.testing.assert_array_equal(parsed["intrinsics"].numpy(), record.intrinsics)
        np.testing.assert_array_equal(parsed["world_to_camera"].numpy(), record.world_to_camera)
        np.testing.assert_array_equal(parsed["landmarks"].numpy(), record.landmarks)
        self.assertTrue(parsed["has_mask"].numpy())
        self.assertTrue(parsed["has_depth"].numpy())
        self.assertEqual(parsed["height"].numpy(), H)
        self.assertEqual(parsed["width"].numpy(), W)
        self.assertEqual(parsed["latent_id"].numpy(), record.latent_id)
        self.assertEqual(parsed["object_id"].numpy(), record.object_id)
        self.assertEqual(parsed["view_id"].numpy(), record.view_id)
        self.assertEqual(parsed["source"].numpy().decode(), record.source)
        self.assertEqual(parsed["split"].numpy().decode(), record.split)

    def test_parse_features_uint8(self):
        record = full_record()
        parsed = records.parse_features(
            tf.constant(records.to_example(record).SerializeToString()), as_uint8=True
        )
        self.assertEqual(parsed["image"].dtype, tf.uint8)
        np.testing.assert_array_equal(parsed["image"].numpy(), record.image)
        np.testing.assert_array_equal(parsed["mask"].numpy(), record.mask)

    @parameterized.parameters(False, True)
    def test_parse_features_without_optional_fields(self, as_uint8):
        record = minimal_record()
        parsed = records.parse_features(
            tf.constant(records.to_example(record).SerializeToString()), as_uint8=as_uint8
        )
        self.assertFalse(parsed["has_mask"].numpy())
        self.assertFalse(parsed["has_depth"].numpy())
        full = 255 if as_uint8 else 1.0
        np.testing.assert_array_equal(parsed["mask"].numpy(), np.full((H, W), full))
        np.testing.assert_array_equal(parsed["depth"].numpy(), np.zeros((H, W)))
        self.assertEqual(parsed["landmarks"].shape, (0, 2))

    @parameterized.named_parameters(
        ("float_image", dict(image=np.zeros((H, W, 3), np.float32)), "uint8"),
        ("gray_image", dict(image=np.zeros((H, W), np.uint8)), r"\[H, W, 3\]"),
        ("split", dict(split="test"), "split must be one of"),
        ("intrinsics", dict(intrinsics=np.ones(3)), r"intrinsics must be \[4\]"),
        ("pose", dict(world_to_camera=np.eye(4)), r"world_to_camera must be \[3, 4\]"),
        ("mask_shape", dict(mask=np.zeros((W, H), np.uint8)), r"mask must be \[6, 5\]"),
        ("float_mask", dict(mask=np.ones((H, W), np.float32)), "mask must be uint8"),
        ("depth_shape", dict(depth=np.zeros((2, 2))), r"depth must be \[6, 5\]"),
        ("landmarks", dict(landmarks=np.zeros((5, 3))), r"landmarks must be \[K, 2\]"),
        ("face_pose", dict(face_pose=np.zeros((3, 4))), r"face_pose must be \[4, 4\]"),
    )
    def test_invalid_record_rejected(self, change, message):
        kwargs = dict(
            image=np.zeros((H, W, 3), np.uint8),
            intrinsics=np.ones(4),
            world_to_camera=np.eye(3, 4),
            latent_id=0,
        )
        kwargs.update(change)
        with pytest.raises(ValueError, match=message):
            records.ImageRecord(**kwargs)


class DatasetDirTest(parameterized.TestCase):
    def setUp(self):
        super().setUp()
        # tempfile, not self.create_tempdir(): absl's needs parsed flags, pytest parses none.
        self.root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)
        # Five records over three shards: two with every field, three minimal, one eval.
        self.recs = [
            (full_record if i < 2 else minimal_record)(
                i, latent_id=i, split="eval" if i == 3 else "train"
            )
            for i in range(5)
        ]

    def _write(self, name="ds", **kwargs):
        return write_dataset(f"{self.root}/{name}", self.recs, **kwargs)

    def test_writer_reader_round_trip(self):
        path = self._write(scene_radius=1.25)
        back = list(dataset_dir.iterate_records(path))
        self.assertLen(back, len(self.recs))
        for a, b in zip(self.recs, back):
            assert_records_equal(a, b)
        metadata = dataset_dir.read_metadata(path)
        self.assertEqual(metadata["version"], dataset_dir.SCHEMA_VERSION)
        self.assertEqual(metadata["num_images"], 5)
        self.assertEqual(metadata["num_latents"], 5)
        self.assertEqual(metadata["image_size"], [H, W])
        self.assertEqual(metadata["splits"], {"train": 4, "eval": 1})
        self.assertEqual(metadata["scene_radius"], 1.25)
        self.assertEqual([s["num_records"] for s in metadata["shards"]], [2, 2, 1])
        self.assertEqual(metadata["images"][1]["quality"], 0.5)
        self.assertEqual(metadata["images"][3]["split"], "eval")
        self.assertEqual(metadata["images"][0]["source"], self.recs[0].source)

    def test_parse_features_through_shards(self):
        path = self._write()
        files = dataset_dir.shard_paths(path)
        self.assertLen(files, 3)
        dataset = tf.data.TFRecordDataset(files).map(records.parse_features)
        latent_ids = [int(x["latent_id"]) for x in dataset]
        self.assertEqual(latent_ids, [0, 1, 2, 3, 4])
        first = next(iter(dataset))
        np.testing.assert_array_equal(
            np.round(first["image"].numpy() * 255).astype(np.uint8), self.recs[0].image
        )

    def test_no_temporary_directories_left(self):
        self._write()
        self.assertEqual(tf.io.gfile.listdir(self.root), ["ds"])

    def test_schema_version_mismatch(self):
        path = self._write()
        meta_path = f"{path}/dataset.json"
        metadata = json.load(open(meta_path))
        metadata["version"] = 99
        json.dump(metadata, open(meta_path, "w"))
        with pytest.raises(dataset_dir.DatasetError, match=r"dataset.json has schema version 99"):
            dataset_dir.read_metadata(path)
        with pytest.raises(dataset_dir.DatasetError, match="schema version 99"):
            list(dataset_dir.iterate_records(path))

    def test_missing_shard(self):
        path = self._write()
        tf.io.gfile.remove(f"{path}/records-00001.tfrecord")
        with pytest.raises(
            dataset_dir.DatasetError, match=r"shard .*records-00001.tfrecord listed in .* missing"
        ):
            dataset_dir.read_metadata(path)

    def test_truncated_shard_found_by_read_metadata(self):
        path = self._write()
        shard = f"{path}/records-00001.tfrecord"
        data = open(shard, "rb").read()
        open(shard, "wb").write(data[:-7])
        with pytest.raises(
            dataset_dir.DatasetError, match=r"records-00001.tfrecord is truncated or corrupt"
        ):
            dataset_dir.read_metadata(path)

    def _drop_sizes(self, path):
        # Older or hand-made datasets carry no byte sizes: reading must still name the file.
        meta_path = f"{path}/dataset.json"
        metadata = json.load(open(meta_path))
        for shard in metadata["shards"]:
            del shard["num_bytes"]
        json.dump(metadata, open(meta_path, "w"))

    def test_truncated_shard_found_when_reading(self):
        path = self._write()
        self._drop_sizes(path)
        shard = f"{path}/records-00001.tfrecord"
        data = open(shard, "rb").read()
        open(shard, "wb").write(data[:-7])
        reader = dataset_dir.iterate_records(path)
        read = [next(reader), next(reader), next(reader)]  # shard 0 and record 0 of shard 1
        assert_records_equal(read[2], self.recs[2])
        with pytest.raises(
            dataset_dir.DatasetError,
            match=r"records-00001.tfrecord is corrupt or truncated \(after record 1\)",
        ):
            next(reader)

    def test_corrupt_shard_same_size(self):
        path = self._write()
        shard = f"{path}/records-00000.tfrecord"
        data = bytearray(open(shard, "rb").read())
        data[100] ^= 0xFF  # inside the first record's payload: its CRC no longer matches
        open(shard, "wb").write(bytes(data))
        dataset_dir.read_metadata(path)  # same size: only reading can tell
        with pytest.raises(
            dataset_dir.DatasetError,
            match=r"records-00000.tfrecord is corrupt or truncated \(after record 0\)",
        ):
            list(dataset_dir.iterate_records(path))

    def test_record_that_is_not_an_example(self):
        path = self._write()
        self._drop_sizes(path)
        with tf.io.TFRecordWriter(f"{path}/records-00002.tfrecord") as writer:
            writer.write(b"\x0a\x05not a tf.train.Example")
        with pytest.raises(
            dataset_dir.DatasetError,
            match=r"records-00002.tfrecord: record 0 is not a valid tfglo record",
        ):
            list(dataset_dir.iterate_records(path))

    def test_missing_metadata(self):
        with pytest.raises(dataset_dir.DatasetError, match="does not exist"):
            dataset_dir.read_metadata(f"{self.root}/nothing")
        tf.io.gfile.makedirs(f"{self.root}/empty")
        with pytest.raises(dataset_dir.DatasetError, match=r"dataset.json is missing"):
            dataset_dir.read_metadata(f"{self.root}/empty")

    def test_malformed_metadata(self):
        path = self._write()
        open(f"{path}/dataset.json", "w").write("{not json")
        with pytest.raises(dataset_dir.DatasetError, match=r"dataset.json is not valid JSON"):
            dataset_dir.read_metadata(path)
        open(f"{path}/dataset.json", "w").write('{"version": 1}')
        with pytest.raises(dataset_dir.DatasetError, match=r"no valid 'shards' list"):
            dataset_dir.read_metadata(path)

    def test_refuses_non_empty_output(self):
        path = self._write()
        with pytest.raises(dataset_dir.DatasetError, match="is not empty; pass --overwrite"):
            dataset_dir.DatasetWriter(path)
        # Nothing was touched.
        self.assertLen(list(dataset_dir.iterate_records(path)), 5)

    def test_overwrite_replaces(self):
        path = self._write()
        with dataset_dir.DatasetWriter(path, overwrite=True) as writer:
            writer.write(minimal_record(9, latent_id=0))
        back = list(dataset_dir.iterate_records(path))
        self.assertLen(back, 1)
        assert_records_equal(back[0], minimal_record(9, latent_id=0))
        self.assertEqual(sorted(tf.io.gfile.listdir(self.root)), ["ds"])

    def test_empty_output_dir_is_fine(self):
        tf.io.gfile.makedirs(f"{self.root}/ds")
        self._write()
        self.assertLen(list(dataset_dir.iterate_records(f"{self.root}/ds")), 5)

    def test_overwrite_never_replaces_a_non_dataset_folder(self):
        folder = f"{self.root}/precious"
        tf.io.gfile.makedirs(folder)
        open(f"{folder}/thesis.txt", "w").write("x")
        with pytest.raises(dataset_dir.DatasetError, match="is not a tfglo dataset"):
            dataset_dir.DatasetWriter(folder, overwrite=True)
        self.assertEqual(open(f"{folder}/thesis.txt").read(), "x")

    def test_output_is_a_file(self):
        open(f"{self.root}/file", "w").write("x")
        with pytest.raises(dataset_dir.DatasetError, match="exists and is not a directory"):
            dataset_dir.DatasetWriter(f"{self.root}/file", overwrite=True)

    def test_exception_inside_writer_leaves_nothing(self):
        with pytest.raises(RuntimeError, match="boom"):
            with dataset_dir.DatasetWriter(f"{self.root}/ds", records_per_shard=1) as writer:
                writer.write(minimal_record(0))
                writer.write(minimal_record(1))
                raise RuntimeError("boom")
        self.assertEqual(tf.io.gfile.listdir(self.root), [])

    def test_failed_replacement_keeps_old_dataset(self):
        path = self._write()
        with pytest.raises(RuntimeError, match="boom"):
            with dataset_dir.DatasetWriter(path, overwrite=True) as writer:
                writer.write(minimal_record(8))
                raise RuntimeError("boom")
        back = list(dataset_dir.iterate_records(path))
        self.assertLen(back, 5)
        assert_records_equal(back[0], self.recs[0])
        self.assertEqual(tf.io.gfile.listdir(self.root), ["ds"])

    def test_failure_while_closing_keeps_old_dataset(self):
        path = self._write()
        with pytest.raises(TypeError, match="not JSON serializable"):
            with dataset_dir.DatasetWriter(path, overwrite=True) as writer:
                writer.write(minimal_record(8))
                writer.metadata["bad"] = object()
        self.assertLen(list(dataset_dir.iterate_records(path)), 5)
        self.assertEqual(tf.io.gfile.listdir(self.root), ["ds"])

    def test_write_needs_context_manager(self):
        writer = dataset_dir.DatasetWriter(f"{self.root}/ds")
        with pytest.raises(RuntimeError, match="use `with DatasetWriter`"):
            writer.write(minimal_record(0))

    def test_image_size_must_match(self):
        other = records.ImageRecord(
            image=np.zeros((H + 1, W, 3), np.uint8),
            intrinsics=np.ones(4),
            world_to_camera=np.eye(3, 4),
            latent_id=1,
            source="big.png",
        )
        with pytest.raises(dataset_dir.DatasetError, match=r"big.png: image size \(7, 5\) differs"):
            with dataset_dir.DatasetWriter(f"{self.root}/ds") as writer:
                writer.write(minimal_record(0))
                writer.write(other)
        self.assertEqual(tf.io.gfile.listdir(self.root), [])


_WRITE_SCRIPT = """
import sys
sys.path.insert(0, sys.argv[2])
import test_records
from tfglo.data import dataset_dir
with dataset_dir.DatasetWriter(sys.argv[1]) as writer:
    for seed in range(3):
        writer.write(test_records.full_record(seed))
"""


def test_same_records_write_the_same_bytes_in_two_processes(tmp_path):
    # tf.train.Example's feature map is serialised in a per-process order unless asked to be
    # deterministic; a data set must not change from run to run.
    with dataset_dir.DatasetWriter(tmp_path / "here") as writer:
        for seed in range(3):
            writer.write(full_record(seed))
    subprocess.run(
        [
            sys.executable,
            "-c",
            _WRITE_SCRIPT,
            str(tmp_path / "there"),
            str(pathlib.Path(__file__).parent),
        ],
        check=True,
        cwd=pathlib.Path(__file__).parent.parent,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES=""),
    )
    shard = "records-00000.tfrecord"
    assert (tmp_path / "here" / shard).read_bytes() == (tmp_path / "there" / shard).read_bytes()
