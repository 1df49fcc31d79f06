"""Scene batches for NeRF-VAE training: per scene, V whole context views and R target rays.

A scene is an object of a multi-view dataset directory (its records share an `object_id`: the
shapes and heads synthetic classes with several training views, `transforms.json` imports with
`object_id`). Only `split=train` views are used. Per step, every replica gets
`scenes_per_batch / num_replicas` scenes, each with:
- `context_views` views chosen at random among the scene's training views, whole, resized to
  `image_size` x `image_size` (bilinear with antialiasing) with their intrinsics scaled per axis
  (fx, cx by the width ratio; fy, cy by the height ratio: pixel centres at +0.5 map exactly, so
  the rays of the resized view are the rays of the original one), and their world-to-camera;
- `target_rays` rays at the dataset's own resolution, each from a view drawn uniformly among the
  scene's target views and a pixel drawn uniformly in it (with replacement): the context views
  (`context_targets`, reconstruction) and `novel_view_targets` further training views of the scene
  that are not among its context views this step (novel-view supervision).

The stages:
1. from dataset.json, before anything is decoded: the training records of every object, the
   checks below, and this input pipeline's share of the objects (pipeline i of n takes the
   objects ranked i, i + n, ... by id, so pipelines see disjoint scenes);
2. PNG decoding (uint8), then the views of each object grouped into one element (`[n_views, H, W,
   3]`, in file order) and, with `cache=True`, kept in memory (a second epoch reads no file);
3. shuffle scenes (a new order every epoch), repeat forever, then per scene a stateless RNG
   keyed by (seed, start step, pipeline, scene index) picks the context views, the target views
   and the target pixels; the scene index counts scenes before batching, so the global batch of
   a step is the same whatever the number of replicas (one input pipeline);
4. one vectorised map per batch: context resizing, rays through the target pixel centres
   (`camera.rays_from_pixels`) and their near/far/hit against the bounding sphere.

Determinism: the same dataset directory, configuration, start step and input context give the
same batches; a resumed run passes its start step, which reseeds the stream (as
`tfglo.data.pipeline` does).

Bad data (a `DatasetError` naming the problem, raised when the dataset is built): a single-view
dataset (every object has one training view); an object with fewer training views than
`context_views + novel_view_targets` (the message names the objects and their counts); no
training view at all; fewer objects than input pipelines. Views of another size than the encoder's
are not an error: they are resized (above).
"""

import dataclasses
import os
from typing import Any

import numpy as np
import tensorflow as tf

from tfglo.data import dataset_dir, pipeline, records
from tfglo.geometry import camera

SCENE_KEYS = (
    "context_images",
    "context_intrinsics",
    "context_world_to_camera",
    "object_id",
    "origins",
    "directions",
    "near",
    "far",
    "hit",
    "rgb",
    "mask",
    "novel",
    "target_pixels",
)
# Seed streams (distinct from tfglo.data.pipeline's 1..3 only for readability; seeds are also keyed
# by the pipeline, so the two never share one).
_SCENE_STREAM, _SHUFFLE_STREAM, _FILE_STREAM = 11, 12, 13
# Objects named in an error message.
_MAX_NAMED = 5


@dataclasses.dataclass(frozen=True)
class SceneBatchConfig:
    """How scene batches are drawn.

    Attributes:
      scenes_per_batch: scenes per global step (split evenly over the replicas).
      context_views: context views per scene (V), chosen at random among its training views.
      target_rays: target rays per scene (R), drawn uniformly over its target views' pixels.
      context_targets: draw target rays from the scene's context views (reconstruction).
      novel_view_targets: further training views per scene, not among its context views, that
        target rays are also drawn from (novel-view supervision); 0: none.
      image_size: side of the square context views after resizing (the encoder's input size),
        pixels; None keeps the dataset's size.
      seed: seeds the scene shuffle and the view and pixel choices.
      cache: keep decoded images in memory (uint8) after the first pass; False streams every
        epoch from disk (data sets larger than memory).
      shuffle_buffer: scenes held in the shuffle buffer (capped at this pipeline's scenes).
      scene_radius: bounding-sphere radius for near/far/hit; None takes dataset.json's
        `scene_radius` (or 1.0 when it has none).
      verify: read every shard of this pipeline once before training, so a corrupt record is
        reported with its file name.
      num_parallel_reads: shards read concurrently.
    """

    scenes_per_batch: int = 8
    context_views: int = 4
    target_rays: int = 512
    context_targets: bool = True
    novel_view_targets: int = 0
    image_size: int | None = 64
    seed: int = 0
    cache: bool = True
    shuffle_buffer: int = 1024
    scene_radius: float | None = None
    verify: bool = True
    num_parallel_reads: int = 4

    def __post_init__(self):
        for name in (
            "scenes_per_batch",
            "context_views",
            "target_rays",
            "shuffle_buffer",
            "num_parallel_reads",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.novel_view_targets < 0:
            raise ValueError(f"novel_view_targets must be >= 0, got {self.novel_view_targets}")
        if not self.context_targets and self.novel_view_targets == 0:
            raise ValueError(
                "no target view: set context_targets or novel_view_targets >= 1 (target rays "
                "come from the context views and/or other views of the scene)"
            )
        if self.image_size is not None and self.image_size < 1:
            raise ValueError(f"image_size must be >= 1 or None, got {self.image_size}")
        if self.scene_radius is not None and not self.scene_radius > 0:
            raise ValueError(f"scene_radius must be > 0, got {self.scene_radius}")

    @property
    def views_needed(self) -> int:
        """Training views every object must have: context_views + novel_view_targets."""
        return self.context_views + self.novel_view_targets

    @property
    def target_views(self) -> int:
        """Views per scene target rays are drawn from."""
        return self.novel_view_targets + (self.context_views if self.context_targets else 0)


def scene_records(metadata: dict[str, Any], split: str = "train") -> dict[int, list[int]]:
    """Object id -> indices (file order over all shards) of its records of `split`.

    Raises:
      DatasetError: dataset.json's image list does not match its shards, or lacks object ids.
    """
    splits = pipeline._record_splits(metadata)
    if splits is None:
        raise dataset_dir.DatasetError(
            "dataset.json's 'images' list does not match its shards' record counts: rewrite the "
            "dataset with this version of tfglo (python -m tfglo.prepare)"
        )
    scenes: dict[int, list[int]] = {}
    for index, (image, image_split) in enumerate(zip(metadata["images"], splits)):
        if image_split != split:
            continue
        if "object_id" not in image:
            raise dataset_dir.DatasetError(
                f"dataset.json's image {index} ({image.get('source', '?')}) has no object_id: "
                "scene batches group views by object; rewrite the dataset with this version of "
                "tfglo"
            )
        scenes.setdefault(int(image["object_id"]), []).append(index)
    return scenes


def check_scenes(
    scenes: dict[int, list[int]], config: SceneBatchConfig, where: str = "the dataset"
) -> None:
    """Checks that every scene can give a batch element (see the module docstring).

    Args:
      scenes: `scene_records` of the training split.
      config: the batch configuration (views needed per object).
      where: names the dataset in messages.

    Raises:
      DatasetError: no training view, a single-view dataset, or objects with too few views.
    """
    if not scenes:
        raise dataset_dir.DatasetError(f"{where} has no training ('train' split) view")
    counts = {object_id: len(indices) for object_id, indices in scenes.items()}
    needed = config.views_needed
    novel = (
        f" + novel_view_targets={config.novel_view_targets}" if config.novel_view_targets else ""
    )
    if max(counts.values()) == 1:
        raise dataset_dir.DatasetError(
            f"{where} is a single-view dataset: each of its {len(counts)} objects has one "
            f"training view, and NeRF-VAE scene batches need several views per object "
            f"(context_views={config.context_views}{novel}). Use multi-view data (e.g. tfglo."
            "prepare --synthetic_class=shapes, or --train_views=4 for the heads), or train "
            "LOLNeRF on single views"
        )
    short = sorted((o, c) for o, c in counts.items() if c < needed)
    if short:
        named = ", ".join(f"object {o} has {c}" for o, c in short[:_MAX_NAMED])
        more = f" (and {len(short) - _MAX_NAMED} more)" if len(short) > _MAX_NAMED else ""
        raise dataset_dir.DatasetError(
            f"{len(short)} of the {len(counts)} objects of {where} have fewer training views "
            f"than the {needed} a scene needs (context_views={config.context_views}{novel}): "
            f"{named}{more}. Request fewer views or drop those objects"
        )


def pipeline_scenes(
    scenes: dict[int, list[int]], pipeline_id: int = 0, num_pipelines: int = 1
) -> list[int]:
    """Object ids of input pipeline `pipeline_id`: those ranked pipeline_id, +n, ... by id.

    Raises:
      DatasetError: the pipeline gets no object (fewer objects than pipelines).
    """
    ids = sorted(scenes)[pipeline_id::num_pipelines]
    if not ids:
        raise dataset_dir.DatasetError(
            f"input pipeline {pipeline_id} of {num_pipelines} gets no scene: the dataset has "
            f"{len(scenes)} objects with training views (use fewer input pipelines)"
        )
    return ids


def scaled_intrinsics(intrinsics, height, width, new_height, new_width) -> tf.Tensor:
    """Intrinsics `[..., 4]` (fx, fy, cx, cy) of an `height` x `width` image resized to
    `new_height` x `new_width`: x terms scale by the width ratio, y terms by the height ratio."""
    intrinsics = tf.convert_to_tensor(intrinsics, tf.float32)
    sx = tf.cast(new_width, tf.float32) / tf.cast(width, tf.float32)
    sy = tf.cast(new_height, tf.float32) / tf.cast(height, tf.float32)
    return intrinsics * tf.stack([sx, sy, sx, sy])


def train_dataset(
    dataset_path: os.PathLike | str,
    config: SceneBatchConfig = SceneBatchConfig(),
    input_context: tf.distribute.InputContext | None = None,
    start_step: int = 0,
) -> tf.data.Dataset:
    """Endless batches of training scenes (see the module docstring).

    Args:
      dataset_path: a multi-view dataset directory (tfglo.prepare).
      config: scenes, views and rays per batch, seed, caching.
      input_context: from `strategy.distribute_datasets_from_function`; None: one pipeline, one
        replica.
      start_step: the step a (resumed) run starts from; it reseeds the stream.

    Returns:
      A dataset of dicts, B = scenes_per_batch / num_replicas scenes, V = context_views,
      S = image_size (or the dataset's H x W), R = target_rays, all shapes static:
      context_images `[B, V, S, S, 3]` float32 in [0, 1]; context_intrinsics `[B, V, 4]` (of the
      S x S views, pixels); context_world_to_camera `[B, V, 3, 4]`; object_id `[B]` int64;
      origins `[B, R, 3]`, directions `[B, R, 3]` (unit, world), near `[B, R]`, far `[B, R]`
      (object units; 0 where the ray misses), hit `[B, R]` bool, rgb `[B, R, 3]` float32 in
      [0, 1], mask `[B, R]` float32 in [0, 1] (1 where the record has no mask), novel `[B, R]`
      bool (the ray's view is not a context view), target_pixels `[B]` float32: the pixels of
      the scene's target views (target_views x H x W), what R rays stand for (the NeRF-VAE
      likelihood rescales its sum over the rays to whole images with it).

    Raises:
      DatasetError: invalid dataset directory, bad scenes (see `check_scenes`), too few objects
        for the input pipelines, or (verify) a corrupt shard.
      ValueError: scenes_per_batch does not divide over the replicas.
    """
    metadata = dataset_dir.read_metadata(dataset_path)
    pipeline_id, num_pipelines, local_scenes = pipeline.replica_share(
        input_context, config.scenes_per_batch, "scenes_per_batch"
    )
    scenes = scene_records(metadata, "train")
    check_scenes(scenes, config, where=str(dataset_path))
    object_ids = pipeline_scenes(scenes, pipeline_id, num_pipelines)

    height, width = (int(v) for v in metadata["image_size"])
    size_h, size_w = (
        (height, width) if config.image_size is None else (config.image_size, config.image_size)
    )
    resize = (size_h, size_w) != (height, width)
    radius = pipeline.scene_radius(metadata, config)
    num_context, num_novel = config.context_views, config.novel_view_targets
    num_targets, num_rays = config.target_views, config.target_rays

    # Record index -> scene rank in this pipeline (-1: not ours), and views per scene rank.
    num_records = len(metadata["images"])
    rank_of_record = np.full([num_records], -1, np.int64)
    views_per_rank = np.zeros([len(object_ids)], np.int64)
    for rank, object_id in enumerate(object_ids):
        rank_of_record[scenes[object_id]] = rank
        views_per_rank[rank] = len(scenes[object_id])
    offsets = pipeline._shard_offsets(metadata)
    bounds = offsets + [num_records]
    shards = [
        i for i in range(len(offsets)) if (rank_of_record[bounds[i] : bounds[i + 1]] >= 0).any()
    ]
    all_paths = dataset_dir.shard_paths(dataset_path, metadata)
    paths = [all_paths[i] for i in shards]
    if config.verify:
        pipeline.verify_shards(paths, [int(metadata["shards"][i]["num_records"]) for i in shards])
    rank_table = tf.constant(rank_of_record)
    views_table = tf.constant(views_per_rank)

    def seed(stream):
        return pipeline._seed(config.seed, start_step, pipeline_id, stream)

    file_seed = None if config.cache else seed(_FILE_STREAM)
    data = pipeline._indexed_records(
        paths, [offsets[i] for i in shards], file_seed, config.num_parallel_reads
    )
    data = data.filter(lambda index, _: tf.gather(rank_table, index) >= 0)

    def decode(index, serialized):
        features = records.parse_features(serialized, as_uint8=True)
        view = {k: features[k] for k in ("image", "mask", "intrinsics", "world_to_camera")}
        return view | {"index": index, "object_id": features["object_id"]}

    data = data.map(decode, num_parallel_calls=tf.data.AUTOTUNE)

    def scene_rank(view):
        return tf.gather(rank_table, view["index"])

    def group(rank, views):
        # One element per scene: all its views, sorted by record index (file order), so a scene
        # reads the same whatever order the files were read in.
        def sort(scene):
            order = tf.argsort(scene["index"])
            return {k: tf.gather(v, order) for k, v in scene.items()}

        return views.batch(tf.gather(views_table, rank)).map(sort)

    data = data.group_by_window(
        scene_rank, group, window_size_func=lambda rank: tf.gather(views_table, rank)
    )
    if config.cache:
        data = data.cache()
    buffer = min(config.shuffle_buffer, len(object_ids))
    # Shuffle, then repeat: with a buffer as large as the scenes, every epoch is a permutation,
    # so a scene appears twice in a batch only across an epoch boundary.
    data = data.shuffle(buffer, seed=seed(_SHUFFLE_STREAM), reshuffle_each_iteration=True)
    data = data.repeat()
    scene_seed = tf.constant(seed(_SCENE_STREAM), tf.int64)

    def choose(index, scene):
        # Per scene (before batching): which views are context and targets, which pixels.
        seeds = tf.random.split(tf.stack([scene_seed, index]), 3)
        count = tf.shape(scene["image"], out_type=tf.int64)[0]
        order = tf.argsort(tf.random.stateless_uniform([count], seed=seeds[0]))
        context = order[:num_context]
        parts = ([context] if config.context_targets else []) + [
            order[num_context : num_context + num_novel]
        ]
        target_views = tf.concat(parts, 0)  # [T] indices into the scene's views
        pick = tf.random.stateless_uniform(
            [num_rays], seed=seeds[1], minval=0, maxval=num_targets, dtype=tf.int32
        )
        view = tf.gather(target_views, pick)
        flat = tf.random.stateless_uniform(
            [num_rays], seed=seeds[2], minval=0, maxval=height * width, dtype=tf.int32
        )
        rows, cols = flat // width, flat % width
        coords = tf.stack([view, rows, cols], -1)
        first_novel = num_context if config.context_targets else 0
        return {
            "context_images": tf.gather(scene["image"], context),
            "context_intrinsics": tf.gather(scene["intrinsics"], context),
            "context_world_to_camera": tf.gather(scene["world_to_camera"], context),
            "object_id": scene["object_id"][0],
            "pixels": tf.cast(tf.stack([cols, rows], -1), tf.float32) + 0.5,  # centres, (x, y)
            "target_intrinsics": tf.gather(scene["intrinsics"], view),
            "target_world_to_camera": tf.gather(scene["world_to_camera"], view),
            "rgb": tf.gather_nd(scene["image"], coords),
            "mask": tf.gather_nd(scene["mask"], coords),
            "novel": pick >= first_novel,
        }

    data = data.enumerate().map(choose, num_parallel_calls=tf.data.AUTOTUNE)
    data = data.batch(local_scenes, drop_remainder=True)

    def finish(batch):
        images = tf.cast(batch["context_images"], tf.float32) / 255.0  # [B, V, H, W, 3]
        intrinsics = batch["context_intrinsics"]
        if resize:
            flat_images = tf.reshape(images, [-1, height, width, 3])
            flat_images = tf.image.resize(
                flat_images, [size_h, size_w], method="bilinear", antialias=True
            )
            images = tf.reshape(
                tf.clip_by_value(flat_images, 0.0, 1.0),
                [local_scenes, num_context, size_h, size_w, 3],
            )
            intrinsics = scaled_intrinsics(intrinsics, height, width, size_h, size_w)
        cameras = camera.Camera(batch["target_intrinsics"], batch["target_world_to_camera"])
        origins, directions = camera.rays_from_pixels(cameras, batch["pixels"][:, :, None, :])
        origins, directions = origins[:, :, 0], directions[:, :, 0]  # [B, R, 3]
        near, far, hit = camera.intersect_sphere(origins, directions, radius)
        out = {
            "context_images": images,
            "context_intrinsics": intrinsics,
            "context_world_to_camera": batch["context_world_to_camera"],
            "object_id": batch["object_id"],
            "origins": origins,
            "directions": directions,
            "near": near,
            "far": far,
            "hit": hit,
            "rgb": tf.cast(batch["rgb"], tf.float32) / 255.0,
            "mask": tf.cast(batch["mask"], tf.float32) / 255.0,
            "novel": batch["novel"],
            "target_pixels": tf.fill([local_scenes], float(num_targets * height * width)),
        }
        shapes = {
            "context_images": [local_scenes, num_context, size_h, size_w, 3],
            "context_intrinsics": [local_scenes, num_context, 4],
            "context_world_to_camera": [local_scenes, num_context, 3, 4],
            "object_id": [local_scenes],
            "origins": [local_scenes, num_rays, 3],
            "directions": [local_scenes, num_rays, 3],
            "rgb": [local_scenes, num_rays, 3],
            "target_pixels": [local_scenes],
        }
        for key, value in out.items():
            value.set_shape(shapes.get(key, [local_scenes, num_rays]))
        return out

    data = data.map(finish, num_parallel_calls=tf.data.AUTOTUNE)
    return data.prefetch(tf.data.AUTOTUNE)
