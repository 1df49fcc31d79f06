"""`python -m tfglo.prepare`: writes a dataset directory (DESIGN.md section 4) from a source.

Sources:
  --source=synthetic   a built-in procedural class (tfglo.data.synthetic): --synthetic_class=
                       heads (default) | cars | shapes, --num_objects, --image_size, --seed,
                       --train_views, --eval_views; cars and shapes: --synthetic_elevation_deg,
                       --synthetic_background_color; cars: --cars_eval_angle_deg; shapes:
                       --shapes_primitives, --shapes_background.
  --source=transforms  known cameras from a NeRF / instant-ngp transforms.json
                       (tfglo.transforms): --transforms=FILE, --alpha_background, --image_size,
                       --eval_every, --eval_frames, --scene_radius, --skip_missing.
  --source=images      photos through MediaPipe (tfglo.photo_source): --images=DIR,
                       --image_size (default 256), --crop_margin, --focal_factor,
                       --canonical_from=DATASET (cameras only), --landmarks=FILE (other
                       classes), --cameras=FILE (known cameras: no landmarks or fit),
                       --face_landmarker_model, --selfie_segmenter_model.

Examples:
  python -m tfglo.prepare --source=synthetic --num_objects=64 --output=data/heads
  python -m tfglo.prepare --source=synthetic --synthetic_class=cars --num_objects=100 \
      --image_size=32 --output=data/cars
  python -m tfglo.prepare --source=synthetic --synthetic_class=shapes --num_objects=1000 \
      --train_views=4 --eval_views=4 --output=data/shapes
  python -m tfglo.prepare --source=transforms --transforms=../shared/data/lego/transforms.json \
      --eval_every=8 --image_size=100 --output=data/lego
  python -m tfglo.prepare --source=images --images=../shared/data/faces --output=data/faces

The dataset is written into a temporary directory and renamed into place when complete, so an
interrupted run never leaves a half-written dataset that looks complete. A non-empty --output is
refused unless --overwrite is given (and even then only a previous dataset is ever replaced).
Progress is logged every --log_every images; a summary (images per split, skipped images with the
reason, output path) is printed at the end. Errors in the input exit with status 1 and a message
that names the file and the problem.
"""

import dataclasses
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from absl import app, flags, logging

from tfglo.data import dataset_dir, records

SOURCES = ("synthetic", "transforms", "images")

FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """Defines the app's flags (at start-up, not import, so importing it never clashes)."""
    flags.DEFINE_enum(
        "source", "synthetic", SOURCES, "Where the images come from.", flag_values=flag_values
    )
    flags.DEFINE_string("output", None, "Dataset directory to write.", flag_values=flag_values)
    flags.DEFINE_bool(
        "overwrite",
        False,
        "Replace --output if it already holds a dataset.",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "records_per_shard",
        dataset_dir.RECORDS_PER_SHARD,
        "Images per TFRecord shard.",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "log_every", 100, "Log progress every this many images.", flag_values=flag_values
    )
    flags.DEFINE_integer(
        "image_size",
        None,
        "Image side in pixels. synthetic: rendered size (default 64). transforms: resize every "
        "frame to a square of this side (default: keep the files' size).",
        flag_values=flag_values,
    )

    # --source=synthetic
    flags.DEFINE_enum(
        "synthetic_class",
        "heads",
        ["heads", "cars", "shapes"],
        "synthetic: the class: heads (single view, varied backgrounds, keypoints), cars (single "
        "view from all around, white background) or shapes (scenes of 1-4 primitives, several "
        "views each).",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "num_objects",
        16,
        "synthetic: number of objects (heads, cars, scenes).",
        flag_values=flag_values,
    )
    flags.DEFINE_integer("seed", 0, "synthetic: random seed.", flag_values=flag_values)
    flags.DEFINE_integer(
        "train_views",
        None,
        "synthetic: training views per object (default: the class's: heads 1, cars 1, shapes 8).",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "eval_views",
        None,
        "synthetic: held-out views per object (default: the class's: heads 4, cars 2, shapes 4).",
        flag_values=flag_values,
    )
    flags.DEFINE_list(
        "synthetic_elevation_deg",
        None,
        "synthetic cars, shapes: MIN,MAX camera elevation above the horizontal, degrees "
        "(default: cars 5,35; shapes 10,60).",
        flag_values=flag_values,
    )
    flags.DEFINE_list(
        "synthetic_background_color",
        None,
        "synthetic cars, shapes: R,G,B in [0, 1], the constant background (default: cars "
        "1,1,1; shapes 0.85,0.85,0.85).",
        flag_values=flag_values,
    )
    flags.DEFINE_list(
        "cars_eval_angle_deg",
        None,
        "synthetic cars: MIN,MAX angle between the training view and each held-out view, "
        "degrees (default 25,60).",
        flag_values=flag_values,
    )
    flags.DEFINE_list(
        "shapes_primitives",
        None,
        "synthetic shapes: MIN,MAX primitives per scene (default 1,4).",
        flag_values=flag_values,
    )
    flags.DEFINE_enum(
        "shapes_background",
        None,
        ["dataset", "scene"],
        "synthetic shapes: one constant background colour for the data set (default) or a "
        "random plain colour per scene.",
        flag_values=flag_values,
    )

    # --source=transforms
    flags.DEFINE_string(
        "transforms", None, "transforms: the transforms.json file.", flag_values=flag_values
    )
    flags.DEFINE_enum(
        "alpha_background",
        "white",
        ["white", "black", "keep"],
        "transforms: colour policy for images with alpha (composite over white or black, or keep "
        "the stored RGB); alpha becomes the mask in every case.",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "eval_every",
        0,
        "transforms: hold out every k-th frame (0, k, 2k, ...) for evaluation.",
        flag_values=flag_values,
    )
    flags.DEFINE_list(
        "eval_frames",
        [],
        "transforms: frames to hold out, by index or file_path / file name.",
        flag_values=flag_values,
    )
    flags.DEFINE_float(
        "scene_radius",
        None,
        "transforms: radius of the sphere holding the object (default 1.5); images with "
        "--cameras: overrides the camera file's (tfglo: its scene_radius or 1; LOLNeRF: 2).",
        flag_values=flag_values,
    )
    flags.DEFINE_bool(
        "skip_missing",
        False,
        "transforms: skip frames whose image is missing instead of failing.",
        flag_values=flag_values,
    )

    # --source=images (tfglo.photo_source)
    flags.DEFINE_string("images", None, "images: folder of photos.", flag_values=flag_values)
    flags.DEFINE_string(
        "canonical_from",
        None,
        "images: a dataset directory with canonical_keypoints: fit only each photo's camera "
        "against them (new photos in the same canonical frame).",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "landmarks",
        None,
        "images: CSV (name,x1,y1,...) or JSON ({name: [[x, y], ...]}) keypoints per photo, in "
        "pixels of the upright photo; replaces MediaPipe (for classes it cannot detect).",
        flag_values=flag_values,
    )
    flags.DEFINE_enum(
        "landmarks_mask",
        "none",
        ["none", "full", "selfie"],
        "images: masks with --landmarks: none, all foreground, or the person segmenter.",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "face_landmarker_model",
        None,
        "images: MediaPipe face_landmarker.task (default: bundled).",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "selfie_segmenter_model",
        None,
        "images: MediaPipe selfie segmentation .tflite (default: bundled).",
        flag_values=flag_values,
    )
    flags.DEFINE_float(
        "crop_margin",
        0.5,
        "images: margin on each side of the face box, fraction of its side.",
        flag_values=flag_values,
    )
    flags.DEFINE_float(
        "focal_factor",
        2.0,
        "images: focal length = focal_factor x image width (pixels).",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "cameras",
        None,
        "images: per-image cameras from a file instead of landmarks and a fit: tfglo's JSON "
        "schema or the LOLNeRF authors' camera estimates (tfglo/data/camera_files.py). The "
        "whole photo is resized to --image_size wide; --scene_radius overrides the file's.",
        flag_values=flag_values,
    )
    flags.DEFINE_enum(
        "cameras_align",
        None,
        ["none", "mean_camera"],
        "images with --cameras: rotate the world so the average camera is the frontal one "
        "(default: mean_camera for LOLNeRF estimates, none for tfglo files).",
        flag_values=flag_values,
    )
    flags.DEFINE_enum(
        "cameras_mask",
        "selfie",
        ["selfie", "full", "none"],
        "images with --cameras: masks from the person segmenter, all foreground, or none.",
        flag_values=flag_values,
    )


# A source returns (records, dataset.json metadata, skipped) where skipped is a list of
# {"source": ..., "reason": ...} that may still grow while the records are consumed.
Source = tuple[Iterator[records.ImageRecord], dict[str, Any], list[dict[str, str]]]


# Optional synthetic flags -> (config field, parser); a flag left unset keeps the class default.
_SYNTHETIC_FLAGS = {
    "image_size": ("image_size", int),
    "train_views": ("train_views_per_object", int),
    "eval_views": ("eval_views_per_object", int),
    "synthetic_elevation_deg": ("elevation_range_deg", float),
    "synthetic_background_color": ("background_color", float),
    "cars_eval_angle_deg": ("eval_angle_range_deg", float),
    "shapes_primitives": (("min_primitives", "max_primitives"), int),
    "shapes_background": ("background", str),
}


def synthetic_source() -> Source:
    """A built-in procedural class of tfglo.data.synthetic, from the synthetic flags."""
    from tfglo.data import synthetic

    kind = synthetic.get_class(FLAGS.synthetic_class)
    fields = {f.name for f in dataclasses.fields(kind.config_type)}
    kwargs = dict(num_objects=FLAGS.num_objects, seed=FLAGS.seed)
    for flag, (field, parse) in _SYNTHETIC_FLAGS.items():
        value = FLAGS[flag].value
        if value is None:
            continue
        names = field if isinstance(field, tuple) else (field,)
        if not set(names) <= fields:
            raise ValueError(f"--{flag} does not apply to --synthetic_class={kind.name}")
        try:
            value = [parse(v) for v in value] if isinstance(value, list) else parse(value)
        except ValueError as e:
            raise ValueError(f"--{flag}={value}: {e}") from e
        if isinstance(field, tuple):
            if len(value) != len(field):
                raise ValueError(f"--{flag} needs {len(field)} values, got {value}")
            kwargs.update(zip(field, value, strict=True))
        else:
            kwargs[field] = tuple(value) if isinstance(value, list) else value
    config = kind.config_type(**kwargs)
    return kind.generate(config), kind.dataset_metadata(config), []


def transforms_source() -> Source:
    """Known cameras from a transforms.json file, from the transforms flags."""
    from tfglo.data import transforms_json as transforms

    if not FLAGS.transforms:
        raise ValueError("--source=transforms needs --transforms=FILE (a transforms.json)")
    eval_frames = tuple(int(f) if f.isdigit() else f for f in FLAGS.eval_frames)
    kwargs = dict(
        background=FLAGS.alpha_background,
        image_size=FLAGS.image_size,
        eval_every=FLAGS.eval_every,
        eval_frames=eval_frames,
        skip_missing=FLAGS.skip_missing,
    )
    if FLAGS.scene_radius is not None:
        kwargs["scene_radius"] = FLAGS.scene_radius
    return transforms.load(FLAGS.transforms, transforms.TransformsConfig(**kwargs))


def images_source() -> Source:
    """Photos through MediaPipe (or a landmarks file) and a joint camera fit: tfglo.photo_source."""
    from tfglo.data import camera_file_import, photos
    from tfglo.data import photo_import as photo_source
    from tfglo.pose import camera_fit, landmarks

    if not FLAGS.images:
        raise ValueError("--source=images needs --images=DIR (a folder of photos)")
    photo_kwargs = dict(crop_margin=FLAGS.crop_margin)
    if FLAGS.image_size is not None:
        photo_kwargs["image_size"] = FLAGS.image_size
    config = photo_source.PhotoSourceConfig(
        images=FLAGS.images,
        photo=photos.PhotoConfig(**photo_kwargs),
        landmarker=landmarks.LandmarkerConfig(
            face_landmarker_model=FLAGS.face_landmarker_model,
            selfie_segmenter_model=FLAGS.selfie_segmenter_model,
        ),
        fit=camera_fit.CameraFitConfig(),
        focal_factor=FLAGS.focal_factor,
        canonical_from=FLAGS.canonical_from,
        landmarks_file=FLAGS.landmarks,
        landmarks_mask=FLAGS.landmarks_mask,
        cameras=camera_file_import.CameraImportConfig(
            cameras_file=FLAGS.cameras,
            align=FLAGS.cameras_align,
            mask=FLAGS.cameras_mask,
            scene_radius=FLAGS.scene_radius,
        )
        if FLAGS.cameras
        else None,
    )
    prepared, metadata, skipped = photo_source.prepare_images(config)
    if not prepared:
        reasons = "; ".join(f"{s['source']}: {s['reason']}" for s in skipped[:20])
        raise ValueError(
            f"no photo in {FLAGS.images} could be prepared ({metadata['num_files']} files, "
            f"{len(skipped)} skipped: {reasons or 'the folder holds no files'})"
        )
    return iter(prepared), metadata, skipped


SOURCE_FUNCTIONS: dict[str, Callable[[], Source]] = {
    "synthetic": synthetic_source,
    "transforms": transforms_source,
    "images": images_source,
}


@dataclasses.dataclass
class Summary:
    """What a prepare run wrote."""

    output: str
    splits: dict[str, int]
    num_latents: int
    skipped: list[dict[str, str]]
    seconds: float

    def lines(self) -> list[str]:
        total = sum(self.splits.values())
        per_split = ", ".join(f"{name} {count}" for name, count in self.splits.items())
        lines = [
            f"prepare: wrote {total} images ({per_split}; {self.num_latents} latents) to "
            f"{self.output} in {self.seconds:.1f} s"
        ]
        lines.append(f"prepare: skipped {len(self.skipped)} images")
        lines += [f"  {s.get('source', '?')}: {s.get('reason', '?')}" for s in self.skipped]
        return lines


def write_dataset(
    source: Source,
    output: str,
    overwrite: bool = False,
    records_per_shard: int = dataset_dir.RECORDS_PER_SHARD,
    log_every: int = 100,
    extra_metadata: dict[str, Any] | None = None,
) -> Summary:
    """Writes a source's records into a dataset directory (atomically), logging progress.

    Raises:
      DatasetError: `output` may not be written, or the source yielded no image (nothing is
        left behind).
    """
    iterator, metadata, skipped = source
    start = time.perf_counter()
    splits = dict.fromkeys(records.SPLITS, 0)
    latents = set()
    with dataset_dir.DatasetWriter(output, overwrite, records_per_shard) as writer:
        writer.metadata.update(metadata)
        writer.metadata.update(extra_metadata or {})
        writer.metadata["skipped"] = skipped  # the same list: sources may append while writing
        for record in iterator:
            writer.write(record)
            splits[record.split] += 1
            latents.add(record.latent_id)
            count = sum(splits.values())
            if log_every and count % log_every == 0:
                rate = count / (time.perf_counter() - start)
                logging.info(
                    "%d images written (%.1f images/s), %d skipped", count, rate, len(skipped)
                )
        if not sum(splits.values()):
            raise dataset_dir.DatasetError(
                f"the source produced no image ({len(skipped)} skipped); nothing written to "
                f"{output}"
            )
    return Summary(
        output=str(writer.output.resolve()),
        splits=splits,
        num_latents=len(latents),
        skipped=skipped,
        seconds=time.perf_counter() - start,
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.output:
        raise app.UsageError("--output=DIR is required")
    try:
        # Refuse early, before any (possibly long) work.
        dataset_dir.prepare_output_dir(FLAGS.output, FLAGS.overwrite)
        source = SOURCE_FUNCTIONS[FLAGS.source]()
        summary = write_dataset(
            source,
            FLAGS.output,
            overwrite=FLAGS.overwrite,
            records_per_shard=FLAGS.records_per_shard,
            log_every=FLAGS.log_every,
            extra_metadata={"prepare_source": FLAGS.source},
        )
    except ValueError as e:  # DatasetError, TransformsError, bad configuration values
        print(f"prepare: error: {e}", file=sys.stderr, flush=True)
        return 1
    for line in summary.lines():
        print(line, flush=True)
    coverage = source[1].get("mask_outside_sphere")
    if coverage and "mean" in coverage:
        from tfglo.geometry import sphere_coverage

        line = sphere_coverage.summary_line(coverage, source[1]["scene_radius"])
        print(f"prepare: {line}", flush=True)
    return 0


def run():
    """Console entry point (setup.py: tfglo-prepare)."""
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
