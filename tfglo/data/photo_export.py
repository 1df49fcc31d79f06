"""A dataset's views as the files a user brings: PNG photos, a camera file, mask images.

`export_views(dataset_dir, output_dir)` writes the chosen views of a dataset directory as
`images/<name>.png`, their masks as `masks/<name>.png` (255 = foreground) and their cameras as
`cameras.json` in tfglo's camera-file schema (`tfglo.data.camera_files`, the package's
convention, so no conversion happens on the way back). This is how `make demo` and the tests hand
a rendered view of an unseen synthetic head to `python -m tfglo.lift --cameras=... --masks=...`
as if it were a photo with a known camera: no face detection is needed.
"""

import dataclasses
import os
import pathlib

import numpy as np

from tfglo.data import camera_files, dataset_dir
from tfglo.utils import images as images_lib


@dataclasses.dataclass(frozen=True)
class ExportedViews:
    """What `export_views` wrote.

    Attributes:
      images_dir: folder of `<name>.png` photos.
      masks_dir: folder of `<name>.png` masks (empty when the views have none).
      cameras_file: the tfglo-cameras JSON of every exported photo.
      names: the photo file names, in export order.
      object_ids: the object id of each photo.
    """

    images_dir: pathlib.Path
    masks_dir: pathlib.Path
    cameras_file: pathlib.Path
    names: tuple[str, ...]
    object_ids: tuple[int, ...]


def export_views(
    source_dir: os.PathLike | str,
    output_dir: os.PathLike | str,
    split: str = "train",
    max_views: int | None = None,
) -> ExportedViews:
    """Writes views of a dataset directory as photos, masks and a camera file.

    Args:
      source_dir: a dataset directory (tfglo.prepare).
      output_dir: where images/, masks/ and cameras.json go (created).
      split: the split whose views are exported.
      max_views: export at most this many (None: all), in record order.

    Returns:
      An `ExportedViews`; photos are named `object_NNNN_view_NN.png`.

    Raises:
      dataset_dir.DatasetError: the dataset directory is missing or malformed.
      ValueError: the split holds no views.
    """
    output_dir = pathlib.Path(output_dir)
    images_dir, masks_dir = output_dir / "images", output_dir / "masks"
    images_dir.mkdir(parents=True, exist_ok=True)
    masks_dir.mkdir(parents=True, exist_ok=True)
    cameras: dict[str, camera_files.FileCamera] = {}
    object_ids = []
    for record in dataset_dir.iterate_records(source_dir):
        if record.split != split:
            continue
        if max_views is not None and len(cameras) >= max_views:
            break
        name = f"object_{record.object_id:04d}_view_{record.view_id:02d}.png"
        images_lib.write_png(images_dir / name, record.image)
        if record.mask is not None:
            images_lib.write_png(masks_dir / name, record.mask)
        cameras[name] = camera_files.FileCamera(
            intrinsics=np.asarray(record.intrinsics, np.float64),
            world_to_camera=np.asarray(record.world_to_camera, np.float64),
            width=int(record.width),
            height=int(record.height),
            object_id=int(record.object_id),
        )
        object_ids.append(int(record.object_id))
    if not cameras:
        raise ValueError(f"dataset {source_dir} has no {split!r} views to export")
    metadata = dataset_dir.read_metadata(source_dir)
    cameras_file = camera_files.save_tfglo(
        output_dir / "cameras.json", cameras, metadata.get("scene_radius")
    )
    return ExportedViews(images_dir, masks_dir, cameras_file, tuple(cameras), tuple(object_ids))
