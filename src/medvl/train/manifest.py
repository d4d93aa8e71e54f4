"""Run manifests: what produced a training output, so any result can be traced and redone."""

from __future__ import annotations

import hashlib
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("medvl", "torch", "transformers", "peft", "trl", "accelerate", "datasets")


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def versions() -> dict[str, str | None]:
    """Installed versions of the packages a run depends on, plus Python."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
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
    """Versions, data hashes, seed, command line, git commit and the resolved config."""
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
