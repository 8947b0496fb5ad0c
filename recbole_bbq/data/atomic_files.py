"""Checks of RecBole atomic files (``.inter``, ``.item``, ``.user``) before RecBole reads them.

RecBole hands these files to pandas, which reports a bad byte, an unknown column type or a
non-numeric cell without the file or the line, and silently fills an empty cell of a float
column with the column mean (an interaction gets an invented timestamp). :func:`check_atomic_file`
reads the file line by line first and raises a :class:`DataError` that names the file, the line
and the column, and says what to do.
"""

import math
from dataclasses import dataclass, field

from recbole_bbq.data.io import read_text_lines
from recbole_bbq.errors import DataError

FIELD_TYPES = ("token", "token_seq", "float", "float_seq")
# Cells pandas reads as "no value" by default; RecBole then imputes them.
PANDAS_NA = frozenset(
    (
        "",
        "#N/A",
        "#N/A N/A",
        "#NA",
        "-1.#IND",
        "-1.#QNAN",
        "-NaN",
        "-nan",
        "1.#IND",
        "1.#QNAN",
        "<NA>",
        "N/A",
        "NA",
        "NULL",
        "NaN",
        "None",
        "n/a",
        "nan",
        "null",
    )
)


@dataclass
class AtomicFileRules:
    """What :func:`check_atomic_file` enforces for one file.

    Attributes:
        loaded (Callable[[str], bool]): Whether RecBole loads a column (``load_col``/``unload_col``).
        interactions (bool): The file holds interactions: a value is required in every float
            column and in ``required`` columns, and the file needs at least one row.
        required (set[str]): Token columns that may not be empty (user and item ids).
        histories (set[str]): ``token_seq`` history columns that need at least one item.
        separator (str): Column separator (``field_separator``).
        seq_separator (str): Separator inside sequence cells (``seq_separator``).
        encoding (str): Text encoding (``encoding``).
    """

    loaded: object = lambda name: True
    interactions: bool = False
    required: set = field(default_factory=set)
    histories: set = field(default_factory=set)
    separator: str = "\t"
    seq_separator: str = " "
    encoding: str = "utf-8"


def parse_header(path, line, separator="\t"):
    """``[(name, type), ...]`` of an atomic file's first line.

    Raises:
        DataError: Naming the column whose ``name:type`` is malformed or whose type is unknown.
    """
    text = line.rstrip("\n")
    if not text.strip():
        raise DataError(f"{path}, line 1: empty header; line 1 must list the columns as name:type")
    header = []
    for column, cell in enumerate(text.split(separator), start=1):
        name, sep, ftype = cell.partition(":")
        if not sep or not name or ":" in ftype:
            raise DataError(
                f"{path}, line 1, column {column}: {cell!r} is not 'name:type'; write e.g. 'item_id:token'"
            )
        if ftype not in FIELD_TYPES:
            hint = " (a Windows line end? save the file with \\n line ends)" if ftype.endswith("\r") else ""
            raise DataError(
                f"{path}, line 1, column {column} ('{name}'): unknown type {ftype!r}{hint}; "
                f"use one of {', '.join(FIELD_TYPES)}"
            )
        header.append((name, ftype))
    return header


def _is_blank(text, separator):
    """A line pandas skips (no separator and only white space)."""
    return separator not in text and not text.strip()


def _cell_problem(cell, ftype, name, rules):
    """Why ``cell`` is not acceptable in column ``name`` of type ``ftype``, or None."""
    value = cell.strip()
    if ftype == "float":
        if value in PANDAS_NA:
            if rules.interactions:
                return "no value; RecBole would fill in the column mean. Fill it in or delete the row"
            return None
        try:
            number = float(value)
        except ValueError:
            return f"{cell!r} is not a number"
        if rules.interactions and not math.isfinite(number):
            return f"{cell!r} is not a finite number"
        return None
    if ftype == "float_seq":
        for part in filter(None, cell.split(rules.seq_separator)):
            try:
                float(part)
            except ValueError:
                return f"{part!r} in {cell!r} is not a number"
        return None
    if name in rules.histories and not value:
        return "empty history; every row of a pre-split file needs at least one earlier item. Delete the row"
    if name in rules.required and not value:
        return "empty id; fill it in or delete the row"
    return None


def _check_row(path, line_no, text, header, rules):
    cells = text.split(rules.separator)
    if len(cells) != len(header):
        if '"' in text:
            return  # a quoted cell may hold the separator; pandas decides
        names = ", ".join(name for name, _ in header)
        raise DataError(
            f"{path}, line {line_no}: {len(cells)} fields, but the header has {len(header)} ({names}); "
            f"fill in the missing fields or delete the row"
        )
    for column, ((name, ftype), cell) in enumerate(zip(header, cells), start=1):
        if not rules.loaded(name):
            continue
        problem = _cell_problem(cell, ftype, name, rules)
        if problem:
            raise DataError(f"{path}, line {line_no}, column {column} ('{name}', {ftype}): {problem}")


def check_atomic_file(path, rules=None):
    """Read an atomic file line by line and raise on the first problem RecBole would hide.

    Checked: every byte decodes; line 1 is ``name:type`` columns of a known type; every row has
    as many fields as the header; loaded float cells are numbers; for interaction files, no
    empty float cell, user/item id or history, and at least one row.

    Args:
        path (str): The file.
        rules (AtomicFileRules, optional): What to enforce; default: a non-interaction file.

    Returns:
        list[tuple[str, str]]: The header's ``(name, type)`` columns.

    Raises:
        DataError: Naming the file, the line and (where it applies) the column.
    """
    rules = rules or AtomicFileRules()
    lines = read_text_lines(path, rules.encoding)
    first = next(lines, None)
    if first is None:
        raise DataError(f"{path}: empty file; line 1 must list the columns as name:type")
    header = parse_header(path, first[1], rules.separator)
    rows = 0
    for line_no, line in lines:
        text = line.rstrip("\r\n")
        if _is_blank(text, rules.separator):
            continue
        rows += 1
        _check_row(path, line_no, text, header, rules)
    if rules.interactions and rows == 0:
        raise DataError(
            f"{path}: only a header (line 1) and no interaction rows; add rows or remove the file"
        )
    return header
