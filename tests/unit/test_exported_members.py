"""The names a job type's author imports from `backburner` are a promise: adding or
removing one is a decision, made here on purpose (as httpx pins its own)."""

import backburner

EXPECTED = {
    "BackburnerError",
    "Document",
    "FunctionCall",
    "FunctionCallOutput",
    "FunctionTool",
    "InputMessage",
    "InvalidInput",
    "InvalidModelOutput",
    "JobContext",
    "JobError",
    "JobRegistry",
    "JobType",
    "JsonSchemaFormat",
    "ModelRequest",
    "PermanentError",
    "ResponseSnapshot",
    "Retry",
    "RetryPolicy",
    "Settings",
    "ToolFunction",
    "Usage",
    "build_registry",
    "gather_all",
}


def test_the_public_surface_is_exactly_the_pinned_names() -> None:
    assert set(backburner.__all__) == EXPECTED


def test_every_exported_name_exists_and_comes_from_the_package() -> None:
    aliases = {"ToolFunction"}  # a type alias (Callable[...]): it has no module of its own
    for name in set(backburner.__all__) - aliases:
        member = getattr(backburner, name)
        assert member.__module__.startswith("backburner."), name
    assert backburner.ToolFunction is not None


def test_a_job_type_can_be_written_from_the_top_level_import_alone() -> None:
    from pydantic import BaseModel

    from backburner import JobContext, JobRegistry, RetryPolicy

    class Ask(BaseModel):
        question: str

    class Answer(BaseModel):
        text: str

    registry = JobRegistry()

    @registry.job_type("ask", retry=RetryPolicy(max_attempts=2))
    async def ask(ctx: JobContext, payload: Ask) -> Answer:
        return Answer(text=payload.question)

    described = registry.get("ask").describe()
    assert described["max_attempts"] == 2
    assert described["input_schema"]["required"] == ["question"]
