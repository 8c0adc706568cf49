"""The purity boundary: the pure modules import no Kafka, Faust, Redis or wall clock."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PURE = ["streammon.stats", "streammon.decide", "streammon.join", "streammon.cohorts",
        "streammon.events", "streammon.rollout", "streammon.control", "streammon.joinlog",
        "streammon.cellgrid", "streammon.strategies", "streammon.postmortem"]
IO_MODULES = ["confluent_kafka", "faust", "aiokafka", "redis", "mode"]
ROOT = Path(__file__).resolve().parents[2] / "streammon"


def test_pure_modules_load_no_io_library() -> None:
    """Importing every pure module in a fresh interpreter loads no Kafka, Faust or Redis."""
    code = (f"import sys\nfor m in {PURE!r}: __import__(m)\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {IO_MODULES!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _pure_files() -> list[Path]:
    files = []
    for name in PURE:
        path = ROOT.joinpath(*name.split(".")[1:])
        files += sorted(path.glob("*.py")) if path.is_dir() else [path.with_suffix(".py")]
    return files


@pytest.mark.parametrize("path", _pure_files(), ids=lambda p: p.name)
def test_pure_module_reads_no_clock(path: Path) -> None:
    """No pure module calls time.time, time.monotonic or datetime.now: time is a parameter."""
    tree = ast.parse(path.read_text())
    calls = {f"{n.value.id}.{n.attr}" for n in ast.walk(tree)
             if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)}
    assert not calls & {"time.time", "time.monotonic", "datetime.now", "datetime.utcnow"}
