"""README's first two commands and .ci/run must stay the same commands."""

import os
import re

from conftest import REPO_DIR


def readme_commands():
    text = open(os.path.join(REPO_DIR, "README.md"), encoding="utf-8").read()
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    return [line.split("#")[0].strip() for line in block.strip().splitlines()]


def test_ci_installs_and_tests_exactly_as_the_readme_says():
    install_and_run, test_command = readme_commands()
    ci = open(os.path.join(REPO_DIR, ".ci", "run"), encoding="utf-8").read()
    install = install_and_run.rsplit(" && ", 1)[0]
    assert install_and_run.endswith("run_recbole_bbq.py")
    assert install in ci.splitlines()
    assert test_command in ci
