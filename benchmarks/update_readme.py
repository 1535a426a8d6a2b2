"""Copies each benchmark's ``results.md`` into ``benchmarks/README.md``.

Every ``<!-- results: NAME -->`` ... ``<!-- /results -->`` block of the README is
replaced by ``benchmarks/results/NAME/results.md`` without its title, with the plot
links made relative to the README. Run it after a benchmark finishes::

    python benchmarks/update_readme.py

``tests/benchmark/test_results_readme.py`` checks that the tables and commands in the
README are the ones the runs wrote.
"""

from __future__ import annotations

import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
BLOCK = re.compile(r"(<!-- results: (\S+) -->\n)(.*?)(<!-- /results -->)", re.DOTALL)


def _copy(match: re.Match[str]) -> str:
    start, name, _, end = match.groups()
    text = (HERE / "results" / name / "results.md").read_text()
    body = text.split("\n", 2)[2].lstrip("\n")  # without "# Benchmark: NAME"
    body = re.sub(r"\]\(([^)/]+\.png)\)", rf"](results/{name}/\1)", body)
    return f"{start}{body.rstrip()}\n{end}"


def main() -> None:
    readme = HERE / "README.md"
    readme.write_text(BLOCK.sub(_copy, readme.read_text()))
    print(f"updated {readme}")


if __name__ == "__main__":
    main()
