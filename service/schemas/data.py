"""The data half of the job spec: where a job's rows come from, and what shape they have."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from service.schemas.limits import LIMITS
from service.schemas.numbers import Numbers

FLOAT32_MAX = 3.4028234663852886e38


def within_float32(value: float) -> float:
    if abs(value) > FLOAT32_MAX:
        raise ValueError("is beyond the float32 range training uses (magnitude at most 3.4e38)")
    return value


# a generator's parameter: one float32, which training uses, holds
Float32 = Annotated[float, AfterValidator(within_float32)]
NOISE_REACH = 8.0  # a normal draw past 8 standard deviations is not met in the rows a generator makes (p ~ 1e-15)


def check_generated(bound: float, what: str) -> None:
    """Refuse a generator whose values would reach past float32's range (a job that could only fail when it ran)."""
    if not bound <= FLOAT32_MAX / 2:
        raise ValueError(f"{what} would reach about {bound:.3g}, beyond the float32 range training uses (3.4e38)")


def polynomial_bound(coefficients: list[float], reach: float) -> float:
    """The most |c0 + c1 x + c2 x^2 + ...| can be for |x| <= reach."""
    try:
        return sum(abs(c) * reach**i for i, c in enumerate(coefficients))
    except OverflowError:
        return float("inf")


class Strict(BaseModel):
    # Python's json reads NaN and Infinity; no float of a request may be either
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class DataBase(Strict):
    validation_fraction: float = Field(0.0, ge=0.0, lt=1.0)
    test_fraction: float = Field(
        0.0, ge=0.0, lt=1.0, description="rows set aside for the final evaluation: never trained on, never monitored"
    )
    standardize: bool = False
    standardize_target: bool = Field(
        False, description="regression: train on targets standardized per column with the training rows' mean and "
        "std; predictions, evaluation and exports answer in the targets' own units",
    )

    @model_validator(mode="after")
    def _check_fractions(self):
        if self.validation_fraction + self.test_fraction >= 1.0:
            raise ValueError("validation_fraction + test_fraction must be below 1: rows must be left to train on")
        return self


class InlineData(DataBase):
    source: Literal["inline"]
    x: Numbers = Field(min_length=1, max_length=LIMITS.max_inline_rows)
    y: Numbers = Field(min_length=1, max_length=LIMITS.max_inline_rows)

    @model_validator(mode="after")
    def _check_rows(self) -> InlineData:
        if len(self.x) != len(self.y):
            raise ValueError(f"x has {len(self.x)} rows but y has {len(self.y)}")
        self.sample_shape()
        _nested_shape(self.y, "y")
        return self

    def sample_shape(self) -> tuple[int, ...]:
        return _nested_shape(self.x, "x")[1:]


def _nested_shape(rows: list[Any], name: str) -> tuple[int, ...]:
    """Shape of a rectangular nested list of `Numbers`; ValueError naming the first bad row."""

    def shape_of(value: Any, path: str) -> tuple[int, ...]:
        if not isinstance(value, list):
            if abs(value) > FLOAT32_MAX:
                raise ValueError(f"{path} is beyond the float32 range training uses")
            return ()
        if not value:
            raise ValueError(f"{path} is an empty list")
        first = shape_of(value[0], f"{path}[0]")
        for i, item in enumerate(value[1:], start=1):
            if shape_of(item, f"{path}[{i}]") != first:
                raise ValueError(f"{path}[{i}] has a different shape from {path}[0]")
        return (len(value), *first)

    return shape_of(rows, name)


class SyntheticLine(DataBase):
    """x evenly spaced from low to high; y = slope*x + intercept + noise * U(0,1) or N(0,1)."""

    source: Literal["synthetic"]
    generator: Literal["linear"]
    n: Annotated[int, Field(ge=1, le=LIMITS.max_synthetic_rows)]
    low: Float32 = -3.0
    high: Float32 = 3.0
    slope: Float32 = 1.0
    intercept: Float32 = 0.0
    noise: Float32 = Field(0.0, ge=0.0)
    noise_kind: Literal["uniform", "normal"] = "uniform"

    @model_validator(mode="after")
    def _check_range(self) -> SyntheticLine:
        reach = max(abs(self.low), abs(self.high))
        check_generated(polynomial_bound([self.intercept, self.slope], reach) + NOISE_REACH * self.noise, "y")
        return self


class SyntheticPolynomial(DataBase):
    """y = c0 + c1*x + c2*x^2 + ... + noise, x as for the linear generator."""

    source: Literal["synthetic"]
    generator: Literal["polynomial"]
    coefficients: list[Float32] = Field(min_length=1, max_length=16)
    n: Annotated[int, Field(ge=1, le=LIMITS.max_synthetic_rows)]
    low: Float32 = -3.0
    high: Float32 = 3.0
    noise: Float32 = Field(0.0, ge=0.0)
    noise_kind: Literal["uniform", "normal"] = "uniform"

    @model_validator(mode="after")
    def _check_range(self) -> SyntheticPolynomial:
        reach = max(abs(self.low), abs(self.high))
        check_generated(polynomial_bound(self.coefficients, reach) + NOISE_REACH * self.noise, "y")
        return self


class Cluster(Strict):
    mean: list[Float32] = Field(min_length=1, max_length=1024)
    std: Float32 = Field(gt=0.0)
    n: Annotated[int, Field(ge=1, le=LIMITS.max_synthetic_rows)]

    @model_validator(mode="after")
    def _check_range(self) -> Cluster:
        check_generated(max(abs(m) for m in self.mean) + NOISE_REACH * self.std, "the cluster's points")
        return self


class SyntheticBlobs(DataBase):
    """Gaussian clusters; a point's label is the index of its cluster."""

    source: Literal["synthetic"]
    generator: Literal["blobs"]
    clusters: list[Cluster] = Field(min_length=1, max_length=1024)

    @model_validator(mode="after")
    def _check_clusters(self) -> SyntheticBlobs:
        dims = {len(c.mean) for c in self.clusters}
        if len(dims) > 1:
            raise ValueError("every cluster mean must have the same length")
        if sum(c.n for c in self.clusters) > LIMITS.max_synthetic_rows:
            raise ValueError(f"clusters hold more than {LIMITS.max_synthetic_rows} points")
        return self



BuiltinName = Literal["digits", "iris", "breast_cancer", "diabetes"]


class BuiltinData(DataBase):
    """A real data set shipped inside scikit-learn."""

    source: Literal["builtin"]
    name: BuiltinName


class DatasetData(DataBase):
    """A data set uploaded with `POST /v1/datasets`."""

    source: Literal["dataset"]
    dataset_id: str = Field(min_length=1, max_length=64)


def data_tag(value: Any) -> str | None:
    """`source`, or `synthetic-<generator>`: one flat tag, so the OpenAPI schema stays valid."""
    get = value.get if isinstance(value, dict) else lambda k: getattr(value, k, None)
    source = get("source")
    return f"synthetic-{get('generator')}" if source == "synthetic" else source


DataSpec = Annotated[
    Union[
        Annotated[InlineData, Tag("inline")],
        Annotated[SyntheticLine, Tag("synthetic-linear")],
        Annotated[SyntheticPolynomial, Tag("synthetic-polynomial")],
        Annotated[SyntheticBlobs, Tag("synthetic-blobs")],
        Annotated[BuiltinData, Tag("builtin")],
        Annotated[DatasetData, Tag("dataset")],
    ],
    Discriminator(
        data_tag,
        custom_error_type="invalid_data_source",
        custom_error_message="data needs source inline, builtin or dataset, or source synthetic "
        "with generator linear, polynomial or blobs",
    ),
]


class DataShape(BaseModel):
    """What a spec needs to know of its data: one sample's shape, classes, target width."""

    sample_shape: tuple[int, ...]
    n_rows: int
    n_classes: int | None  # None where the target is not integral class labels
    target_width: int  # 1 for a column of targets, k for rows of k targets


# sample shape, rows, classes (None: regression target)
BUILTIN_SHAPES: dict[str, DataShape] = {
    "digits": DataShape(sample_shape=(1, 8, 8), n_rows=1797, n_classes=10, target_width=1),
    "iris": DataShape(sample_shape=(4,), n_rows=150, n_classes=3, target_width=1),
    "breast_cancer": DataShape(sample_shape=(30,), n_rows=569, n_classes=2, target_width=1),
    "diabetes": DataShape(sample_shape=(10,), n_rows=442, n_classes=None, target_width=1),
}


def known_data_shape(data: Any) -> DataShape | None:
    """The data's shape where the spec alone tells it; None for uploaded datasets."""
    if isinstance(data, BuiltinData):
        return BUILTIN_SHAPES[data.name]
    if isinstance(data, (SyntheticLine, SyntheticPolynomial)):
        return DataShape(sample_shape=(1,), n_rows=data.n, n_classes=None, target_width=1)
    if isinstance(data, SyntheticBlobs):
        return DataShape(
            sample_shape=(len(data.clusters[0].mean),),
            n_rows=sum(c.n for c in data.clusters),
            n_classes=len(data.clusters),
            target_width=1,
        )
    if isinstance(data, InlineData):
        y_shape = _nested_shape(data.y, "y")
        integral = all(isinstance(v, int) or (isinstance(v, float) and v.is_integer()) for v in data.y)
        n_classes = int(max(data.y)) + 1 if len(y_shape) == 1 and integral and min(data.y) >= 0 else None
        sample = data.sample_shape() or (1,)
        return DataShape(
            sample_shape=sample,
            n_rows=len(data.x),
            n_classes=n_classes,
            target_width=y_shape[1] if len(y_shape) > 1 else 1,
        )
    return None


