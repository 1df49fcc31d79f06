"""The dataset directory: `dataset.json` plus sharded TFRecord files (DESIGN.md section 4).

`DatasetWriter` writes records into a temporary sibling directory and renames it into place only
when `close()` succeeds, so a crash never leaves a half-written dataset that looks complete.
`read_metadata` validates a directory (schema version, shards present and of the right size)
and gives errors that name the file and the problem.
"""

import json
import os
import pathlib
import shutil
import sys
import time
from typing import Any

import tensorflow as tf

from tfglo.data import records

SCHEMA_VERSION = 1
METADATA_FILE = "dataset.json"
RECORDS_PER_SHARD = 256


class DatasetError(ValueError):
    """A dataset directory is missing, malformed or incompatible."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def recover_leftovers(output: os.PathLike | str) -> list[str]:
    """Cleans up what a killed `DatasetWriter` left beside `output`; returns what it did.

    A writer works in `.<name>.tmp-<pid>` and, when replacing a dataset, moves the old one to
    `.<name>.old-<pid>` for the moment of the swap. When process <pid> is gone: a tmp directory
    is a half-written dataset (deleted); an old directory is the previous complete dataset,
    moved back when `output` is missing (the kill fell between the two renames), else deleted.
    Directories of live processes (another prepare writing now) are left alone.
    """
    output = pathlib.Path(output)
    done = []
    if not output.parent.is_dir():
        return done
    for kind in ("old", "tmp"):  # "old" first: it may restore `output`
        for path in sorted(output.parent.glob(f".{output.name}.{kind}-*")):
            pid = path.name.rsplit("-", 1)[-1]
            if not pid.isdigit() or int(pid) == os.getpid() or _pid_alive(int(pid)):
                continue
            if kind == "old" and not output.exists() and (path / METADATA_FILE).is_file():
                path.rename(output)
                done.append(f"restored {output} from {path.name} (a replace was interrupted)")
            else:
                shutil.rmtree(path, ignore_errors=True)
                done.append(f"removed {path.name} (left by killed process {pid})")
    return done


def prepare_output_dir(output: os.PathLike | str, overwrite: bool) -> pathlib.Path:
    """Checks that `output` may be written: absent, empty, or `overwrite` is set.

    First cleans up what a killed writer left beside it (`recover_leftovers`).

    Raises:
      DatasetError: `output` is a file, or is a non-empty directory and either `overwrite` is
        False or it is not a dataset directory (no dataset.json: never replaced).
    """
    output = pathlib.Path(output)
    for line in recover_leftovers(output):
        print(f"prepare: {line}", file=sys.stderr, flush=True)
    if output.exists():
        if not output.is_dir():
            raise DatasetError(f"{output} exists and is not a directory")
        if any(output.iterdir()):
            if not overwrite:
                raise DatasetError(f"{output} is not empty; pass --overwrite to replace it")
            if not (output / METADATA_FILE).is_file():
                # Replacing deletes the old directory: only ever do that to a dataset, never to
                # an arbitrary folder someone passed by mistake.
                raise DatasetError(
                    f"{output} is not empty and is not a tfglo dataset (no {METADATA_FILE}); "
                    "refusing to replace it even with --overwrite: remove it or choose another "
                    "output"
                )
    return output


class DatasetWriter:
    """Writes `ImageRecord`s into a dataset directory, atomically.

    Usage:
        with DatasetWriter(path, overwrite=False) as writer:
            writer.write(record)
            writer.metadata["scene_radius"] = 1.0
        # `path` now holds dataset.json and the shards; on an exception nothing is renamed.

    Attributes:
      metadata: extra dataset.json keys (scene radius, canonical keypoints, skipped, ...).
    """

    def __init__(
        self,
        output: os.PathLike | str,
        overwrite: bool = False,
        records_per_shard: int = RECORDS_PER_SHARD,
    ):
        self.output = prepare_output_dir(output, overwrite)
        self.overwrite = overwrite
        self.records_per_shard = records_per_shard
        self.metadata: dict[str, Any] = {}
        self._tmp = self.output.parent / f".{self.output.name}.tmp-{os.getpid()}"
        self._shards: list[dict[str, Any]] = []
        self._writer = None
        self._images: list[dict[str, Any]] = []
        self._image_size: tuple[int, int] | None = None
        self._latents: set[int] = set()
        self._objects: set[int] = set()
        self._started = False
        self._closed = False

    def __enter__(self) -> "DatasetWriter":
        if self._tmp.exists():
            shutil.rmtree(self._tmp)
        self._tmp.mkdir(parents=True)
        self._started = True
        return self

    def write(self, record: records.ImageRecord, **image_info: Any) -> None:
        """Appends one record; `image_info` goes into dataset.json's per-image entry."""
        if not self._started or self._closed:
            raise RuntimeError("DatasetWriter.write needs an open writer: use `with DatasetWriter`")
        size = (record.height, record.width)
        if self._image_size is None:
            self._image_size = size
        elif self._image_size != size:
            raise DatasetError(
                f"{record.source}: image size {size} differs from the dataset's {self._image_size}"
            )
        if self._writer is None or self._shards[-1]["num_records"] >= self.records_per_shard:
            self._open_shard()
        self._writer.write(records.to_example(record).SerializeToString(deterministic=True))
        self._shards[-1]["num_records"] += 1
        self._latents.add(record.latent_id)
        self._objects.add(record.object_id)
        entry = {
            "source": record.source,
            "latent_id": record.latent_id,
            "object_id": record.object_id,
            "view_id": record.view_id,
            "split": record.split,
        }
        entry.update(image_info)
        self._images.append(entry)

    def _close_shard(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            # The byte size lets read_metadata catch truncated shards before anything reads them.
            shard = self._shards[-1]
            shard["num_bytes"] = (self._tmp / shard["file"]).stat().st_size

    def _open_shard(self) -> None:
        self._close_shard()
        name = f"records-{len(self._shards):05d}.tfrecord"
        self._writer = tf.io.TFRecordWriter(str(self._tmp / name))
        self._shards.append({"file": name, "num_records": 0})

    def close(self) -> pathlib.Path:
        """Writes dataset.json and renames the directory into place. Returns its path."""
        self._close_shard()
        splits = {s: sum(1 for i in self._images if i["split"] == s) for s in records.SPLITS}
        metadata = {
            "version": SCHEMA_VERSION,
            "num_images": len(self._images),
            "num_latents": (max(self._latents) + 1) if self._latents else 0,
            "num_objects": len(self._objects),
            "image_size": list(self._image_size) if self._image_size else None,
            "splits": splits,
            "shards": self._shards,
            "images": self._images,
            "command": " ".join(sys.argv),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        metadata.update(self.metadata)
        with open(self._tmp / METADATA_FILE, "w", encoding="utf-8") as f:
            json.dump(metadata, f, indent=1)
        if self.output.exists():
            # Replace: move the old directory aside first, so a failure keeps one of the two.
            old = self.output.parent / f".{self.output.name}.old-{os.getpid()}"
            self.output.rename(old)
            try:
                self._tmp.rename(self.output)
            except OSError:
                old.rename(self.output)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            self._tmp.rename(self.output)
        self._closed = True
        return self.output

    def _abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._closed = True

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._abort()
            return
        try:
            self.close()
        except BaseException:
            # A failure while finishing (e.g. metadata that is not JSON) must not leave the
            # temporary directory behind either; the old dataset, if any, is untouched.
            self._abort()
            raise


def read_metadata(dataset_dir: os.PathLike | str) -> dict[str, Any]:
    """Reads and validates `dataset.json`.

    Raises:
      DatasetError: the directory or file is missing, the JSON is malformed, the schema version
        differs, or a shard is missing or has a different size than written (truncated).
    """
    dataset_dir = pathlib.Path(dataset_dir)
    path = dataset_dir / METADATA_FILE
    if not dataset_dir.is_dir():
        raise DatasetError(f"dataset directory {dataset_dir} does not exist")
    if not path.is_file():
        raise DatasetError(f"{path} is missing: {dataset_dir} is not a tfglo dataset directory")
    try:
        with open(path, encoding="utf-8") as f:
            metadata = json.load(f)
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(metadata, dict):
        raise DatasetError(f"{path} must hold a JSON object, got {type(metadata).__name__}")
    version = metadata.get("version")
    if version != SCHEMA_VERSION:
        raise DatasetError(
            f"{path} has schema version {version!r}, this tfglo reads version {SCHEMA_VERSION}"
        )
    shards = metadata.get("shards")
    if not isinstance(shards, list) or not all(
        isinstance(s, dict) and isinstance(s.get("file"), str) for s in shards
    ):
        raise DatasetError(f"{path} has no valid 'shards' list")
    for shard in shards:
        shard_path = dataset_dir / shard["file"]
        if not shard_path.is_file():
            raise DatasetError(f"shard {shard_path} listed in {path} is missing")
        expected = shard.get("num_bytes")
        if expected is not None and shard_path.stat().st_size != expected:
            raise DatasetError(
                f"record file {shard_path} is truncated or corrupt: {shard_path.stat().st_size} "
                f"bytes, {path} says {expected}"
            )
    return metadata


def shard_paths(
    dataset_dir: os.PathLike | str, metadata: dict[str, Any] | None = None
) -> list[str]:
    """Paths of the record shards of a dataset, in order."""
    metadata = metadata or read_metadata(dataset_dir)
    return [str(pathlib.Path(dataset_dir) / s["file"]) for s in metadata["shards"]]


def iterate_records(dataset_dir: os.PathLike | str):
    """Yields every `ImageRecord` of a dataset (numpy; for tools and tests, not training).

    Raises:
      DatasetError: a shard is corrupt or truncated (the message names it).
    """
    for path in shard_paths(dataset_dir):
        index = 0
        try:
            for serialized in tf.data.TFRecordDataset(path).as_numpy_iterator():
                try:
                    record = records.from_example(serialized)
                except Exception as e:  # any decoding failure means a bad record
                    raise DatasetError(
                        f"record file {path}: record {index} is not a valid tfglo record: "
                        f"{type(e).__name__}: {e}"
                    ) from e
                yield record
                index += 1
        except tf.errors.DataLossError as e:
            raise DatasetError(
                f"record file {path} is corrupt or truncated (after record {index}): {e.message}"
            ) from e
