"""Convert the raw MovieLens-100K folder (``u.data``, ``u.item``, ``u.genre``) into a recbole_bbq dataset.

:func:`convert` writes the ratings as a leave-one-out dataset and each movie's title (with its
year), genres, a ``"Title (year). Genres: a, b"`` text and, when a poster folder is given, the
absolute path of its poster. The command line is ``dataset_scripts/movielens.py``.
"""

import math
import os
import re

from recbole_bbq.converters.cli import add_option, converter_parser, run_converter
from recbole_bbq.converters.common import (
    DEFAULT_MAX_HISTORY,
    INTER_HEADER,
    chronological,
    leave_one_out_conversion,
    write_conversion,
)
from recbole_bbq.converters.inputs import require_folder, require_rows
from recbole_bbq.errors import DataError

ENCODING = "latin-1"
_YEAR_SUFFIX = re.compile(r"\(\d{4}\)\s*$")


def _read_lines(folder, file_name, separator, n_fields=None):
    """Yield ``(path, line_no, fields)`` for the non-empty lines of ``folder/file_name``."""
    path = os.path.join(folder, file_name)
    if not os.path.isfile(path):
        raise DataError(f"{path}: file not found")
    with open(path, encoding=ENCODING) as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            fields = line.rstrip("\n").split(separator)
            if n_fields is not None and len(fields) != n_fields:
                raise DataError(
                    f"{path}, line {line_no}: expected {n_fields} fields, got {len(fields)}; "
                    f"fill in the missing fields or delete the line"
                )
            yield path, line_no, fields


def read_ratings(folder):
    """``u.data`` as ``(user, item, timestamp, rating)`` records."""
    records = []
    for path, line_no, (user, item, rating, timestamp) in _read_lines(folder, "u.data", "\t", 4):
        try:
            record = (user, item, int(timestamp), float(rating))
        except ValueError:
            record = None
        if record is None or not math.isfinite(record[3]):
            raise DataError(
                f"{path}, line {line_no}: rating {rating!r} and timestamp {timestamp!r} must be numbers "
                f"(timestamp an integer); fix or delete the line"
            )
        records.append(record)
    return require_rows(os.path.join(folder, "u.data"), records, "ratings")


def read_genres(folder):
    """Genre names from ``u.genre``, ordered by their flag index."""
    genres = {}
    for path, line_no, (genre, index) in _read_lines(folder, "u.genre", "|", 2):
        if not index.isdigit():
            raise DataError(f"{path}, line {line_no}: genre index '{index}' is not a number")
        genres[int(index)] = genre
    return [genres[index] for index in sorted(genres)]


def title_with_year(title, release_date):
    """``title`` with ``" (year)"`` appended from the release date when the title lacks it."""
    if _YEAR_SUFFIX.search(title) or len(release_date) < 4 or not release_date[-4:].isdigit():
        return title
    return f"{title} ({release_date[-4:]})"


def read_movies(folder, posters=None):
    """``u.item`` as ``{movie_id: item fields}`` (title, categories, text, image)."""
    genres = read_genres(folder)
    movies = {}
    for path, line_no, fields in _read_lines(folder, "u.item", "|", 5 + len(genres)):
        movie_id, title, release_date = fields[0], fields[1], fields[2]
        flags = fields[5:]
        if any(flag not in ("0", "1") for flag in flags):
            raise DataError(f"{path}, line {line_no}: genre flags must be 0 or 1")
        movie_genres = [genre for genre, flag in zip(genres, flags) if flag == "1"]
        title = title_with_year(title, release_date)
        movies[movie_id] = {
            "title": title,
            "categories": movie_genres,
            "text": f"{title}. Genres: {', '.join(movie_genres)}",
            "image": _poster(posters, movie_id),
        }
    return movies


def _poster(posters, movie_id):
    if posters is None:
        return ""
    path = os.path.abspath(os.path.join(posters, f"{movie_id}.jpg"))
    return path if os.path.isfile(path) else ""


def convert(input, name, output_dir="dataset", max_history=DEFAULT_MAX_HISTORY, posters=None):
    """Convert a raw MovieLens-100K folder.

    Args:
        input (str): The ``ml-100k`` folder.
        name (str): Output dataset name.
        output_dir (str): Parent folder of the output.
        max_history (int): ``MAX_ITEM_LIST_LENGTH`` of the dataset.
        posters (str, optional): Folder of ``<movie_id>.jpg`` posters.

    Returns:
        dict: Dataset statistics (see :func:`recbole_bbq.converters.common.dataset_stats`).

    Raises:
        DataError: On missing or malformed input; nothing is written then.
    """
    require_folder(input)
    if posters is not None:
        require_folder(posters)
    sequences = chronological(read_ratings(input))
    movies = read_movies(input, posters)
    unknown = next((r for seq in sequences.values() for r in seq if r[1] not in movies), None)
    if unknown is not None:
        raise DataError(f"{os.path.join(input, 'u.data')}: movie '{unknown[1]}' is not in u.item")

    conversion = leave_one_out_conversion(
        name=name,
        max_history=max_history,
        header=(*INTER_HEADER, "rating:float"),
        histories={user: sequences[user] for user in sorted(sequences, key=int)},
        catalogue=sorted(movies, key=int),
        items=movies,
    )
    if posters is not None:
        found = sum(1 for movie in movies.values() if movie["image"])
        conversion.note(f"posters: {found} of {len(movies)} movies")
    write_conversion(conversion, output_dir)
    return conversion.stats


def build_parser():
    """The command-line interface: the shared options plus the poster folder."""
    parser = converter_parser(__doc__)
    add_option(parser, "posters", help="folder of <movie_id>.jpg posters (image column)")
    return parser


def main(argv=None):
    """Run the converter; returns the exit status."""
    return run_converter(build_parser(), convert, argv)
