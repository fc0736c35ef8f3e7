"""Open Inference Protocol v2 (KServe / Triton REST) bodies, JSON tensors only."""

from typing import Any

from pydantic import BaseModel, Field

from service.schemas.data import Numbers


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1 for the batch dimension")


class ModelMetadata(BaseModel):
    name: str
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
    data: Numbers = Field(description="row-major, flat or nested; finite numbers")
    parameters: dict[str, Any] | None = None


class RequestedOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[InferInputTensor] = Field(min_length=1)
    outputs: list[RequestedOutput] | None = None


class InferOutputTensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]


class InferResponse(BaseModel):
    model_name: str
    id: str | None = None
    outputs: list[InferOutputTensor]


class V2Error(BaseModel):
    """The protocol's error body."""

    error: str
