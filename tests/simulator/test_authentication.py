"""Authentication: the API token grammar, 401 shapes, token identity, tickets with CSRF."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from proxmoxer import ProxmoxAPI, ResourceException
from proxmoxer.core import AuthenticationError

from proxmox_vm_operator.simulator import Simulator

from .helpers import TOKEN_SECRET, client_for, raw, wait_for_task

TICKET_LIFETIME = 2 * 3600


@pytest.mark.parametrize(
    "header",
    [
        "PVEAPIToken=root@pam!ci=s3cret",
        "PVEAPIToken root@pam!ci=s3cret",  # a space may separate the name from the value
        "PVEAPIToken=root%40pam%21ci=s3cr%65t",  # the value is URI-unescaped
        "PVEAPIToken=root@pam!ci=s3cret; trailing=ignored",  # ';' ends the value
        "Bearer x PVEAPIToken=root@pam!ci=s3cret",  # found after whitespace
    ],
)
def test_token_header_grammar_is_accepted(sim: Simulator, header: str) -> None:
    reply = raw(sim, "GET", "/version", auth=False, headers={"Authorization": header})
    assert reply.status_code == 200
    assert sim.requests[-1].user == "root@pam!ci"


@pytest.mark.parametrize(
    "header",
    [
        "PVEAPIToken=root@pam!ci=wrong",
        "PVEAPIToken=root@pam!other=s3cret",  # unknown token id
        "PVEAPIToken=root@pam!ci",  # no '=' before a secret: "root@pam" "!ci" is no token id
        "PVEAPIToken=root@pam=s3cret",  # a user without a token name
        "XPVEAPIToken=root@pam!ci=s3cret",  # the name must start the header or follow a space
    ],
)
def test_bad_tokens_are_401_with_an_empty_body(sim: Simulator, header: str) -> None:
    reply = raw(sim, "GET", "/version", auth=False, headers={"Authorization": header})
    assert reply.status_code == 401
    assert reply.reason in ("Authentication failed!", "No ticket")
    assert reply.content == b""
    assert reply.headers["Connection"] == "close"


def test_the_secret_is_what_follows_the_last_equals_sign(
    make_sim: Callable[..., Simulator],
) -> None:
    # PVE splits 'id=secret' with /^(.*)=(.*)$/: a secret holding '=' can never match.
    sim = make_sim(tokens={"root@pam!eq": "a=b"})
    header = {"Authorization": "PVEAPIToken=root@pam!eq=a=b"}
    reply = raw(sim, "GET", "/version", auth=False, headers=header)
    assert (reply.status_code, reply.reason) == (401, "Authentication failed!")


def test_missing_and_wrong_tokens_through_proxmoxer(sim: Simulator) -> None:
    with pytest.raises(ResourceException) as wrong:
        client_for(sim, token_value="not-the-secret").version.get()
    assert wrong.value.status_code == 401
    assert wrong.value.content == "Authentication failed!"
    assert wrong.value.errors == {"errors": b""}

    missing = raw(sim, "GET", "/version", auth=False)
    assert (missing.status_code, missing.reason, missing.content) == (401, "No ticket", b"")


def test_the_token_identity_is_recorded_and_shown_on_tasks(
    sim: Simulator, px: Any, wait_task: Callable[..., dict[str, Any]]
) -> None:
    sim.add_vm(100)
    upid = px.nodes("pve1").qemu(100).status.start.post()
    assert upid.split(":")[7] == "root@pam!ci"
    status = wait_task(upid)
    assert (status["user"], status["tokenid"]) == ("root@pam", "ci")
    listed = px.nodes("pve1").tasks.get(vmid=100)
    assert [(t["user"], t["tokenid"]) for t in listed] == [("root@pam", "ci")]
    start = sim.requests_to(r"/status/start$")
    assert [(r.method, r.user) for r in start] == [("POST", "root@pam!ci")]


@pytest.fixture
def ticket_sim(make_sim: Callable[..., Simulator]) -> Simulator:
    return make_sim(users={"root@pam": "pw"})


def ticket_client(sim: Simulator, password: str = "pw") -> Any:
    return ProxmoxAPI(
        sim.host, port=sim.port, user="root@pam", password=password, verify_ssl=str(sim.ca_file)
    )


def test_ticket_login_cookie_and_csrf_through_proxmoxer(ticket_sim: Simulator) -> None:
    px = ticket_client(ticket_sim)
    login = ticket_sim.requests_to(r"^/access/ticket$")
    assert [(r.method, r.user, r.status) for r in login] == [("POST", None, 200)]
    assert "password" not in login[0].params

    assert px.version.get()["version"] == "9.1.1"
    # A non-GET call: proxmoxer sends the CSRFPreventionToken header with the cookie.
    upid = px.nodes("pve1").qemu.post(vmid=100, name="ticketed")
    assert upid.split(":")[7] == "root@pam"
    status = wait_for_task(px, upid)
    assert status["user"] == "root@pam"
    assert "tokenid" not in status
    assert ticket_sim.requests[-1].user == "root@pam"


def test_a_ticket_without_csrf_token_may_read_but_not_write(ticket_sim: Simulator) -> None:
    ticket, csrf = ticket_client(ticket_sim)._backend.get_tokens()
    cookie = {"Cookie": f"PVEAuthCookie={ticket}"}
    assert raw(ticket_sim, "GET", "/version", auth=False, headers=cookie).status_code == 200

    refused = raw(
        ticket_sim, "POST", "/nodes/pve1/qemu", auth=False, headers=cookie, data={"vmid": "100"}
    )
    assert (refused.status_code, refused.reason) == (401, "Permission denied - invalid csrf token")
    assert refused.content == b""
    assert not ticket_sim.vm_exists(100)

    with_csrf = {**cookie, "CSRFPreventionToken": csrf}
    accepted = raw(
        ticket_sim, "POST", "/nodes/pve1/qemu", auth=False, headers=with_csrf, data={"vmid": "100"}
    )
    assert accepted.status_code == 200
    assert accepted.json()["data"].startswith("UPID:pve1:")


def test_a_wrong_password_fails_the_login(ticket_sim: Simulator) -> None:
    with pytest.raises(AuthenticationError, match="code: 401"):
        ticket_client(ticket_sim, password="nope")
    reply = raw(
        ticket_sim,
        "POST",
        "/access/ticket",
        auth=False,
        data={"username": "root@pam", "password": "nope"},
    )
    assert (reply.status_code, reply.reason) == (401, "authentication failure")
    # The login method itself refuses, so the reply has PVE's normal JSON error body.
    assert reply.json() == {"data": None, "message": "authentication failure\n"}


def test_a_forged_ticket_is_refused(ticket_sim: Simulator) -> None:
    ticket, _ = ticket_client(ticket_sim)._backend.get_tokens()
    forged = ticket.replace("root@pam", "admin@pve")
    reply = raw(
        ticket_sim, "GET", "/version", auth=False, headers={"Cookie": f"PVEAuthCookie={forged}"}
    )
    assert (reply.status_code, reply.reason, reply.content) == (401, "Authentication failed!", b"")


def test_tickets_expire_after_two_hours_of_simulated_time(ticket_sim: Simulator) -> None:
    px = ticket_client(ticket_sim)
    ticket_sim.advance(TICKET_LIFETIME - 60)
    assert px.version.get()["version"] == "9.1.1"
    ticket_sim.advance(120)
    with pytest.raises(ResourceException) as expired:
        px.version.get()
    assert (expired.value.status_code, expired.value.content) == (401, "Authentication failed!")
    assert expired.value.errors == {"errors": b""}
    # The expired ticket cannot renew itself either; the password still logs in.
    ticket, _ = px._backend.get_tokens()
    renewal = raw(
        ticket_sim,
        "POST",
        "/access/ticket",
        auth=False,
        data={"username": "root@pam", "password": ticket},
    )
    assert renewal.status_code == 401
    assert ticket_client(ticket_sim).version.get()["version"] == "9.1.1"


def test_proxmoxer_renews_its_ticket_with_the_ticket_itself(ticket_sim: Simulator) -> None:
    px = ticket_client(ticket_sim)
    first, _ = px._backend.get_tokens()
    ticket_sim.advance(3600)
    px._backend.auth.birth_time -= 3600  # proxmoxer renews tickets older than an hour
    assert px.version.get()["version"] == "9.1.1"
    second, _ = px._backend.get_tokens()
    assert second != first
    logins = ticket_sim.requests_to(r"^/access/ticket$", method="POST")
    assert [r.status for r in logins] == [200, 200]
    # The renewed ticket outlives the first one.
    ticket_sim.advance(TICKET_LIFETIME - 1800)
    assert px.version.get()["version"] == "9.1.1"


def test_failed_authentication_is_delayed_by_the_configured_time(
    make_sim: Callable[..., Simulator],
) -> None:
    # 3 simulated seconds at scale 10: 0.3 real seconds for every 401 of the auth layer.
    sim = make_sim(auth_failure_delay=3.0, time_scale=10)
    good = client_for(sim)
    started = time.monotonic()
    good.version.get()
    assert time.monotonic() - started < 0.25

    for call in (
        lambda: client_for(sim, token_value="wrong").version.get(),
        lambda: raw(sim, "GET", "/version", auth=False).raise_for_status(),
    ):
        started = time.monotonic()
        with pytest.raises(Exception) as refused:
            call()
        assert "401" in str(refused.value)
        assert time.monotonic() - started >= 0.29


def test_the_default_401_delay_is_zero(sim: Simulator) -> None:
    started = time.monotonic()
    with pytest.raises(ResourceException):
        client_for(sim, token_value=TOKEN_SECRET + "x").version.get()
    assert time.monotonic() - started < 0.25
