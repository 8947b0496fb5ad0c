"""Encode every item's image of a RecBole dataset into ``<NAME>.image.npz`` with open_clip.

Example::

    python dataset_scripts/encode_images.py --dataset ml-100k --image-dir posters_w92 \\
        --model ViT-B-32 --pretrained /models/open_clip_vit_b_32.bin

An item's image is the ``image`` column of ``<NAME>.item`` when that is an existing path
(absolute, or relative to ``--image-dir`` or the dataset folder), else
``<image-dir>/<item_id>.<jpg|jpeg|png>``. ``--pretrained none`` uses random weights (tests only).
Writes ``<data-path>/<NAME>/<NAME>.image.npz`` and records the ``image`` modality in
``<NAME>.yaml``; a second run over unchanged files with the same ``--missing`` policy is a no-op
("cached"). Errors print ``error: ...`` and exit with status 2.
"""

import sys

from recbole_bbq.converters.encode_images import main

if __name__ == "__main__":
    sys.exit(main())
