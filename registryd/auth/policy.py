"""The old import path of the access decision, ``registryd.access.decision`` (pure: no
HTTP, no SQL). Requests are authorized by ``registryd.auth.authorize``."""

from registryd.access.decision import Action as Action
from registryd.access.decision import account_may as may
from registryd.access.decision import listing_viewer as listing_viewer
from registryd.access.decision import may_grant as caller_may
from registryd.access.decision import may_issue_v1_token as may_issue_v1_token
from registryd.access.decision import may_list as may_list

__all__ = ["Action", "caller_may", "listing_viewer", "may", "may_issue_v1_token", "may_list"]
