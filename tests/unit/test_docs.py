"""Docs stay true: every setting is in the README's configuration table."""

from __future__ import annotations

from backburner.config import Settings
from tests.conftest import REPO


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    missing = [name for name in Settings.model_fields if f"BACKBURNER_{name.upper()}" not in readme]
    assert missing == []


def test_readme_starts_with_the_two_commands() -> None:
    readme = (REPO / "README.md").read_text()
    quick_start = readme[: readme.index("## Use it")]
    assert "make run" in quick_start
    assert "make test" in quick_start
