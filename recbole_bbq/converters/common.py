"""Shared pieces of the dataset converters: cell text, atomic files, dataset YAML, statistics, writing.

Every converter builds a :class:`Conversion` in memory (atomic files as text, the dataset
YAML, feature matrices, semantic-ID codes) and hands it to :func:`write_conversion`, which
writes everything into a staging folder and only then moves the files into
``<output_dir>/<name>/``. Bad input therefore never leaves a half-written dataset behind.
Reading the source files is in :mod:`recbole_bbq.converters.inputs`.
"""

import html
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field

import yaml

from recbole_bbq.data.features import feature_path, register_modality, write_feature_file
from recbole_bbq.data.io import write_text_atomic
from recbole_bbq.data.semantic_ids import semantic_id_path, write_semantic_id_file

DEFAULT_MAX_HISTORY = 50
INTER_HEADER = ("user_id:token", "item_id:token", "timestamp:float")
BENCHMARK_HEADER = ("user_id:token", "item_id_list:token_seq", "item_id:token")
BENCHMARK_SPLITS = ("train", "valid", "test")

# Optional .item columns, in file order; a column is written when at least one item has a value.
_ITEM_COLUMNS = (
    ("title", "token_seq"),
    ("brand", "token"),
    ("categories", "token_seq"),
    ("text", "token_seq"),
    ("image", "token"),
)
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


# --------------------------------------------------------------------------- text


def clean_text(value):
    """One line of plain text that RecBole and pandas read safely.

    Unescapes HTML entities, removes tags, turns double quotes into single quotes (pandas
    treats ``"`` as a quote character) and collapses tabs, newlines and runs of spaces.

    Args:
        value (str | list | None): Raw text; lists are joined with spaces.

    Returns:
        str: The cleaned text, possibly empty.
    """
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        value = " ".join(clean_text(part) for part in value)
    text = _TAG.sub(" ", html.unescape(str(value)))
    return _SPACE.sub(" ", text.replace('"', "'")).strip()


def category_tokens(categories):
    """``["Lab & Tools", "Tapes"]`` -> ``"Lab_&_Tools Tapes"`` (a ``token_seq`` cell)."""
    names = (clean_text(name) for name in categories or ())
    return " ".join(name.replace(" ", "_") for name in names if name)


def item_text(info):
    """The ``text`` cell of an item: title, brand, categories and description joined by ". ".

    Args:
        info (dict): Item fields; a precomposed ``text`` wins over the other fields.

    Returns:
        str: One cleaned line.
    """
    if info.get("text"):
        return clean_text(info["text"])
    parts = [
        clean_text(info.get("title")),
        clean_text(info.get("brand")),
        ", ".join(filter(None, (clean_text(c) for c in info.get("categories") or ()))),
        clean_text(info.get("description")),
    ]
    return ". ".join(part.rstrip(".").strip() for part in parts if part.rstrip(".").strip())


def unique(values):
    """``values`` without repeats, first occurrence order kept."""
    return list(dict.fromkeys(values))


def sort_tokens(tokens):
    """Sort tokens numerically when all are integers, else lexicographically."""
    tokens = list(tokens)
    if all(token.isdigit() for token in tokens):
        return sorted(tokens, key=int)
    return sorted(tokens)


# --------------------------------------------------------------------------- atomic files


def atomic_file_text(header, rows):
    """Text of a RecBole atomic file.

    Args:
        header (Sequence[str]): ``name:type`` fields.
        rows (Iterable[Sequence]): One sequence of cells per row; cells are converted with
            ``str`` (floats that are whole numbers are written without a fraction).

    Returns:
        str: Tab separated text with a header line.
    """
    lines = ["\t".join(header)]
    lines += ["\t".join(_cell(value) for value in row) for row in rows]
    return "\n".join(lines) + "\n"


def _cell(value):
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def item_file_text(tokens, items, extra_columns=()):
    """Text of ``NAME.item``: one row for every catalogue item, in ``tokens`` order.

    Args:
        tokens (Sequence[str]): The item catalogue.
        items (dict[str, dict]): Per-item fields (``title``, ``brand``, ``categories`` list,
            ``description``, ``text``, ``image`` and the ``extra_columns``); items without an
            entry get empty cells.
        extra_columns (Sequence[tuple[str, str]]): Additional ``(name, type)`` columns written
            right after ``item_id``.

    Returns:
        str: The atomic file text.
    """
    cells = {token: _item_cells(items.get(token, {}), extra_columns) for token in tokens}
    columns = [
        (name, ftype)
        for name, ftype in (*extra_columns, *_ITEM_COLUMNS)
        if any(row[name] for row in cells.values())
    ]
    header = ["item_id:token"] + [f"{name}:{ftype}" for name, ftype in columns]
    rows = ([token] + [cells[token][name] for name, _ in columns] for token in tokens)
    return atomic_file_text(header, rows)


def _item_cells(info, extra_columns):
    cells = {name: clean_text(info.get(name)) for name, _ in extra_columns}
    cells.update(
        title=clean_text(info.get("title")),
        brand=clean_text(info.get("brand")),
        categories=category_tokens(info.get("categories")),
        text=item_text(info),
        image=clean_text(info.get("image")),
    )
    return cells


def chronological(records):
    """Group interactions by user and order each user's list by time.

    The sort is stable, so interactions with the same time keep their input order. Users
    keep the order of their first interaction.

    Args:
        records (Iterable[tuple]): ``(user, item, time, *rest)`` tuples.

    Returns:
        dict[str, list[tuple]]: user -> that user's records, oldest first.
    """
    sequences = {}
    for record in records:
        sequences.setdefault(record[0], []).append(record)
    return {user: sorted(seq, key=lambda record: record[2]) for user, seq in sequences.items()}


def benchmark_rows(rows, max_history):
    """Benchmark rows ``(user, history, target)`` with only the last ``max_history`` items kept."""
    return [(user, " ".join(history[-max_history:]), target) for user, history, target in rows]


# --------------------------------------------------------------------------- dataset YAML


def leave_one_out_config(max_history):
    """Dataset YAML of a ``NAME.inter`` dataset split leave-one-out by time."""
    return {
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id"]},
        "MAX_ITEM_LIST_LENGTH": max_history,
        "eval_args": {
            "split": {"LS": "valid_and_test"},
            "group_by": "user",
            "order": "TO",
            "mode": "full",
        },
    }


def benchmark_config(max_history):
    """Dataset YAML of a pre-split ``NAME.{train,valid,test}.inter`` dataset."""
    return {
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "load_col": {"inter": ["user_id", "item_id_list", "item_id"], "item": ["item_id"]},
        "benchmark_filename": list(BENCHMARK_SPLITS),
        "alias_of_item_id": ["item_id_list"],
        "MAX_ITEM_LIST_LENGTH": max_history,
    }


# --------------------------------------------------------------------------- statistics


def dataset_stats(sequences, n_items):
    """Statistics of a converted dataset.

    Args:
        sequences (Iterable[int]): Full interaction-sequence length of every user.
        n_items (int): Catalogue size (rows of ``NAME.item``).

    Returns:
        dict: ``users``, ``items``, ``interactions``, ``sparsity`` (fraction of empty
        user-item cells) and ``avg_seq_len``.
    """
    lengths = list(sequences)
    users, interactions = len(lengths), sum(lengths)
    cells = users * n_items
    return {
        "users": users,
        "items": n_items,
        "interactions": interactions,
        "sparsity": 1.0 - interactions / cells if cells else 0.0,
        "avg_seq_len": interactions / users if users else 0.0,
    }


def format_stats(name, stats):
    """The statistics as a small two-column table."""
    rows = [
        ("dataset", name),
        ("users", f"{stats['users']:,}"),
        ("items", f"{stats['items']:,}"),
        ("interactions", f"{stats['interactions']:,}"),
        ("sparsity", f"{100 * stats['sparsity']:.4f}%"),
        ("avg seq length", f"{stats['avg_seq_len']:.2f}"),
    ]
    width = max(len(key) for key, _ in rows)
    lines = [f"{key:<{width}}  {value}" for key, value in rows]
    return "\n".join(lines + list(stats.get("notes", ())))


# --------------------------------------------------------------------------- writing


@dataclass
class Conversion:
    """Everything a converter writes, held in memory until :func:`write_conversion`.

    Attributes:
        name (str): Dataset name (file prefix and folder name).
        files (dict[str, str]): File-name suffix (``".inter"``, ``".item"``, ...) -> text.
        config (dict): Content of ``NAME.yaml`` (without modalities; they are registered).
        features (dict[str, tuple]): Modality -> ``(tokens, matrix, meta)``.
        semantic_ids (dict[str, tuple]): Semantic-ID name -> ``(tokens, codes, meta)``.
        stats (dict): What :func:`dataset_stats` returned, plus optional ``notes`` lines.
    """

    name: str
    files: dict
    config: dict
    stats: dict
    features: dict = field(default_factory=dict)
    semantic_ids: dict = field(default_factory=dict)

    def note(self, line):
        """Add a line that the CLI prints below the statistics table."""
        self.stats.setdefault("notes", []).append(line)


def write_conversion(conversion, output_dir):
    """Write a conversion to ``<output_dir>/<name>/``, all files or none.

    Files are written atomically into a staging folder beside the target (feature and
    semantic-ID files are validated on the way); only when all succeeded are they moved into
    place. ``NAME.yaml`` is written before the feature files so that ``register_modality``
    merges into it.

    Returns:
        str: The dataset folder.
    """
    name = conversion.name
    target = os.path.join(output_dir, name)
    os.makedirs(output_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{name}.staging-", dir=output_dir)
    try:
        for suffix, text in conversion.files.items():
            write_text_atomic(os.path.join(staging, name + suffix), text)
        write_text_atomic(
            os.path.join(staging, f"{name}.yaml"), yaml.safe_dump(conversion.config, sort_keys=False)
        )
        for modality, (tokens, matrix, meta) in conversion.features.items():
            write_feature_file(feature_path(staging, name, modality), tokens, matrix, meta=meta)
            register_modality(staging, name, modality, matrix.shape[1])
        for sid_name, (tokens, codes, meta) in conversion.semantic_ids.items():
            write_semantic_id_file(semantic_id_path(staging, name, sid_name), tokens, codes, meta)
        os.makedirs(target, exist_ok=True)
        for file_name in sorted(os.listdir(staging)):
            os.replace(os.path.join(staging, file_name), os.path.join(target, file_name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def leave_one_out_conversion(name, max_history, header, histories, catalogue, items, extra_columns=()):
    """A :class:`Conversion` of a ``NAME.inter`` dataset that RecBole splits leave-one-out by time.

    Args:
        name (str): Dataset name.
        max_history (int): ``MAX_ITEM_LIST_LENGTH`` of the dataset.
        header (Sequence[str]): ``name:type`` fields of ``NAME.inter``.
        histories (dict[str, list[tuple]]): user -> that user's ``NAME.inter`` rows, oldest
            first; users are written in this order.
        catalogue (Sequence[str]): Item tokens, in ``NAME.item`` row order.
        items (dict[str, dict]): Per-item fields (see :func:`item_file_text`).
        extra_columns (Sequence[tuple[str, str]]): Additional ``NAME.item`` columns.

    Returns:
        Conversion: ``NAME.inter``, ``NAME.item``, the dataset YAML and the statistics.
    """
    rows = (row for history in histories.values() for row in history)
    return Conversion(
        name=name,
        files={
            ".inter": atomic_file_text(header, rows),
            ".item": item_file_text(catalogue, items, extra_columns),
        },
        config=leave_one_out_config(max_history),
        stats=dataset_stats((len(history) for history in histories.values()), len(catalogue)),
    )
