"""The house rules that keep the code readable, checked on the source tree (no imports run).

Limits: no module of the package over 450 lines, no function over 60 lines, no code reading
``sys.argv`` outside the CLI (RecBole's Config reads it, so the CLI sets it for a run), and no
comment citing a document that is not in the repository.
"""

import ast
import pathlib

import pytest

from conftest import REPO_DIR

REPO = pathlib.Path(REPO_DIR)
PACKAGE_FILES = sorted((REPO / "recbole_bbq").rglob("*.py"))
SOURCE_FILES = PACKAGE_FILES + sorted((REPO / "dataset_scripts").glob("*.py")) + [REPO / "run_recbole_bbq.py"]
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60


def relative(path):
    return str(path.relative_to(REPO))


@pytest.mark.parametrize("path", PACKAGE_FILES, ids=relative)
def test_package_module_is_at_most_450_lines(path):
    assert len(path.read_text(encoding="utf-8").splitlines()) <= MAX_MODULE_LINES


@pytest.mark.parametrize("path", SOURCE_FILES, ids=relative)
def test_no_function_is_over_60_lines(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    functions = (node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)))
    long = {
        f.name: f.end_lineno - f.lineno + 1
        for f in functions
        if f.end_lineno - f.lineno + 1 > MAX_FUNCTION_LINES
    }
    assert not long, f"{relative(path)}: functions over {MAX_FUNCTION_LINES} lines: {long}"


@pytest.mark.parametrize("path", [p for p in SOURCE_FILES if p.name != "run_recbole_bbq.py"], ids=relative)
def test_only_the_cli_reads_sys_argv(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    reads = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr == "argv"
        and getattr(node.value, "id", None) == "sys"
    ]
    assert not reads, f"{relative(path)} reads sys.argv on lines {reads}; take argv as a parameter"


def test_comments_cite_documents_in_the_repository():
    cited = [
        f"{relative(path)}:{number}"
        for path in SOURCE_FILES + sorted((REPO / "properties").rglob("*.yaml")) + [REPO / "README.md"]
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if "SPEC §" in line
    ]
    assert not cited, f"cite docs/method.md or the paper instead: {cited}"
    assert (REPO / "docs" / "method.md").is_file()
