"""What every synthetic class shares on the way from objects to a data set.

Random streams: object k of a data set draws from `object_rng(seed, k, stream)` (stream 0: its
shape and colours, 1: its views), so an object never depends on how many objects or views are
generated. Records: `view_record` turns a rendered view into an `ImageRecord`. Metadata:
`base_metadata` gives the dataset.json keys every class writes. Speed: `benchmark_class` times a
class's generator.
"""

import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from tfglo.data import records
from tfglo.utils import benchmarking


def object_rng(seed: int, object_id: int, stream: int) -> np.random.Generator:
    """The random stream of one object: 0 for its shape and colours, 1 for its views."""
    return np.random.default_rng([seed, object_id, stream])


def check_common_fields(config) -> None:
    """Validates the fields the cars and shapes configs share, and normalises their tuples.

    Raises:
      ValueError: a field is out of range (the message names it).
    """
    if config.num_objects < 1:
        raise ValueError(f"num_objects must be >= 1, got {config.num_objects}")
    if config.image_size < 4:
        raise ValueError(f"image_size must be >= 4 pixels, got {config.image_size}")
    if config.train_views_per_object < 1:
        raise ValueError(
            f"train_views_per_object must be >= 1, got {config.train_views_per_object}"
        )
    if config.eval_views_per_object < 0:
        raise ValueError(f"eval_views_per_object must be >= 0, got {config.eval_views_per_object}")
    if not config.camera_distance > 1.0:
        raise ValueError(
            "camera_distance must be > 1 (outside the unit sphere holding the object), got "
            f"{config.camera_distance}"
        )
    if not config.focal_factor > 0.0:
        raise ValueError(f"focal_factor must be > 0, got {config.focal_factor}")
    if len(config.elevation_range_deg) != 2:
        raise ValueError(
            f"elevation_range_deg must be (min, max), got {tuple(config.elevation_range_deg)}"
        )
    low, high = config.elevation_range_deg
    if not -90.0 < low <= high < 90.0:
        raise ValueError(
            f"elevation_range_deg must be (min, max) with -90 < min <= max < 90, got {(low, high)}"
        )
    color = tuple(float(c) for c in config.background_color)
    if len(color) != 3 or not all(0.0 <= c <= 1.0 for c in color):
        raise ValueError(f"background_color must be 3 values in [0, 1], got {color}")
    # Tuples survive a JSON round trip as lists; keep the dataclass hashable and comparable.
    object.__setattr__(config, "background_color", color)
    object.__setattr__(config, "elevation_range_deg", (float(low), float(high)))


def view_record(
    view: dict[str, np.ndarray],
    intrinsics,
    world_to_camera,
    object_id: int,
    view_id: int,
    split: str,
    source_prefix: str,
) -> records.ImageRecord:
    """The record of one rendered view (`rendering.render_view` output, optional `landmarks`
    `[K, 2]` and `keypoints_3d` `[K, 3]`); latent_id = object_id (one latent per object), source
    `{source_prefix}/obj0003/view01`."""
    return records.ImageRecord(
        image=view["image"],
        intrinsics=np.asarray(intrinsics, np.float32),
        world_to_camera=np.asarray(world_to_camera, np.float32),
        latent_id=object_id,
        object_id=object_id,
        view_id=view_id,
        source=f"{source_prefix}/obj{object_id:04d}/view{view_id:02d}",
        split=split,
        mask=view["mask"],
        depth=view["depth"],
        landmarks=view.get("landmarks"),
        keypoints_3d=view.get("keypoints_3d"),
    )


def base_metadata(
    class_name: str, config: Any, constant_background: tuple[float, float, float] | None
) -> dict[str, Any]:
    """dataset.json keys of every synthetic class.

    `constant_background` is the sRGB colour in [0, 1] of every background pixel of the data set
    when it is one constant colour (a model may then composite its foreground on it), else None.
    `synthetic_config` holds the config dataclass (its `camera_distance` and `focal_factor` frame
    the render app's default views).
    """
    return {
        "scene_radius": 1.0,
        "intrinsics_policy": (
            f"fixed: fx = fy = {config.focal_factor} x width, principal point at the image centre"
        ),
        "source_kind": "synthetic",
        "synthetic_class": class_name,
        "synthetic_config": dataclasses.asdict(config),
        "constant_background": (
            None if constant_background is None else [float(c) for c in constant_background]
        ),
        "latent_per": "object",
    }


def benchmark_class(
    name: str,
    generate: Callable[[Any], Iterator[records.ImageRecord]],
    config: Any,
    warmup_config: Any,
    target_images_per_s: float,
) -> float:
    """Prints `name images_per_s=... image_size=... num_images=...` for `generate(config)` on
    this process (numpy, one core) and returns the rate."""
    next(iter(generate(warmup_config)))
    start = time.perf_counter()
    count = sum(1 for _ in generate(config))
    seconds = time.perf_counter() - start
    rate = count / seconds
    benchmarking.report(
        name,
        images_per_s=rate,
        image_size=config.image_size,
        num_images=count,
        target_images_per_s=target_images_per_s,
        meets_target=rate >= target_images_per_s,
    )
    return rate
