"""Every document the code cites lives in the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "src" / "noisyseg").rglob("*.py"))


def test_no_link_points_outside_the_repository():
    assert not [p.name for p in SOURCES if "METHODS.md" in p.read_text()]


def test_every_cited_docs_page_exists():
    cited = {m for p in SOURCES for m in re.findall(r"docs/[\w/<>.-]+\.md", p.read_text())}
    assert "docs/reference.md" in cited
    missing = sorted(c for c in cited if "<" not in c and not (ROOT / c).is_file())
    assert not missing, missing

