"""Scenes of a multi-view dataset for NeRF-VAE inference: context views, encoding, prior codes.

A scene is an object of a dataset directory (its records share an `object_id`). Its context views
are its first k `split=train` views (by view id), its held-out views its `split=eval` views.
`load_scenes` reads them, `context_views` picks the first k with an error that names every object
that has fewer, and `encode_scenes` turns each scene's context views into the posterior mean (the
code the decoder renders). `prior_latents` draws codes from the prior N(0, I) with a truncation
factor, `interpolation_latents` walks between two codes. The evaluation, the image summaries and
`python -m tfglo.render` use these.
"""

import os

import numpy as np
import tensorflow as tf

from tfglo.data import dataset_dir as dataset_dir_lib
from tfglo.nerf_vae import model as model_lib
from tfglo.utils import images

# Objects named in an error message.
_MAX_NAMED = 5


class SceneError(ValueError):
    """A dataset's scenes cannot give what is asked (too few views, unknown objects, ...)."""


def _view(record) -> dict:
    return {
        "image": images.to_float(record.image),
        "mask": None if record.mask is None else record.mask.astype(np.float32) / 255.0,
        "depth": record.depth,
        "intrinsics": np.asarray(record.intrinsics, np.float32),
        "world_to_camera": np.asarray(record.world_to_camera, np.float32),
        "latent_id": int(record.latent_id),
        "object_id": int(record.object_id),
        "view_id": int(record.view_id),
        "source": record.source,
        "split": record.split,
    }


def load_scenes(
    dataset_dir: os.PathLike | str,
    object_ids=None,
    max_objects: int | None = None,
    enough_train_views: int | None = None,
) -> dict[int, dict[str, list[dict]]]:
    """Reads a dataset's views grouped by object.

    Args:
      dataset_dir: a dataset directory (tfglo.prepare).
      object_ids: only these objects (None: every object).
      max_objects: only the first this many objects (by id after `object_ids`).
      enough_train_views: stop reading once `max_objects` objects have this many training views
        each (a shortcut for large datasets; their eval lists may then be incomplete).

    Returns:
      object id -> {"train": [...], "eval": [...]}, view dicts (image `[H, W, 3]` float32 in
      [0, 1], mask `[H, W]` or None, depth or None, intrinsics `[4]`, world_to_camera `[3, 4]`,
      latent_id, object_id, view_id, source, split) sorted by view id; objects sorted by id.

    Raises:
      SceneError: an id of `object_ids` is not in the dataset.
      DatasetError: the dataset directory is missing or malformed.
    """
    wanted = None if object_ids is None else {int(i) for i in object_ids}
    scenes: dict[int, dict[str, list[dict]]] = {}
    seen: set[int] = set()
    for record in dataset_dir_lib.iterate_records(dataset_dir):
        object_id = int(record.object_id)
        seen.add(object_id)
        if wanted is not None and object_id not in wanted:
            continue
        if max_objects is not None and enough_train_views is not None:
            if object_id not in scenes and len(scenes) >= max_objects:
                firsts = sorted(scenes)[:max_objects]
                if all(len(scenes[o]["train"]) >= enough_train_views for o in firsts):
                    break
        scene = scenes.setdefault(object_id, {"train": [], "eval": []})
        scene.setdefault(record.split, []).append(_view(record))
    if wanted is not None:
        missing = sorted(wanted - set(scenes))
        if missing:
            found = sorted(seen)
            raise SceneError(
                f"objects {missing} are not in {dataset_dir} (its object ids: "
                f"{found[:10]}{'...' if len(found) > 10 else ''})"
            )
    ordered = dict(sorted(scenes.items()))
    if max_objects is not None:
        ordered = dict(list(ordered.items())[:max_objects])
    for scene in ordered.values():
        for views in scene.values():
            views.sort(key=lambda v: v["view_id"])
    return ordered


def check_context_counts(scenes: dict, count: int, where: str = "the dataset") -> None:
    """Raises SceneError naming the objects with fewer than `count` training views.

    Args:
      scenes: `load_scenes` output.
      count: the context views asked for per object.
      where: names the dataset in the message.
    """
    if count < 1:
        raise SceneError(f"the number of context views must be >= 1, got {count}")
    short = sorted((o, len(s["train"])) for o, s in scenes.items() if len(s["train"]) < count)
    if short:
        named = ", ".join(f"object {o} has {c}" for o, c in short[:_MAX_NAMED])
        more = f" (and {len(short) - _MAX_NAMED} more)" if len(short) > _MAX_NAMED else ""
        raise SceneError(
            f"{count} context views were requested but {len(short)} of the {len(scenes)} "
            f"objects of {where} have fewer training ('train' split) views: {named}{more}. "
            "Ask for fewer context views (--context_views)"
        )


def context_views(scene: dict, count: int) -> list[dict]:
    """The first `count` training views of a scene (by view id); see `check_context_counts`."""
    return scene["train"][:count]


def encode_scenes(model, scenes: dict, count: int, where: str = "the dataset") -> dict:
    """The posterior mean `[D]` of every scene from its first `count` training views.

    Returns:
      object id -> `posterior.Gaussian` of numpy `[D]` arrays (mean, log_variance).

    Raises:
      SceneError: an object has fewer than `count` training views.
    """
    check_context_counts(scenes, count, where)
    return {
        object_id: model_lib.encode_views(model, context_views(scene, count))
        for object_id, scene in scenes.items()
    }


def prior_latents(count: int, latent_dim: int, seed: int = 0, truncation: float = 1.0):
    """`[count, D]` codes from the prior N(0, I), scaled by `truncation` (0: all at the mean).

    Raises:
      ValueError: count < 1 or truncation < 0.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if truncation < 0:
        raise ValueError(f"truncation must be >= 0, got {truncation}")
    noise = tf.random.stateless_normal([count, latent_dim], seed=[int(seed), 0])
    return (truncation * np.asarray(noise)).astype(np.float32)


def interpolation_latents(latent_a, latent_b, num_frames: int) -> np.ndarray:
    """Linear path `[num_frames, D]` from code a to code b, endpoints included."""
    if num_frames < 2:
        raise ValueError(f"an interpolation needs >= 2 frames, got {num_frames}")
    t = np.linspace(0.0, 1.0, num_frames, dtype=np.float32)[:, None]
    a = np.asarray(latent_a, np.float32)[None]
    b = np.asarray(latent_b, np.float32)[None]
    return (1.0 - t) * a + t * b


def select_codes(
    model,
    dataset_dir: os.PathLike | str | None,
    object_ids=None,
    count: int = 4,
    latents_file: os.PathLike | str | None = None,
    default_count: int = 1,
) -> tuple[np.ndarray, list[str]]:
    """Codes to render and their names: encoded objects, or rows of a `.npy` file.

    Args:
      model: the NeRF-VAE.
      dataset_dir: the dataset whose objects are encoded (their first `count` training views).
      object_ids: objects to encode (default: the dataset's first `default_count` objects); with
        `latents_file`, rows of the file (default: all).
      count: context views per object.
      latents_file: optional `.npy` of codes `[K, D]` (or `[D]`) instead of encoding.
      default_count: objects encoded when object_ids is None.

    Returns:
      (codes `[K, D]`, names such as "object_0003" or "latent_0001").

    Raises:
      SceneError: an unknown object, too few views, a file of the wrong shape, a row out of range.
    """
    if latents_file is not None:
        source = np.load(latents_file).astype(np.float32)
        source = source[None] if source.ndim == 1 else source
        if source.ndim != 2 or source.shape[1] != model.latent_dim:
            raise SceneError(
                f"latents file {latents_file} holds shape {source.shape}; this run's codes are "
                f"[K, {model.latent_dim}]"
            )
        ids = list(range(len(source))) if object_ids is None else [int(i) for i in object_ids]
        bad = [i for i in ids if not 0 <= i < len(source)]
        if bad:
            raise SceneError(f"rows {bad} out of range: {latents_file} has {len(source)} rows")
        return source[ids], [f"latent_{i:04d}" for i in ids]
    if dataset_dir is None:
        raise SceneError("no dataset to encode objects from: pass --context_dataset")
    ids = None if object_ids is None else [int(i) for i in object_ids]
    scenes = load_scenes(dataset_dir, object_ids=ids, max_objects=None if ids else default_count)
    posteriors = encode_scenes(model, scenes, count, str(dataset_dir))
    order = ids if ids is not None else sorted(scenes)
    return (
        np.stack([posteriors[o].mean for o in order]).astype(np.float32),
        [f"object_{o:04d}" for o in order],
    )
