"""Admin tokens: stored as digests, named, compared in constant time, read from the environment or
credentials.yml; anything unreadable leaves editing off, never open."""

from __future__ import annotations

import pytest

from jewelry_pipeline.serving.admin import (
    DEFAULT_TOKENS_FILE,
    TOKENS_FILE_VARIABLE,
    TOKENS_VARIABLE,
    AdminTokenError,
    AdminTokens,
    new_token,
    token_digest,
)


def test_a_token_is_known_by_its_digest_and_named_only_with_a_bearer_header():
    ana, ben = new_token(), new_token()
    tokens = AdminTokens.parse({"ana": token_digest(ana), "ben": token_digest(ben)})
    assert tokens.enabled and len(ana) >= 40 and ana != ben
    assert tokens.identify(f"Bearer {ana}") == "ana"
    assert tokens.identify(f"bearer  {ben} ") == "ben"
    for header in (None, "", ana, f"Basic {ana}", "Bearer ", f"Bearer {ana}x", f"Token {ana}"):
        assert tokens.identify(header) is None, header
    assert token_digest(ana) != token_digest(ben) and ana not in token_digest(ana)


def test_no_token_configured_means_editing_is_off(tmp_path):
    off = AdminTokens.from_environment({TOKENS_FILE_VARIABLE: str(tmp_path / "missing.yml")})
    assert not off.enabled and off.identify("Bearer anything") is None
    (tmp_path / "credentials.yml").write_text("mlflow: {}\n")
    none = AdminTokens.from_environment({TOKENS_FILE_VARIABLE: str(tmp_path / "credentials.yml")})
    assert not none.enabled


def test_tokens_come_from_the_variable_first_then_the_credentials_file(tmp_path, monkeypatch):
    token = new_token()
    inline = AdminTokens.from_environment({TOKENS_VARIABLE: f"ops={token_digest(token)}"})
    assert inline.identify(f"Bearer {token}") == "ops"
    credentials = tmp_path / "credentials.yml"
    credentials.write_text(f"admin_tokens:\n  shop-lead: {token_digest(token)}\n")
    from_file = AdminTokens.from_environment({TOKENS_FILE_VARIABLE: str(credentials)})
    assert from_file.identify(f"Bearer {token}") == "shop-lead"
    monkeypatch.chdir(tmp_path)  # the project's own conf/local/credentials.yml by default
    (tmp_path / DEFAULT_TOKENS_FILE).parent.mkdir(parents=True)
    (tmp_path / DEFAULT_TOKENS_FILE).write_text(credentials.read_text())
    assert AdminTokens.from_environment({}).identify(f"Bearer {token}") == "shop-lead"


@pytest.mark.parametrize(
    ("entries", "says"),
    [
        ({"ana": "plain-text-token"}, "never as the token itself"),
        ({"ana": "sha256:" + "0" * 63}, "64 hex digits"),
        ({"ana": None}, "64 hex digits"),
        ({"a b": token_digest("x")}, "letters, digits"),
        ({"": token_digest("x")}, "letters, digits"),
    ],
)
def test_a_bad_entry_is_refused_with_its_name(entries, says):
    with pytest.raises(AdminTokenError, match=says):
        AdminTokens.parse(entries)


def test_an_unreadable_credentials_file_is_an_error_not_an_open_door(tmp_path):
    bad = tmp_path / "credentials.yml"
    bad.write_text("admin_tokens: [one, two]\n")
    with pytest.raises(AdminTokenError, match="mapping"):
        AdminTokens.from_environment({TOKENS_FILE_VARIABLE: str(bad)})
    bad.write_text("admin_tokens: {ana: sha256:zz\n")
    with pytest.raises(AdminTokenError, match="not YAML"):
        AdminTokens.from_environment({TOKENS_FILE_VARIABLE: str(bad)})
