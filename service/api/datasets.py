"""/v1/datasets: upload a CSV or NPZ file, read its description."""

import hashlib
from typing import Annotated, BinaryIO

from fastapi import APIRouter, File, Form, Query, Response, UploadFile

from service.api.deps import ERROR_RESPONSES, OwnerDep, SessionDep, SettingsDep
from service.api.idempotent import IdempotencyKeyHeader, create_once
from service.dataset_files import DatasetBudget
from service.errors import PayloadTooLarge
from service.schemas.jobs import DatasetPage, DatasetPublic
from service.schemas.limits import LIMITS
from service.services import datasets as dataset_service
from service.services import lifecycle
from service.settings import Settings

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], responses=ERROR_RESPONSES)


@router.post("", status_code=201, response_model=DatasetPublic)
def upload_dataset(
    file: Annotated[UploadFile, File(description="CSV with a header row, or NPZ with arrays x and y")],
    session: SessionDep,
    owner: OwnerDep,
    settings: SettingsDep,
    target: Annotated[str | None, Form(description="CSV only: the target column's name")] = None,
    name: Annotated[str | None, Form(max_length=200)] = None,
    idempotency_key: IdempotencyKeyHeader = None,
):
    # the multipart parser spooled the file to disk; it is read from there as a stream, never whole
    stream = file.file
    if stream.seek(0, 2) > LIMITS.max_dataset_bytes:
        raise PayloadTooLarge(f"the file exceeds {LIMITS.max_dataset_bytes} bytes")

    def create() -> tuple[dict, str]:
        dataset = dataset_service.create_dataset(
            session, stream, file.filename, target, name, owner, budget_of(settings)
        )
        return DatasetPublic.model_validate(dataset).model_dump(mode="json"), f"/v1/datasets/{dataset.id}"

    content = {"file": sha256_of(stream), "filename": file.filename, "target": target, "name": name}
    return create_once(session, settings, owner, "POST /v1/datasets", idempotency_key, content, create)


def budget_of(settings: Settings) -> DatasetBudget:
    return DatasetBudget(settings.MAX_DATASET_ROWS, settings.MAX_DATASET_COLUMNS, settings.MAX_DATASET_CELLS,
                         settings.MAX_STORED_BYTES_PER_OWNER)


def sha256_of(stream: BinaryIO) -> str:
    stream.seek(0)
    digest = hashlib.sha256()
    while chunk := stream.read(1 << 20):
        digest.update(chunk)
    return digest.hexdigest()


@router.get("", response_model=DatasetPage)
def list_datasets(
    session: SessionDep,
    owner: OwnerDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=LIMITS.max_page_size)] = 50,
):
    """The owner's datasets, newest first; `next_cursor` continues."""
    return dataset_service.list_datasets(session, owner, cursor, limit)


@router.get("/{dataset_id}", response_model=DatasetPublic)
def get_dataset(dataset_id: str, session: SessionDep, owner: OwnerDep):
    return dataset_service.get_dataset(session, dataset_id, owner)


@router.delete("/{dataset_id}", status_code=204, response_class=Response)
def delete_dataset(dataset_id: str, session: SessionDep, owner: OwnerDep):
    """409 while a queued or running job trains on it; ended jobs keep their weights and curves."""
    lifecycle.delete_dataset(session, dataset_id, owner)
    return Response(status_code=204)
