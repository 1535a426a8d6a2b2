"""The README's Python example runs as printed."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow
def test_readme__python_example_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    example = next(b for b in blocks if "SimMIM(encoder)" in b)
    namespace: dict[str, object] = {}
    exec(compile(example, str(README), "exec"), namespace)
    features = namespace["features"]
    assert features.shape == (2, 1024)  # type: ignore[attr-defined]
    assert namespace["loss"].item() > 0  # type: ignore[attr-defined]
