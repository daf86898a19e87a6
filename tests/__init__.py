"""kubetune's test suite; ``REPO`` is the checkout it tests."""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
