"""Convert an LC-Rec / MQL4GRec JSON dataset into a recbole_bbq dataset.

Input folder (``<P>`` = source prefix, e.g. ``Scientific``):

* ``<P>.inter.json``: ``{user: [item, ...]}`` in chronological order.
* ``<P>.item.json`` (optional): ``{item: {title, description, brand, categories}}``.
* ``<P>.item2id`` (optional): ``ASIN<TAB>item`` -> an ``asin`` column in ``NAME.item``.
* ``<P>.index.json`` / ``<P>.index_<x>.json`` anywhere below the folder (optional):
  ``{item: ["<a_12>", ...]}`` published semantic IDs, each written as ``NAME.<id>.sid.npz``
  (``<id>`` = ``index``, ``index_<x>``, or the folder name for ``<method>/<P>.index.json``).

``--code-features index_lemb=text,index_vitemb=image`` also writes each listed semantic-ID file
as a *code-derived* modality: the one-hot encoding of the item's code tuple (L levels x K codes,
e.g. 4 x 256 = 1,024-d for MQL4GRec Instruments). Use it where the published codes are the only
signal and the raw vectors are not available; the vectors carry no more than the codes do.

Output: ``NAME.inter`` whose timestamp is the position in the user's list (so RecBole's
leave-one-out split by time gives LC-Rec's last = test, second last = valid), ``NAME.item``,
``NAME.yaml`` and the semantic-ID files.

Example:
    python dataset_scripts/lcrec.py --input ../shared/data/amazon_scientific_lcrec --name Scientific
    python dataset_scripts/lcrec.py --input ../shared/data/amazon_instruments_mql4grec --name Instruments \
        --code-features index_lemb=text,index_vitemb=image
"""

import json
import os
import re
import sys

import numpy as np

from _common import (
    DEFAULT_MAX_HISTORY,
    INTER_HEADER,
    Conversion,
    atomic_file_text,
    base_parser,
    dataset_stats,
    find_source_file,
    item_file_text,
    leave_one_out_config,
    read_index_map,
    require_rows,
    run_cli,
    sort_tokens,
    unique,
    write_conversion,
)
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


def read_sequences(path):
    """``<P>.inter.json`` as ``{user: [item tokens]}``."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected an object {{user: [items]}}, got {type(data).__name__}")
    sequences = {}
    for user, items in data.items():
        if not isinstance(items, list) or not all(isinstance(i, (int, str)) for i in items):
            raise DataError(f"{path}, key '{user}': expected a list of item ids")
        if items:
            sequences[str(user)] = [str(item) for item in items]
    return require_rows(path, sequences, "user with at least one item")


def read_items(path):
    """``<P>.item.json`` as ``{item: {title, brand, categories (list), description}}``."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected an object {{item: {{title, ...}}}}, got {type(data).__name__}")
    items = {}
    for token, info in data.items():
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
            raise DataError(f"--code-features: expected SEMANTIC_ID=MODALITY, got {part!r}")
        mapping[sid_name.strip()] = modality.strip()
    return mapping


def add_code_features(conversion, code_features):
    """Register each semantic-ID file named in ``code_features`` as a one-hot modality."""
    for sid_name, modality in code_features.items():
        if sid_name not in conversion.semantic_ids:
            raise DataError(
                f"--code-features: no semantic-ID file '{sid_name}' in the input "
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
        input (str): The source folder.
        name (str): Output dataset name.
        output_dir (str): Parent folder of the output.
        max_history (int): ``MAX_ITEM_LIST_LENGTH`` of the dataset.
        source_name (str, optional): File prefix; auto-detected from the one ``*.inter.json``.
        code_features (str | dict, optional): Semantic-ID files to expose as one-hot modalities,
            ``"index_lemb=text,index_vitemb=image"`` or the equivalent dict.

    Returns:
        dict: Dataset statistics (see ``_common.dataset_stats``).

    Raises:
        DataError: On missing or malformed input; nothing is written then.
    """
    inter_path, prefix = find_source_file(input, ".inter.json", source_name)
    source = os.path.join(input, prefix)
    sequences = read_sequences(inter_path)
    items = read_items(f"{source}.item.json") if os.path.isfile(f"{source}.item.json") else {}
    extra_columns = ()
    if os.path.isfile(f"{source}.item2id"):
        for token, asin in read_index_map(f"{source}.item2id").items():
            items.setdefault(token, {})["asin"] = asin
        extra_columns = (("asin", "token"),)

    catalogue = sort_tokens(unique([*items, *(i for seq in sequences.values() for i in seq)]))
    rows = ((user, item, position) for user, seq in sequences.items() for position, item in enumerate(seq))
    conversion = Conversion(
        name=name,
        files={
            ".inter": atomic_file_text(INTER_HEADER, rows),
            ".item": item_file_text(catalogue, items, extra_columns),
        },
        config=leave_one_out_config(max_history),
        stats=dataset_stats((len(seq) for seq in sequences.values()), len(catalogue)),
    )
    for sid_name, path in find_index_files(input, prefix).items():
        tokens, codes = read_codes(path)
        meta = {"source": os.path.abspath(path), "levels": len(codes[0])}
        conversion.semantic_ids[sid_name] = (tokens, codes, meta)
        covered = len(set(tokens).intersection(catalogue))
        distinct = len(set(map(tuple, codes)))
        conversion.note(
            f"semantic IDs '{sid_name}': {len(tokens)} x {len(codes[0])} from {os.path.relpath(path, input)} "
            f"({covered} of {len(catalogue)} items covered, {distinct} distinct code tuples)"
        )
    if isinstance(code_features, str):
        code_features = parse_code_features(code_features)
    add_code_features(conversion, code_features or {})
    write_conversion(conversion, output_dir)
    return conversion.stats


def build_parser():
    """The command-line interface."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--source-name", help="file prefix in --input (default: the one *.inter.json)")
    parser.add_argument(
        "--code-features",
        help="expose semantic-ID files as one-hot (code-derived) modalities, e.g. index_lemb=text,index_vitemb=image",
    )
    return parser


def main(argv=None):
    """Run the converter; returns the exit status."""
    return run_cli(build_parser(), convert, argv)


if __name__ == "__main__":
    sys.exit(main())
