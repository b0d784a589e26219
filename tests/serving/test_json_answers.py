"""Answers stay JSON and bounded whatever a client sent: lone surrogates, NULs, very long values."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jewelry_pipeline.serving.json_answers import (
    CAUSE_LIMIT,
    ECHO_LIMIT,
    SafeJSONResponse,
    error_answer,
    quoted,
    short_cause,
)
from jewelry_pipeline.serving.uploads import ApiError, int_field

HOSTILE = ["\ud800", "a\x00b", "\udfff\ud83d", "9" * 60_000, "x" * (ECHO_LIMIT + 1), "é😀"]


@pytest.mark.parametrize("value", HOSTILE)
def test_an_echoed_value_is_quoted_cut_and_encodable(value):
    shown = quoted(value)
    assert shown.startswith("'") and len(shown) <= ECHO_LIMIT + 40
    shown.encode("utf-8")  # a log handler writing UTF-8 cannot fail on it
    if len(value) > ECHO_LIMIT:
        assert f"({len(value)} characters)" in shown


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(st.text(st.characters(), max_size=300) | st.sampled_from(HOSTILE))
def test_a_refused_k_is_a_400_with_an_ascii_json_body(raw):
    try:
        int_field(raw, "k", 10, 1, 50)
    except ApiError as exc:
        response = exc.response()
        assert response.status_code == 400
        body = json.loads(response.body.decode("ascii"))
        assert body["reason"] in ("wrong_field_type", "out_of_range")
        assert len(body["error"]) <= ECHO_LIMIT + 100


def test_the_safe_response_writes_any_string_and_plain_json_agrees():
    content = {"error": "\ud800 and \x00", "items": [{"title": "é😀"}]}
    body = SafeJSONResponse(content).body
    assert body.isascii() and json.loads(body) == content
    answer = error_answer(500, "internal", "internal_error")
    assert answer.status_code == 500 and json.loads(answer.body)["reason"] == "internal_error"


def test_a_load_failure_publishes_its_kind_and_one_short_line():
    architecture = "Layer 'conv' was given an unexpected input.\n" + "config: {...}\n" * 2000
    shown = short_cause("ValueError", architecture)
    assert shown == "ValueError: Layer 'conv' was given an unexpected input."
    long_line = short_cause("RuntimeError", "y" * 5000)
    assert len(long_line) <= CAUSE_LIMIT + len("RuntimeError: ...")
    assert short_cause("KeyError", "") == "KeyError"
