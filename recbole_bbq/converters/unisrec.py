"""Convert a UniSRec / MISSRec benchmark folder into a recbole_bbq dataset.

:func:`convert` maps the pre-split ``<P>.{train,valid,test}.inter`` files from integer indices
back to ASINs and reviewerIDs, keeps the ``<P>.text`` item texts and turns the raw
``<P>.feat1CLS`` / ``<P>.feat3CLS`` float32 matrices into text / image feature files. The
command line and the input layout are described in ``dataset_scripts/unisrec.py``.
"""

import os

import numpy as np

from recbole_bbq.converters.cli import add_option, converter_parser, run_converter
from recbole_bbq.converters.common import (
    BENCHMARK_HEADER,
    BENCHMARK_SPLITS,
    DEFAULT_MAX_HISTORY,
    Conversion,
    atomic_file_text,
    benchmark_config,
    benchmark_rows,
    dataset_stats,
    item_file_text,
    write_conversion,
)
from recbole_bbq.converters.inputs import find_source_file, read_index_map, read_lines, require_rows
from recbole_bbq.errors import DataError

# Raw feature-file suffix -> modality (UniSRec's plm_suffix and MISSRec's img_suffix).
FEATURE_SUFFIXES = {"feat1CLS": "text", "feat3CLS": "image"}
_HEADER_TYPES = dict(field.split(":") for field in BENCHMARK_HEADER)
_HEADER_FIELDS = tuple(_HEADER_TYPES)


def read_benchmark_file(path, users, items):
    """Read one benchmark split and map its indices to tokens.

    Args:
        path (str): A ``.inter`` file with ``user_id item_id_list item_id`` columns.
        users (dict[str, str]): user index -> reviewerID.
        items (dict[str, str]): item index -> ASIN.

    Returns:
        list[tuple[str, list[str], str]]: ``(user, history, target)`` rows.

    Raises:
        DataError: Naming the file and line of a malformed header or row, an empty history, an
            unknown index, a byte that is not UTF-8, or a file without rows.
    """
    if not os.path.isfile(path):
        raise DataError(f"{path}: file not found")
    lines = read_lines(path)
    _check_benchmark_header(path, next(lines, (1, ""))[1])
    rows = [_benchmark_row(path, line_no, line, users, items) for line_no, line in lines]
    return require_rows(path, rows, "interaction rows after the header (line 1)")


def _benchmark_row(path, line_no, line, users, items):
    """One ``(user, history, target)`` row, or a :class:`DataError` naming the line."""
    cells = line.split("\t")
    if len(cells) != 3:
        raise DataError(
            f"{path}, line {line_no}: expected 3 tab-separated columns ({', '.join(_HEADER_FIELDS)}), "
            f"got {len(cells)}; fill in the missing fields or delete the row"
        )
    user, history, target = cells
    if not history.split():
        # RecBole would keep the row and crash in training (gather_indexes at index -1).
        raise DataError(
            f"{path}, line {line_no}: empty history (column 2, item_id_list); every row needs at least "
            f"one earlier item, delete the row"
        )
    return (
        _lookup(users, user, path, line_no, "user"),
        [_lookup(items, item, path, line_no, "item") for item in history.split()],
        _lookup(items, target, path, line_no, "item"),
    )


def _check_benchmark_header(path, line):
    """Raise :class:`DataError` unless ``line`` is ``user_id item_id_list item_id`` (types optional)."""
    cells = line.split("\t")
    header = tuple(cell.split(":")[0] for cell in cells)
    if header != _HEADER_FIELDS:
        raise DataError(f"{path}, line 1: expected the header fields {_HEADER_FIELDS}, got {header}")
    for column, cell in enumerate(cells, start=1):
        name, _, ftype = cell.partition(":")
        if ftype and ftype != _HEADER_TYPES[name]:
            raise DataError(
                f"{path}, line 1, column {column}: '{name}' has type '{ftype}', expected "
                f"'{_HEADER_TYPES[name]}'; write '{name}:{_HEADER_TYPES[name]}'"
            )


def _lookup(mapping, index, path, line_no, kind):
    try:
        return mapping[index]
    except KeyError:
        raise DataError(f"{path}, line {line_no}: unknown {kind} index '{index}'") from None


def read_text_file(path):
    """Read ``<P>.text`` (``item_id<TAB>text``) into ``{ASIN: {"text": ...}}``."""
    items = {}
    for line_no, line in read_lines(path):
        if line_no == 1 or not line.strip():  # line 1 is the header
            continue
        token, sep, text = line.partition("\t")
        if not sep:
            raise DataError(f"{path}, line {line_no}: expected 'item_id<TAB>text'")
        items[token] = {"text": text}
    return items


def read_raw_features(path, dim, items):
    """Read a raw float32 feature file whose row ``i`` belongs to item index ``i``.

    Args:
        path (str): The ``.featNCLS`` file.
        dim (int): Feature dimension.
        items (dict[str, str]): item index -> ASIN; every index must have a row.

    Returns:
        tuple[list[str], np.ndarray]: ASINs and their ``[n_items, dim]`` rows, in index order.
    """
    raw = np.fromfile(path, dtype=np.float32)
    if raw.size % dim:
        raise DataError(f"{path}: {raw.size} float32 values are not a multiple of dimension {dim}")
    matrix = raw.reshape(-1, dim)
    indices = sorted(items, key=int)
    rows = [int(index) for index in indices]
    if rows and rows[-1] >= matrix.shape[0]:
        raise DataError(
            f"{path}: {matrix.shape[0]} rows of dimension {dim}, but item index {rows[-1]} "
            f"needs row {rows[-1]}; wrong --text_dim/--image_dim?"
        )
    return [items[index] for index in indices], matrix[rows]


def convert(
    input,
    name,
    output_dir="dataset",
    max_history=DEFAULT_MAX_HISTORY,
    source_name=None,
    text_dim=512,
    image_dim=512,
):
    """Convert a UniSRec / MISSRec benchmark folder.

    Args:
        input (str): The benchmark folder.
        name (str): Output dataset name.
        output_dir (str): Parent folder of the output.
        max_history (int): Keep only the last ``max_history`` items of each history.
        source_name (str, optional): File prefix ``<P>``; by default that of the one ``*.train.inter``.
        text_dim (int): Dimension of ``<P>.feat1CLS``.
        image_dim (int): Dimension of ``<P>.feat3CLS``.

    Returns:
        dict: Dataset statistics (see :func:`recbole_bbq.converters.common.dataset_stats`).

    Raises:
        DataError: On missing or malformed input; nothing is written then.
    """
    _, prefix = find_source_file(input, ".train.inter", source_name)
    source = os.path.join(input, prefix)
    items, splits = read_benchmark(source)
    catalogue = [items[index] for index in sorted(items, key=int)]
    item_info = read_text_file(f"{source}.text") if os.path.isfile(f"{source}.text") else {}
    files = {
        f".{split}.inter": atomic_file_text(BENCHMARK_HEADER, benchmark_rows(rows, max_history))
        for split, rows in splits.items()
    }
    files[".item"] = item_file_text(catalogue, item_info)
    full_lengths = {user: len(history) + 1 for user, history, _ in splits["test"]}
    conversion = Conversion(
        name=name,
        files=files,
        config=benchmark_config(max_history),
        stats=dataset_stats(full_lengths.values(), len(catalogue)),
    )
    add_raw_features(conversion, source, items, {"text": text_dim, "image": image_dim})
    write_conversion(conversion, output_dir)
    return conversion.stats


def read_benchmark(source):
    """The item index map and the three splits of the files ``<source>.*``.

    Returns:
        tuple[dict[str, str], dict[str, list]]: item index -> ASIN, and split -> the
        ``(user, history, target)`` rows of :func:`read_benchmark_file`.
    """
    for suffix in ("item2index", "user2index"):
        if not os.path.isfile(f"{source}.{suffix}"):
            raise DataError(f"{source}.{suffix}: file not found")
    items = read_index_map(f"{source}.item2index")
    users = read_index_map(f"{source}.user2index")
    splits = {
        split: read_benchmark_file(f"{source}.{split}.inter", users, items) for split in BENCHMARK_SPLITS
    }
    return items, splits


def add_raw_features(conversion, source, items, dims):
    """Add each raw ``<source>.featNCLS`` file that exists as a feature modality of ``conversion``.

    Args:
        conversion (Conversion): Receives the features and a note per modality.
        source (str): Path prefix of the benchmark files.
        items (dict[str, str]): item index -> ASIN.
        dims (dict[str, int]): modality -> feature dimension.
    """
    for suffix, modality in FEATURE_SUFFIXES.items():
        path = f"{source}.{suffix}"
        if os.path.isfile(path):
            tokens, matrix = read_raw_features(path, dims[modality], items)
            meta = {"modality": modality, "source": os.path.abspath(path), "encoder": f"published {suffix}"}
            conversion.features[modality] = (tokens, matrix, meta)
            conversion.note(f"{modality} features: {matrix.shape} from {suffix}")


def build_parser():
    """The command-line interface: the shared options plus the file prefix and feature dimensions."""
    parser = converter_parser(__doc__)
    add_option(parser, "source_name", help="file prefix in --input (default: the one *.train.inter)")
    add_option(parser, "text_dim", type=int, default=512, help="dimension of <P>.feat1CLS (default: 512)")
    add_option(parser, "image_dim", type=int, default=512, help="dimension of <P>.feat3CLS (default: 512)")
    return parser


def main(argv=None):
    """Run the converter; returns the exit status."""
    return run_converter(build_parser(), convert, argv)
