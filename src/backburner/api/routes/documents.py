"""/api/documents: upload .txt, .md and .pdf files; list, read and delete them."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, File, Query, Request, Response, UploadFile

from backburner.api.auth import CurrentActor, CurrentPrincipal, Principal
from backburner.api.deletion import delete_objects_now
from backburner.api.extraction import store_upload
from backburner.api.openapi import problems
from backburner.api.pagination import decode_cursor, encode_cursor
from backburner.api.results import public_base
from backburner.api.schemas import DocumentList, DocumentView
from backburner.api.state import Services, ServicesDep
from backburner.errors import NotFound, StorageUnavailable
from backburner.storage import ObjectMissing
from backburner.store import Document
from backburner.store import audit as audit_store
from backburner.store import documents as documents_store
from backburner.store.audit import Actor, Target

router = APIRouter(prefix="/api/documents", tags=["documents"])


def view_of(document: Document, *, with_text: bool, base_url: str = "") -> DocumentView:
    return DocumentView(
        document_id=document.id,
        filename=document.filename,
        content_type=document.content_type,
        size_bytes=document.size_bytes,
        char_count=document.char_count,
        sha256=document.sha256,
        created_at=document.created_at,
        text=document.text if with_text else None,
        content_url=f"{base_url}/api/documents/{document.id}/content"
        if document.original_key
        else None,
    )


@router.post(
    "",
    status_code=201,
    response_model=DocumentView,
    responses={
        200: {"description": "The same text was uploaded before: that document"},
        **problems(415),
    },
)
async def upload_document(
    file: Annotated[UploadFile, File(description="A .txt, .md or .pdf file")],
    request: Request,
    response: Response,
    svc: ServicesDep,
    principal: CurrentPrincipal,
    actor: CurrentActor,
) -> DocumentView:
    """Store a document and its extracted text; summarisation jobs refer to its id. The
    same file uploaded again by its owner is the same document (200, `duplicate`)."""
    document, created = await store_upload(svc, file, owner=principal.owner, actor=actor)
    if not created:
        response.status_code = 200
    view = view_of(document, with_text=False, base_url=public_base(request, svc.settings))
    return view.model_copy(update={"duplicate": not created})


@router.get("", response_model=DocumentList)
async def list_documents(
    svc: ServicesDep,
    principal: CurrentPrincipal,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    owner: Annotated[
        str | None, Query(max_length=200, description="Admins only: one owner's documents")
    ] = None,
) -> DocumentList:
    """Your documents, newest first, without their text (admins: everyone's, or `owner`'s)."""
    scope = principal.visible_owner() if principal.visible_owner() is not None else owner
    entries, more = await documents_store.list_documents(
        svc.db, owner=scope, limit=limit, before=decode_cursor(cursor) if cursor else None
    )
    return DocumentList(
        items=[
            DocumentView(
                document_id=e.id,
                filename=e.filename,
                content_type=e.content_type,
                size_bytes=e.size_bytes,
                char_count=e.char_count,
                sha256=e.sha256,
                created_at=e.created_at,
            )
            for e in entries
        ],
        next_cursor=encode_cursor(entries[-1].id) if more else None,
    )


@router.get("/{document_id}", response_model=DocumentView)
async def get_document(
    document_id: str,
    request: Request,
    svc: ServicesDep,
    principal: CurrentPrincipal,
    actor: CurrentActor,
    include_text: bool = Query(default=True),
) -> DocumentView:
    """The document; with its text (the default), the read is audited."""
    document = await owned_document(svc, principal, document_id)
    if include_text:
        await audit_read(svc, actor, audit_store.Action.DOCUMENT_READ, document)
    return view_of(document, with_text=include_text, base_url=public_base(request, svc.settings))


@router.get(
    "/{document_id}/content",
    response_class=Response,
    responses={
        200: {
            "description": "The file as it was uploaded",
            "content": {"application/pdf": {}, "text/plain": {}, "text/markdown": {}},
        }
    },
)
async def document_content(
    document_id: str, svc: ServicesDep, principal: CurrentPrincipal, actor: CurrentActor
) -> Response:
    """The original file, as a download (its read is audited). 404 when the document is
    not yours, or its original was not kept (documents an evaluation made)."""
    document = await owned_document(svc, principal, document_id)
    if document.original_key is None:
        raise NotFound(f"the original of document {document_id} was not kept")
    try:
        data = await svc.objects.get(document.original_key)
    except (ObjectMissing, ValueError):  # ValueError: it does not open (CannotOpen)
        raise StorageUnavailable(
            f"the original of document {document_id} cannot be read from object storage"
        ) from None
    await audit_read(svc, actor, audit_store.Action.DOCUMENT_DOWNLOADED, document)
    return Response(
        data,
        media_type=document.content_type,
        headers={"content-disposition": attachment(document.filename)},
    )


async def owned_document(svc: Services, principal: Principal, document_id: str) -> Document:
    """The document, if it is the caller's (admins: anyone's); NotFound otherwise."""
    found = await documents_store.get_documents(
        svc.db, [document_id], owner=principal.visible_owner()
    )
    if document_id not in found:
        raise NotFound(f"no document {document_id}")
    return found[document_id]


async def audit_read(
    svc: Services, actor: Actor, action: audit_store.Action, document: Document
) -> None:
    await audit_store.record_read(
        svc.db, actor, action, Target("document", document.id, document.owner), svc.clock()
    )


def attachment(filename: str) -> str:
    """A Content-Disposition that saves the file under its name, whatever its characters
    (RFC 6266: an ASCII fallback and the UTF-8 name)."""
    fallback = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


@router.delete("/{document_id}", status_code=204)
async def delete_document(
    document_id: str, svc: ServicesDep, principal: CurrentPrincipal, actor: CurrentActor
) -> Response:
    """Delete a document, its text and its original. Jobs that read it keep their
    results."""
    await documents_store.delete_document(
        svc.db, document_id, owner=principal.visible_owner(), now=svc.clock(), actor=actor
    )
    await delete_objects_now(svc)
    return Response(status_code=204)
