"""The body of `POST /v1/jobs/{id}/evaluate`: data the caller brings, inline or as an uploaded dataset."""

from __future__ import annotations

from pydantic import Field, model_validator

from service.schemas.data import Strict
from service.schemas.limits import LIMITS
from service.schemas.numbers import Numbers


class EvaluateRequest(Strict):
    """Either `x` and `y` (rows and their targets, as in an inline spec), or `dataset_id`."""

    x: Numbers | None = Field(None, min_length=1, max_length=LIMITS.max_predict_rows)
    y: Numbers | None = Field(None, min_length=1, max_length=LIMITS.max_predict_rows)
    dataset_id: str | None = Field(None, min_length=1, max_length=64)

    @model_validator(mode="after")
    def _check_source(self) -> EvaluateRequest:
        inline = self.x is not None or self.y is not None
        if inline and self.dataset_id is not None:
            raise ValueError("send x and y, or dataset_id, not both")
        if not inline and self.dataset_id is None:
            raise ValueError("send x and y, or dataset_id")
        if inline and (self.x is None or self.y is None):
            raise ValueError("x and y go together")
        if inline and len(self.x) != len(self.y):
            raise ValueError(f"x has {len(self.x)} rows but y has {len(self.y)}")
        return self
