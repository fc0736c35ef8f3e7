"""`GET /v1/jobs?filter=`: a small grammar, after MLflow's `search_runs(filter_string=...)`, tokenized and parsed by
hand into terms (no eval; repositories/job_filter.py turns the terms into SQL with bound values).

    filter  := term ("and" term)*
    term    := field op literal | field "in" "(" literal ("," literal)* ")"
    field   := "status" | "params" ("." segment)+ | "metrics" "." name | "tags" "." segment
    segment := a name ([A-Za-z_][A-Za-z0-9_]*), a list index (digits), or any text in backticks (`my.tag-key`)
    op      := "=" | "!=" | "<" | "<=" | ">" | ">="
    literal := 'text' or "text" (a doubled quote stands for one) | a number (-1, 0.01, 1e-3)

`and` and `in` in any case. Strings compare with = != and in only (orders of text differ by database); metrics are
numbers. A params term matches a job whose spec holds a value of the literal's kind at the path; tags and params
terms with != match only jobs that have the tag or the value, as MLflow's do. A list index in a params path is
at most 15 (LIST_INDEXES).
"""

import math
import re
from dataclasses import dataclass
from typing import Literal

MAX_FILTER_CHARS = 2000
MAX_TERMS = 20
MAX_LIST_VALUES = 100
MAX_PATH_SEGMENTS = 8
# a params path's list indexes: 0 to 15, a model's layers (limits.max_layers); a longer list (inline rows, blob
# centres) is data, whose values past these are not indexed (repositories/job_params.py)
LIST_INDEXES = 16
MAX_STRING_CHARS = 256
KINDS = ("params", "metrics", "tags", "status")
STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
OPERATORS = ("=", "!=", "<", "<=", ">", ">=")
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
TAG_KEY = re.compile(r"[A-Za-z0-9_.\-/]{1,64}")  # as schemas.spec.TagKey
TOKEN = re.compile(
    r"(?P<space>\s+)"
    # no number starts or ends with `.`: `params.layers.0.units` is names, dots and the index 0
    r"|(?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>!=|<=|>=|=|<|>)"
    r"|(?P<punct>[().,])"
    r"|(?P<string>'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\")"
    r"|(?P<quoted>`[^`]*`)"
)

Value = str | float


class FilterError(ValueError):
    """A filter that does not parse: the message names the token and its position (0-based, in characters)."""

    def __init__(self, message: str, position: int, token: str):
        super().__init__(f"at {position}, {token!r}: {message}" if token else f"at {position}: {message}")
        self.position, self.token = position, token


@dataclass(frozen=True)
class Token:
    kind: str  # number, name, op, punct, string, quoted, end
    text: str
    position: int


@dataclass(frozen=True)
class Term:
    kind: Literal["params", "metrics", "tags", "status"]
    path: tuple[str, ...]  # params: the spec's keys and indexes; metrics and tags: the one name; status: ()
    op: str  # one of OPERATORS, or "in"
    values: tuple[Value, ...]  # one, or the list of `in`; all numbers or all strings


def tokenize(text: str) -> list[Token]:
    """The tokens of `text`, with an `end` token last; FilterError at the first character no token starts with."""
    tokens, position = [], 0
    while position < len(text):
        match = TOKEN.match(text, position)
        if match is None:
            raise FilterError("not the start of any token", position, text[position])
        if match.lastgroup != "space":
            tokens.append(Token(match.lastgroup, match.group(), position))
        position = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


def parse_filter(text: str) -> list[Term]:
    """The terms of a filter, all of which a job must match; FilterError naming the token where it goes wrong."""
    if len(text) > MAX_FILTER_CHARS:
        raise FilterError(f"{len(text)} characters; at most {MAX_FILTER_CHARS}", MAX_FILTER_CHARS, "")
    return _Parser(tokenize(text)).parse()


class _Parser:
    """Recursive descent over the tokens, one token of look-ahead."""

    def __init__(self, tokens: list[Token]):
        self.tokens, self.at = tokens, 0

    @property
    def token(self) -> Token:
        return self.tokens[self.at]

    def fail(self, message: str, token: Token | None = None):
        token = token or self.token
        raise FilterError(message, token.position, token.text or "end of filter")

    def take(self) -> Token:
        token = self.token
        self.at += 1
        return token

    def keyword(self, word: str) -> bool:
        return self.token.kind == "name" and self.token.text.lower() == word

    def parse(self) -> list[Term]:
        terms = [self.term()]
        while self.keyword("and"):
            self.take()
            if len(terms) == MAX_TERMS:
                self.fail(f"more than {MAX_TERMS} terms")
            terms.append(self.term())
        if self.token.kind != "end":
            self.fail("expected `and` or the end of the filter")
        return terms

    def term(self) -> Term:
        first = self.token
        kind, path = self.field()
        if self.keyword("in"):
            op, values = self.take().text.lower(), self.values()
        elif self.token.kind == "op":
            op, values = self.take().text, (self.literal(),)
        else:
            self.fail("expected a comparison (= != < <= > >=) or `in`")
        return check_term(Term(kind, path, op, values), first)

    def field(self) -> tuple[str, tuple[str, ...]]:
        head = self.token
        if head.kind != "name" or head.text not in KINDS:
            self.fail("expected a field: params.<path>, metrics.<name>, tags.<key> or status")
        self.take()
        path = []
        while self.token.text == "." and self.token.kind == "punct":
            self.take()
            segment = self.take()
            if segment.kind not in ("name", "quoted") and not (segment.kind == "number" and segment.text.isdigit()):
                self.fail("expected a name after `.`", segment)
            path.append(segment.text[1:-1] if segment.kind == "quoted" else segment.text)
        return head.text, tuple(path)

    def values(self) -> tuple[Value, ...]:
        if self.take().text != "(":
            self.fail("expected `(` after `in`", self.tokens[self.at - 1])
        values = [self.literal()]
        while self.token.text == ",":
            self.take()
            if len(values) == MAX_LIST_VALUES:
                self.fail(f"more than {MAX_LIST_VALUES} values in one `in`")
            values.append(self.literal())
        if self.token.text != ")":
            self.fail("expected `,` or `)`")
        self.take()
        return tuple(values)

    def literal(self) -> Value:
        token = self.take()
        if token.kind == "number":
            value = float(token.text)
            if not math.isfinite(value):
                self.fail("a number out of range", token)
            return value
        if token.kind == "string":
            value = token.text[1:-1].replace(token.text[0] * 2, token.text[0])
            if len(value) > MAX_STRING_CHARS or "\x00" in value:
                self.fail(f"a string of at most {MAX_STRING_CHARS} characters, no NUL, expected", token)
            return value
        self.fail("expected a quoted string or a number", token)


def check_term(term: Term, at: Token) -> Term:
    """The term, if its field, operator and literals go together; FilterError at its first token otherwise."""
    strings = all(isinstance(value, str) for value in term.values)
    if not strings and not all(isinstance(value, float) for value in term.values):
        raise FilterError("an `in` list of strings or of numbers, not both", at.position, at.text)
    expected = {
        "status": (0, 0, "status takes no path"),
        "metrics": (1, 1, "metrics.<name>: one name"),
        "tags": (1, 1, "tags.<key>: one key (`backticks` around one with dots)"),
        "params": (1, MAX_PATH_SEGMENTS, f"params.<path>: 1 to {MAX_PATH_SEGMENTS} names"),
    }
    least, most, message = expected[term.kind]
    if not least <= len(term.path) <= most:
        raise FilterError(message, at.position, at.text)
    if term.kind == "metrics" and (not NAME.fullmatch(term.path[0]) or len(term.path[0]) > 64 or strings):
        raise FilterError("metrics.<name> compares a number; the name: letters, digits and _", at.position, at.text)
    if term.kind == "params" and not all(NAME.fullmatch(s) or s.isdigit() and int(s) < LIST_INDEXES for s in term.path):
        raise FilterError(f"params.<path>: names of letters, digits and _, or list indexes 0-{LIST_INDEXES - 1}",
                          at.position, at.text)
    if term.kind == "tags" and not TAG_KEY.fullmatch(term.path[0]):
        raise FilterError("a tag key of 1-64 letters, digits or _.-/", at.position, at.text)
    if strings and term.op not in ("=", "!=", "in"):
        raise FilterError(f"strings compare with =, != or in, not {term.op}", at.position, at.text)
    if term.kind in ("tags", "status") and not strings:
        raise FilterError(f"{term.kind} compares with a quoted string", at.position, at.text)
    if term.kind == "status" and any(value not in STATUSES for value in term.values):
        raise FilterError(f"a status is one of {', '.join(STATUSES)}", at.position, at.text)
    return term
