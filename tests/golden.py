"""Golden files: compare text to tests/testdata/response/NAME (or another file), or rewrite it when UPDATE_GOLDEN=1."""

import os
from pathlib import Path

RESPONSES = Path(__file__).parent / "testdata" / "response"


def assert_golden(name: "str | Path", actual: str) -> None:
    """Fail unless `actual` equals the golden file exactly (set UPDATE_GOLDEN=1 to rewrite it, then review the diff)."""
    path = RESPONSES / name  # an absolute path stays as it is
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
    expected = path.read_text(encoding="utf-8")
    assert actual == expected, f"output differs from {path} (UPDATE_GOLDEN=1 rewrites it)"
