"""The access decision (v1 spec §4.3, §4.6; the Docker token flow): a pure function of who
calls, the repository's facts and the action. No I/O, no HTTP: callers fetch the facts
(``access/facts.py``) and turn a refusal into their protocol's answer.

Namespaces are usernames: a user owns ``<username>/*``; ``library/*`` belongs to
admins. Public repositories are readable by everyone (anonymous callers too,
unless anonymous pulls are off); private ones by their owner and admins. A
token grants its access levels on its repositories, whoever presents it, and
decides alone: it was cut down to its account's rights when it was issued.
With ``auth_mode = "none"`` everything is allowed (``is_open``, the one place).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from registryd.access.identity import Grant, Identity
from registryd.config import Settings
from registryd.errors import AccessDenied, RegistryError, Unauthenticated
from registryd.names import LIBRARY_NAMESPACE, RepositoryName


class Action(enum.Enum):
    READ = "read"
    WRITE = "write"
    DELETE = "delete"


# The one action table: what each token access level allows. v1 index tokens carry
# read/write/delete (our choice in v1 spec §4.3); v2 bearer tokens one level per
# Docker scope action (pull/push/delete, in V2_SCOPE_ACTIONS).
TOKEN_ALLOWS: dict[str, frozenset[Action]] = {
    "read": frozenset({Action.READ}),
    "write": frozenset({Action.READ, Action.WRITE, Action.DELETE}),
    "delete": frozenset({Action.DELETE}),
    "pull": frozenset({Action.READ}),
    "push": frozenset({Action.WRITE}),
}
V1_ACCESS_LEVELS = ("read", "write", "delete")
V2_SCOPE_ACTIONS = ("pull", "push", "delete")


def v2_scope_actions(action: Action) -> list[str]:
    """The Docker scope actions a token needs for ``action``, for a 401 challenge.

    A push also asks for pull: clients check which blobs exist before uploading.
    """
    wanted = {Action.READ, action} if action is Action.WRITE else {action}
    return [level for level in V2_SCOPE_ACTIONS if TOKEN_ALLOWS[level] & wanted]


@dataclass(frozen=True)
class Caller:
    """Who a request acts as: anonymous, an account (password), or a token's holder."""

    identity: Identity
    grants: list[Grant] = field(default_factory=list)
    # A v2 bearer token: it decides alone, even when it grants nothing.
    bearer: bool = False
    # The repositories a bearer token was issued for, granted or not.
    token_scopes: frozenset[RepositoryName] = frozenset()

    @property
    def via_token(self) -> bool:
        return bool(self.grants) or self.bearer


def is_open(settings: Settings) -> bool:
    """``auth_mode = "none"``: no checks at all."""
    return settings.auth_mode == "none"


def account_may(
    identity: Identity,
    repository: RepositoryName,
    is_public: bool,
    action: Action,
    settings: Settings,
) -> bool:
    """Whether the account may do ``action`` on ``repository`` (no tokens involved)."""
    if is_open(settings) or identity.is_admin:
        return True
    owns = identity.username is not None and identity.username == repository.namespace
    if action is Action.READ:
        if is_public:
            return not identity.is_anonymous or settings.anonymous_pull
        return owns
    return owns and repository.namespace != LIBRARY_NAMESPACE


def token_allows(caller: Caller, repository: RepositoryName, action: Action) -> bool:
    """Whether the caller's tokens grant ``action`` on ``repository``."""
    return any(
        grant.repository == repository and action in TOKEN_ALLOWS[grant.access]
        for grant in caller.grants
    )


def allows(
    caller: Caller, repository: RepositoryName, is_public: bool, action: Action, settings: Settings
) -> bool:
    """The decision of a request: a token caller by its tokens alone, others by account.

    ``is_public``: the repository's visibility (a repository that does not exist yet
    counts as public: only its namespace's owner may create it).
    """
    if is_open(settings):
        return True
    if caller.via_token:
        return token_allows(caller, repository, action)
    return account_may(caller.identity, repository, is_public, action, settings)


def refusal(caller: Caller, repository: RepositoryName, action: Action) -> RegistryError:
    """The error for a refused ``allows``: 401 for anonymous callers (credentials might
    help), 403 for known ones and tokens, saying what the token lacks."""
    if caller.via_token:
        held = [grant.access for grant in caller.grants if grant.repository == repository]
        if held:
            return AccessDenied(f"Token grants {', '.join(held)} access, not {action.value}")
        return AccessDenied("Token is not valid for this repository")
    return refuse(caller, f"No {action.value} access to {repository}")


def refuse(caller: Caller, reason: str) -> RegistryError:
    """401 for anonymous callers (credentials might help), 403 for known ones."""
    if caller.identity.is_anonymous and not caller.via_token:
        return Unauthenticated()
    return AccessDenied(reason)


def may_grant(
    caller: Caller, repository: RepositoryName, is_public: bool, action: Action, settings: Settings
) -> bool:
    """Whether a new token may grant ``action``: a token caller needs both its account's
    right and its token's (a token never buys more than it grants)."""
    if not account_may(caller.identity, repository, is_public, action, settings):
        return False
    return is_open(settings) or not caller.via_token or token_allows(caller, repository, action)


def may_issue_v1_token(caller: Caller, repository: RepositoryName, access: str) -> bool:
    """Whether a v1 token for ``access`` may be handed to ``caller``: a token caller
    may only get one that allows nothing beyond what its own tokens allow."""
    if not caller.via_token:
        return True
    return all(token_allows(caller, repository, action) for action in TOKEN_ALLOWS[access])


def may_list(
    caller: Caller, repository: RepositoryName, is_public: bool, settings: Settings
) -> bool:
    """Whether a listing (catalog, search) may show ``repository`` to ``caller``.

    A token caller sees public repositories and its tokens' readable ones, never
    the rest of its account.
    """
    if is_open(settings):
        return True
    if caller.via_token:
        readable_public = is_public and (
            not caller.identity.is_anonymous or settings.anonymous_pull
        )
        return readable_public or token_allows(caller, repository, Action.READ)
    return account_may(caller.identity, repository, is_public, Action.READ, settings)


def listing_viewer(caller: Caller) -> Identity:
    """The identity a search runs as: a token caller lists like an account owning nothing.

    (The empty username is no account's: it owns no namespace, yet is not anonymous.)
    """
    return Identity("") if caller.via_token else caller.identity


def sees_everything(identity: Identity, settings: Settings) -> bool:
    """Whether listings show this account every repository, private ones included."""
    return is_open(settings) or identity.is_admin


def publicly_readable(settings: Settings, is_public: bool) -> bool:
    """Whether anyone at all may read it, so shared caches may keep its content."""
    return is_open(settings) or (settings.anonymous_pull and is_public)
