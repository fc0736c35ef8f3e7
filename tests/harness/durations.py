"""Write tests/durations.json, the seconds each unit of `make test`'s scheduling took, from a run's junit file:

    PYTEST_ADDOPTS=--junitxml=/tmp/run.xml make test   (or CI's `bash .ci/run`, both back ends)
    .venv/bin/python -m tests.harness.durations /tmp/run.xml

tests/conftest.py hands the units out longest first; only the order of a run depends on the file.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET

from tests.conftest import DURATIONS, ROOT, unit_of


def path_of(classname: str) -> str:
    """The test file of a junit classname (`tests.workers.test_pool`, or `tests.x.test_y.TestClass`)."""
    parts = classname.split(".")
    for end in range(len(parts), 0, -1):
        path = "/".join(parts[:end]) + ".py"
        if (ROOT / path).exists():
            return path
    raise ValueError(f"no test file for junit classname {classname!r}")


def unit_seconds(junit: str) -> dict[str, float]:
    seconds: dict[str, float] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        unit = unit_of(path_of(case.get("classname")))
        seconds[unit] = seconds.get(unit, 0.0) + float(case.get("time"))
    return {unit: round(s, 1) for unit, s in sorted(seconds.items(), key=lambda kv: -kv[1])}


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    DURATIONS.write_text(json.dumps(unit_seconds(sys.argv[1]), indent=1) + "\n")
    print(f"wrote {DURATIONS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
