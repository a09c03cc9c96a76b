"""Published results: one compact results file per machine and torch version, kept in git.

A published report that merges the kept results of every machine the audit ever ran on
grows a machine axis whenever it runs somewhere new. `repro-audit keep RESULTS --to DIR`
adds a run's results files (and their op traces) to DIR, compressed without timestamps
(the same bytes for the same results), replacing the kept file of the same machine (the
report's machine label: CPU and OS) and torch version, so that DIR holds the latest run of
each and nothing twice. Rows are kept as written: digests and samples, no full tensors.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from audit.environment.collect import platform_label
from audit.errors import UserError
from audit.store.atomic import write_compressed_copy
from audit.store.results import HEADER, TRACES_SUFFIX, expand, open_lines
from audit.store.traces import traces_path


@dataclass(frozen=True)
class KeptIdentity:
    """What a kept file stands for: one machine and one torch version."""

    machine: str
    torch: str


def read_header(path: Path) -> dict[str, Any] | None:
    """The header record of a results file (its first line), or None when it has none."""
    try:
        with open_lines(path) as stream:
            for line in stream:
                if line.strip():
                    record = json.loads(line.decode("utf-8-sig"))
                    return record if isinstance(record, dict) and record.get(
                        "record") == HEADER else None
    except (OSError, EOFError, ValueError):
        return None
    return None


def identity_of(header: dict[str, Any] | None) -> KeptIdentity | None:
    """The machine and torch version of a results file's header; None for no usable one."""
    if header is None or not isinstance(header.get("environment"), dict):
        return None
    environment = header["environment"]
    return KeptIdentity(platform_label(environment), str(environment.get("torch", "?")))


def kept_name(source: Path) -> str:
    return source.name if source.name.endswith(".gz") else source.name + ".gz"


def keep(sources: Iterable[str], folder: Path) -> list[str]:
    """Add results files to `folder`; returns one line per file kept or replaced."""
    folder.mkdir(parents=True, exist_ok=True)
    kept = {path: identity_of(read_header(path)) for path in sorted(folder.glob("*.jsonl.gz"))
            if not path.name.endswith(TRACES_SUFFIX)}
    messages = []
    for source in expand(sources):
        if source.parent.resolve() == folder.resolve():
            continue  # already kept
        header = read_header(source)
        identity = identity_of(header)
        if header is None or identity is None:
            raise UserError(f"{source}: not a repro-audit results file (no header)")
        if str(header.get("env_id", "")).startswith("unavailable-"):
            # a torch that could not be installed this time: the last real results stay
            messages.append(f"not kept {source.name}: torch could not be audited there")
            continue
        target = folder / kept_name(source)
        write_compressed_copy(source, target)
        source_traces = traces_path(source)
        if source_traces.exists():
            shutil.copyfile(source_traces, traces_path(target))
        else:
            traces_path(target).unlink(missing_ok=True)
        replaced = [path for path, other in kept.items()
                    if other == identity and path != target]
        for old in replaced:
            old.unlink()
            traces_path(old).unlink(missing_ok=True)
            del kept[old]
        kept[target] = identity
        note = f" (replaces {', '.join(path.name for path in replaced)})" if replaced else ""
        messages.append(f"kept {target}: {identity.machine}, torch {identity.torch}{note}")
    return messages
