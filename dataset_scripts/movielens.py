"""Convert the raw MovieLens-100K folder (``u.data``, ``u.item``, ``u.genre``) into a recbole_bbq dataset.

Output: ``NAME.inter`` (user, item, timestamp, rating), ``NAME.item`` with the title, the
genres (``categories``), ``text`` = ``"Title (year). Genres: a, b"`` and, with ``--posters``,
the absolute path of each movie's poster ``<posters>/<movie_id>.jpg`` (empty when the file
does not exist), and ``NAME.yaml``.

Example:
    python dataset_scripts/movielens.py --input ../shared/data/ml100k_posters/ml-100k \\
        --name ml100k --posters ../shared/data/ml100k_posters/posters_w92
"""

import sys

from recbole_bbq.converters.movielens import main

if __name__ == "__main__":
    sys.exit(main())
