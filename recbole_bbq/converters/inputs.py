"""Reading the converters' source files: folders, prefixed files, text lines and index maps.

Every problem is a :class:`~recbole_bbq.errors.DataError` that names the file (and the line
where there is one), so that a command prints one line instead of a traceback.
"""

import glob
import os

from recbole_bbq.data.io import read_text_lines
from recbole_bbq.errors import DataError


def require_folder(path):
    """Raise :class:`DataError` unless ``path`` is an existing folder."""
    if not os.path.isdir(path):
        raise DataError(f"{path}: input folder not found")


def find_source_file(folder, suffix, source_name=None):
    """The one ``<prefix><suffix>`` file in ``folder``.

    Args:
        folder (str): Input folder.
        suffix (str): File name ending, e.g. ``".train.inter"``.
        source_name (str, optional): The prefix; auto-detected when omitted.

    Returns:
        tuple[str, str]: ``(path, prefix)``.

    Raises:
        DataError: If the file is missing or several candidates exist.
    """
    require_folder(folder)
    if source_name:
        path = os.path.join(folder, source_name + suffix)
        if not os.path.isfile(path):
            raise DataError(f"{path}: file not found")
        return path, source_name
    matches = sorted(glob.glob(os.path.join(glob.escape(folder), "*" + suffix)))
    if not matches:
        raise DataError(f"{folder}: no *{suffix} file in this folder")
    if len(matches) > 1:
        names = ", ".join(os.path.basename(m) for m in matches)
        raise DataError(f"{folder}: several *{suffix} files ({names}); pass --source_name")
    return matches[0], os.path.basename(matches[0])[: -len(suffix)]


def read_lines(path, encoding="utf-8"):
    """Yield ``(line_no, line)`` of a plain or gzip text file, without the line end.

    Raises:
        DataError: Naming the file, line and byte offset of a byte that is not ``encoding``
            (see :func:`recbole_bbq.data.io.read_text_lines`), or an unreadable file.
    """
    for line_no, line in read_text_lines(path, encoding):
        yield line_no, line.rstrip("\r\n")


def require_rows(path, rows, what="data rows"):
    """Raise :class:`DataError` when a file gave no ``rows`` (a header-only or empty file)."""
    if not rows:
        raise DataError(f"{path}: no {what}; the file is empty or holds only a header")
    return rows


def read_index_map(path):
    """Read a ``name<whitespace>integer index`` file (``item2index``, ``user2id``, ...).

    Returns:
        dict[str, str]: index -> name.

    Raises:
        DataError: Naming the file and line of a malformed row or a repeated index.
    """
    names = {}
    for line_no, line in read_lines(path):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise DataError(f"{path}, line {line_no}: expected 'name index', got {line.strip()!r}")
        name, index = parts
        if not index.isdigit():
            raise DataError(f"{path}, line {line_no}: index '{index}' is not a non-negative integer")
        if index in names:
            raise DataError(f"{path}, line {line_no}: index {index} appears twice")
        names[index] = name
    return names
