"""A job's result drawn for people: which shape of JSON becomes which piece of a page.

Job types do not describe their pages; the shape of the result decides. Text becomes a
paragraph, a list of strings a bullet list, a list of like records a sortable table, a list
of {title, body} records the sections of a report, a map of names to numbers a two-column
table, and short numbers and words the facts at the top. So a plugin's job type gets a
readable page without writing any.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

BlockKind = Literal["facts", "text", "list", "table", "sections", "group", "json", "note"]
SECTION_KEYS = (("title", "body"), ("heading", "body"), ("title", "text"))
SHORT_TEXT = 80


@dataclass(frozen=True)
class Block:
    kind: BlockKind
    label: str
    # facts: [(label, text)]; text: str; list: [str]; table: rows of cells;
    # sections: [(title, body)]; group: [Block]; json: indented JSON text.
    value: Any
    columns: list[str] = field(default_factory=list)
    numeric: list[bool] = field(default_factory=list)


def label_of(key: str) -> str:
    """`key_points` -> "Key points"."""
    words = key.replace("_", " ").replace("-", " ").strip()
    return words[:1].upper() + words[1:] if words else key


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_fact(value: Any) -> bool:
    """Numbers, yes/no and short words go together at the top rather than one block each."""
    if isinstance(value, str):
        return len(value) <= SHORT_TEXT and "\n" not in value
    return isinstance(value, int | float | bool)


def section_pair(record: dict[str, Any]) -> tuple[str, str] | None:
    for title_key, body_key in SECTION_KEYS:
        if set(record) == {title_key, body_key}:
            return str(record[title_key]), str(record[body_key])
    return None


NAME_KEYS = ("filename", "title", "name", "id")
# Records with parts of their own drawn on a page (a summary of 150 documents has 150).
RECORDS_SHOWN = 20


def heading_of(record: dict[str, Any], index: int) -> str:
    """What a record is called: its file name, title, name or id, else its place."""
    found = next((record[key] for key in NAME_KEYS if record.get(key) is not None), None)
    return str(found) if found not in (None, "") else f"#{index + 1}"


def table_of(label: str, records: list[dict[str, Any]]) -> Block:
    columns: list[str] = []
    for record in records:
        columns.extend(key for key in record if key not in columns)
    rows = [[record.get(column) for column in columns] for record in records]
    numeric = [all(is_number(row[i]) for row in rows) for i in range(len(columns))]
    return Block("table", label, rows, [label_of(c) for c in columns], numeric)


def block_of(key: str, value: Any) -> Block | None:
    label = label_of(key)
    if value is None or value == [] or value == {}:
        return None
    if isinstance(value, str):
        return Block("text", label, value)
    if isinstance(value, list):
        if all(is_scalar(item) for item in value):
            return Block("list", label, [cell(item) for item in value])
        if all(isinstance(item, dict) for item in value):
            pairs = [section_pair(item) for item in value]
            if all(pair is not None for pair in pairs):
                return Block("sections", label, pairs)
            if all(all(is_scalar(v) for v in item.values()) for item in value):
                return table_of(label, value)
            # Records with parts of their own (a summary per document): one section each,
            # headed by its name.
            shown = [
                Block("group", heading_of(item, index), result_blocks(item))
                for index, item in enumerate(value[:RECORDS_SHOWN])
            ]
            if len(value) > RECORDS_SHOWN:
                shown.append(
                    Block(
                        "note",
                        "",
                        f"The first {RECORDS_SHOWN} of {len(value):,}; all of them are in the "
                        "downloaded result.",
                    )
                )
            return Block("group", label, shown)
        return Block("json", label, json.dumps(value, indent=2, ensure_ascii=False))
    if isinstance(value, dict):
        if all(is_scalar(v) for v in value.values()):
            numbers = all(is_number(v) for v in value.values())
            rows = [[name, v] for name, v in value.items()]
            return Block("table", label, rows, ["Name", "Value"], [False, numbers])
        return Block("group", label, result_blocks(value))
    return Block("facts", "", [(label, cell(value))])


def in_order(result: dict[str, Any], order: Sequence[str]) -> dict[str, Any]:
    """The result's keys in the output model's order (PostgreSQL's JSONB keeps no order),
    any others after them."""
    rank = {key: index for index, key in enumerate(order)}
    return dict(sorted(result.items(), key=lambda item: rank.get(item[0], len(rank))))


def result_blocks(result: Any, order: Sequence[str] = ()) -> list[Block]:
    """The blocks of a page that show `result`, in `order` (the output model's fields),
    with the short facts gathered first."""
    if result is None:
        return []
    if not isinstance(result, dict):
        made = block_of("result", result)
        return [made] if made else []
    result = in_order(result, order)
    facts = [(label_of(key), cell(value)) for key, value in result.items() if is_fact(value)]
    blocks = [Block("facts", "", facts)] if facts else []
    for key, value in result.items():
        if is_fact(value):
            continue
        made = block_of(key, value)
        if made is not None:
            blocks.append(made)
    return blocks
