"""Job types are registered by decorator, entry point or plugin module."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from backburner.jobs import JobContext, JobRegistry, build_registry


class In(BaseModel):
    x: int


class Out(BaseModel):
    y: int


def test_decorator_reads_models_from_annotations() -> None:
    registry = JobRegistry()

    @registry.job_type("double", expected_duration=3, timeout=9)
    async def double(ctx: JobContext, payload: In) -> Out:
        """Double a number."""
        return Out(y=payload.x * 2)

    job_type = registry.get("double")
    assert (job_type.input_model, job_type.output_model) == (In, Out)
    described = job_type.describe()
    assert described["description"] == "Double a number."
    assert described["input_schema"]["properties"]["x"]["type"] == "integer"
    assert (described["expected_duration_seconds"], described["timeout_seconds"]) == (3, 9)


def test_handler_without_pydantic_annotations_is_refused() -> None:
    registry = JobRegistry()
    with pytest.raises(TypeError, match="pydantic model"):

        @registry.job_type("bad")
        async def bad(ctx: JobContext, payload: dict) -> Out:  # type: ignore[type-arg]
            return Out(y=1)


def test_a_name_is_registered_once() -> None:
    registry = JobRegistry()

    async def handler(ctx: JobContext, payload: In) -> Out:
        return Out(y=1)

    registry.job_type("once")(handler)
    with pytest.raises(ValueError, match="twice"):
        registry.job_type("once")(handler)


def test_installed_entry_point_brings_the_builtin_types() -> None:
    names = build_registry().names()
    assert {"summarize_documents", "classify_leads", "generate_report", "noop"} <= set(names)


def test_plugin_modules_add_their_types() -> None:
    assert "test_flaky" in build_registry(["tests.jobtypes"]).names()
    with pytest.raises(ImportError, match="register"):
        build_registry(["tests.unit.test_registry"])


def test_plugins_setting_reads_a_comma_separated_env_value(monkeypatch: pytest.MonkeyPatch) -> None:
    from backburner.config import Settings

    monkeypatch.setenv("BACKBURNER_PLUGINS", "tests.jobtypes, other.module")
    assert Settings(_env_file=None).plugins == ["tests.jobtypes", "other.module"]  # type: ignore[call-arg]
    monkeypatch.setenv("BACKBURNER_PLUGINS", '["a", "b"]')
    assert Settings(_env_file=None).plugins == ["a", "b"]  # type: ignore[call-arg]


def test_find_answers_none_for_a_type_this_process_lacks() -> None:
    registry = build_registry(entry_points_too=False)
    found = registry.find("noop")
    assert found is not None
    assert found.name == "noop"
    assert registry.find("retired_type") is None
    assert registry.find(None) is None
