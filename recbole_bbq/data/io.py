"""File helpers: atomic writes (temporary file, then rename), stale-temp cleanup, text decoding.

Every temporary file that :func:`atomic_path` creates is named
``.<base>.@<host>.<pid>.<random>.tmp<ext>`` next to its target, so a later run can tell an
orphan (its writer was killed) from a file that another process is still writing: see
:func:`remove_stale_temp_files`.
"""

import contextlib
import gzip
import os
import re
import socket
import tempfile
import time

from recbole_bbq.errors import DataError

# A temporary file whose writer cannot be checked (another host, an older naming) is only removed
# once it is this old: no write of ours takes that long without touching the file.
STALE_TEMP_SECONDS = 30 * 60


def _current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _host_tag():
    """This machine's name, reduced to characters that are safe in a file name."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"


def _split_name(path):
    """``(folder, base, ext)`` of ``path``: ``a/x.sid.npz`` -> ``("a", "x.sid", ".npz")``."""
    folder = os.path.dirname(os.path.abspath(path))
    base, ext = os.path.splitext(os.path.basename(path))
    return folder, base, ext


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; rename it to ``path`` only on success.

    On any exception the temporary file is removed and ``path`` is left untouched, so readers
    never see a half-written file. A killed process leaves the temporary file behind; its name
    carries the host and process id so that :func:`remove_stale_temp_files` can remove it later.

    Args:
        path (str): Final file path.

    Yields:
        str: Temporary path to write to (same folder, same extension).
    """
    folder, base, ext = _split_name(path)
    os.makedirs(folder, exist_ok=True)
    prefix = f".{base}.@{_host_tag()}.{os.getpid()}."
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=f".tmp{ext}", dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp creates 0600; match open()'s mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text_atomic(path, text):
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


# --------------------------------------------------------------------------- stale temporary files


def _process_is_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


# ``.<base>.@<host>.<pid>.<random>.tmp<ext>``: the temporary files of atomic_path.
_TEMP_WRITER = re.compile(r"\.@(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[^.]+\.tmp(\.[^.]+)?$")
# Any temporary file of atomic_path, also from before the writer was part of the name.
_TEMP_FILE = re.compile(r"^\..+\.tmp(\.[^.]+)?$")


def is_temp_file_name(name):
    """True for a name that :func:`atomic_path` gives its temporary files (``.<base>.*.tmp<ext>``)."""
    return bool(_TEMP_FILE.match(name))


def _is_orphan(name, age_seconds, max_age_seconds):
    """True when the temporary file ``name`` can no longer belong to a running writer."""
    if age_seconds >= max_age_seconds:
        return True
    match = _TEMP_WRITER.search(name)
    if match is None or match["host"] != _host_tag():
        return False  # a writer we cannot check: wait for the age limit
    pid = int(match["pid"])
    return pid != os.getpid() and not _process_is_alive(pid)


def _orphans(folder, names, max_age_seconds):
    """The entries of ``names`` in ``folder`` that are orphaned temporary files, as paths."""
    now = time.time()
    orphans = []
    for name in sorted(names):
        candidate = os.path.join(folder, name)
        try:
            age = now - os.stat(candidate).st_mtime
        except FileNotFoundError:  # its writer just renamed or removed it
            continue
        if os.path.isfile(candidate) and _is_orphan(name, age, max_age_seconds):
            orphans.append(candidate)
    return orphans


def stale_temp_files(path, max_age_seconds=STALE_TEMP_SECONDS):
    """Temporary files of ``path`` (``.<base>.*.tmp<ext>``) left behind by a killed writer.

    A temporary file counts as orphaned when its writer, named in the file name, is a process
    of this machine that no longer runs, or when it is older than ``max_age_seconds``. A file
    that another live process is writing right now is never listed.

    Args:
        path (str): The target path whose temporaries to look for.
        max_age_seconds (float): Age after which any matching temporary file is orphaned.

    Returns:
        list[str]: The orphaned temporary files, sorted.
    """
    folder, base, ext = _split_name(path)
    if not os.path.isdir(folder):
        return []
    prefix, suffix = f".{base}.", f".tmp{ext}"
    names = [
        name
        for name in os.listdir(folder)
        if name.startswith(prefix) and name.endswith(suffix) and len(name) > len(prefix) + len(suffix)
    ]
    return _orphans(folder, names, max_age_seconds)


def stale_temp_files_in(folder, max_age_seconds=STALE_TEMP_SECONDS):
    """Every orphaned temporary file (``.*.tmp[.<ext>]``) in ``folder``; see :func:`stale_temp_files`."""
    if not os.path.isdir(folder):
        return []
    return _orphans(folder, [name for name in os.listdir(folder) if is_temp_file_name(name)], max_age_seconds)


def remove_stale_temp_files(path, max_age_seconds=STALE_TEMP_SECONDS):
    """Remove the orphaned temporary files of ``path`` (see :func:`stale_temp_files`).

    Called before an artifact is written, so an interrupted earlier write leaves nothing behind
    for long.

    Returns:
        list[str]: The files removed.
    """
    removed = []
    for orphan in stale_temp_files(path, max_age_seconds):
        with contextlib.suppress(FileNotFoundError):
            os.remove(orphan)
            removed.append(orphan)
    return removed


# --------------------------------------------------------------------------- text decoding


def decode_error(path, line_no, line_start, error, encoding="utf-8"):
    """A :class:`DataError` naming the file, line, byte offset and byte that did not decode.

    Args:
        path (str): The file.
        line_no (int): 1-based line number of the bad byte.
        line_start (int): Byte offset of that line's first byte in the (uncompressed) file.
        error (UnicodeDecodeError): The error raised while decoding that line.
        encoding (str): The encoding that was expected.
    """
    offset = line_start + error.start
    byte = error.object[error.start : error.start + 1].hex()
    where = "byte offset" if not str(path).endswith(".gz") else "byte offset (uncompressed)"
    return DataError(
        f"{path}, line {line_no}, {where} {offset} (byte {error.start + 1} of the line): "
        f"byte 0x{byte} is not valid {encoding}; re-save the file as {encoding}"
    )


def _open_binary(path):
    return gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb")


def read_text_lines(path, encoding="utf-8"):
    """Yield ``(line_no, line)`` of a plain or gzip text file, line ends included.

    Lines are decoded one by one, so a bad byte is reported with its line and its byte offset
    in the file (:func:`decode_error`) instead of pandas' or Python's offset in a buffer.

    Raises:
        DataError: On a byte that is not valid ``encoding``, or an unreadable/truncated file.
    """
    offset = 0
    try:
        with _open_binary(path) as f:
            for line_no, raw in enumerate(f, start=1):
                try:
                    yield line_no, raw.decode(encoding)
                except UnicodeDecodeError as error:
                    raise decode_error(path, line_no, offset, error, encoding) from None
                offset += len(raw)
    except (OSError, EOFError) as error:
        raise DataError(f"{path}: unreadable file ({error})") from None


def read_text(path, encoding="utf-8"):
    """The whole text of a plain or gzip file (see :func:`read_text_lines` for the errors)."""
    return "".join(line for _, line in read_text_lines(path, encoding))
