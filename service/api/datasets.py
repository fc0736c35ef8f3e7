"""/v1/datasets: upload a CSV or NPZ file, read its description."""

from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile

from service.api.deps import OwnerDep, SessionDep
from service.errors import PayloadTooLarge
from service.schemas.jobs import DatasetPublic
from service.schemas.limits import LIMITS
from service.services import datasets as dataset_service

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])


@router.post("", status_code=201, response_model=DatasetPublic)
def upload_dataset(
    file: Annotated[UploadFile, File(description="CSV with a header row, or NPZ with arrays x and y")],
    response: Response,
    session: SessionDep,
    owner: OwnerDep,
    target: Annotated[str | None, Form(description="CSV only: the target column's name")] = None,
    name: Annotated[str | None, Form(max_length=200)] = None,
):
    blob = file.file.read(LIMITS.max_dataset_bytes + 1)
    if len(blob) > LIMITS.max_dataset_bytes:
        raise PayloadTooLarge(f"the file exceeds {LIMITS.max_dataset_bytes} bytes")
    dataset = dataset_service.create_dataset(session, blob, file.filename, target, name, owner)
    response.headers["Location"] = f"/v1/datasets/{dataset.id}"
    return dataset


@router.get("/{dataset_id}", response_model=DatasetPublic)
def get_dataset(dataset_id: str, session: SessionDep, owner: OwnerDep):
    return dataset_service.get_dataset(session, dataset_id, owner)
