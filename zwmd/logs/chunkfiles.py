"""The bytes of object-store log chunks and of the local spool (see :mod:`zwmd.logs.objectstore`).

Responsibility: parsing whole batches out of a chunk or spool file (the file store's
line format: records, each batch ended by a commit line), and the spool's blocking file
operations (run them in a worker thread).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import unquote

import orjson

from zwmd.logs.filestore import parse_commit
from zwmd.logs.records import LogRecord
from zwmd.logs.store import Checkpoint, LogKey

__all__ = [
    "SUFFIX",
    "UNBASED_SUFFIX",
    "Batch",
    "append_spool",
    "parse_chunk",
    "read_spool",
    "spooled_keys",
    "truncate",
    "unlink_spool",
]

_COMMIT: Final = b'{"c":'
SUFFIX: Final = ".jsonl"
#: The spool of a key whose remote state was unknown (see :mod:`zwmd.logs.spooling`).
UNBASED_SUFFIX: Final = ".unbased" + SUFFIX


@dataclass(frozen=True, slots=True)
class Batch:
    """Whole batch of a chunk: its records, the checkpoint after it, where it ends."""

    records: list[LogRecord]
    checkpoint: Checkpoint
    end: int  # offset just after the batch's commit line


def parse_chunk(data: bytes, attempt: int) -> list[Batch]:
    """The complete batches in ``data`` (a chunk or spool file); a torn tail is ignored."""
    out: list[Batch] = []
    pending: list[LogRecord] = []
    pos = 0
    loads = orjson.loads
    while True:
        nl = data.find(b"\n", pos)
        if nl < 0:
            return out
        line = data[pos:nl]
        pos = nl + 1
        if line.startswith(_COMMIT):
            try:
                cp = parse_commit(line)
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError):
                return out
            out.append(Batch(pending, cp, pos))
            pending = []
        else:
            try:
                d = loads(line)
                pending.append(LogRecord(d["t"], d["s"], d["l"], d["m"], attempt))
            except (orjson.JSONDecodeError, KeyError, TypeError):
                return out


# -- the spool's files ----------------------------------------------------------------


def read_spool(path: Path, start: int = 0, end: int | None = None) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(start)
            return f.read() if end is None else f.read(end - start)
    except FileNotFoundError:
        return b""


def append_spool(path: Path, payload: bytes, fsync: bool) -> None:
    created = not path.exists()
    if created:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view) :]
        if fsync:
            os.fdatasync(fd)
    finally:
        os.close(fd)
    if created and fsync:
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def truncate(path: Path, size: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(size)
        os.fsync(f.fileno())


def unlink_spool(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        return
    with contextlib.suppress(OSError):  # other attempts still spooled
        path.parent.rmdir()


def spooled_keys(root: Path) -> list[LogKey]:
    keys: list[LogKey] = []
    try:
        directories = sorted(os.listdir(root))
    except FileNotFoundError:
        return keys
    for d in directories:
        try:
            names = os.listdir(root / d)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for n in names:
            end = UNBASED_SUFFIX if n.endswith(UNBASED_SUFFIX) else SUFFIX
            stem = n[: -len(end)]
            if n.endswith(end) and stem.isdigit():
                keys.append(LogKey(unquote(d), int(stem)))
    return sorted(set(keys))
