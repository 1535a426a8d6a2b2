"""benchmarks/README.md shows measured tables exactly as their run wrote them."""

from __future__ import annotations

import re
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
BLOCK = re.compile(r"<!-- results: (\S+) -->\n(.*?)<!-- /results -->", re.DOTALL)


def _table(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("|")]


def test_benchmark_readme__tables_are_copied_from_results_md() -> None:
    readme = (BENCHMARKS / "README.md").read_text()
    blocks = BLOCK.findall(readme)
    assert blocks, "benchmarks/README.md has no <!-- results: NAME --> block"
    for name, block in blocks:
        results = (BENCHMARKS / "results" / name / "results.md").read_text()
        assert _table(block) == _table(results), name
        assert len(_table(block)) >= 3, name  # a header, a rule and rows
        command = re.search(r"```bash\n(.*?)\n```", results, re.DOTALL)
        assert command is not None and command.group(1) in block, name
