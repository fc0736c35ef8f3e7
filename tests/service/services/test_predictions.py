"""Which batches the API may run on its event loop: a few rows through a small dense network, never a CNN."""

from service.schemas.spec import JobSpec
from service.services.predictions import QUICK_MAX_ROWS, count_quick_rows
from tests.specs import example


def quick_rows(name: str, **model) -> int:
    spec = example(name)
    spec["model"].update(model)
    return count_quick_rows(JobSpec.model_validate(spec))


def test_a_small_mlp_answers_a_few_rows_inline():
    assert quick_rows("3_nonlinear_mlp") == QUICK_MAX_ROWS  # 1-20-1: 61 parameters


def test_a_large_mlp_answers_fewer_rows_inline_and_a_huge_one_none():
    assert 0 < quick_rows("3_nonlinear_mlp", hidden=[64, 64]) < QUICK_MAX_ROWS  # ~4k parameters
    assert quick_rows("3_nonlinear_mlp", hidden=[256, 256]) == 0  # ~67k parameters


def test_a_cnn_never_runs_inline():
    assert quick_rows("6_cnn_digits") == 0
