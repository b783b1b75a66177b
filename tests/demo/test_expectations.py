"""The demo's checks can fail: each act's claims, against records of stories that went wrong.

A demo whose checks always pass proves nothing, so every claim is tested here with a record
of what the demo would have seen had the operator misbehaved.
"""

from __future__ import annotations

import dataclasses
import io

from proxmox_vm_operator.sandbox import expectations
from proxmox_vm_operator.sandbox.expectations import ActRecord, Check, ProxmoxCall
from proxmox_vm_operator.sandbox.timeline import Timeline

VMID = 101
VM = f"/nodes/pve1/qemu/{VMID}"
OVERRULE = {"overrule-shutdown": "1"}
DELETE_PARAMS = {"purge": "1", "destroy-unreferenced-disks": "1"}


def shutdown(at: float, timeout: int = 5) -> ProxmoxCall:
    return ProxmoxCall(at, "POST", f"{VM}/status/shutdown", {"timeout": str(timeout)})


def stop(at: float, params: dict[str, str] = OVERRULE) -> ProxmoxCall:
    return ProxmoxCall(at, "POST", f"{VM}/status/stop", params)


def delete(at: float) -> ProxmoxCall:
    return ProxmoxCall(at, "DELETE", VM, DELETE_PARAMS)


def failed(checks: list[Check]) -> list[str]:
    return [check.claim for check in checks if not check.held]


# ---------------------------------------------------------------------- act 1: default stop

HARD_STOPPED = ActRecord(
    VMID,
    calls=[stop(0.6), delete(1.6)],
    events=[("Normal", "Stopping"), ("Normal", "DeletingVM")],
    released_at=2.6,
    vm_exists=False,
)


def test_act_1_holds_for_a_single_hard_stop_and_a_quick_release() -> None:
    assert failed(expectations.default_stop(HARD_STOPPED, released_within=15)) == []


def test_act_1_fails_when_the_guest_was_asked_to_shut_down() -> None:
    asked = dataclasses.replace(HARD_STOPPED, calls=[shutdown(0.5), stop(0.6), delete(1.6)])

    checks = expectations.default_stop(asked, released_within=15)

    assert failed(checks) == ["no graceful shutdown was sent to the guest"]
    assert checks[0].evidence == "1 call to status/shutdown"


def test_act_1_fails_for_a_stop_without_overrule_shutdown_or_two_stops() -> None:
    polite = dataclasses.replace(HARD_STOPPED, calls=[stop(0.6, {}), delete(1.6)])
    twice = dataclasses.replace(HARD_STOPPED, calls=[stop(0.6), stop(2.0), delete(2.6)])

    for record in (polite, twice):
        checks = expectations.default_stop(record, released_within=15)
        assert failed(checks) == ["one hard stop, with overrule-shutdown=1"]


def test_act_1_fails_when_the_release_is_slow_or_never_comes() -> None:
    slow = dataclasses.replace(HARD_STOPPED, released_at=121.0)
    held = dataclasses.replace(HARD_STOPPED, released_at=None, calls=[stop(0.6)], vm_exists=True)

    assert failed(expectations.default_stop(slow, released_within=15)) == [
        "the object was released within 15 s of kubectl delete"
    ]
    assert failed(expectations.default_stop(held, released_within=15)) == [
        "the VM was deleted, then the object released",
        "the object was released within 15 s of kubectl delete",
    ]


def test_act_1_fails_on_a_warning_event() -> None:
    warned = dataclasses.replace(HARD_STOPPED, events=[("Warning", "ShutdownTimedOut")])

    assert failed(expectations.default_stop(warned, released_within=15)) == ["no Warning event"]


# ------------------------------------------------------------ act 2: shutdown, then fallback

FELL_BACK = ActRecord(
    VMID,
    calls=[shutdown(0.6), stop(5.6), delete(6.8)],
    events=[("Normal", "ShuttingDown"), ("Warning", "ShutdownTimedOut"), ("Normal", "DeletingVM")],
    fallback_used=True,
    released_at=7.8,
    vm_exists=False,
)


def test_act_2_holds_for_a_shutdown_then_a_forced_stop_at_the_deadline() -> None:
    assert failed(expectations.shutdown_fallback(FELL_BACK, timeout_seconds=5)) == []


def test_act_2_fails_for_a_stop_before_the_deadline() -> None:
    hasty = dataclasses.replace(FELL_BACK, calls=[shutdown(0.6), stop(1.2), delete(2.0)])

    assert failed(expectations.shutdown_fallback(hasty, timeout_seconds=5)) == [
        "a forced stop (overrule-shutdown=1) once the deadline had passed"
    ]


def test_act_2_fails_for_an_unbounded_shutdown_or_none() -> None:
    unbounded = dataclasses.replace(FELL_BACK, calls=[shutdown(0.6, 3600), stop(5.6), delete(7)])
    skipped = dataclasses.replace(FELL_BACK, calls=[stop(5.6), delete(6.8)])

    for record in (unbounded, skipped):
        checks = expectations.shutdown_fallback(record, timeout_seconds=5)
        assert "one graceful shutdown, bounded by the 5 s policy" in failed(checks)


def test_act_2_fails_when_the_fallback_goes_unreported() -> None:
    quiet = dataclasses.replace(FELL_BACK, fallback_used=False, events=[("Normal", "ShuttingDown")])

    assert failed(expectations.shutdown_fallback(quiet, timeout_seconds=5)) == [
        "status.destroy.fallbackUsed became true",
        "a Warning ShutdownTimedOut event",
    ]


def test_act_2_fails_when_the_guest_still_hangs_the_destroy() -> None:
    hung = dataclasses.replace(
        FELL_BACK,
        calls=[shutdown(0.6)],
        events=[("Normal", "ShuttingDown")],
        fallback_used=False,
        released_at=None,
        vm_exists=True,
    )

    assert failed(expectations.shutdown_fallback(hung, timeout_seconds=5)) == [
        "a forced stop (overrule-shutdown=1) once the deadline had passed",
        "status.destroy.fallbackUsed became true",
        "a Warning ShutdownTimedOut event",
        "the VM was deleted, then the object released",
    ]


# --------------------------------------------------------------------- act 3: Proxmox outage

RESUMED = ActRecord(
    VMID,
    calls=[stop(0.8), delete(15.0)],
    conditions={expectations.STALLED_UNREACHABLE: 6.2, ("Deleting", "True", "Stopping"): 0.4},
    released_at=15.7,
    vm_exists=False,
)
OUTAGE = {"stall_after": 5, "restored_at": 6.8, "vm_existed_during_outage": True}


def test_act_3_holds_for_a_held_object_a_reported_stall_and_a_resumed_destroy() -> None:
    assert failed(expectations.outage(RESUMED, **OUTAGE, stalled_gauge=1)) == []


def test_act_3_fails_when_no_answer_was_taken_for_gone() -> None:
    released = dataclasses.replace(RESUMED, calls=[stop(0.8)], released_at=2.0)

    assert failed(expectations.outage(released, **OUTAGE, stalled_gauge=1)) == [
        "the object kept its finalizer while Proxmox was unreachable",
        "the VM was deleted, then the object released",
    ]


def test_act_3_fails_for_a_stall_reported_too_early_or_never() -> None:
    early = dataclasses.replace(RESUMED, conditions={expectations.STALLED_UNREACHABLE: 1.0})
    never = dataclasses.replace(RESUMED, conditions={})

    for record in (early, never):
        assert failed(expectations.outage(record, **OUTAGE, stalled_gauge=1)) == [
            "DeletionStalled=True (ProxmoxUnreachable) after --stall-after 5 s"
        ]


def test_act_3_fails_without_the_stalled_gauge_or_the_vm() -> None:
    gone = {**OUTAGE, "vm_existed_during_outage": False}

    assert failed(expectations.outage(RESUMED, **OUTAGE, stalled_gauge=None)) == [
        'proxmoxvm_destroys_stalled{reason="ProxmoxUnreachable"} was 1 during the stall'
    ]
    assert failed(expectations.outage(RESUMED, **gone, stalled_gauge=1)) == [
        "the VM still existed in Proxmox during the outage"
    ]


def test_act_3_fails_when_a_destructive_call_was_repeated_after_the_outage() -> None:
    repeated = dataclasses.replace(RESUMED, calls=[stop(0.8), stop(14.0), delete(15.0)])

    checks = expectations.outage(repeated, **OUTAGE, stalled_gauge=1)

    assert failed(checks) == ["no destructive call was made twice"]
    assert checks[-1].evidence == "2 x stop"


# ----------------------------------------------------------------------------- the output


def test_plain_output_has_no_escape_codes_and_no_spinner() -> None:
    out = io.StringIO()
    timeline = Timeline(out, interactive=False)

    timeline.section("Act 1")
    timeline.waiting("waiting for something")
    timeline.mark("it happened")
    timeline.result(False, "a claim", "what was seen")

    lines = out.getvalue().splitlines()
    assert "\x1b" not in out.getvalue() and "\r" not in out.getvalue()
    assert lines[1:3] == ["Act 1", "    0.0s  it happened"]
    assert lines[3] == "  [FAILED] a claim (what was seen)"


def test_the_cli_imports_the_demo_only_when_it_runs() -> None:
    import subprocess
    import sys

    probe = (
        "import sys, proxmox_vm_operator.cli as cli\n"
        "args = cli.build_parser().parse_args(['demo', '--non-interactive', '--keep-running'])\n"
        "assert (args.non_interactive, args.keep_running) == (True, True)\n"
        "assert 'proxmox_vm_operator.sandbox.demo' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True)
