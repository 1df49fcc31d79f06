"""Record sources and writing one into a dataset directory: what `python -m tfglo.prepare` does
once its flags are configs.

A source is `(records, metadata, skipped)`: an iterator of `records.ImageRecord`, the keys it
adds to dataset.json, and a list of `{"source": ..., "reason": ...}` for inputs it left out (the
list may still grow while the records are consumed). The sources:

- `synthetic_source(config)`: a built-in procedural class (`tfglo.data.synthetic`), chosen by
  the type of its config (`SyntheticConfig` heads, `CarsConfig`, `ShapesConfig`).
- `transforms_source(path, config)`: known cameras from a NeRF / instant-ngp transforms.json
  (`tfglo.data.transforms_json`).
- `images_source(config)`: photos through MediaPipe (or a landmarks file, or a camera file) and
  a joint camera fit (`tfglo.data.photo_import`).

`write_dataset` writes a source into a dataset directory atomically (`dataset_dir.DatasetWriter`:
a temporary directory renamed into place when complete), logging progress, and returns a
`Summary` of what it wrote.
"""

import dataclasses
import time
from collections.abc import Iterator
from typing import Any

from absl import logging

from tfglo.data import dataset_dir, records

# A source: (records, dataset.json metadata, skipped), see the module docstring.
Source = tuple[Iterator[records.ImageRecord], dict[str, Any], list[dict[str, str]]]


def synthetic_source(config) -> Source:
    """The records of a built-in procedural class, picked by the type of `config`.

    Args:
      config: a config of one of `tfglo.data.synthetic.CLASSES` (heads: `SyntheticConfig`,
        cars: `CarsConfig`, shapes: `ShapesConfig`).

    Raises:
      ValueError: `config` is no synthetic class's config.
    """
    from tfglo.data import synthetic

    for name in synthetic.CLASSES:
        kind = synthetic.get_class(name)
        if type(config) is kind.config_type:
            return kind.generate(config), kind.dataset_metadata(config), []
    raise ValueError(f"{type(config).__name__} is no synthetic class's config")


def transforms_source(path, config) -> Source:
    """Known cameras from a transforms.json file (`transforms_json.load`).

    Args:
      path: the transforms.json file.
      config: a `transforms_json.TransformsConfig`.

    Raises:
      transforms_json.TransformsError: the file or one of its frames is unusable (the message
        names them).
    """
    from tfglo.data import transforms_json

    return transforms_json.load(path, config)


def images_source(config) -> Source:
    """Photos with fitted (or given) cameras (`photo_import.prepare_images`).

    Args:
      config: a `photo_import.PhotoSourceConfig`.

    Raises:
      ValueError: no photo could be prepared (the message lists why, per photo), or the folder,
        landmarks file, camera file or canonical dataset is unusable.
    """
    from tfglo.data import photo_import

    prepared, metadata, skipped = photo_import.prepare_images(config)
    if not prepared:
        reasons = "; ".join(f"{s['source']}: {s['reason']}" for s in skipped[:20])
        raise ValueError(
            f"no photo in {config.images} could be prepared ({metadata['num_files']} files, "
            f"{len(skipped)} skipped: {reasons or 'the folder holds no files'})"
        )
    return iter(prepared), metadata, skipped


@dataclasses.dataclass
class Summary:
    """What `write_dataset` wrote.

    Attributes:
      output: the dataset directory (absolute).
      splits: images per split ("train", "eval").
      num_latents: distinct latent ids written.
      skipped: the source's skipped inputs, `{"source": ..., "reason": ...}`.
      seconds: wall time of the writing (the source's lazy work included).
    """

    output: str
    splits: dict[str, int]
    num_latents: int
    skipped: list[dict[str, str]]
    seconds: float

    def lines(self) -> list[str]:
        """The summary as console lines ("prepare: wrote ...", one line per skipped input)."""
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

    Args:
      source: `(records, metadata, skipped)`.
      output: the dataset directory (created; a previous dataset there is replaced only with
        `overwrite`).
      overwrite: replace a previous dataset at `output`.
      records_per_shard: images per TFRecord shard.
      log_every: log progress every this many images (0: never).
      extra_metadata: more dataset.json keys (e.g. the source's name).

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
