"""Groups of a pool: /api/v1/pools/{pool_id}/groups."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from pydantic import BeforeValidator, Field, ValidationError
from pydantic_core import PydanticCustomError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from app import decoder, qr
from app.auth import AdminKey, ReadKey
from app.deps import ERROR_RESPONSES, StoreDep, pool_id_or_404
from app.errors import InvalidInput, PayloadTooLarge, validation_details
from app.schemas import GroupCreate, GroupOrder, GroupPublic, GroupUpdate

router = APIRouter(
    prefix="/api/v1/pools/{pool_id}/groups", tags=["groups"], responses=ERROR_RESPONSES
)

UPLOAD_BODY_LIMIT = qr.MAX_UPLOAD_BYTES + 64 * 1024  # the image plus the form's other fields
MAX_GROUPS_PER_REQUEST = 1000


def _at_most_max_groups(value: Any) -> Any:
    """A list past the cap is refused before any of its items is looked at."""
    if isinstance(value, list) and len(value) > MAX_GROUPS_PER_REQUEST:
        raise PydanticCustomError(
            "too_many_groups", "at most {max} groups per request, not {given}",
            {"max": MAX_GROUPS_PER_REQUEST, "given": len(value)})
    return value


GroupsBody = Annotated[
    GroupCreate | Annotated[list[GroupCreate], Field(max_length=MAX_GROUPS_PER_REQUEST)],
    BeforeValidator(_at_most_max_groups),
]


@router.post("", status_code=201)
async def add_groups(
    pool_id: str, body: GroupsBody, store: StoreDep, _: AdminKey
) -> GroupPublic | list[GroupPublic]:
    """One group, or a list of at most 1,000 for bulk adds (all or nothing). A URL already in
    the pool, or given twice in the list, is a 409 naming the group that has it."""
    groups = body if isinstance(body, list) else [body]
    if not groups:
        raise InvalidInput("the list of groups is empty")
    created = await store.add_groups(pool_id_or_404(pool_id), groups)
    return created if isinstance(body, list) else created[0]


@router.get("")
async def list_groups(pool_id: str, store: StoreDep, _: ReadKey) -> list[GroupPublic]:
    return await store.list_groups(pool_id_or_404(pool_id))


@router.post("/reorder")
async def reorder_groups(
    pool_id: str, body: GroupOrder, store: StoreDep, _: AdminKey
) -> list[GroupPublic]:
    return await store.reorder_groups(pool_id_or_404(pool_id), body.group_ids)


def _image_form(what: str, fields: dict[str, dict[str, str]]) -> dict[str, Any]:
    """The OpenAPI request body of an upload: a multipart form with the image and `fields`
    (FastAPI cannot infer it: the route reads the form itself, with a cap)."""
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary",
                                "description": f"PNG, JPEG or WebP with {what}, <= 2 MB"},
                       **fields}}}}}}


@router.post(
    "/upload",
    status_code=201,
    openapi_extra=_image_form("the group's QR code", {
        f: {"type": "string"}
        for f in ("id", "name", "capacity", "expires_at", "weight", "enabled", "mode")}),
)
async def upload_group(pool_id: str, request: Request, store: StoreDep, _: AdminKey) -> GroupPublic:
    """A group from the image of its QR code: the code is decoded to the invite URL it holds.
    WeChat group codes expire 7 days after they are made: unless `expires_at` is given they get
    upload time + 7 days, and `page` mode (they only work when long-pressed inside WeChat).
    At most a few images are decoded at once: past that, 429 with Retry-After."""
    pool_id = pool_id_or_404(pool_id)
    await store.get_pool(pool_id)  # an unknown pool: 404 before the body is read or decoded
    fields, image = await _read_upload(request)
    group = await decoder.group_from_upload(image, fields)  # in a child process, a few at once
    return (await store.add_groups(pool_id, [group]))[0]


@router.post(
    "/{group_id}/upload",
    openapi_extra=_image_form("the new QR code", {
        "expires_at": {"type": "string", "format": "date-time"}}),
)
async def replace_code(
    pool_id: str, group_id: str, request: Request, store: StoreDep, _: AdminKey
) -> GroupPublic:
    """Replace a group's code with the one in an image: the group keeps its id, count and
    place. A new WeChat group code gets `expires_at` = upload time + 7 days (unless given) and
    `page` mode. A URL another group of the pool has is a 409. (`PATCH` with a `url` does the
    same for a link.)"""
    pool_id = pool_id_or_404(pool_id)
    await store.get_pool(pool_id)  # both before the image is read and decoded
    await store.get_group(pool_id, group_id)
    fields, image = await _read_upload(request)
    unknown = sorted(set(fields) - {"expires_at"})
    if unknown:
        raise InvalidInput(f"unknown form fields: {', '.join(unknown)}", {"fields": unknown})
    try:
        expires_at = GroupUpdate.model_validate(fields).expires_at
    except ValidationError as exc:
        raise InvalidInput("invalid group fields", validation_details(exc.errors())) from None
    url = await decoder.url_from_upload(image)  # in a child process, a few at a time
    return await store.replace_code(pool_id, group_id, url, expires_at)


@router.patch("/{group_id}")
async def update_group(
    pool_id: str, group_id: str, body: GroupUpdate, store: StoreDep, _: AdminKey
) -> GroupPublic:
    """A new `url` replaces the group's code as the upload above does: count and place are
    kept, a new WeChat group code's expiry is renewed, and a URL another group has is a 409."""
    return await store.update_group(pool_id_or_404(pool_id), group_id, body)


@router.delete("/{group_id}", status_code=204)
async def delete_group(pool_id: str, group_id: str, store: StoreDep, _: AdminKey) -> Response:
    await store.delete_group(pool_id_or_404(pool_id), group_id)
    return Response(status_code=204)


@router.post("/{group_id}/reset")
async def reset_group(pool_id: str, group_id: str, store: StoreDep, _: AdminKey) -> GroupPublic:
    """Count back to 0: the group takes new scans again."""
    return await store.reset_group(pool_id_or_404(pool_id), group_id)


async def _read_upload(request: Request) -> tuple[dict[str, Any], bytes]:
    """The form, read with a hard cap: an oversized body is refused before it is read whole."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > UPLOAD_BODY_LIMIT:
        raise PayloadTooLarge("upload larger than 2 MB", {"max_bytes": qr.MAX_UPLOAD_BYTES})
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise InvalidInput("send the image as multipart/form-data with a 'file' field")

    async def capped() -> AsyncGenerator[bytes, None]:
        total = 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > UPLOAD_BODY_LIMIT:
                raise PayloadTooLarge("upload larger than 2 MB",
                                         {"max_bytes": qr.MAX_UPLOAD_BYTES})
            yield chunk

    try:
        form = await MultiPartParser(request.headers, capped(), max_files=1, max_fields=16).parse()
    except MultiPartException as exc:
        raise InvalidInput(f"malformed multipart body: {exc.message}") from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidInput("the form has no 'file' field with an image")
        image = await upload.read()
        fields = {k: v for k, v in form.items() if k != "file" and isinstance(v, str) and v != ""}
    finally:
        await form.close()
    return fields, image

