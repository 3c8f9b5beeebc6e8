"""Schemathesis hooks for the e2e test tests/tests/e2e/schemathesis.rs.

They keep a run against a real node meaningful and harmless, and change
nothing else of what schemathesis generates or checks:

- Every request carries a token of the test's admin user, logged in once by
  the first provider below; `POST /api/v1/auth/logout` gets a token of its own,
  fresh for each call (it revokes the token it is sent with: with the run's
  token every later request would be 401).
- `PATCH` and `DELETE /api/v1/users/{id}` never touch the test's own user: a new
  password, disabling it, or deleting it (once schemathesis made a second
  admin) ends the run's token. Its id is replaced by one no user has (404).
- No node is given the `backup-manager` role (`POST /api/v1/nodes`,
  `PATCH /api/v1/nodes/{id}`): the test's node has role `manager` only, so no
  backup or restore ever runs. A generated backup of `/`, or a restore onto
  `/etc`, must never run on the machine the tests run on.
- A node registered by `POST /api/v1/nodes` gets loopback addresses where no
  one listens: other routes then call them (`GET /api/v1/storage`, a backup's
  source check), and the tests send traffic to this machine only.

Reads BCM_API (the node's URL), BCM_USER, BCM_PASSWORD and BCM_USER_ID.
"""

import os

import requests
import schemathesis

API = os.environ["BCM_API"]
USER = os.environ["BCM_USER"]
PASSWORD = os.environ["BCM_PASSWORD"]
USER_ID = os.environ["BCM_USER_ID"]

# No user has this id (ids count up from 1), and it is one: the route answers 404.
NO_SUCH_USER = "4000000000"
# Nothing listens on the discard port.
NOWHERE = "http://127.0.0.1:9"


def login():
    r = requests.post(
        f"{API}/api/v1/auth/login",
        json={"username": USER, "password": PASSWORD},
        timeout=10,
    )
    r.raise_for_status()
    return r.json()["token"]


class Bearer:
    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


@schemathesis.auth(refresh_interval=None).apply_to(method="POST", path="/api/v1/auth/logout")
class FreshTokenForLogout(Bearer):
    """A token of its own for each logout."""

    def get(self, case, ctx):
        return login()


@schemathesis.auth(retry_on=[])
class RunToken(Bearer):
    """One token for the whole run, never renewed: a 401 for it is an answer
    to check, not a reason to log in again."""

    def get(self, case, ctx):
        return login()


def _is(case, method, path):
    return case.operation.method.upper() == method and case.operation.path == path


def _without_backup_manager(roles):
    if isinstance(roles, list):
        return [r for r in roles if r != "backup-manager"]
    return roles


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    if _is(case, "PATCH", "/api/v1/users/{id}") or _is(case, "DELETE", "/api/v1/users/{id}"):
        params = case.path_parameters or {}
        if str(params.get("id", "")).strip() == USER_ID:
            params["id"] = NO_SUCH_USER
    body = case.body
    if _is(case, "POST", "/api/v1/nodes") and isinstance(body, dict):
        for field in ("api_addr", "rpc_addr"):
            value = body.get(field)
            if isinstance(value, str) and value.strip().startswith(("http://", "https://")):
                body[field] = NOWHERE
        if "roles" in body:
            body["roles"] = _without_backup_manager(body["roles"])
    if _is(case, "PATCH", "/api/v1/nodes/{id}") and isinstance(body, dict) and "roles" in body:
        body["roles"] = _without_backup_manager(body["roles"])
