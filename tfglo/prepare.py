"""`python -m tfglo.prepare`: writes a dataset directory (DESIGN.md section 4) from a source.

Sources:
  --source=synthetic   a built-in procedural class (tfglo.data.synthetic): --synthetic_class=
                       heads (default) | cars | shapes, --num_objects, --image_size, --seed,
                       --train_views, --eval_views, --synthetic_camera_distance,
                       --synthetic_focal_factor, --synthetic_vary_lighting; cars and shapes:
                       --synthetic_elevation_deg, --synthetic_background_color; heads:
                       --heads_*; cars: --cars_eval_angle_deg; shapes: --shapes_primitives,
                       --shapes_background, --shapes_*. A flag of another class is refused.
  --source=transforms  known cameras from a NeRF / instant-ngp transforms.json
                       (tfglo.data.transforms_json): --transforms=FILE, --alpha_background,
                       --image_size, --eval_every, --eval_frames, --scene_radius,
                       --skip_missing.
  --source=images      photos through MediaPipe (tfglo.data.photo_import): --images=DIR,
                       --image_size (default 256), --crop_margin, --focal_factor,
                       --canonical_from=DATASET (cameras only), --landmarks=FILE (other
                       classes), --cameras=FILE (known cameras: no landmarks or fit),
                       --face_landmarker_model, --selfie_segmenter_model, and the crop
                       (--photo_*), detection (--landmarker_*) and camera fit (--fit_*).

Examples:
  python -m tfglo.prepare --source=synthetic --num_objects=64 --output=data/heads
  python -m tfglo.prepare --source=synthetic --synthetic_class=cars --num_objects=100 \
      --image_size=32 --output=data/cars
  python -m tfglo.prepare --source=synthetic --synthetic_class=shapes --num_objects=1000 \
      --train_views=4 --eval_views=4 --output=data/shapes
  python -m tfglo.prepare --source=transforms --transforms=../shared/data/lego/transforms.json \
      --eval_every=8 --image_size=100 --output=data/lego
  python -m tfglo.prepare --source=images --images=../shared/data/faces --output=data/faces

The source settings are the fields of the sources' config dataclasses (the synthetic classes'
configs, `TransformsConfig`, `PhotoSourceConfig` with its `PhotoConfig`, `LandmarkerConfig` and
`CameraFitConfig`, `CameraImportConfig`), derived as flags with `tfglo.utils.configs` under the
names they had before; the sources and the writer are `tfglo.data.record_sources`.

The dataset is written into a temporary directory and renamed into place when complete, so an
interrupted run never leaves a half-written dataset that looks complete. A non-empty --output is
refused unless --overwrite is given (and even then only a previous dataset is ever replaced).
Progress is logged every --log_every images; a summary (images per split, skipped images with the
reason, output path) is printed at the end. Errors in the input exit with status 1 and a message
that names the file and the problem.
"""

from tfglo.utils import tf_logs

tf_logs.quiet_start()

import dataclasses
import sys

from absl import app, flags

from tfglo.data import (
    camera_file_import,
    dataset_dir,
    photo_import,
    photos,
    record_sources,
    synthetic,
    transforms_json,
)
from tfglo.pose import camera_fit, landmarks
from tfglo.utils import configs

SOURCES = ("synthetic", "transforms", "images")
FLAGS = flags.FLAGS
Flag, FlagNames = configs.Flag, configs.FlagNames

# --source=synthetic: each class's config fields (tfglo.data.synthetic). Fields several classes
# have keep one flag (the names flags had before they were derived); a field of one class is
# prefixed with the class's name. Flags of another class than --synthetic_class are refused.
_COMMON = {
    "num_objects": "num_objects",
    "image_size": "image_size",
    "seed": "seed",
    "train_views_per_object": "train_views",
    "eval_views_per_object": "eval_views",
    "camera_distance": "synthetic_camera_distance",
    "focal_factor": "synthetic_focal_factor",
    "vary_lighting": "synthetic_vary_lighting",
    "elevation_range_deg": "synthetic_elevation_deg",
    "background_color": "synthetic_background_color",
}
_CLASS_NAMING = {
    "heads": FlagNames(prefix="heads_", names=_COMMON),
    "cars": FlagNames(
        prefix="cars_", names={**_COMMON, "eval_angle_range_deg": "cars_eval_angle_deg"}
    ),
    "shapes": FlagNames(
        prefix="shapes_",
        names=_COMMON,
        choices={"background": ("dataset", "scene")},
        skip=("min_primitives", "max_primitives"),  # one flag sets both: --shapes_primitives
    ),
}
_CLASS_EXTRA = {
    "shapes": (
        Flag(
            "shapes_primitives",
            "list",
            None,
            "synthetic shapes: MIN,MAX primitives per scene (default 1,4).",
            element=int,
            length=2,
            fields=("ShapesConfig.min_primitives", "ShapesConfig.max_primitives"),
        ),
    )
}
# Flags whose default differs between classes: None, the class's default.
_CLASS_DEFAULTS = (
    "image_size",
    "train_views",
    "eval_views",
    "synthetic_camera_distance",
    "synthetic_elevation_deg",
    "synthetic_background_color",
)


def _class_flags(name: str) -> configs.ConfigFlags:
    """The flags of one synthetic class's config."""
    config_type = synthetic.get_class(name).config_type
    names = {_COMMON.get(field.name) for field in dataclasses.fields(config_type)}
    return configs.ConfigFlags(
        f"--synthetic_class={name}",
        {"config": config_type},
        naming={config_type: _CLASS_NAMING[name]},
        defaults_from={flag: "the class's" for flag in _CLASS_DEFAULTS if flag in names},
        extra=_CLASS_EXTRA.get(name, ()),
        help_prefix=f"synthetic {name}: ",
    )


SYNTHETIC = configs.FlagSet(
    "tfglo.prepare --source=synthetic",
    {name: _class_flags(name) for name in synthetic.CLASSES},
    extra=(
        Flag(
            "synthetic_class",
            "enum",
            "heads",
            "synthetic: the class: heads (single view, varied backgrounds, keypoints), cars "
            "(single view from all around, white background) or shapes (scenes of 1-4 "
            "primitives, several views each).",
            enum_values=synthetic.CLASSES,
        ),
    ),
    selector="synthetic_class",
    shared_help={
        "num_objects": "synthetic: number of objects (heads, cars, scenes).",
        "image_size": "synthetic: square image side, pixels (default 64).",
        "seed": "synthetic: random seed; object k is drawn from the stream (seed, k).",
        "train_views": "synthetic: training views per object (default: the class's: heads 1, "
        "cars 1, shapes 8).",
        "eval_views": "synthetic: held-out views per object (default: the class's: heads 4, "
        "cars 2, shapes 4).",
        "synthetic_camera_distance": "synthetic: distance of every camera from the origin, "
        "object units, > 1 (default: the class's: heads 4.5, cars 4, shapes 4.5).",
        "synthetic_focal_factor": "synthetic: focal length = focal_factor x image width "
        "(pixels), principal point at the centre.",
        "synthetic_vary_lighting": "synthetic: vary the light direction and ambient level per "
        "object (else a fixed light).",
        "synthetic_elevation_deg": "synthetic cars, shapes: MIN,MAX camera elevation above the "
        "horizontal, degrees (default: cars 5,35; shapes 10,60).",
        "synthetic_background_color": "synthetic cars, shapes: R,G,B in [0, 1], the constant "
        "background (default: cars 1,1,1; shapes 0.85,0.85,0.85).",
    },
)

# --source=transforms: `transforms_json.TransformsConfig`.
TRANSFORMS = configs.ConfigFlags(
    "tfglo.prepare --source=transforms",
    {"transforms": transforms_json.TransformsConfig},
    naming={
        transforms_json.TransformsConfig: FlagNames(
            names={"background": "alpha_background"},
            choices={"background": transforms_json.BACKGROUNDS},
            # A square side or nothing (--image_size); indices or file names (--eval_frames).
            skip=("image_size", "eval_frames"),
        )
    },
    defaults_from={"scene_radius": "1.5"},
    extra=(
        Flag("transforms", "string", None, "transforms: the transforms.json file."),
        Flag("image_size", "integer", None, "transforms: resize every frame to this square."),
        Flag(
            "eval_frames",
            "list",
            [],
            "transforms: frames to hold out, by index or file_path / file name.",
            fields=("TransformsConfig.eval_frames",),
        ),
    ),
    help_prefix="transforms: ",
)

# --source=images: `photo_import.PhotoSourceConfig` (its photo crop, landmarker and camera fit)
# and, with --cameras, `camera_file_import.CameraImportConfig`.
IMAGES = configs.ConfigFlags(
    "tfglo.prepare --source=images",
    {
        "photos": photo_import.PhotoSourceConfig,
        "cameras": camera_file_import.CameraImportConfig,
    },
    naming={
        photo_import.PhotoSourceConfig: FlagNames(
            names={"landmarks_file": "landmarks", "log_every": "photo_log_every"},
            choices={"landmarks_mask": ("none", "full", "selfie")},
            skip=("images", "cameras"),  # --images (required) and --cameras, below
        ),
        photos.PhotoConfig: FlagNames(
            prefix="photo_",
            names={"image_size": "image_size", "crop_margin": "crop_margin"},
            choices={"pad_mode": photos.PAD_MODES, "alpha": photos.ALPHA_MODES},
        ),
        landmarks.LandmarkerConfig: FlagNames(
            prefix="landmarker_",
            names={
                "face_landmarker_model": "face_landmarker_model",
                "selfie_segmenter_model": "selfie_segmenter_model",
            },
        ),
        camera_fit.CameraFitConfig: FlagNames(
            prefix="fit_",
            choices={
                "loss": camera_fit.LOSSES,
                "outlier_loss": camera_fit.LOSSES,
                "solver": camera_fit.SOLVERS,
            },
        ),
        camera_file_import.CameraImportConfig: FlagNames(
            prefix="cameras_",
            names={"scene_radius": "scene_radius"},
            choices={
                "align": ("none", "mean_camera"),
                "mask": camera_file_import.MASK_SOURCES,
            },
            skip=("cameras_file",),  # --cameras, below
        ),
    },
    defaults_from={"image_size": "256"},
    extra=(
        Flag("images", "string", None, "images: folder of photos."),
        Flag(
            "cameras",
            "string",
            None,
            "images: per-image cameras from a file instead of landmarks and a fit: tfglo's "
            "JSON schema or the LOLNeRF authors' camera estimates (tfglo/data/camera_files.py). "
            "The whole photo is resized to --image_size wide; --scene_radius overrides the "
            "file's.",
            fields=("CameraImportConfig.cameras_file",),
        ),
    ),
    help_prefix="images: ",
)

FLAG_SPEC = configs.FlagSet(
    "tfglo.prepare",
    {"synthetic": SYNTHETIC, "transforms": TRANSFORMS, "images": IMAGES},
    extra=(
        Flag("source", "enum", "synthetic", "Where the images come from.", enum_values=SOURCES),
        Flag("output", "string", None, "Dataset directory to write."),
        Flag("overwrite", "boolean", False, "Replace --output if it already holds a dataset."),
        Flag("records_per_shard", "integer", dataset_dir.RECORDS_PER_SHARD, "Images per shard."),
        Flag("log_every", "integer", 100, "Log progress every this many images."),
    ),
    selector="source",
    shared_help={
        "image_size": "Image side in pixels. synthetic: rendered size (default 64). "
        "transforms: resize every frame to a square of this side (default: keep the files' "
        "size). images: side of the square crop (default 256).",
        "scene_radius": "transforms: radius of the sphere holding the object (default 1.5); "
        "images with --cameras: overrides the camera file's (tfglo: its scene_radius or 1; "
        "LOLNeRF: 2).",
    },
)


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """Defines the app's flags (at start-up, not import, so importing it never clashes)."""
    FLAG_SPEC.define(flag_values)


def synthetic_config(values: dict):
    """The --synthetic_class's config from flag values (flags of other classes refused)."""
    SYNTHETIC.check_unused(values["synthetic_class"], values)
    fields = {}
    if values.get("shapes_primitives") is not None:
        low, high = SYNTHETIC.flags["shapes_primitives"].field_value(values["shapes_primitives"])
        fields = {"min_primitives": low, "max_primitives": high}
    spec = SYNTHETIC.alternatives[values["synthetic_class"]]
    return spec.build_config("config", values, **fields)


def transforms_config(values: dict) -> transforms_json.TransformsConfig:
    """The transforms.json import settings from flag values."""
    frames = tuple(int(f) if f.isdigit() else f for f in values["eval_frames"])
    return TRANSFORMS.build_config(
        "transforms", values, image_size=values["image_size"], eval_frames=frames
    )


def images_config(values: dict) -> photo_import.PhotoSourceConfig:
    """The photo source settings from flag values (a camera file's with --cameras)."""
    cameras = None
    if values["cameras"]:
        cameras = IMAGES.build_config("cameras", values, cameras_file=values["cameras"])
    return IMAGES.build_config("photos", values, images=values["images"], cameras=cameras)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.output:
        raise app.UsageError("--output=DIR is required")
    values = FLAG_SPEC.values(FLAGS)
    try:
        # Refuse early, before any (possibly long) work.
        dataset_dir.prepare_output_dir(FLAGS.output, FLAGS.overwrite)
        if FLAGS.source == "synthetic":
            source = record_sources.synthetic_source(synthetic_config(values))
        elif FLAGS.source == "transforms":
            if not FLAGS.transforms:
                raise ValueError("--source=transforms needs --transforms=FILE (a transforms.json)")
            source = record_sources.transforms_source(FLAGS.transforms, transforms_config(values))
        else:
            if not FLAGS.images:
                raise ValueError("--source=images needs --images=DIR (a folder of photos)")
            source = record_sources.images_source(images_config(values))
        summary = record_sources.write_dataset(
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
