"""Benchmark scripts that must keep working without their device: CPU smoke runs."""

import json
import os
import subprocess
import sys

from conftest import REPO_DIR


def test_instruments_gpu_script_runs_end_to_end_in_smoke_mode(tmp_path, instruments_slice):
    """benchmarks/instruments_gpu.sh with SMOKE=1 on the first 200 Instruments users, on CPU."""
    env = {
        **os.environ,
        "SMOKE": "1",
        "DATA": str(instruments_slice),
        "PYTHON": sys.executable,
        "JOB_SECONDS": "300",
    }
    out = tmp_path / "out"
    done = subprocess.run(
        ["bash", os.path.join(REPO_DIR, "benchmarks", "instruments_gpu.sh"), str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    logs = "\n".join(p.read_text()[-2000:] for p in (out / "logs").glob("*.log"))
    assert done.returncode == 0, done.stdout + done.stderr + logs
    folder = out / "results" / "Instruments"
    for model in ("SASRec", "TIGER", "BBQRec"):
        record = json.loads((folder / "runs" / f"{model}-seed2020.json").read_text())
        assert record["status"] == "ok", (model, record.get("error"), logs)
        assert record["stop_reason"] and record["valid_curve"]
    tiger = json.loads((folder / "runs" / "TIGER-seed2020.json").read_text())
    assert tiger["config"]["train_batch_size"] == 2048
    assert (folder / "curves.png").is_file() and "| TIGER |" in done.stdout
