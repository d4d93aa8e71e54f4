"""Run one side of a benchmark in a fresh interpreter and read its JSON result.

Each side of a side-by-side measurement runs in its own process, so one side's allocations,
thread pools and imports never colour the other's. The child prints its result as the last line
of stdout, one JSON object.
"""

from __future__ import annotations

import json
import os
import subprocess


def run_child(name: str, cmd: list[str]) -> dict:
    """Run ``cmd`` offline (``HF_HUB_OFFLINE=1``) and return the JSON of its last stdout line;
    exit with the child's stderr tail when it fails."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{name} side failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
