"""Print pip constraints pinning each of kubetune's base dependencies to the floor of its range.

`make oldest` installs the wheel with them (tests/test_dist.py): the oldest
versions pyproject.toml claims to work with are the ones tested.
"""

import re
import sys
import tomllib
from pathlib import Path

project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]
for requirement in project["dependencies"]:
    match = re.match(r"^([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9.]*)", requirement)
    if match is None:
        sys.exit(f"mk/floors.py: {requirement!r} has no >= floor")
    print(f"{match[1]}=={match[2]}")
