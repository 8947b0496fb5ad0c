"""Convert Amazon Reviews (2014/2018 or 2023 release) into a recbole_bbq dataset.

Input: a folder with one review file and its metadata beside it, or the review file itself.

* 2014/2018: ``reviews_<Cat>.json.gz`` or ``<Cat>.json.gz`` (``reviewerID``, ``asin``,
  ``unixReviewTime``, ``overall``) and ``meta_<Cat>.json.gz`` (``asin``, ``title``, ``brand``,
  ``categories`` (list of lists) or ``category`` (list), ``description``, ``imUrl`` /
  ``imageURLHighRes`` / ``imageURL``). Metadata lines may be Python literals instead of JSON.
* 2023: ``<Cat>.jsonl(.gz)`` (``user_id``, ``parent_asin``, ``timestamp`` in ms, ``rating``) and
  ``meta_<Cat>.jsonl(.gz)`` (``parent_asin``, ``title``, ``store``, ``categories``,
  ``description``, ``images`` = ``[{large, hi_res, thumb}]``).

Exact duplicate (user, item, time) rows are dropped, users and items are filtered to an
iterative k-core, and every user's history is ordered by time (ties keep the file order).
Output: ``NAME.inter``, ``NAME.item`` (text fields HTML-stripped, first image URL) and
``NAME.yaml``. ``--download-images DIR`` also fetches each item's first image into
``DIR/<item_id>.<ext>`` (already cached files are skipped); failures are reported, not fatal.

Example:
    python dataset_scripts/amazon.py --input raw/Industrial_and_Scientific --name Scientific
"""

import sys

from recbole_bbq.converters.amazon import main

if __name__ == "__main__":
    sys.exit(main())
