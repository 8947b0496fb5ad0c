"""Regenerate the synthetic ``tiny`` dataset used by the tests (deterministic).

Each user walks through the catalogue with a user-specific stride plus a little noise, so
sequential models have a pattern to learn. Run: ``python tests/test_data/make_tiny.py``.
"""

import os
import random

N_USERS, N_ITEMS = 40, 30
GENRES = ["drama", "comedy", "action", "horror", "romance"]
HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tiny")


def main():
    rng = random.Random(7)
    os.makedirs(HERE, exist_ok=True)
    with open(os.path.join(HERE, "tiny.inter"), "w") as f:
        f.write("user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
        for user in range(1, N_USERS + 1):
            stride, item, time = rng.choice([1, 2, 3]), rng.randrange(N_ITEMS), 1_000_000
            for _ in range(rng.randint(6, 12)):
                item = (item + stride + (rng.random() < 0.2)) % N_ITEMS
                time += rng.randint(60, 3600)
                f.write(f"u{user}\ti{item + 1}\t{rng.randint(1, 5)}\t{time}\n")
    with open(os.path.join(HERE, "tiny.item"), "w") as f:
        f.write("item_id:token\ttitle:token_seq\tclass:token_seq\n")
        for item in range(1, N_ITEMS + 1):
            genres = " ".join(sorted({GENRES[item % 5], GENRES[(item * 3) % 5]}))
            f.write(f"i{item}\tmovie number {item}\t{genres}\n")


if __name__ == "__main__":
    main()
