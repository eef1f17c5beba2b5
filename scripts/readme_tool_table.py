"""Rewrite the README's tool table from the catalogue (the test that checks it holds the same
generator): ``python scripts/readme_tool_table.py``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    """Replace the table in README.md with the one the catalogue generates."""
    sys.path.insert(0, str(ROOT / "tests"))
    spec = importlib.util.spec_from_file_location(
        "catalogue_test", ROOT / "tests/test_tool_catalogue.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["catalogue_test"] = module
    spec.loader.exec_module(module)
    table = module.catalogue_table()
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    start = text.index("| tool | offered by | argument |")
    end = text.index("\n\n", start)
    readme.write_text(text[:start] + table.rstrip("\n") + text[end:], encoding="utf-8")


if __name__ == "__main__":
    main()
