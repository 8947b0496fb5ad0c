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


def test_wheel_ships_every_properties_yaml():
    """setup.py's package_data patterns match every YAML under properties/ (nested ones too)."""
    import ast
    import fnmatch

    tree = ast.parse(open(os.path.join(REPO_DIR, "setup.py"), encoding="utf-8").read())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    package_data = ast.literal_eval(next(k.value for k in call.keywords if k.arg == "package_data"))
    patterns = package_data["recbole_bbq.properties"]
    root = os.path.join(REPO_DIR, "properties")
    shipped = [
        os.path.relpath(os.path.join(folder, name), root)
        for folder, _, names in os.walk(root)
        for name in names
        if name.endswith(".yaml")
    ]
    # setuptools globs each pattern separately: "*" does not cross "/".
    missing = [
        p
        for p in shipped
        if not any(fnmatch.fnmatch(p, pat) and p.count("/") == pat.count("/") for pat in patterns)
    ]
    assert shipped and missing == []
