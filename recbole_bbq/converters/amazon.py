"""Convert Amazon Reviews (2014/2018 or 2023 release) into a recbole_bbq dataset.

:func:`convert` reads one review file and the ``meta_`` file beside it (JSON lines, plain or
gzip; 2018 metadata lines may be Python literals), drops exact duplicate reviews, keeps the
iterative k-core and writes the reviews as a leave-one-out dataset with the items' text fields
and first image URL; it can also download those images. The command line and the file layouts
are described in ``dataset_scripts/amazon.py``.
"""

import ast
import json
import math
import os
from collections import Counter

from recbole_bbq.converters.cli import add_option, converter_parser, run_converter
from recbole_bbq.converters.common import (
    DEFAULT_MAX_HISTORY,
    INTER_HEADER,
    chronological,
    leave_one_out_conversion,
    sort_tokens,
    unique,
    write_conversion,
)
from recbole_bbq.converters.images import download_images, download_notes
from recbole_bbq.converters.inputs import read_lines
from recbole_bbq.errors import DataError

DATA_SUFFIXES = (".jsonl.gz", ".json.gz", ".jsonl", ".json")
TIME_UNITS = {"unixReviewTime": 1, "timestamp": 1000}  # review-time key -> units per second


# --------------------------------------------------------------------------- input files


def _stem(file_name):
    """File name without its data suffix, or None for a non-data file."""
    for suffix in DATA_SUFFIXES:
        if file_name.endswith(suffix):
            return file_name[: -len(suffix)]
    return None


def find_input_files(input):
    """The review file and its metadata file (None when there is none).

    Args:
        input (str): A folder holding one review file, or the review file itself.

    Returns:
        tuple[str, str | None]: ``(review_path, meta_path)``.
    """
    if os.path.isfile(input):
        review = input
    elif os.path.isdir(input):
        reviews = [name for name in sorted(os.listdir(input)) if _stem(name) and not name.startswith("meta_")]
        if len(reviews) != 1:
            found = ", ".join(reviews) or "none"
            raise DataError(
                f"{input}: expected exactly one review file (*.json[l][.gz] not starting with "
                f"'meta_'), found {found}; pass the review file as --input"
            )
        review = os.path.join(input, reviews[0])
    else:
        raise DataError(f"{input}: input not found")
    return review, _meta_beside(review)


def _meta_beside(review):
    """``meta_<Cat>.*`` next to ``reviews_<Cat>[_5].*`` or ``<Cat>.*``, or None."""
    folder, file_name = os.path.split(review)
    if _stem(file_name) is None:
        raise DataError(f"{review}: not a review file (expected *.json, *.jsonl, *.json.gz or *.jsonl.gz)")
    category = _stem(file_name).removeprefix("reviews_")
    for name in unique([category, category.removesuffix("_5")]):
        for suffix in DATA_SUFFIXES:
            meta = os.path.join(folder, f"meta_{name}{suffix}")
            if os.path.isfile(meta):
                return meta
    return None


def read_records(path):
    """Yield ``(line_no, record)`` for each line of a JSON-lines file.

    Lines that are not JSON are parsed as Python literals (the 2018 metadata files).

    Raises:
        DataError: Naming the file and line of a malformed line (and the byte offset of a byte
            that is not UTF-8).
    """
    for line_no, line in read_lines(path):
        if line.strip():
            yield line_no, _parse_line(line, path, line_no)


def _parse_line(line, path, line_no):
    try:
        record = json.loads(line)
    except ValueError:
        try:
            record = ast.literal_eval(line.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise DataError(f"{path}, line {line_no}: malformed JSON line") from None
    if not isinstance(record, dict):
        raise DataError(f"{path}, line {line_no}: expected a JSON object")
    return record


def _field(record, keys, path, line_no):
    """``(key, value)`` of the first of ``keys`` with a non-empty value in ``record``."""
    for key in keys:
        if record.get(key) not in (None, ""):
            return key, record[key]
    raise DataError(f"{path}, line {line_no}: missing key {' / '.join(repr(k) for k in keys)}")


def read_reviews(path):
    """Review records as ``(user, item, time in seconds, rating or None)``."""
    records = []
    for line_no, record in read_records(path):
        _, user = _field(record, ("reviewerID", "user_id"), path, line_no)
        _, item = _field(record, ("parent_asin", "asin"), path, line_no)
        key, value = _field(record, tuple(TIME_UNITS), path, line_no)
        timestamp = _number(value, key, path, line_no) / TIME_UNITS[key]
        rating = record.get("overall", record.get("rating"))
        if rating is not None:
            rating = _number(rating, "overall" if "overall" in record else "rating", path, line_no)
        records.append((str(user), str(item), timestamp, rating))
    return records


def _number(value, key, path, line_no):
    """``value`` as a finite float; anything else is a :class:`DataError` naming the line and key."""
    try:
        number = None if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        number = None
    if number is None or not math.isfinite(number):
        raise DataError(f"{path}, line {line_no}: '{key}' is {value!r}, not a number; fix or delete the line")
    return number


def _categories(record):
    """Flat category names: 2014 list of lists, 2018 ``category`` or 2023 ``categories`` list."""
    value = record.get("categories") or record.get("category") or []
    names = []
    for entry in value if isinstance(value, list) else [value]:
        names += entry if isinstance(entry, list) else [entry]
    return unique(str(name) for name in names)


def first_image(record):
    """The first image URL of a metadata record, or ``""``."""
    for image in record.get("images") or []:
        if isinstance(image, dict):
            url = image.get("large") or image.get("hi_res") or image.get("thumb")
            if url:
                return url
    for key in ("imageURLHighRes", "imageURL", "imUrl"):
        value = record.get(key)
        if isinstance(value, list):
            value = value[0] if value else ""
        if value:
            return value
    return ""


def read_meta(path, wanted):
    """Metadata of the ``wanted`` items as ``{item: fields}`` (first record per item wins)."""
    items = {}
    for line_no, record in read_records(path):
        item = str(_field(record, ("parent_asin", "asin"), path, line_no)[1])
        if item not in wanted or item in items:
            continue
        items[item] = {
            "title": record.get("title"),
            "brand": record.get("brand") or record.get("store"),
            "categories": _categories(record),
            "description": record.get("description"),
            "image": first_image(record),
        }
    return items


# --------------------------------------------------------------------------- filtering


def deduplicate(records):
    """Drop exact repeats of ``(user, item, time)``, keeping the first."""
    seen = set()
    kept = []
    for record in records:
        key = record[:3]
        if key not in seen:
            seen.add(key)
            kept.append(record)
    return kept


def kcore(records, k):
    """Iteratively drop users and items with fewer than ``k`` interactions."""
    while True:
        users = Counter(record[0] for record in records)
        items = Counter(record[1] for record in records)
        kept = [r for r in records if users[r[0]] >= k and items[r[1]] >= k]
        if len(kept) == len(records):
            return kept
        records = kept


# --------------------------------------------------------------------------- conversion


def convert(
    input,
    name,
    output_dir="dataset",
    max_history=DEFAULT_MAX_HISTORY,
    kcore_k=5,
    download_images_dir=None,
    retries=2,
):
    """Convert Amazon review and metadata files.

    Args:
        input (str): Folder with one review file (and its ``meta_`` file), or the review file.
        name (str): Output dataset name.
        output_dir (str): Parent folder of the output.
        max_history (int): ``MAX_ITEM_LIST_LENGTH`` of the dataset.
        kcore_k (int): Minimum interactions per user and per item (iterative k-core).
        download_images_dir (str, optional): Cache folder for the items' first images.
        retries (int): Extra download attempts per image.

    Returns:
        dict: Dataset statistics (see :func:`recbole_bbq.converters.common.dataset_stats`), plus
        ``image_download`` (a :func:`~recbole_bbq.converters.images.download_images` report)
        when images were requested.

    Raises:
        DataError: On missing or malformed input, or when the k-core leaves nothing; nothing
            is written then.
    """
    review_path, meta_path = find_input_files(input)
    records, filter_note = filtered_reviews(review_path, kcore_k)
    catalogue = sort_tokens({record[1] for record in records})
    items = read_meta(meta_path, set(catalogue)) if meta_path else {}
    header, histories = inter_rows(records)
    conversion = leave_one_out_conversion(
        name=name,
        max_history=max_history,
        header=header,
        histories=histories,
        catalogue=catalogue,
        items=items,
    )
    conversion.note(filter_note)
    conversion.note(
        f"metadata for {len(items)} of {len(catalogue)} items from "
        f"{meta_path or 'nowhere (no meta_* file beside the reviews)'}"
    )
    write_conversion(conversion, output_dir)
    if download_images_dir:
        _download_item_images(conversion, items, download_images_dir, retries)
    return conversion.stats


def filtered_reviews(review_path, kcore_k):
    """The reviews without exact duplicates, filtered to the ``kcore_k``-core.

    Returns:
        tuple[list[tuple], str]: The kept ``(user, item, time, rating)`` records and a note
        that counts what was dropped.

    Raises:
        DataError: When the k-core leaves no interaction.
    """
    raw = read_reviews(review_path)
    unique_records = deduplicate(raw)
    records = kcore(unique_records, kcore_k)
    if not records:
        raise DataError(f"{review_path}: no interactions left after the {kcore_k}-core filter")
    note = (
        f"{len(raw) - len(unique_records)} duplicates dropped, {kcore_k}-core kept "
        f"{len(records)} of {len(unique_records)} interactions"
    )
    return records, note


def inter_rows(records):
    """Header and per-user rows of ``NAME.inter``, oldest first; ratings only when every review has one."""
    header, width = INTER_HEADER, 3
    if all(record[3] is not None for record in records):
        header, width = (*INTER_HEADER, "rating:float"), 4
    histories = {user: [record[:width] for record in seq] for user, seq in chronological(records).items()}
    return header, histories


def _download_item_images(conversion, items, cache_dir, retries):
    """Download the items' first images into ``cache_dir``; the report goes into the statistics."""
    urls = {item: info["image"] for item, info in items.items() if info["image"]}
    report = download_images(urls, cache_dir, retries)
    conversion.stats["image_download"] = report
    for line in download_notes(report, cache_dir):
        conversion.note(line)


def build_parser():
    """The command-line interface: the shared options plus the k-core and image downloads."""
    parser = converter_parser(__doc__)
    add_option(
        parser, "kcore", dest="kcore_k", type=int, default=5, help="k of the user/item k-core (default: 5)"
    )
    add_option(
        parser,
        "download_images",
        dest="download_images_dir",
        metavar="DIR",
        help="cache folder for item images",
    )
    add_option(parser, "retries", type=int, default=2, help="extra attempts per image download (default: 2)")
    return parser


def main(argv=None):
    """Run the converter; returns the exit status."""
    return run_converter(build_parser(), convert, argv)
