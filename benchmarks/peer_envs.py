"""Pinned per-peer virtual environments for ``bench_sft_peers.py`` (ms-swift, LLaMA-Factory).

    .venv/bin/python benchmarks/peer_envs.py [--cache DIR] [--peers swift,llamafactory]

Each peer lives in its own venv under the cache folder (default ``~/.cache/medvl-peers``) because
the peers pin different transformers releases than medvl. An install writes a marker file with
the pinned versions once it succeeded; a later run whose marker matches reuses the venv as is.
torch/torchvision are installed first (they come from local disk here), then the peer; if pip's
resolver wanders to a transformers the peer refuses, the peer's accepted version is pinned.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CACHE = Path.home() / ".cache" / "medvl-peers"
TORCH = ("torch==2.14.1", "torchvision==0.29.1")


@dataclass(frozen=True)
class Peer:
    """A peer tool: its venv name, pip requirements, CLI and the transformers range it accepts."""

    name: str
    requirements: tuple[str, ...]
    cli: str
    transformers: str  # a pip specifier the peer accepts (used only if pip wandered outside it)


PEERS = {
    "swift": Peer(
        "swift", ("ms-swift==4.6.0", "qwen-vl-utils==0.0.14"), "swift", "transformers<=5.19.99"
    ),
    "llamafactory": Peer(
        "llamafactory", ("llamafactory==0.9.5",), "llamafactory-cli", "transformers<=5.6.99"
    ),
}


def venv_dir(cache: Path, peer: Peer) -> Path:
    return cache / peer.name


def marker(cache: Path, peer: Peer) -> Path:
    return venv_dir(cache, peer) / "medvl-peer.json"


def pins(peer: Peer) -> dict:
    return {"torch": list(TORCH), "peer": list(peer.requirements)}


def ready(cache: Path, peer: Peer) -> bool:
    """True when the venv was fully installed with today's pins."""
    path = marker(cache, peer)
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("pins") == pins(peer)
    except json.JSONDecodeError:
        return False


def executable(cache: Path, peer: Peer, name: str) -> Path:
    return venv_dir(cache, peer) / "bin" / name


def install(cache: Path, peer: Peer, log: Path | None = None) -> str | None:
    """Create/refresh the peer's venv; return None on success or a one-line reason on failure."""
    if ready(cache, peer):
        return None
    root = venv_dir(cache, peer)
    root.parent.mkdir(parents=True, exist_ok=True)
    log = log or root.parent / f"{peer.name}-install.log"
    if not (root / "bin" / "python").exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(root)
    pip = [str(root / "bin" / "python"), "-m", "pip", "install", "--progress-bar", "off"]
    steps = [list(TORCH), list(peer.requirements)]
    with log.open("a") as sink:
        for step in steps:
            print(f"[{peer.name}] pip install {' '.join(step)}  (log: {log})", flush=True)
            done = subprocess.run([*pip, *step], stdout=sink, stderr=subprocess.STDOUT, check=False)
            if done.returncode != 0:
                return f"pip install {' '.join(step)} failed: {last_error(log)}"
        check = subprocess.run(
            [
                str(root / "bin" / "python"),
                "-c",
                "import transformers; print(transformers.__version__)",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        version = check.stdout.strip()
        accepted = subprocess.run(
            [
                str(root / "bin" / "python"),
                "-c",
                "import sys; from packaging.specifiers import SpecifierSet;"
                f"sys.exit(0 if SpecifierSet('{peer.transformers.split('transformers')[1]}')"
                f".contains('{version}') else 1)",
            ],
            check=False,
        )
        if version and accepted.returncode != 0:
            print(f"[{peer.name}] transformers {version} outside {peer.transformers}: pinning")
            done = subprocess.run(
                [*pip, peer.transformers], stdout=sink, stderr=subprocess.STDOUT, check=False
            )
            if done.returncode != 0:
                return f"pip install {peer.transformers} failed: {last_error(log)}"
    marker(cache, peer).write_text(json.dumps({"pins": pins(peer)}, indent=1))
    print(f"[{peer.name}] ready ({root})", flush=True)
    return None


def last_error(log: Path) -> str:
    """The last line of pip's log that names an error, for a one-line report."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or ["no output"])[-1][:300]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--peers", default=",".join(PEERS))
    args = parser.parse_args()
    failed = False
    for name in args.peers.split(","):
        reason = install(args.cache, PEERS[name])
        if reason:
            failed = True
            print(f"[{name}] install failed: {reason}", file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
