"""New job: pick a type, fill in the form its input schema generates, drop documents on it.

With scripts on, the page uploads each dropped file on its own (`POST /documents/upload`,
one file a request, each with its own progress and its own answer), so a batch of any size
goes through without a request cap, a bad file is named while the good ones are kept, and
the form then posts the documents' ids (`<field>:document_id`) with the rest. Without
scripts the form posts once (multipart) with its files: the documents are read and checked,
the payload is checked against the type, and only then are documents and job written, so
a refused form leaves nothing behind.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from backburner.api.auth import Principal, actor_of
from backburner.api.enqueue import enqueue, origin_of
from backburner.api.extraction import Intake, keep, store_upload, take_in
from backburner.api.inputs import text_problem
from backburner.api.problems import validation_problems
from backburner.api.schemas import JobCreate
from backburner.api.state import services
from backburner.errors import FieldProblem, RequestError
from backburner.jobs.registry import JobType
from backburner.ui.forms import (
    FormField,
    form_fields,
    job_options,
    option_problem,
    payload_from_form,
)
from backburner.ui.pages import page, page_principal, same_origin, sign_in_page

router = APIRouter(include_in_schema=False)


def form_page(
    request: Request,
    principal: Principal,
    job_type: JobType | None,
    *,
    values: dict[str, str] | None = None,
    problems: list[FieldProblem] | None = None,
    message: str | None = None,
    status: int = 200,
) -> Response:
    fields = form_fields(job_type.input_model.model_json_schema()) if job_type else []
    by_field: dict[str, list[str]] = {}
    for problem in problems or []:
        name = str(problem.loc[0]) if problem.loc else ""
        by_field.setdefault(name, []).append(problem.message)
    return page(
        request,
        principal,
        "new.html",
        {
            "types": services(request).registry.all(),
            "job_type": job_type,
            "fields": fields,
            "values": values or {},
            "problems": by_field,
            "message": message,
        },
        status=status,
    )


@router.get("/new", response_class=HTMLResponse)
async def new_job_form(request: Request, type: str | None = None) -> Response:
    principal = await page_principal(request)
    if principal is None:
        return sign_in_page(request, status=401)
    return form_page(request, principal, services(request).registry.find(type))


async def read_uploads(
    request: Request, fields: list[FormField], form: list[tuple[str, str | UploadFile]]
) -> tuple[list[tuple[str, Intake]], list[FieldProblem]]:
    """The documents dropped on each documents field, as (field, intake)."""
    svc = services(request)
    limit = svc.settings.max_document_bytes
    wanted = {spec.name for spec in fields if spec.widget == "documents"}
    uploads, problems = [], []
    for name, value in form:
        if name not in wanted or not isinstance(value, UploadFile) or not value.filename:
            continue
        try:
            uploads.append((name, await take_in(value, limit, svc.parser)))
        except RequestError as error:
            problems.append(FieldProblem((name,), f"{value.filename}: {error.detail}"))
    return uploads, problems


UPLOADED = ":document_id"  # `<field>:document_id`: a document the page uploaded already


@router.post("/documents/upload")
async def upload_one(request: Request) -> Response:
    """One file of a batch the new-job page uploads (multipart, field `file`): the stored
    document's id, or a problem naming the file. Signed in, from this dashboard only."""
    principal = await page_principal(request)
    if principal is None:
        return JSONResponse({"detail": "sign in again"}, status_code=401)
    same_origin(request)
    svc = services(request)
    form = await request.form()
    file = form.get("file")
    if not isinstance(file, UploadFile) or not file.filename:
        return JSONResponse({"detail": "send one file in the field `file`"}, status_code=422)
    try:
        document, created = await store_upload(
            svc, file, owner=principal.owner, actor=actor_of(request, principal)
        )
    except RequestError as error:
        return JSONResponse(
            {"filename": file.filename, "detail": error.detail}, status_code=error.status
        )
    return JSONResponse(
        {"document_id": document.id, "filename": document.filename, "duplicate": not created},
        status_code=201 if created else 200,
    )


def uploaded_ids(
    fields: list[FormField], form: list[tuple[str, str | UploadFile]]
) -> dict[str, list[str]]:
    """Documents the page uploaded before posting the form, by field."""
    wanted = {spec.name for spec in fields if spec.widget == "documents"}
    found: dict[str, list[str]] = {}
    for name, value in form:
        field = name.removesuffix(UPLOADED)
        if name.endswith(UPLOADED) and field in wanted and isinstance(value, str) and value:
            found.setdefault(field, []).append(value)
    return found


def payload_problems(job_type: JobType, payload: dict[str, object]) -> list[FieldProblem]:
    """What the type's own model says is wrong, keyed by the form's field names."""
    try:
        job_type.input_model.model_validate(payload)
    except ValidationError as error:
        return [
            FieldProblem(p.loc or ("",), f"{'.'.join(map(str, p.loc[1:]))} {p.message}".strip())
            for p in validation_problems(error.errors(), prefix=())
        ]
    return []


@router.post("/new", response_class=HTMLResponse)
async def submit_new_job(request: Request) -> Response:
    principal = await page_principal(request)
    if principal is None:
        return sign_in_page(request, status=401)
    same_origin(request)
    svc = services(request)
    form = await request.form()
    items = list(form.multi_items())
    values = {name: value for name, value in items if isinstance(value, str)}
    unstorable = [
        FieldProblem((name,), f"this field {problem}")
        for name, value in values.items()
        if (problem := text_problem(value))
    ]
    if unstorable:
        message = "The form holds text that cannot be stored (a NUL character or invalid Unicode)."
        return form_page(request, principal, None, problems=unstorable, message=message, status=422)
    type_name = values.get("type", "")
    if type_name not in svc.registry:
        return form_page(request, principal, None, message="Pick a job type.", status=422)
    job_type = svc.registry.get(type_name)
    fields = form_fields(job_type.input_model.model_json_schema())
    uploads, problems = await read_uploads(request, fields, items)
    # Checked with stand-in ids first: the documents are only stored for a job that fits.
    # Documents the page uploaded one by one come as their ids (enqueue checks they are
    # the owner's).
    already = uploaded_ids(fields, items)
    stand_ins: dict[str, list[str]] = {field: list(ids) for field, ids in already.items()}
    for number, (field, _) in enumerate(uploads):
        stand_ins.setdefault(field, []).append(f"upload-{number}")
    payload, read_problems = payload_from_form(fields, values, stand_ins)
    problems += read_problems or payload_problems(job_type, payload)
    options, option_problems = job_options(values)
    problems += option_problems
    try:
        JobCreate(type=type_name, payload=payload, **options)
    except ValidationError as error:
        problems += [option_problem(p.loc, p.message) for p in validation_problems(error.errors())]
    if problems:
        return form_page(request, principal, job_type, values=values, problems=problems, status=422)
    stored: dict[str, list[str]] = {field: list(ids) for field, ids in already.items()}
    for field, intake in uploads:
        document, _ = await keep(
            svc, intake, owner=principal.owner, actor=actor_of(request, principal)
        )
        stored.setdefault(field, []).append(document.id)
    payload, _ = payload_from_form(fields, values, stored)
    try:
        create = JobCreate(type=type_name, payload=payload, **options)
        job, _ = await enqueue(
            svc,
            principal,
            create,
            None,
            actor_of(request, principal),
            origin_of(request, svc.settings),
        )
    except RequestError as error:
        return form_page(
            request,
            principal,
            job_type,
            values=values,
            problems=[FieldProblem(p.loc[2:] or ("",), p.message) for p in error.errors],
            message=error.detail,
            status=error.status,
        )
    return RedirectResponse(f"/jobs/{job.id}", status_code=303)
