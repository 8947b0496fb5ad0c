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


def test_valid_test_gap_separates_data_shift_and_selection(tmp_path):
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location(
        "gap", os.path.join(REPO_DIR, "benchmarks", "valid_test_gap.py")
    )
    gap = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gap)
    folder = tmp_path / "D"
    folder.mkdir()
    splits = {"train": ["u\ta\tb", "u\ta b\tc"], "valid": ["u\ta b c\tb"], "test": ["u\ta b c b\tz"]}
    for split, rows in splits.items():
        (folder / f"D.{split}.inter").write_text(
            "\n".join(["user_id:token\titem_id_list:token_seq\titem_id:token", *rows])
        )
    gap.main(["--data_path", str(tmp_path), "--dataset", "D"])  # prints; z is a cold test target
    rows = [(history.split(), target) for history, target in (r.split("\t")[1:] for r in splits["test"])]
    stats = gap.split_statistics(rows, seen={"a", "b", "c"}, target_counts={"b": 1, "c": 1})
    assert stats["cold target (never in train)"] == "100.0%"

    (tmp_path / "runs").mkdir()
    curve = [{"valid_score": s} for s in (0.1, 0.3, 0.2, 0.2)]
    record = {"status": "ok", "model": "M", "valid_curve": curve, "config": {"valid_metric": "NDCG@10"}}
    record["test_result"] = {"ndcg@10": 0.15}
    (tmp_path / "runs" / "M-seed1.json").write_text(json.dumps(record))
    best, around, test, count = gap.selection_rows(str(tmp_path))["M"]
    assert (best, test, count) == (0.3, 0.15, 4) and abs(around - 0.5 / 3) < 1e-12
