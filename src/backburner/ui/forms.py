"""The new-job form, generated from a job type's input JSON Schema, and the payload read back
from what the browser posts.

Each property becomes one field whose widget follows its schema: text, number, yes/no, a
choice for an enum, one line per item for a list of words, document upload for a list of
document ids, and JSON for anything deeper. A property can ask for a widget with
`"x-widget"` in its schema (`documents`, `textarea`, `json`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from backburner.errors import FieldProblem
from backburner.ui.results import label_of

Widget = Literal["text", "textarea", "number", "checkbox", "select", "documents", "lines", "json"]
LONG_TEXT = 500


@dataclass(frozen=True)
class FormField:
    name: str
    label: str
    widget: Widget
    required: bool
    help: str = ""
    default: Any = None
    choices: tuple[str, ...] = ()
    # Limits the browser checks before posting (min, max, step, pattern, maxlength...).
    attrs: dict[str, str] = field(default_factory=dict)
    integer: bool = False

    @property
    def default_text(self) -> str:
        """The default as the field shows it."""
        if self.default is None:
            return ""
        if self.widget == "lines" and isinstance(self.default, list):
            return "\n".join(str(item) for item in self.default)
        if self.widget == "json":
            return json.dumps(self.default, indent=2)
        return str(self.default)


def resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """Follow a local `$ref` (and pydantic's single-item `allOf`) to the schema it names,
    keeping the referring schema's own keywords (default, description)."""
    own = {k: v for k, v in schema.items() if k not in ("$ref", "allOf")}
    target: dict[str, Any] | None = None
    if "$ref" in schema and str(schema["$ref"]).startswith("#/"):
        target = root
        for part in str(schema["$ref"])[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
    elif isinstance(schema.get("allOf"), list) and len(schema["allOf"]) == 1:
        target = resolve(schema["allOf"][0], root)
    return {**(target or {}), **own} if target is not None else own


def limits_of(schema: dict[str, Any]) -> dict[str, str]:
    names = {
        "minimum": "min",
        "maximum": "max",
        "minLength": "minlength",
        "maxLength": "maxlength",
        "pattern": "pattern",
    }
    return {attr: str(schema[key]) for key, attr in names.items() if key in schema}


def widget_of(name: str, schema: dict[str, Any], root: dict[str, Any]) -> Widget:
    asked = schema.get("x-widget")
    if asked in ("documents", "textarea", "json"):
        return asked  # type: ignore[no-any-return]
    kind = schema.get("type")
    if "enum" in schema and all(isinstance(v, str) for v in schema["enum"]):
        return "select"
    if kind == "string":
        long = int(schema.get("maxLength", 0)) > LONG_TEXT
        return "textarea" if long else "text"
    if kind in ("number", "integer"):
        return "number"
    if kind == "boolean":
        return "checkbox"
    if kind == "array":
        items = resolve(schema.get("items", {}), root)
        if items.get("type") == "string":
            return "documents" if name.endswith("document_ids") else "lines"
    return "json"


def label_for(name: str, raw: dict[str, Any]) -> str:
    """The property's own title, unless it is only pydantic's title-cased name (then the
    name in sentence case reads better); a referenced schema's title names a type, not
    this field."""
    title = raw.get("title")
    if name.endswith("document_ids") and not raw.get("description"):
        return "Documents"
    if not title or title == name.replace("_", " ").title():
        return label_of(name)
    return str(title)


def form_fields(schema: dict[str, Any]) -> list[FormField]:
    """One field per property of the input schema, in the schema's order."""
    required = set(schema.get("required", []))
    fields = []
    for name, raw in schema.get("properties", {}).items():
        prop = resolve(raw, schema)
        widget = widget_of(name, prop, schema)
        attrs = limits_of(prop) if widget in ("text", "textarea", "number") else {}
        if widget == "number":
            attrs["step"] = "1" if prop.get("type") == "integer" else "any"
        fields.append(
            FormField(
                name=name,
                label=label_for(name, raw),
                widget=widget,
                required=name in required,
                help=str(prop.get("description") or ""),
                default=prop.get("default", (prop.get("examples") or [None])[0]),
                choices=tuple(prop.get("enum", ())),
                attrs=attrs,
                integer=prop.get("type") == "integer",
            )
        )
    return fields


def value_of(spec: FormField, raw: str) -> tuple[Any, str | None]:
    """The JSON value of one posted field, or why it cannot be one."""
    if spec.widget == "number":
        try:
            return (int(raw) if spec.integer else float(raw)), None
        except ValueError:
            return None, "must be a whole number" if spec.integer else "must be a number"
    if spec.widget == "lines":
        return [line.strip() for line in raw.splitlines() if line.strip()], None
    if spec.widget == "json":
        try:
            return json.loads(raw), None
        except json.JSONDecodeError as error:
            return None, f"is not valid JSON: {error.msg} (line {error.lineno})"
    return raw, None


def payload_from_form(
    fields: Sequence[FormField],
    form: Mapping[str, str],
    document_ids: Mapping[str, list[str]],
) -> tuple[dict[str, Any], list[FieldProblem]]:
    """The job's payload from the posted form. Empty optional fields are left out so the
    job type's defaults apply; what cannot be read is reported per field. Whether the
    payload fits the type is for the type's own model to say."""
    payload: dict[str, Any] = {}
    problems: list[FieldProblem] = []
    for spec in fields:
        if spec.widget == "checkbox":
            payload[spec.name] = spec.name in form
            continue
        if spec.widget == "documents":
            ids = document_ids.get(spec.name, [])
            if ids or spec.required:
                payload[spec.name] = ids
            continue
        raw = form.get(spec.name, "").strip()
        if raw == "":
            if spec.required:
                problems.append(FieldProblem((spec.name,), "is required", "missing"))
            continue
        value, problem = value_of(spec, raw)
        if problem is not None:
            problems.append(FieldProblem((spec.name,), problem))
        else:
            payload[spec.name] = value
    return payload, problems


# The job's own options, beside its type's payload; their names cannot clash with a
# payload property's.
OPTION_PRIORITY = "job.priority"
OPTION_DEADLINE = "job.deadline_hours"
OPTION_EMAIL = "job.notify_email"


def job_options(form: Mapping[str, str]) -> tuple[dict[str, Any], list[FieldProblem]]:
    """Priority, deadline and e-mail notification as JobCreate's fields, from the form."""
    options: dict[str, Any] = {}
    problems: list[FieldProblem] = []
    priority = form.get(OPTION_PRIORITY, "").strip()
    if priority:
        try:
            options["priority"] = int(priority)
        except ValueError:
            problems.append(FieldProblem((OPTION_PRIORITY,), "must be a whole number"))
    hours = form.get(OPTION_DEADLINE, "").strip()
    if hours:
        try:
            options["deadline_seconds"] = float(hours) * 3600
        except ValueError:
            problems.append(FieldProblem((OPTION_DEADLINE,), "must be a number of hours"))
    emails = [e.strip() for e in form.get(OPTION_EMAIL, "").replace(";", ",").split(",")]
    if any(emails):
        options["notify"] = {"email": [e for e in emails if e]}
    return options, problems


def option_problem(loc: Sequence[str | int], message: str) -> FieldProblem:
    """A problem JobCreate found with an option, under the form field that set it."""
    field_of = {
        "priority": OPTION_PRIORITY,
        "deadline_seconds": OPTION_DEADLINE,
        "notify": OPTION_EMAIL,
    }
    name = field_of.get(str(loc[0]), "") if loc else ""
    if name == OPTION_DEADLINE:
        message = "must be more than 0 and at most 168 hours (7 days)"
    return FieldProblem((name,), message.removeprefix("Value error, "))
