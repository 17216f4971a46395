"""Where the tests find the real photos: ../shared/data/flowers beside the repository (the
session's checkout and CI's clone both have it there). They are read in place, never copied in."""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FLOWERS = REPO.parent / "shared" / "data" / "flowers"

assert FLOWERS.is_dir(), f"The real photos are missing: {FLOWERS} (../shared/data/flowers beside the repository)."
