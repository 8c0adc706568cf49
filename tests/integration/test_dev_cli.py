"""`streammon dev up | status | down`: a stack that outlives the command, found again, stopped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from streammon.devstack import read_state


def run_cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STREAMMON_DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "streammon.cli", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_dev_up_status_down(tmp_path: Path) -> None:
    """`dev up` leaves a broker and Redis running on loopback and records them; `status`
    reports them; `down` stops both processes and forgets them."""
    try:
        up = run_cli("dev", "up", data_dir=tmp_path)
        assert up.returncode == 0, up.stderr
        info = read_state(tmp_path)
        assert info is not None and info.kafka_bootstrap.startswith("127.0.0.1:")
        assert info.redis_url.startswith("redis://127.0.0.1:")
        status = run_cli("dev", "status", data_dir=tmp_path)
        assert status.returncode == 0
        assert json.loads(status.stdout)["broker_pid"] == info.broker_pid
        again = run_cli("dev", "up", data_dir=tmp_path)
        assert again.returncode == 0 and read_state(tmp_path) == info  # reused, not doubled
    finally:
        down = run_cli("dev", "down", data_dir=tmp_path)
    assert down.returncode == 0 and "stopped" in down.stdout
    assert read_state(tmp_path) is None
    for pid in (info.broker_pid, info.redis_pid):
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(
            f"/proc/{pid}/status").read_text().lower()
    assert run_cli("dev", "status", data_dir=tmp_path).returncode == 1
