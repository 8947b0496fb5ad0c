"""Convert an LC-Rec / MQL4GRec JSON dataset into a recbole_bbq dataset.

:func:`convert` writes each user's item list as a leave-one-out dataset (the timestamp is the
position in the list), the item metadata and ASINs, and every published index file as a
semantic-ID file; listed semantic IDs can also become one-hot *code-derived* modalities. The
command line and the input layout are described in ``dataset_scripts/lcrec.py``.
"""

import json
import os
import re

import numpy as np

from recbole_bbq.converters.cli import add_option, converter_parser, run_converter
from recbole_bbq.converters.common import (
    DEFAULT_MAX_HISTORY,
    INTER_HEADER,
    leave_one_out_conversion,
    sort_tokens,
    unique,
    write_conversion,
)
from recbole_bbq.converters.inputs import find_source_file, read_index_map, require_rows
from recbole_bbq.data.io import read_text
from recbole_bbq.data.semantic_ids import parse_code
from recbole_bbq.errors import DataError

_INDEX_FILE = re.compile(r"^(?P<prefix>.+)\.(?P<kind>index(?:_\w+)?)\.json$")


def read_json(path):
    """Load a JSON file; a syntax error or a non-UTF-8 byte is a :class:`DataError` naming the line."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(f"{path}, line {error.lineno}: malformed JSON ({error.msg})") from None


def read_json_object(path, expected):
    """A JSON file that must hold an object; ``expected`` (e.g. ``"{user: [items]}"``) names its shape."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected an object {expected}, got {type(data).__name__}")
    return data


def read_sequences(path):
    """``<P>.inter.json`` as ``{user: [item tokens]}``."""
    sequences = {}
    for user, items in read_json_object(path, "{user: [items]}").items():
        if not isinstance(items, list) or not all(isinstance(i, (int, str)) for i in items):
            raise DataError(f"{path}, key '{user}': expected a list of item ids")
        if items:
            sequences[str(user)] = [str(item) for item in items]
    return require_rows(path, sequences, "user with at least one item")


def read_items(path):
    """``<P>.item.json`` as ``{item: {title, brand, categories (list), description}}``."""
    items = {}
    for token, info in read_json_object(path, "{item: {title, ...}}").items():
        if not isinstance(info, dict):
            raise DataError(f"{path}, key '{token}': expected an object with title, description, ...")
        categories = info.get("categories") or []
        if isinstance(categories, str):
            categories = categories.split(",")
        items[str(token)] = {**info, "categories": categories}
    return items


def read_codes(path):
    """An index file as ``(tokens, codes)`` with one row of integer codes per item."""
    data = read_json(path)
    if not isinstance(data, dict) or not data:
        raise DataError(f"{path}: expected a non-empty object {{item: [codes]}}")
    tokens, codes = [], []
    for token, values in data.items():
        try:
            row = [parse_code(value) for value in values]
        except (TypeError, ValueError) as error:
            raise DataError(f"{path}, key '{token}': {error}") from None
        if codes and len(row) != len(codes[0]):
            raise DataError(
                f"{path}, key '{token}': {len(row)} codes, but earlier items have {len(codes[0])}"
            )
        tokens.append(str(token))
        codes.append(row)
    return tokens, codes


def find_index_files(folder, prefix):
    """Index files of ``prefix`` anywhere below ``folder``.

    Returns:
        dict[str, str]: semantic-ID name -> path.

    Raises:
        DataError: If two files map to the same name.
    """
    found = {}
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for file_name in sorted(files):
            match = _INDEX_FILE.match(file_name)
            if match is None or match["prefix"] != prefix:
                continue
            kind, path = match["kind"], os.path.join(root, file_name)
            if os.path.samefile(root, folder):
                sid_name = kind
            else:
                method = os.path.basename(root)
                sid_name = method if kind == "index" else f"{method}_{kind}"
            if sid_name in found:
                raise DataError(f"{path}: semantic-ID name '{sid_name}' is also used by {found[sid_name]}")
            found[sid_name] = path
    return found


def one_hot_codes(codes, codebook_size=None):
    """One-hot encoding of code tuples: ``[N, L]`` codes -> ``[N, L * K]`` float32 (K per level).

    Args:
        codes (array-like): Integer codes, one row per item.
        codebook_size (int, optional): Codes per level K; default the largest code + 1.

    Returns:
        np.ndarray: Row ``i`` has a 1 at ``l * K + codes[i, l]`` for every level ``l``.
    """
    codes = np.asarray(codes, dtype=np.int64)
    size = int(codebook_size or codes.max() + 1)
    out = np.zeros((len(codes), codes.shape[1] * size), dtype=np.float32)
    rows = np.arange(len(codes))[:, None]
    out[rows, np.arange(codes.shape[1]) * size + codes] = 1.0
    return out


def parse_code_features(spec):
    """``"index_lemb=text,index_vitemb=image"`` -> ``{"index_lemb": "text", ...}``."""
    mapping = {}
    for part in filter(None, (spec or "").split(",")):
        sid_name, sep, modality = part.partition("=")
        if not sep or not sid_name.strip() or not modality.strip():
            raise DataError(f"--code_features: expected SEMANTIC_ID=MODALITY, got {part!r}")
        mapping[sid_name.strip()] = modality.strip()
    return mapping


def add_code_features(conversion, code_features):
    """Register each semantic-ID file named in ``code_features`` as a one-hot modality."""
    for sid_name, modality in code_features.items():
        if sid_name not in conversion.semantic_ids:
            raise DataError(
                f"--code_features: no semantic-ID file '{sid_name}' in the input "
                f"(found: {', '.join(sorted(conversion.semantic_ids)) or 'none'})"
            )
        tokens, codes, meta = conversion.semantic_ids[sid_name]
        levels, size = len(codes[0]), int(np.max(codes)) + 1
        matrix = one_hot_codes(codes, size)
        source = f"code-derived: one-hot of {sid_name} ({levels} x {size} codes), not raw vectors"
        conversion.features[modality] = (tokens, matrix, {"source": source, "semantic_ids": sid_name})
        conversion.note(f"modality '{modality}': {matrix.shape[0]} x {matrix.shape[1]}, {source}")


def convert(
    input, name, output_dir="dataset", max_history=DEFAULT_MAX_HISTORY, source_name=None, code_features=None
):
    """Convert an LC-Rec JSON folder.

    Args:
        input (str): The LC-Rec / MQL4GRec folder.
        name (str): Output dataset name.
        output_dir (str): Parent folder of the output.
        max_history (int): ``MAX_ITEM_LIST_LENGTH`` of the dataset.
        source_name (str, optional): File prefix ``<P>``; by default that of the one ``*.inter.json``.
        code_features (str | dict, optional): Semantic-ID files to expose as one-hot modalities,
            ``"index_lemb=text,index_vitemb=image"`` or the equivalent dict.

    Returns:
        dict: The statistics of :func:`recbole_bbq.converters.common.dataset_stats`.

    Raises:
        DataError: On a missing or malformed input file, or an unknown ``code_features`` name;
            nothing is written then.
    """
    inter_path, prefix = find_source_file(input, ".inter.json", source_name)
    source = os.path.join(input, prefix)
    sequences = read_sequences(inter_path)
    items, extra_columns = read_item_fields(source)
    catalogue = sort_tokens(unique([*items, *(i for seq in sequences.values() for i in seq)]))
    conversion = leave_one_out_conversion(
        name=name,
        max_history=max_history,
        header=INTER_HEADER,
        histories={
            user: [(user, item, position) for position, item in enumerate(seq)]
            for user, seq in sequences.items()
        },
        catalogue=catalogue,
        items=items,
        extra_columns=extra_columns,
    )
    add_semantic_ids(conversion, input, prefix, catalogue)
    if isinstance(code_features, str):
        code_features = parse_code_features(code_features)
    add_code_features(conversion, code_features or {})
    write_conversion(conversion, output_dir)
    return conversion.stats


def read_item_fields(source):
    """Item fields from ``<source>.item.json`` and ASINs from ``<source>.item2id``, where they exist.

    Returns:
        tuple[dict[str, dict], tuple]: item -> fields, and the extra ``NAME.item`` columns
        (``asin`` when there is an ``item2id`` file).
    """
    items = read_items(f"{source}.item.json") if os.path.isfile(f"{source}.item.json") else {}
    if not os.path.isfile(f"{source}.item2id"):
        return items, ()
    for token, asin in read_index_map(f"{source}.item2id").items():
        items.setdefault(token, {})["asin"] = asin
    return items, (("asin", "token"),)


def add_semantic_ids(conversion, folder, prefix, catalogue):
    """Add every index file of ``prefix`` below ``folder`` as a semantic-ID file, with a note each."""
    for sid_name, path in find_index_files(folder, prefix).items():
        tokens, codes = read_codes(path)
        meta = {"source": os.path.abspath(path), "levels": len(codes[0])}
        conversion.semantic_ids[sid_name] = (tokens, codes, meta)
        covered = len(set(tokens).intersection(catalogue))
        distinct = len(set(map(tuple, codes)))
        conversion.note(
            f"semantic IDs '{sid_name}': {len(tokens)} x {len(codes[0])} from "
            f"{os.path.relpath(path, folder)} ({covered} of {len(catalogue)} items covered, "
            f"{distinct} distinct code tuples)"
        )


def build_parser():
    """The command-line interface: the shared options plus the file prefix and code features."""
    parser = converter_parser(__doc__)
    add_option(parser, "source_name", help="file prefix in --input (default: the one *.inter.json)")
    add_option(
        parser,
        "code_features",
        help="expose semantic-ID files as one-hot (code-derived) modalities, "
        "e.g. index_lemb=text,index_vitemb=image",
    )
    return parser


def main(argv=None):
    """Run the converter; returns the exit status."""
    return run_converter(build_parser(), convert, argv)
