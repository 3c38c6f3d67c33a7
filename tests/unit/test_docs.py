"""Docs stay true: every setting is in the README's configuration table."""

from __future__ import annotations

import re

from pydantic import AliasChoices

from backburner.config import Settings
from tests.conftest import REPO


def env_name(field: str) -> str:
    """The variable a setting is read from: its alias (the SDK's own names) or ours."""
    alias = Settings.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        first = alias.choices[0]
        assert isinstance(first, str)
        return first
    return f"BACKBURNER_{field.upper()}"


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    missing = [env for env in map(env_name, Settings.model_fields) if env not in readme]
    assert missing == []


def test_readme_starts_with_the_two_commands() -> None:
    readme = (REPO / "README.md").read_text()
    quick_start = readme[: readme.index("## Use it")]
    assert "make run" in quick_start
    assert "make test" in quick_start


def test_every_file_security_md_names_exists() -> None:
    security = (REPO / "docs" / "security.md").read_text()
    named = set(re.findall(r"`((?:tests|bench|src|docs|notify)/[\w/.]+\.(?:py|md))`", security))
    named |= {f"tests/e2e/{n}" for n in re.findall(r"`(test_[\w]+\.py)`", security)}
    assert named
    missing = sorted(
        path
        for path in named
        if not (REPO / path).exists() and not (REPO / "src" / "backburner" / path).exists()
    )
    assert missing == []
