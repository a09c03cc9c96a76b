"""Where packages come from: pip's configured sources, handed on to uv.

uv reads none of pip's configuration, so a machine whose torch wheels lie in a local
find-links folder or index (set up for pip) would make uv download multi-GB CUDA builds
from the registry instead. These helpers read `pip config list` and the PIP_* variables
and turn them, plus what a matrix entry names, into uv options.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass

from audit.config.matrix import TorchVersion

_LINE = re.compile(r"^(?P<section>[^.]*)\.(?P<key>[\w-]+)='(?P<value>.*)'$")


@dataclass(frozen=True)
class PackageSources:
    find_links: tuple[str, ...] = ()
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()

    def uv_options(self) -> list[str]:
        """Command-line options for `uv pip install` with these sources."""
        options: list[str] = []
        for link in self.find_links:
            options += ["--find-links", link]
        if self.index_url:
            options += ["--index-url", self.index_url]
        for url in self.extra_index_urls:
            options += ["--extra-index-url", url]
        if self.find_links or self.extra_index_urls:
            # A local index holding one torch must not hide the registry's other versions.
            options += ["--index-strategy", "unsafe-best-match"]
        return options


def parse_pip_config(text: str) -> PackageSources:
    """Sources from the output of `pip config list` (later lines override earlier ones)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        match = _LINE.match(line.strip())
        if match and match.group("section") in ("global", "install", ":env:"):
            values[match.group("key")] = match.group("value")
    return PackageSources(
        find_links=tuple(values.get("find-links", "").split()),
        index_url=values.get("index-url") or None,
        extra_index_urls=tuple(values.get("extra-index-url", "").split()),
    )


def pip_config_sources(python: str = sys.executable) -> PackageSources:
    """pip's configured sources on this machine (empty where pip has none or is absent)."""
    try:
        text = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True,
                              text=True, timeout=60, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        text = ""
    sources = parse_pip_config(text)
    environ = PackageSources(
        find_links=tuple(os.environ.get("PIP_FIND_LINKS", "").split()),
        index_url=os.environ.get("PIP_INDEX_URL") or None,
        extra_index_urls=tuple(os.environ.get("PIP_EXTRA_INDEX_URL", "").split()),
    )
    return merge(sources, environ)


def merge(*all_sources: PackageSources) -> PackageSources:
    find_links: list[str] = []
    extra: list[str] = []
    index_url = None
    for sources in all_sources:
        find_links += [link for link in sources.find_links if link not in find_links]
        extra += [url for url in sources.extra_index_urls if url not in extra]
        index_url = sources.index_url or index_url
    return PackageSources(tuple(find_links), index_url, tuple(extra))


def torch_sources(version: TorchVersion, pip_sources: PackageSources) -> PackageSources:
    """What a matrix entry says: pip's sources (or only the registry) plus its own."""
    base = pip_sources if version.source == "pip-config" else PackageSources()
    own = PackageSources(version.find_links, version.index_url, version.extra_index_urls)
    return merge(base, own)
