"""Write a file so that a reader sees either the old file or the whole new one, never half.

Everything the audit publishes (results, baselines, reports) goes through here: a temporary
file in the same folder, flushed to disk, then renamed over the target.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, TextIO


@contextlib.contextmanager
def atomic_text(path: Path) -> Iterator[TextIO]:
    """A text stream whose content replaces `path` only when the block ends without error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes it private; these files are for sharing
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> Path:
    with atomic_text(path) as stream:
        stream.write(text)
    return path


def write_compressed_copy(source: Path, target: Path) -> Path:
    """gzip `source` into `target` atomically, with no name or timestamp inside (the same
    results give the same bytes, so kept results diff cleanly in git). A source that is
    compressed already is copied as it is."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                         dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as raw:
            with open(source, "rb") as original:
                if source.name.endswith(".gz"):
                    shutil.copyfileobj(original, raw)
                else:
                    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as packed:
                        shutil.copyfileobj(original, packed)
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target
