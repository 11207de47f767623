"""The access decision, exhaustively: every kind of caller x visibility x action (pure)."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest

from registryd.access.decision import (
    Action,
    Caller,
    allows,
    may_grant,
    may_list,
    refusal,
    v2_scope_actions,
)
from registryd.access.identity import ANONYMOUS, Grant, Identity
from registryd.config import Settings
from registryd.errors import AccessDenied, Unauthenticated
from registryd.names import RepositoryName

APP = RepositoryName.parse("alice", "app")
OTHER = RepositoryName.parse("alice", "other")
LIBRARY = RepositoryName.parse("library", "app")
R, W, D = Action.READ, Action.WRITE, Action.DELETE
ALL = frozenset({R, W, D})
NONE: frozenset[Action] = frozenset()


def token(username: str, *levels: str, on: RepositoryName = APP, bearer: bool = False) -> Caller:
    grants = [Grant(username, on, level, 2**40) for level in levels]
    identity = Identity(username) if username else ANONYMOUS
    return Caller(
        identity, grants, bearer=bearer, token_scopes=frozenset({on}) if bearer else frozenset()
    )


CALLERS: dict[str, Caller] = {
    "anonymous": Caller(ANONYMOUS),
    "owner": Caller(Identity("alice")),
    "other user": Caller(Identity("bob_b")),
    "admin": Caller(Identity("root_admin", is_admin=True)),
    "v1 read token": token("alice", "read"),
    "v1 write token": token("alice", "write"),
    "v1 delete token": token("alice", "delete"),
    "v1 token of another repository": token("alice", "write", on=OTHER),
    "bearer pull": token("bob_b", "pull", bearer=True),
    "bearer push": token("alice", "push", bearer=True),
    "bearer pull,push": token("alice", "pull", "push", bearer=True),
    "bearer delete": token("alice", "delete", bearer=True),
    "bearer granting nothing": token("bob_b", bearer=True),
    "bearer of another repository": token("alice", "pull", "push", "delete", on=OTHER, bearer=True),
    "anonymous bearer pull": token("", "pull", bearer=True),
}

# (caller, repository is public) -> the actions allowed on alice/app in token mode.
# A token decides alone (it was cut to its account's rights when issued).
EXPECTED: dict[tuple[str, bool], frozenset[Action]] = {
    ("anonymous", True): frozenset({R}),
    ("anonymous", False): NONE,
    ("owner", True): ALL,
    ("owner", False): ALL,
    ("other user", True): frozenset({R}),
    ("other user", False): NONE,
    ("admin", True): ALL,
    ("admin", False): ALL,
    **{
        (name, public): allowed
        for public in (True, False)
        for name, allowed in [
            ("v1 read token", frozenset({R})),
            ("v1 write token", ALL),
            ("v1 delete token", frozenset({D})),
            ("v1 token of another repository", NONE),
            ("bearer pull", frozenset({R})),
            ("bearer push", frozenset({W})),
            ("bearer pull,push", frozenset({R, W})),
            ("bearer delete", frozenset({D})),
            ("bearer granting nothing", NONE),
            ("bearer of another repository", NONE),
            ("anonymous bearer pull", frozenset({R})),
        ]
    },
}


def settings(**changes: object) -> Settings:
    base = Settings(auth_mode="token", token_secret="x" * 32, data_dir=Path("/nonexistent"))
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


TOKEN_MODE = settings()


def test_the_table_names_every_caller_and_visibility() -> None:
    assert set(EXPECTED) == set(itertools.product(CALLERS, (True, False)))


@pytest.mark.parametrize(
    ("name", "public", "action"),
    list(itertools.product(CALLERS, (True, False), Action)),
)
def test_token_mode(name: str, public: bool, action: Action) -> None:
    caller = CALLERS[name]
    assert allows(caller, APP, public, action, TOKEN_MODE) is (action in EXPECTED[name, public])


@pytest.mark.parametrize(("name", "action"), list(itertools.product(CALLERS, Action)))
def test_open_mode_allows_everything(name: str, action: Action) -> None:
    open_mode = settings(auth_mode="none", anonymous_pull=False)
    for public in (True, False):
        assert allows(CALLERS[name], APP, public, action, open_mode)
        assert may_list(CALLERS[name], APP, public, open_mode)


@pytest.mark.parametrize("action", list(Action))
def test_without_anonymous_pulls_anonymous_callers_read_nothing(action: Action) -> None:
    closed = settings(anonymous_pull=False)
    for public in (True, False):
        assert not allows(CALLERS["anonymous"], APP, public, action, closed)
    assert allows(CALLERS["other user"], APP, True, R, closed)


@pytest.mark.parametrize(
    ("name", "allowed"),
    [
        ("anonymous", frozenset({R})),
        ("owner", frozenset({R})),  # library/ is the admins'
        ("other user", frozenset({R})),
        ("admin", ALL),
    ],
)
def test_library_namespace(name: str, allowed: frozenset[Action]) -> None:
    for action in Action:
        assert allows(CALLERS[name], LIBRARY, True, action, TOKEN_MODE) is (action in allowed)
        private = allows(CALLERS[name], LIBRARY, False, action, TOKEN_MODE)
        assert private is (name == "admin")


@pytest.mark.parametrize(
    ("name", "public", "action"), list(itertools.product(CALLERS, (True, False), Action))
)
def test_a_new_token_grants_no_more_than_account_and_token_together(
    name: str, public: bool, action: Action
) -> None:
    caller = CALLERS[name]
    account = allows(Caller(caller.identity), APP, public, action, TOKEN_MODE)
    token_part = not caller.via_token or allows(caller, APP, public, action, TOKEN_MODE)
    assert may_grant(caller, APP, public, action, TOKEN_MODE) is (account and token_part)


def test_listing_shows_a_token_caller_only_public_and_its_own() -> None:
    assert may_list(CALLERS["bearer pull"], APP, False, TOKEN_MODE)
    assert not may_list(CALLERS["bearer of another repository"], APP, False, TOKEN_MODE)
    assert may_list(CALLERS["bearer of another repository"], APP, True, TOKEN_MODE)
    # The owner's account could, the token cannot: listings follow the token.
    assert not may_list(token("alice", "push", bearer=True), APP, False, TOKEN_MODE)


def test_refusals_are_401_for_anonymous_and_403_for_the_rest() -> None:
    assert isinstance(refusal(CALLERS["anonymous"], APP, R), Unauthenticated)
    other = refusal(CALLERS["other user"], APP, W)
    assert isinstance(other, AccessDenied)
    assert "No write access to alice/app" in str(other.reason)
    held = refusal(CALLERS["bearer pull"], APP, W)
    assert isinstance(held, AccessDenied)
    assert held.reason == "Token grants pull access, not write"
    elsewhere = refusal(CALLERS["bearer of another repository"], APP, R)
    assert isinstance(elsewhere, AccessDenied)
    assert elsewhere.reason == "Token is not valid for this repository"


def test_challenge_scopes() -> None:
    assert v2_scope_actions(R) == ["pull"]
    assert v2_scope_actions(W) == ["pull", "push"]
    assert v2_scope_actions(D) == ["delete"]
