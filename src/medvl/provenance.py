"""Provenance: what produced a result, so any output can be traced and redone.

One home for the things every output records: file hashes, installed versions, the git commit
and the training-run manifest. It imports only the standard library, so every floor of medvl
(data, models, eval, train, pipeline) can use it.
"""

from __future__ import annotations

import hashlib
import platform
import subprocess
import sys
import time
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

#: The medvl release; ``pyproject.toml``'s ``[project] version`` must match it.
__version__ = "0.1.0"

#: The packages a training or inference run depends on, recorded in its manifests.
RUN_PACKAGES = ("medvl", "torch", "transformers", "peft", "trl", "accelerate", "datasets")

#: The packages scores depend on, recorded in ``metrics.json`` and reports.
SCORING_PACKAGES = ("medvl", "numpy")

_BLOCK = 1 << 20  # read files in 1 MiB blocks


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def package_version(name: str) -> str | None:
    """The installed version of ``name`` (medvl's own from :data:`__version__`), else None."""
    if name == "medvl":
        return __version__
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def versions(packages: Iterable[str] = RUN_PACKAGES) -> dict[str, str | None]:
    """Python's version and each of ``packages``' installed versions (None if not installed)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in packages:
        found[name] = package_version(name)
    return found


def git_commit(path: str | Path = ".") -> str | None:
    """The commit of the git work tree at ``path`` (None outside one)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def build_manifest(
    config: dict[str, Any], data_files: dict[str, Path | None], extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A run's manifest: versions, data hashes, command line, git commit and resolved config."""
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": sys.argv,
        "versions": versions(),
        "git_commit": git_commit(Path(__file__).parent),
        "data": {
            name: ({"path": str(p), "sha256": file_sha256(p)} if p else None)
            for name, p in data_files.items()
        },
        "config": config,
        **(extra or {}),
    }
