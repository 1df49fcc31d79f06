"""The tf.data pipelines: random ray batches for training, whole images for evaluation.

Training (`train_dataset`). Per step, every replica gets `images_per_batch / num_replicas` images
x `rays_per_image` rays, flat: N rays with their origins, unit directions, near/far/hit against
the dataset's bounding sphere (`scene_radius` in dataset.json), target rgb and mask, and the
latent id of their image. The stages:

1. records of the "train" split of this input pipeline's share of the data (below), selected by
   index from dataset.json before anything is decoded;
2. PNG decoding (uint8), then, with `cache=True`, an in-memory cache of the decoded images (a
   quarter of the float32 size; the first pass reads the disk, later ones memory). With
   `cache=False` every epoch streams from disk, shard order reshuffled, for data sets larger
   than memory;
3. repeat forever, shuffle images (`shuffle_buffer` of them; with the cache the buffer holds
   references, not copies), batch `images_per_batch / num_replicas` images (all images of a
   dataset share one size: `DatasetWriter` enforces it);
4. one vectorised map per batch: `rays_per_image` pixels per image drawn uniformly (with
   replacement) by a stateless RNG keyed by (seed, start step, pipeline, batch index), their
   colours and masks gathered, and the rays computed in the graph with
   `camera.rays_from_pixels` (through pixel centres, +0.5) and `camera.intersect_sphere`.

Determinism: the same dataset directory, configuration, start step and input context give the
same batches (seeded shuffles, stateless sampling, order-preserving parallel maps).

Distribution: pass the `tf.distribute.InputContext` that
`strategy.distribute_datasets_from_function` hands the dataset function. Input pipeline i of n
takes shards i, i + n, ... when there are at least n shards and each such share holds training
images; otherwise every pipeline reads every shard and keeps training records i, i + n, ...
Either way the pipelines see disjoint images. `images_per_batch` is the global number of images
per step; each element is one replica's batch.

Evaluation (`eval_dataset`): whole images of a split, in dataset order, as `records.parse_features`
dicts.

Bad data: `dataset_dir.read_metadata` rejects missing, truncated (byte size) and wrong-version
shards up front; with `verify=True` every shard of the pipeline is also read once before training
so that a corrupt record is reported with its file instead of surfacing mid-training as an
anonymous `DataLossError`.
"""

import dataclasses
import os
import time
from typing import Any

import numpy as np
import tensorflow as tf

from tfglo.data import dataset_dir, records
from tfglo.geometry import camera

load_metadata = dataset_dir.read_metadata

TRAIN_KEYS = ("origins", "directions", "near", "far", "hit", "rgb", "mask", "latent_id")
# Default radius when dataset.json has none: the canonical frame's unit sphere (DESIGN.md 3).
DEFAULT_SCENE_RADIUS = 1.0
# Streams a stateless seed is drawn from (keeps pixel sampling and shuffles independent).
_PIXEL_STREAM, _SHUFFLE_STREAM, _FILE_STREAM = 1, 2, 3


@dataclasses.dataclass(frozen=True)
class RayBatchConfig:
    """How training rays are drawn.

    Attributes:
      images_per_batch: images per global step (split evenly over the replicas).
      rays_per_image: rays drawn from each image of a batch.
      seed: seeds the shuffles and the pixel sampling.
      cache: keep decoded images in memory (uint8) after the first pass; False streams every
        epoch from disk (data sets larger than memory).
      shuffle_buffer: images held in the shuffle buffer (capped at the number of images). With
        the cache they are references; when streaming, decoded images (H x W x 4 bytes each).
      scene_radius: bounding-sphere radius for near/far/hit; None takes dataset.json's
        `scene_radius` (or 1.0, the canonical frame's, when it has none).
      verify: read every shard of this pipeline once before training, so a corrupt record is
        reported with its file name.
      num_parallel_reads: shards read concurrently.
    """

    images_per_batch: int = 32
    rays_per_image: int = 64
    seed: int = 0
    cache: bool = True
    shuffle_buffer: int = 1024
    scene_radius: float | None = None
    verify: bool = True
    num_parallel_reads: int = 4

    def __post_init__(self):
        for name in ("images_per_batch", "rays_per_image", "shuffle_buffer", "num_parallel_reads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.scene_radius is not None and not self.scene_radius > 0:
            raise ValueError(f"scene_radius must be > 0, got {self.scene_radius}")


def scene_radius(metadata: dict[str, Any], config: RayBatchConfig | None = None) -> float:
    """The bounding-sphere radius rays are clipped to: config's, else dataset.json's, else 1."""
    if config is not None and config.scene_radius is not None:
        return float(config.scene_radius)
    return float(metadata.get("scene_radius", DEFAULT_SCENE_RADIUS))


def _record_splits(metadata: dict[str, Any]) -> list[str] | None:
    """Split of every record in file order, from dataset.json (None when it does not say)."""
    images = metadata.get("images")
    total = sum(int(s.get("num_records", -1)) for s in metadata["shards"])
    if not isinstance(images, list) or len(images) != total:
        return None
    return [str(image.get("split", "")) for image in images]


def _shard_offsets(metadata: dict[str, Any]) -> list[int]:
    offsets, total = [], 0
    for shard in metadata["shards"]:
        offsets.append(total)
        total += int(shard.get("num_records", 0))
    return offsets


def select_records(
    metadata: dict[str, Any], split: str, pipeline_id: int = 0, num_pipelines: int = 1
) -> tuple[list[int], np.ndarray]:
    """Which shards an input pipeline reads and which of their records it keeps.

    Args:
      metadata: dataset.json contents (`read_metadata`).
      split: "train" or "eval".
      pipeline_id: this input pipeline, in [0, num_pipelines).
      num_pipelines: input pipelines sharing the data (disjointly).

    Returns:
      (shard indices to read, keep `[num_records]` bool over all records of the dataset in file
      order).

    Raises:
      DatasetError: dataset.json's image list does not match its shards, or this pipeline gets no
        record of the split.
    """
    splits = _record_splits(metadata)
    if splits is None:
        raise dataset_dir.DatasetError(
            "dataset.json's 'images' list does not match its shards' record counts: rewrite the "
            "dataset with this version of tfglo (python -m tfglo.prepare)"
        )
    in_split = np.array([s == split for s in splits], bool)
    offsets = _shard_offsets(metadata) + [len(splits)]
    num_shards = len(metadata["shards"])
    per_shard = [int(in_split[offsets[i] : offsets[i + 1]].sum()) for i in range(num_shards)]
    shards = list(range(pipeline_id, num_shards, num_pipelines))
    if num_pipelines > 1 and all(
        sum(per_shard[i] for i in range(p, num_shards, num_pipelines)) > 0
        for p in range(num_pipelines)
    ):
        # Shard by file: each pipeline reads only its own files.
        keep = in_split.copy()
        for i in range(num_shards):
            if i % num_pipelines != pipeline_id:
                keep[offsets[i] : offsets[i + 1]] = False
    else:
        # Too few files (or files without this split): every pipeline reads every file and keeps
        # every num_pipelines-th record of the split.
        shards = list(range(num_shards))
        rank = np.cumsum(in_split) - 1
        keep = in_split & (rank % num_pipelines == pipeline_id)
    shards = [i for i in shards if keep[offsets[i] : offsets[i + 1]].any()]
    if not keep.any():
        raise dataset_dir.DatasetError(
            f"input pipeline {pipeline_id} of {num_pipelines} gets no {split!r} image: the "
            f"dataset has {int(in_split.sum())} (use fewer input pipelines or more images)"
        )
    return shards, keep


def verify_shards(paths: list[str], expected_counts: list[int] | None = None) -> None:
    """Reads every record of the given shards once (CRC checks), naming the file that fails.

    Raises:
      DatasetError: a shard is corrupt or truncated, or holds a different number of records than
        dataset.json says.
    """
    for i, path in enumerate(paths):
        try:
            count = int(tf.data.TFRecordDataset(path).reduce(np.int64(0), lambda c, _: c + 1))
        except tf.errors.DataLossError as e:
            raise dataset_dir.DatasetError(
                f"record file {path} is corrupt or truncated: {e.message}"
            ) from e
        if expected_counts is not None and count != expected_counts[i]:
            raise dataset_dir.DatasetError(
                f"record file {path} holds {count} records, dataset.json says {expected_counts[i]}"
            )


def _indexed_records(
    paths: list[str], offsets: list[int], shuffle_seed=None, parallel_reads: int = 4
) -> tf.data.Dataset:
    """(global record index, serialized record) of the given shards, interleaved by file.

    With `shuffle_seed` (streaming), the file order is reshuffled every epoch.
    """
    files = tf.data.Dataset.from_tensor_slices(
        (tf.constant(paths, tf.string), tf.constant(offsets, tf.int64))
    )
    if shuffle_seed is not None and len(paths) > 1:
        files = files.shuffle(len(paths), seed=shuffle_seed, reshuffle_each_iteration=True)

    def read(path, offset):
        return tf.data.TFRecordDataset(path).enumerate().map(lambda i, r: (i + offset, r))

    return files.interleave(
        read,
        cycle_length=max(1, min(len(paths), parallel_reads)),
        block_length=1,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )


def _seed(config_seed: int, start_step: int, pipeline_id: int, stream: int) -> int:
    # One 63-bit seed per (seed, start step, pipeline, stream); numpy's SeedSequence mixes well.
    entropy = [config_seed & 0xFFFFFFFF, start_step & 0xFFFFFFFF, pipeline_id, stream]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> 1)


def replica_share(input_context, global_count: int, name: str) -> tuple[int, int, int]:
    """(pipeline_id, num_pipelines, per-replica count) of a global batch under a strategy.

    Args:
      input_context: a `tf.distribute.InputContext`, or None (one pipeline, one replica).
      global_count: items per global step (images, scenes).
      name: the setting's name, for the error.

    Raises:
      ValueError: `global_count` does not divide over the replicas.
    """
    pipeline_id = input_context.input_pipeline_id if input_context else 0
    num_pipelines = input_context.num_input_pipelines if input_context else 1
    num_replicas = input_context.num_replicas_in_sync if input_context else 1
    if global_count % num_replicas:
        raise ValueError(f"{name} {global_count} does not divide over {num_replicas} replicas")
    return pipeline_id, num_pipelines, global_count // num_replicas


def train_dataset(
    dataset_path: os.PathLike | str,
    config: RayBatchConfig = RayBatchConfig(),
    input_context: tf.distribute.InputContext | None = None,
    start_step: int = 0,
) -> tf.data.Dataset:
    """Endless batches of training rays (see the module docstring).

    Args:
      dataset_path: a dataset directory (tfglo.prepare).
      config: batch size, seed, caching.
      input_context: from `strategy.distribute_datasets_from_function`; None: one pipeline, one
        replica.
      start_step: the step a (resumed) run starts from; it reseeds the stream, so a resumed run
        does not replay the first batches (deterministic given the same start step).

    Returns:
      A dataset of dicts with N = images_per_batch / num_replicas x rays_per_image:
      origins `[N, 3]`, directions `[N, 3]` (unit), near `[N]`, far `[N]` (distances along the
      ray, object units; 0 where the ray misses), hit `[N]` bool, rgb `[N, 3]` float32 in [0, 1],
      mask `[N]` float32 in [0, 1] (1 where the record has no mask), latent_id `[N]` int64.

    Raises:
      DatasetError: the directory is not a valid dataset, has no training image for this
        pipeline, or (verify) a shard is corrupt.
      ValueError: images_per_batch does not divide over the replicas.
    """
    metadata = dataset_dir.read_metadata(dataset_path)
    pipeline_id, num_pipelines, local_images = replica_share(
        input_context, config.images_per_batch, "images_per_batch"
    )
    rays_per_image = config.rays_per_image
    num_rays = local_images * rays_per_image
    radius = scene_radius(metadata, config)

    shards, keep = select_records(metadata, "train", pipeline_id, num_pipelines)
    all_paths = dataset_dir.shard_paths(dataset_path, metadata)
    offsets = _shard_offsets(metadata)
    paths = [all_paths[i] for i in shards]
    if config.verify:
        verify_shards(paths, [int(metadata["shards"][i]["num_records"]) for i in shards])
    keep_table = tf.constant(keep)

    def seed(stream):
        return _seed(config.seed, start_step, pipeline_id, stream)

    file_seed = None if config.cache else seed(_FILE_STREAM)
    data = _indexed_records(
        paths, [offsets[i] for i in shards], file_seed, config.num_parallel_reads
    )
    data = data.filter(lambda index, _: tf.gather(keep_table, index))

    def decode(index, serialized):
        del index
        features = records.parse_features(serialized, as_uint8=True)
        # Only what training needs: caching the depth maps too would double the memory.
        return {k: features[k] for k in ("image", "mask", "intrinsics", "world_to_camera")} | {
            "latent_id": features["latent_id"]
        }

    data = data.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    if config.cache:
        data = data.cache()
    # Shuffling images after the cache costs no copies (the buffer holds references to cached
    # tensors); a buffer no larger than the data set makes every window a fresh permutation.
    buffer = min(config.shuffle_buffer, int(keep.sum()))
    data = data.repeat().shuffle(buffer, seed=seed(_SHUFFLE_STREAM))
    data = data.batch(local_images, drop_remainder=True)
    pixel_seed = tf.constant(seed(_PIXEL_STREAM), tf.int64)

    def make_rays(step, images):
        # One vectorised map per batch: per-image maps cost several times more in tf.data.
        shape = tf.shape(images["image"], out_type=tf.int64)
        height, width = shape[1], shape[2]
        flat = tf.random.stateless_uniform(
            [local_images, rays_per_image],
            seed=tf.stack([pixel_seed, step]),
            minval=0,
            maxval=height * width,
            dtype=tf.int64,
        )
        rows, cols = flat // width, flat % width
        coords = tf.stack([rows, cols], -1)  # [B, R, 2]
        rgb = tf.gather_nd(images["image"], coords, batch_dims=1)  # [B, R, 3]
        mask = tf.gather_nd(images["mask"], coords, batch_dims=1)  # [B, R]
        pixels = tf.cast(tf.stack([cols, rows], -1), tf.float32) + 0.5  # centres, (x, y)
        cameras = camera.Camera(images["intrinsics"], images["world_to_camera"])
        origins, directions = camera.rays_from_pixels(cameras, pixels)
        origins = tf.reshape(origins, [num_rays, 3])
        directions = tf.reshape(directions, [num_rays, 3])
        near, far, hit = camera.intersect_sphere(origins, directions, radius)
        return {
            "origins": origins,
            "directions": directions,
            "near": near,
            "far": far,
            "hit": hit,
            "rgb": tf.reshape(tf.cast(rgb, tf.float32) / 255.0, [num_rays, 3]),
            "mask": tf.reshape(tf.cast(mask, tf.float32) / 255.0, [num_rays]),
            "latent_id": tf.repeat(images["latent_id"], rays_per_image),
        }

    data = data.enumerate().map(make_rays, num_parallel_calls=tf.data.AUTOTUNE)
    return data.prefetch(tf.data.AUTOTUNE)


def eval_dataset(dataset_path: os.PathLike | str, split: str = "eval") -> tf.data.Dataset:
    """Whole images of one split, in dataset order (finite).

    Returns:
      A dataset of `records.parse_features` dicts (image `[H, W, 3]` float32, mask, depth,
      intrinsics, world_to_camera, latent_id, ...), one per image.

    Raises:
      ValueError: unknown split.
      DatasetError: invalid dataset directory, or the split is empty.
    """
    if split not in records.SPLITS:
        raise ValueError(f"split must be one of {records.SPLITS}, got {split!r}")
    metadata = dataset_dir.read_metadata(dataset_path)
    shards, keep = select_records(metadata, split)
    all_paths = dataset_dir.shard_paths(dataset_path, metadata)
    offsets = _shard_offsets(metadata)
    keep_table = tf.constant(keep)
    files = [all_paths[i] for i in shards]
    data = tf.data.Dataset.from_tensor_slices(
        (tf.constant(files, tf.string), tf.constant([offsets[i] for i in shards], tf.int64))
    ).flat_map(
        lambda path, offset: (
            tf.data.TFRecordDataset(path).enumerate().map(lambda i, r: (i + offset, r))
        )
    )
    data = data.filter(lambda index, _: tf.gather(keep_table, index))
    return data.map(lambda _, r: records.parse_features(r), num_parallel_calls=tf.data.AUTOTUNE)


def measure_rays_per_second(
    dataset: tf.data.Dataset, num_rays: int, min_seconds: float = 3.0
) -> float:
    """Rays per second a ray dataset delivers (after a warm-up that fills caches and buffers)."""
    iterator = iter(dataset)
    for _ in range(20):
        next(iterator)
    batches, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_seconds:
        next(iterator)["rgb"].numpy()
        batches += 1
    return batches * num_rays / (time.perf_counter() - start)
