"""Open Inference Protocol v2 (KServe / Triton REST) bodies, with Triton's model config, index and statistics."""

from typing import Any

from pydantic import BaseModel, Field

from service.schemas.numbers import Numbers

MODEL_VERSION = "1"  # a job is trained once: its model has this one version


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1 for the batch dimension")


class ModelMetadata(BaseModel):
    name: str
    versions: list[str] = [MODEL_VERSION]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ModelReady(BaseModel):
    name: str
    ready: bool


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class InferInputTensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: Numbers | None = Field(
        None, description="row-major, flat or nested; finite numbers. Left out when `parameters.binary_data_size` "
        "says the tensor's raw bytes follow the JSON (binary tensor data extension)",
    )
    parameters: dict[str, Any] | None = None


class RequestedOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = Field(None, description="`binary_data: true` for raw bytes after the JSON")


class InferRequest(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] | None = Field(
        None, description="`binary_data_output: true` for every output's raw bytes after the JSON"
    )
    inputs: list[InferInputTensor] = Field(min_length=1)
    outputs: list[RequestedOutput] | None = None


class InferOutputTensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[float | int] | None = None
    parameters: dict[str, Any] | None = None


class InferResponse(BaseModel):
    model_name: str
    model_version: str = MODEL_VERSION
    id: str | None = None
    outputs: list[InferOutputTensor]


class RepositoryIndexRequest(BaseModel):
    ready: bool = Field(False, description="true: only the models ready for inference")


class RepositoryModel(BaseModel):
    """One entry of Triton's repository index: a job, READY once it has succeeded."""

    name: str
    version: str = MODEL_VERSION
    state: str = Field(description="READY, or UNAVAILABLE with the job's status as `reason`")
    reason: str = ""


class V2Error(BaseModel):
    """The protocol's error body."""

    error: str
