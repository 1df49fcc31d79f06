"""Built-in procedural object classes with full ground truth (numpy ray casting).

Classes (one module each, same interface: a frozen config dataclass, `generate(config)` yielding
`records.ImageRecord`s, `dataset_metadata(config)` giving dataset.json keys, a benchmark):
- `heads`: stylised heads, one training view each within +-30 deg of frontal, varied
  backgrounds, 5 keypoints (the default; LOLNeRF's single-view setting).
- `cars`: toy cars on a white background, one training view each from anywhere around
  (single-view, 360 deg), held-out views 25-60 deg away.
- `shapes`: scenes of 1-4 spheres, boxes, cylinders and cones on a plain background, several
  views per scene (NeRF-VAE's multi-view setting).

Shared parts: `primitives` (solids and exact ray casting), `shading` (light, backgrounds,
colours), `cameras` (orbits, pixel rays, projection), `rendering` (a view with exact mask and
depth), `generation` (random streams, records, metadata, benchmarks).
"""

import dataclasses
import importlib
from collections.abc import Callable, Iterator
from typing import Any

CLASSES = ("heads", "cars", "shapes")
# name -> (module, config dataclass)
_MODULES = {
    "heads": ("tfglo.data.synthetic.heads", "SyntheticConfig"),
    "cars": ("tfglo.data.synthetic.cars", "CarsConfig"),
    "shapes": ("tfglo.data.synthetic.shapes", "ShapesConfig"),
}


@dataclasses.dataclass(frozen=True)
class SyntheticClass:
    """One built-in class.

    Attributes:
      name: one of `CLASSES`.
      config_type: its frozen config dataclass (fields num_objects, image_size, seed,
        train_views_per_object, eval_views_per_object, camera_distance, focal_factor, ...).
      generate: config -> iterator of `records.ImageRecord`.
      dataset_metadata: config -> dataset.json keys (`synthetic_class`, `synthetic_config`,
        `constant_background`, ...).
    """

    name: str
    config_type: type
    generate: Callable[[Any], Iterator[Any]]
    dataset_metadata: Callable[[Any], dict[str, Any]]


def get_class(name: str) -> SyntheticClass:
    """The built-in class called `name` (imported on first use).

    Raises:
      ValueError: unknown name.
    """
    if name not in _MODULES:
        raise ValueError(f"unknown synthetic class {name!r}; choose from {CLASSES}")
    module_name, config_name = _MODULES[name]
    module = importlib.import_module(module_name)
    return SyntheticClass(
        name=name,
        config_type=getattr(module, config_name),
        generate=module.generate,
        dataset_metadata=module.dataset_metadata,
    )
