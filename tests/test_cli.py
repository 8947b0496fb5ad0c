"""The CLI as a user runs it: a subprocess with RecBole-style --key=value overrides."""

import os
import subprocess
import sys

from conftest import REPO_DIR, TEST_DATA

CLI = os.path.join(REPO_DIR, "run_recbole_bbq.py")


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_cli_trains_and_tests(tmp_path):
    proc = run_cli(
        "--model=SASRec",
        "--dataset=tiny",
        f"--data_path={TEST_DATA}",
        f"--checkpoint_dir={tmp_path / 'saved'}",
        "--epochs=1",
        "--show_progress=False",
        "--train_batch_size=64",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    output = proc.stdout + proc.stderr
    assert "test result" in output and "ndcg@10" in output
    assert "epochs = 1" in output  # the --key=value override reached RecBole's Config


def test_cli_unknown_model_is_a_clean_error(tmp_path):
    proc = run_cli("--model=NoSuchModel", "--dataset=tiny", f"--data_path={TEST_DATA}", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "lightgbm" not in proc.stderr.lower()
    assert "Unknown model 'NoSuchModel'" in proc.stderr
    assert "SASRec" in proc.stderr and "GRU4Rec" in proc.stderr


def test_cli_help_lists_distributed_options(tmp_path):
    proc = run_cli("--help", cwd=tmp_path)
    assert proc.returncode == 0
    for option in ("--nproc", "--world_size", "--ip", "--port", "--group_offset", "--config_files"):
        assert option in proc.stdout


def test_cli_unknown_id_rows_is_a_clean_error(tmp_path):
    """--id_rows is checked by add_items itself (one list of choices), before any file is read."""
    proc = run_cli(
        "--add_items",
        "--model_file=missing.pth",
        "--features=text=missing.npz",
        "--id_rows=random",
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "id_rows must be one of ('zero', 'mean', 'nearest'), got 'random'" in proc.stderr
