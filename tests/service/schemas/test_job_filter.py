"""The `?filter=` grammar alone: tokens, terms, limits, and errors that name the token and where it is."""

import pytest

from service.schemas.job_filter import MAX_FILTER_CHARS, MAX_LIST_VALUES, MAX_TERMS, FilterError, Term, parse_filter


def test_the_mlflow_example_parses_into_two_terms():
    assert parse_filter("params.lr > 0.01 and metrics.val_loss < 0.2") == [
        Term("params", ("lr",), ">", (0.01,)), Term("metrics", ("val_loss",), "<", (0.2,)),
    ]


@pytest.mark.parametrize(("text", "term"), [
    ("params.optimizer.lr>=1e-3", Term("params", ("optimizer", "lr"), ">=", (0.001,))),
    ("params.model.layers.0.units = 8", Term("params", ("model", "layers", "0", "units"), "=", (8.0,))),
    ("params.epochs != -5", Term("params", ("epochs",), "!=", (-5.0,))),
    ("params.loss IN ('mse', \"huber\")", Term("params", ("loss",), "in", ("mse", "huber"))),
    ("tags.`team.sub-key/x` = 'it''s'", Term("tags", ("team.sub-key/x",), "=", ("it's",))),
    ('tags.note = "say ""hi"""', Term("tags", ("note",), "=", ('say "hi"',))),
    ("status in ('queued','running')", Term("status", (), "in", ("queued", "running"))),
    ("metrics.val_accuracy <= 1", Term("metrics", ("val_accuracy",), "<=", (1.0,))),
    ("params.and.in = 'and'", Term("params", ("and", "in"), "=", ("and",))),  # keywords are names after `.`
])
def test_each_term_kind(text, term):
    assert parse_filter(text) == [term]


def test_and_in_any_case_joins_terms():
    terms = parse_filter("status = 'failed' AND params.epochs > 1 And tags.t = 'x'")
    assert [term.kind for term in terms] == ["status", "params", "tags"]


def error(text: str) -> FilterError:
    with pytest.raises(FilterError) as raised:
        parse_filter(text)
    return raised.value


@pytest.mark.parametrize(("text", "position", "token"), [
    ("", 0, "end of filter"),
    ("params.lr >", 11, "end of filter"),
    ("params.lr 0.1", 10, "0.1"),  # no operator
    ("params. = 1", 8, "="),
    ("params.lr = 1 or status = 'queued'", 14, "or"),
    ("params.lr = 1 and", 17, "end of filter"),
    ("params.lr in 1", 13, "1"),
    ("params.lr in (1 2)", 16, "2"),
    ("params.lr = 'open", 12, "'"),  # an unclosed string is no token
    ("params.lr = 1; DROP TABLE jobs", 13, ";"),
    ("params.lr == 1", 11, "="),
    ("metrics.loss < 1e400", 15, "1e400"),
    ("(status = 'queued')", 0, "("),
    ("params.lr = x", 12, "x"),
    ("params.lr = 1.", 13, "."),
])
def test_syntax_errors_name_the_token_and_its_position(text, position, token):
    problem = error(text)
    assert (problem.position, problem.token) == (position, token)
    assert f"at {position}, {token!r}" in str(problem)


@pytest.mark.parametrize("text", [
    "name = 'x'",  # not a field kind
    "status.x = 'queued'", "status = 'done'", "status = 1",
    "metrics = 1", "metrics.a.b = 1", "metrics.loss = 'low'", "metrics.`va-l` < 1",
    "tags = 'x'", "tags.a.b = 'x'", "tags.t > 'x'", "tags.t = 1", "tags.`a b` = 'x'",
    "params = 1", "params.`a'b` = 1", "params.a.`x.y` = 1", "params.a > 'x'",
    "params.a in (1, 'x')",
    "params." + ".".join(["a"] * 9) + " = 1",
])
def test_terms_whose_field_operator_and_literal_do_not_go_together_are_refused_at_the_field(text):
    assert error(text).position == 0


def test_limits():
    assert len(parse_filter(" and ".join(["params.a = 1"] * MAX_TERMS))) == MAX_TERMS
    assert "terms" in str(error(" and ".join(["params.a = 1"] * (MAX_TERMS + 1))))
    values = ", ".join(["1"] * MAX_LIST_VALUES)
    assert len(parse_filter(f"params.a in ({values})")[0].values) == MAX_LIST_VALUES
    assert "values" in str(error(f"params.a in ({values}, 1)"))
    assert "characters" in str(error("params.a = " + "1" * MAX_FILTER_CHARS))
    assert "256" in str(error("tags.t = '" + "x" * 257 + "'"))
    assert "NUL" in str(error("tags.t = 'a\x00b'"))
