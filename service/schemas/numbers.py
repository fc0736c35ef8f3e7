"""Nested lists of finite numbers (rows of samples, prediction inputs, tensor data) and how the OpenAPI document
describes them.

Requests are validated recursively, at any depth the body's nesting limit lets through (FITSERVE_MAX_JSON_DEPTH).
The document describes them without recursion, as named arrays of rank 1 to MAX_DESCRIBED_RANK: client generators
drop self-referencing schemas (openapi-python-client 0.29 dropped every model that held one), and each use's own
limits (`minItems`, `maxItems`) sit beside one shared name instead of minting a copy named by module path.
"""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Discriminator, Field, StrictFloat, StrictInt, Tag, TypeAdapter
from typing_extensions import TypeAliasType

# a sample is at most 3-D (channels, height, width) and rows add one: 8 leaves room for singleton levels around them
MAX_DESCRIBED_RANK = 8


def number_tag(value: Any) -> str:
    """Which branch of `NestedNumber` a value takes, so an error names one reason, not one per branch."""
    if isinstance(value, list):
        return "list"
    return "int" if isinstance(value, int) and not isinstance(value, bool) else "float"


# ints stay ints, so a stored spec is what was sent
NestedNumber = TypeAliasType(
    "NestedNumber",
    Annotated[
        Annotated[StrictInt, Tag("int")]
        | Annotated[StrictFloat, Field(allow_inf_nan=False), Tag("float")]
        | Annotated[list["NestedNumber"], Tag("list")],
        Discriminator(number_tag),
    ],
)

# anyOf, not oneOf: an integer is a number too, so under oneOf it would match two branches and be refused
Number = TypeAliasType("Number", Annotated[StrictInt | StrictFloat, Field(description="a finite number")])


def described_arrays() -> TypeAliasType:
    """`NumberArray`: a union of `NumberArray1D` (numbers) ... `NumberArray{MAX_DESCRIBED_RANK}D`, each the list of
    the one before."""
    ranks = [TypeAliasType("NumberArray1D", Annotated[list[Number], Field(description="rank 1: a list of numbers")])]
    for rank in range(2, MAX_DESCRIBED_RANK + 1):
        below = ranks[-1]
        ranks.append(TypeAliasType(
            f"NumberArray{rank}D", Annotated[list[below], Field(description=f"rank {rank}: a list of {below.__name__}")]
        ))
    description = (
        f"nested lists of finite numbers, rectangular, of rank 1 to {MAX_DESCRIBED_RANK} (the server also takes "
        "deeper nesting, to FITSERVE_MAX_JSON_DEPTH)"
    )
    return TypeAliasType("NumberArray", Annotated[Union[tuple(ranks)], Field(description=description)])  # noqa: UP007


DESCRIBED = TypeAdapter(described_arrays())


class DescribedByRank:
    """The JSON Schema of `Numbers`: `NumberArray` with this use's item limits beside it."""

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema, handler):
        schema = handler(DESCRIBED.core_schema)
        for limit, keyword in (("min_length", "minItems"), ("max_length", "maxItems")):
            if core_schema.get(limit) is not None:
                schema[keyword] = core_schema[limit]
        return schema


# Whether the lists are rectangular is the reader's check (data._nested_shape, predictions.as_batch).
Numbers = Annotated[list[NestedNumber], DescribedByRank]
