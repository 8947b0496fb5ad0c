"""A clone without ``../shared`` beside it collects the whole suite, and CI requires the data."""

import os
import subprocess
import sys

from conftest import REPO_DIR


def test_ci_turns_shared_data_skips_into_failures():
    ci = open(os.path.join(REPO_DIR, ".ci", "run"), encoding="utf-8").read()
    assert "export RECBOLE_BBQ_REQUIRE_SHARED_DATA=1" in ci


def test_lone_clone_collects_every_test_without_errors(tmp_path):
    """Collection imports every test module: none may read ``../shared`` at import time."""
    clone = tmp_path / "lone" / "recbole-bbq"  # no ``shared`` folder beside it
    subprocess.run(["git", "clone", "-q", REPO_DIR, str(clone)], check=True)
    env = {k: v for k, v in os.environ.items() if k != "RECBOLE_BBQ_REQUIRE_SHARED_DATA"}
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-3000:]
    assert "error" not in collected.stdout.splitlines()[-1].lower()
