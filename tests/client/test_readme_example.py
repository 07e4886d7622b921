"""The README's "Testing a client" example runs as it is written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def test_the_readme_example_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"## Testing a client\n\n```python\n(.*?)```", readme, re.S)
    assert found is not None, "README.md has no 'Testing a client' example"
    monkeypatch.chdir(ROOT)  # it names scenarios/ by relative path
    namespace: dict[str, object] = {}
    exec(compile(found.group(1), "README.md", "exec"), namespace)
    test = namespace["test_the_client_comes_back"]
    assert callable(test)
    test()
