"""The Prometheus alert rules of the operator, as data: the one source of the rule files.

`rule_groups()` builds the groups, `rules_file()` wraps them as a plain Prometheus rules file,
`prometheus_rule()` as a prometheus-operator ``PrometheusRule``, and `render_yaml()` turns
either into the stable text committed under ``manifests/monitoring/``. `AlertThresholds`
holds every number and duration, so a test can run the same expressions with a threshold of a
few seconds. Regenerate the committed files with::

    python -m proxmox_vm_operator.monitoring.alerts [DIRECTORY]

The alerts read three sources:

- the operator's own metrics (``proxmoxvm_*``, ``proxmox_*``), scraped through the Service
  ``proxmox-vm-operator-metrics``, whose name is the ``job`` label;
- kube-state-metrics' custom-resource metrics for ProxmoxVM (``kube_proxmoxvm_*``, configured by
  ``manifests/monitoring/kube-state-metrics.yaml``), which keep working when the operator is
  down;
- ``up``, for the operator itself.

Each alert stands for one problem, and the overlaps are cut where a signal has a better
alert: a slow destroy is ProxmoxVMDestroyStuck (per object, with its age), not also
ProxmoxVMDestroyStalled; an unreachable Proxmox is ProxmoxVMProxmoxUnreachable, not also a
stalled destroy; an object the operator reports a destroy for is never ProxmoxVMDeletionStuck.
Reconciles that end "retrying" feed no alert: they also count errors that heal alone (a VM
locked by a backup, a refused call retried), and an unreachable Proxmox already shows in the
API calls.

There are no recording rules: every expression reads a handful of low-cardinality series, and
none is shared between alerts.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

OPERATOR_JOB = "proxmox-vm-operator-metrics"
NAMESPACE = "proxmox-vm-operator"
RUNBOOK_BASE = "docs/runbooks.md"
RULES_FILE = "proxmoxvm.rules.yaml"
PROMETHEUS_RULE_FILE = "prometheus-rule.yaml"
REGENERATE = "python -m proxmox_vm_operator.monitoring.alerts"

# A Prometheus duration: one or more number-unit pairs ("1h30m", "90s", "0s").
_DURATION = re.compile(r"^(?:[0-9]+(?:ms|s|m|h|d|w|y))+$")

# Stall reasons with an alert of their own: ProxmoxVMProxmoxUnreachable,
# ProxmoxVMDestroyPermissionDenied, and, for a destroy that simply takes long,
# ProxmoxVMDestroyStuck (which names the object and the time).
_STALLS_ALERTED_ELSEWHERE = ("ProxmoxUnreachable", "PermissionDenied", "TakingTooLong")


@dataclass(frozen=True)
class AlertThresholds:
    """Every number and duration the alerts use. Durations are Prometheus durations."""

    # ProxmoxVMDestroyStuck: a destroy in flight for longer than this (operator's gauge).
    destroy_stuck_seconds: int = 900
    destroy_stuck_for: str = "1m"
    # ProxmoxVMDeletionStuck: an object terminating for longer than this (kube-state-metrics),
    # with no destroy reported by the operator. `for` rides out an operator restart, after
    # which its gauge reappears only on the object's next destroy pass.
    deletion_stuck_seconds: int = 900
    deletion_stuck_for: str = "5m"
    # ProxmoxVMDestroyStalled: destroys held by a lock, protection or a failed task.
    destroy_stalled_for: str = "5m"
    # ProxmoxVMDestroyPermissionDenied: the token lacks a privilege a destroy needs. It never
    # heals alone, so it is reported sooner than other stalls.
    permission_denied_for: str = "1m"
    # ProxmoxVMDestroyFallbacksRepeated: this many forced stops after a graceful timeout ...
    fallback_count: int = 3
    # ... within this window.
    fallback_window: str = "1h"
    # ProxmoxVMProxmoxUnreachable: API calls failing with none succeeding over the window.
    unreachable_window: str = "5m"
    unreachable_for: str = "5m"
    # ProxmoxVMReconcileStalled: reconciles that need a human, over the window.
    reconcile_stalled_window: str = "10m"
    reconcile_stalled_for: str = "15m"
    # ProxmoxVMOperatorAbsent: no operator target up for this long.
    operator_absent_for: str = "10m"

    def __post_init__(self) -> None:
        for name in (
            "destroy_stuck_for",
            "deletion_stuck_for",
            "destroy_stalled_for",
            "permission_denied_for",
            "fallback_window",
            "unreachable_window",
            "unreachable_for",
            "reconcile_stalled_window",
            "reconcile_stalled_for",
            "operator_absent_for",
        ):
            value = getattr(self, name)
            if not isinstance(value, str) or not _DURATION.match(value):
                raise ValueError(f"{name}: {value!r} is not a Prometheus duration such as '5m'")
        for name in ("destroy_stuck_seconds", "deletion_stuck_seconds", "fallback_count"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: {value!r} must be a whole number of at least 1")


def _duration_text(seconds: int) -> str:
    """900 -> '15m', 3600 -> '1h', 90 -> '90s': how a threshold reads in a message."""
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def _alert(
    name: str,
    expr: str,
    *,
    for_: str,
    severity: str,
    summary: str,
    description: str,
    runbook_base: str,
) -> dict[str, Any]:
    rule: dict[str, Any] = {"alert": name, "expr": expr}
    if not re.fullmatch(r"(?:0+(?:ms|s|m|h|d|w|y))+", for_):
        rule["for"] = for_
    rule["labels"] = {"severity": severity}
    rule["annotations"] = {
        "summary": summary,
        "description": description,
        "runbook_url": f"{runbook_base}#{name.lower()}",
    }
    return rule


OBJECT = "{{ $labels.namespace }}/{{ $labels.name }}"
DESCRIBE = "kubectl describe proxmoxvm -n {{ $labels.namespace }} {{ $labels.name }}"


def _destroy_rules(t: AlertThresholds, runbook_base: str) -> list[dict[str, Any]]:
    stuck = _duration_text(t.destroy_stuck_seconds)
    deletion = _duration_text(t.deletion_stuck_seconds)
    elsewhere = "|".join(_STALLS_ALERTED_ELSEWHERE)
    return [
        _alert(
            "ProxmoxVMDestroyStuck",
            "time() - min by (namespace, name) (proxmoxvm_destroy_started_timestamp_seconds)\n"
            f"  > {t.destroy_stuck_seconds}\n",
            for_=t.destroy_stuck_for,
            severity="warning",
            summary=f"ProxmoxVM {OBJECT} has been deleting for more than {stuck}",
            description=(
                f"The destroy of ProxmoxVM {OBJECT} started {{{{ $value | humanizeDuration }}}}"
                " ago and has not finished. The object keeps its finalizer, so whatever waits"
                " for it to go (kubectl delete, an Argo CD prune, a namespace deletion) waits"
                f" too. The Deleting and DeletionStalled conditions say why: {DESCRIBE}"
            ),
            runbook_base=runbook_base,
        ),
        _alert(
            "ProxmoxVMDeletionStuck",
            "(\n"
            "  time() - max by (namespace, name) (kube_proxmoxvm_deletion_timestamp_seconds > 0)\n"
            f") > {t.deletion_stuck_seconds}\n"
            "unless on (namespace, name)\n"
            "  proxmoxvm_destroy_started_timestamp_seconds\n",
            for_=t.deletion_stuck_for,
            severity="warning",
            summary=(
                f"ProxmoxVM {OBJECT} has been terminating for more than {deletion}"
                " and the operator reports no destroy for it"
            ),
            description=(
                f"ProxmoxVM {OBJECT} was marked for deletion {{{{ $value | humanizeDuration }}}}"
                " ago (seen by kube-state-metrics) and the operator reports no destroy in flight"
                " for it: the operator is down, does not watch this namespace, or another"
                f" finalizer holds the object. Check its finalizers and events: {DESCRIBE}"
            ),
            runbook_base=runbook_base,
        ),
        _alert(
            "ProxmoxVMDestroyStalled",
            f'sum by (reason) (\n  proxmoxvm_destroys_stalled{{reason!~"{elsewhere}"}}\n) > 0\n',
            for_=t.destroy_stalled_for,
            severity="warning",
            summary="ProxmoxVM destroys are stalled: {{ $labels.reason }}",
            description=(
                "Destroys with DeletionStalled=True and reason {{ $labels.reason }}:"
                " {{ $value }}. They cannot go on without a human: VMLocked (a backup,"
                " clone or migration holds a lock on the VM), Protected (the VM has"
                " protection=1) or TaskFailed (Proxmox failed the stop or delete task). The"
                " operator keeps retrying and never overrides a lock or protection. Find the"
                " objects with kubectl get proxmoxvm -A (phase Deleting) and read their"
                " DeletionStalled condition."
            ),
            runbook_base=runbook_base,
        ),
        _alert(
            "ProxmoxVMDestroyPermissionDenied",
            'sum(proxmoxvm_destroys_stalled{reason="PermissionDenied"}) > 0\n',
            for_=t.permission_denied_for,
            severity="warning",
            summary="ProxmoxVM destroys are refused by Proxmox VE permissions",
            description=(
                "{{ $value }} destroys have DeletionStalled=True with reason PermissionDenied:"
                " the API token lacks a privilege on the VM (VM.Audit to look it up,"
                " VM.PowerMgmt to stop it, VM.Allocate to delete it). Proxmox answered 403,"
                " which is never taken for the VM being gone, so these objects keep their"
                " finalizer until the privilege is granted. Their DeletionStalled message names"
                " the path and privilege."
            ),
            runbook_base=runbook_base,
        ),
        _alert(
            "ProxmoxVMDestroyFallbacksRepeated",
            f"sum(increase(proxmoxvm_destroy_fallback_total[{t.fallback_window}]))\n"
            f"  >= {t.fallback_count}\n",
            for_="0s",
            severity="info",
            summary=(
                "Graceful shutdowns keep timing out during ProxmoxVM destroys"
                f" ({t.fallback_count} or more in {t.fallback_window})"
            ),
            description=(
                '{{ printf "%.0f" $value }} destroys in Shutdown mode ran out of'
                " spec.destroy.shutdownTimeoutSeconds in the last"
                f" {t.fallback_window} and fell back to a forced stop. The guests do not"
                " honour the shutdown request in time (no ACPI or guest agent, a hung guest),"
                " or the timeout is too short for them."
            ),
            runbook_base=runbook_base,
        ),
    ]


def _operator_rules(t: AlertThresholds, runbook_base: str, job: str) -> list[dict[str, Any]]:
    calls = "proxmox_api_request_duration_seconds_count"
    window = t.unreachable_window
    return [
        _alert(
            "ProxmoxVMOperatorAbsent",
            f'absent(up{{job="{job}"}} == 1)\n',
            for_=t.operator_absent_for,
            severity="critical",
            summary="proxmox-vm-operator is down or not scraped",
            description=(
                f"No target of job {job} has been up for {t.operator_absent_for}. Without"
                " the operator no ProxmoxVM is created, changed or destroyed, and every"
                " ProxmoxVM marked for deletion keeps its finalizer: kubectl delete hangs,"
                " Argo CD prunes and namespace deletions wait."
            ),
            runbook_base=runbook_base,
        ),
        _alert(
            "ProxmoxVMProxmoxUnreachable",
            "(\n"
            f'  sum(rate({calls}{{code=~"error|401|5.."}}[{window}])) > 0\n'
            "  unless\n"
            f'  sum(rate({calls}{{code=~"2.."}}[{window}])) > 0\n'
            ")\n"
            "or\n"
            'sum(proxmoxvm_destroys_stalled{reason="ProxmoxUnreachable"}) > 0\n',
            for_=t.unreachable_for,
            severity="warning",
            summary="proxmox-vm-operator cannot reach the Proxmox VE API",
            description=(
                "Proxmox VE API calls from the operator fail (no answer, HTTP 5xx or 401)"
                f" and none has succeeded in the last {window}, or destroys are stalled with"
                " DeletionStalled reason ProxmoxUnreachable. Until Proxmox answers again no"
                " VM is created, changed or destroyed, and deleted ProxmoxVMs keep their"
                " finalizer."
            ),
            runbook_base=runbook_base,
        ),
        _alert(
            "ProxmoxVMReconcileStalled",
            "sum(\n"
            '  rate(proxmoxvm_reconcile_total{result="stalled"}'
            f"[{t.reconcile_stalled_window}])\n"
            ") > 0\n",
            for_=t.reconcile_stalled_for,
            severity="warning",
            summary="ProxmoxVMs are stalled and need a human",
            description=(
                "Reconciles of some ProxmoxVMs keep ending stalled: the operator cannot bring"
                " them to their spec without a change to the object, its credentials Secret or"
                " Proxmox (an invalid spec, a missing credentials Secret, a token Proxmox"
                " refuses, a VM that is not theirs, a failed create or clone, a paused VM)."
                " Their Stalled condition is True and its reason and message say why; list"
                " them with the command in the runbook."
            ),
            runbook_base=runbook_base,
        ),
    ]


def rule_groups(
    thresholds: AlertThresholds = AlertThresholds(),
    *,
    runbook_base: str = RUNBOOK_BASE,
    job: str = OPERATOR_JOB,
) -> list[dict[str, Any]]:
    """The rule groups. ``runbook_base`` is the runbook page's URL (``#anchor`` is appended);
    ``job`` is the scrape job of the operator's metrics."""
    return [
        {"name": "proxmoxvm-destroy", "rules": _destroy_rules(thresholds, runbook_base)},
        {"name": "proxmoxvm-operator", "rules": _operator_rules(thresholds, runbook_base, job)},
    ]


def rules_file(
    thresholds: AlertThresholds = AlertThresholds(),
    *,
    runbook_base: str = RUNBOOK_BASE,
    job: str = OPERATOR_JOB,
) -> dict[str, Any]:
    """A plain Prometheus rules file (``rule_files:`` in prometheus.yml)."""
    return {"groups": rule_groups(thresholds, runbook_base=runbook_base, job=job)}


def prometheus_rule(
    thresholds: AlertThresholds = AlertThresholds(),
    *,
    namespace: str = NAMESPACE,
    runbook_base: str = RUNBOOK_BASE,
    job: str = OPERATOR_JOB,
) -> dict[str, Any]:
    """The same groups as a prometheus-operator ``PrometheusRule``.

    A Prometheus from kube-prometheus-stack selects rules by label (``release: <its release>``
    unless ``ruleSelectorNilUsesHelmValues`` is false): add that label when you install.
    """
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "proxmox-vm-operator",
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": "proxmox-vm-operator",
                "app.kubernetes.io/component": "alerting",
            },
        },
        "spec": {"groups": rule_groups(thresholds, runbook_base=runbook_base, job=job)},
    }


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings (the expressions), so the files read well."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _represent_str)


def render_yaml(doc: dict[str, Any]) -> str:
    """Stable YAML text: a header saying how to regenerate it, keys in the order built."""
    body = yaml.dump(
        doc,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=1_000_000,
    )
    return f"# Generated by `{REGENERATE}` from monitoring/alerts.py. Do not edit.\n{body}"


def rendered_files(thresholds: AlertThresholds = AlertThresholds()) -> dict[str, str]:
    """The committed files' names and their text."""
    return {
        RULES_FILE: render_yaml(rules_file(thresholds)),
        PROMETHEUS_RULE_FILE: render_yaml(prometheus_rule(thresholds)),
    }


def write_rule_files(directory: Path) -> list[Path]:
    """Write both rule files into ``directory`` (``manifests/monitoring`` in the repository)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in rendered_files().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("manifests/monitoring")
    for path in write_rule_files(target):
        print(path)
