"""The ``proxmox-vm-operator`` command line."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import secrets
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Sequence


def _simulator(args: argparse.Namespace) -> int:
    from .simulator import GuestBehaviour, Simulator

    tokens: dict[str, str] = {}
    for token in args.token:
        token_id, sep, secret = token.rpartition("=")
        if not sep:  # no secret given: make one up (it is never printed; see --publish-secret)
            token_id, secret = token, str(uuid.uuid4())
        if "!" not in token_id:
            print(
                "--token must look like 'user@realm!name=SECRET' or 'user@realm!name'",
                file=sys.stderr,
            )
            return 2
        tokens[token_id] = secret
    nodes = [n for n in args.nodes.split(",") if n]
    templates: list[tuple[int, str]] = []
    for template in args.template:
        vmid, _, node = template.partition("@")
        node = node or (nodes[0] if nodes else "")
        if not vmid.isdigit() or node not in nodes:
            print(
                f"--template must be VMID[@NODE] with a node of --nodes, got {template!r}",
                file=sys.stderr,
            )
            return 2
        templates.append((int(vmid), node))

    tls_hosts = list(args.tls_san)
    targets = []
    if args.publish_secret or args.advertise_endpoint:
        from .simulator import publish

        try:
            if args.advertise_endpoint:
                tls_hosts.insert(0, publish.advertised_host(args.advertise_endpoint))
            targets = [publish.SecretRef.parse(target) for target in args.publish_secret]
        except ValueError as exc:
            print(f"--advertise-endpoint/--publish-secret: {exc}", file=sys.stderr)
            return 2
        if targets and not tokens:
            print("--publish-secret needs a --token to publish", file=sys.stderr)
            return 2
        if targets and not args.advertise_endpoint and args.host in ("0.0.0.0", "::"):  # noqa: S104
            print(
                "--publish-secret with --host 0.0.0.0 needs --advertise-endpoint: the URL "
                "clients reach the simulator at",
                file=sys.stderr,
            )
            return 2
    guest = GuestBehaviour(
        obeys_acpi=args.guest_acpi == "obey", shutdown_seconds=args.guest_shutdown_seconds
    )
    try:
        simulator = Simulator(
            nodes=nodes,
            tokens=tokens,
            host=args.host,
            port=args.port,
            time_scale=args.time_scale,
            cert_dir=args.cert_dir,
            default_guest=guest,
            tls_hosts=tls_hosts,
            pve_version=args.pve_version,
            control_host=args.control_host,
            control_port=args.control_port,
        )
    except ValueError as exc:
        print(f"--pve-version: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with simulator:
        for vmid, node in templates:
            simulator.add_vm(vmid, node, name=f"template-{vmid}", template=True, guest=guest)
        print(f"endpoint: {simulator.endpoint}", flush=True)
        print(f"ca-file: {simulator.ca_file}", flush=True)
        print(f"nodes: {args.nodes}", flush=True)
        print(f"tokens: {', '.join(tokens) or '(none)'}", flush=True)
        print(f"guests: {args.guest_acpi} ACPI shutdown requests", flush=True)
        if templates:
            print(f"templates: {' '.join(f'{v}@{n}' for v, n in templates)}", flush=True)
        if simulator.control_endpoint is not None:
            print(f"control: {simulator.control_endpoint}", flush=True)
        if targets:
            token_id = next(iter(tokens))
            credentials = publish.Credentials(
                endpoint=args.advertise_endpoint or simulator.endpoint,
                token_id=token_id,
                token_secret=tokens[token_id],
                ca_cert=simulator.ca_file.read_text(),
            )
            try:
                publish.keep_published(
                    credentials, targets, stop, resync_interval=args.publish_resync
                )
            except publish.PublishError as exc:
                print(f"cannot publish the credentials Secret: {exc}", file=sys.stderr)
                return 1
        stop.wait()
    return 0


def _run(args: argparse.Namespace) -> int:
    import kopf
    import prometheus_client

    from . import handlers, kube, metrics
    from .controller.budget import TaskBudget
    from .controller.connections import ClientPool
    from .controller.destroyer import Destroyer
    from .controller.pace import Pace
    from .controller.reconciler import Reconciler
    from .proxmox.tasks import TaskWaiter

    if args.namespace and args.all_namespaces:
        print("use either -n/--namespace or -A/--all-namespaces", file=sys.stderr)
        return 2
    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat[args.log_format.upper()])
    logging.getLogger("kopf.objects").addFilter(handlers.ProgressLogFilter())
    kube.configure()

    if args.standalone and args.peering:
        print("use either --standalone or --peering", file=sys.stderr)
        return 2
    settings = handlers.operator_settings(standalone=args.standalone)
    # kubectl describe shows these as the events' source (kopf's defaults: kopf, dev).
    settings.posting.reporting_component = "proxmox-vm-operator"
    settings.posting.reporting_instance = os.environ.get("POD_ID") or socket.gethostname()

    pool = ClientPool(observer=metrics.observe_api_call, reread_after=args.secret_reread_seconds)
    budget = TaskBudget(args.max_tasks_per_node)  # shared: one limit per node for all work
    pace = dataclasses.replace(Pace.operator(), full_check_after=args.full_check_seconds)
    waiter = TaskWaiter()  # shared: what it learns of task lengths serves every object
    runtime = handlers.Runtime(
        reconciler=Reconciler(pool, budget, pace=pace, waiter=waiter),
        destroyer=Destroyer(pool, budget, stall_after=args.stall_after, pace=pace, waiter=waiter),
        tracker=metrics.DestroyTracker(),
    )
    prometheus_client.start_http_server(args.metrics_port, addr=args.bind_address)
    host = f"[{args.bind_address}]" if ":" in args.bind_address else args.bind_address
    try:
        kopf.run(
            registry=handlers.registry,
            settings=settings,
            standalone=args.standalone,
            peering_name=args.peering,
            priority=args.priority if args.priority is not None else secrets.randbelow(10**6) + 1,
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            liveness_endpoint=f"http://{host}:{args.liveness_port}/healthz",
            memo=kopf.Memo(runtime=runtime),
        )
    finally:
        pool.close()
    return 0


def _demo(args: argparse.Namespace) -> int:
    # Imported here: the sandbox extras it needs are not in the production image.
    from .sandbox.demo import DemoOptions, run

    interactive = sys.stdout.isatty() and not args.non_interactive
    return run(DemoOptions(interactive=interactive, keep_running=args.keep_running))


def _crd(args: argparse.Namespace) -> int:
    from .crd import render_crd

    sys.stdout.write(render_crd())
    return 0


def _apidoc(args: argparse.Namespace) -> int:
    from .apidoc import render_api_reference

    print(render_api_reference(), end="")
    return 0


def _monitoring(args: argparse.Namespace) -> int:
    from .monitoring import alerts, dashboard

    if args.artefact == "dashboard":
        print(dashboard.render_json(dashboard.dashboard()), end="")
        return 0
    thresholds = alerts.AlertThresholds()
    if args.artefact == "rules":
        document = alerts.rules_file(thresholds)
    else:
        document = alerts.prometheus_rule(thresholds)
    print(alerts.render_yaml(document), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="proxmox-vm-operator",
        description="Reconcile Proxmox VE virtual machines from ProxmoxVM custom resources.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the operator")
    run.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch this namespace (repeatable; glob patterns allowed)",
    )
    run.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        help="watch every namespace (the default when no -n is given)",
    )
    run.add_argument("--metrics-port", type=int, default=8000, help="Prometheus /metrics port")
    run.add_argument("--liveness-port", type=int, default=8080, help="liveness /healthz port")
    run.add_argument(
        "--bind-address",
        default="0.0.0.0",  # noqa: S104 - in a pod, probes and Prometheus come from outside
        help="address of both endpoints",
    )
    run.add_argument(
        "--stall-after",
        type=float,
        default=600,
        help="seconds after which a destroy that cannot progress sets DeletionStalled",
    )
    run.add_argument(
        "--max-tasks-per-node",
        type=int,
        default=4,
        help="most Proxmox tasks the operator keeps in flight on one node",
    )
    run.add_argument(
        "--full-check-seconds",
        type=float,
        default=3600.0,
        help="how often an idle object's VM is compared with its spec in full (config, power, "
        "pending changes); between, the drift check every minute compares the shared "
        "cluster listing (power state, node, tags, lock) and calls nothing when it agrees",
    )
    run.add_argument(
        "--secret-reread-seconds",
        type=float,
        default=60.0,
        help="how long a credentials Secret, once read, is used without reading it again "
        "(a 401 from Proxmox reads it again at once); 0 reads it on every pass",
    )
    run.add_argument(
        "--standalone",
        action="store_true",
        help="run without kopf peering (only one operator replica may run then)",
    )
    run.add_argument(
        "--peering",
        metavar="NAME",
        default=None,
        help="the kopf peering object to use, and refuse to run without it (by default kopf "
        "uses 'default' if it exists and runs unpeered otherwise, which lets two replicas "
        "act on the same objects)",
    )
    run.add_argument(
        "--priority",
        type=int,
        default=None,
        help="kopf peering priority; the highest-priority replica works, the others stand by. "
        "Default: a random value, so replicas of one Deployment never tie (kopf pauses all "
        "operators that see a peer of equal priority)",
    )
    run.add_argument("--log-format", choices=("plain", "full", "json"), default="full")
    run.add_argument("-v", "--verbose", action="store_true")
    run.set_defaults(run=_run)

    sim = commands.add_parser(
        "simulator", help="serve the Proxmox VE API simulator over TLS (tests, demo, benchmarks)"
    )
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8006)
    sim.add_argument("--nodes", default="pve1", help="comma-separated node names")
    sim.add_argument(
        "--token",
        action="append",
        default=[],
        metavar="USER@REALM!NAME[=SECRET]",
        help="an API token the simulator accepts (repeatable); without =SECRET a random "
        "secret is made, which only --publish-secret reveals (never printed)",
    )
    sim.add_argument("--cert-dir", default=None, help="where to write ca.pem and the server cert")
    sim.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="simulated seconds per real second (0: tasks finish at once)",
    )
    sim.add_argument(
        "--guest-acpi",
        choices=("obey", "ignore"),
        default="obey",
        help="how guests of VMs created through the API react to a graceful shutdown; "
        "'ignore' models a hung guest, which only a stop can power off",
    )
    sim.add_argument(
        "--guest-shutdown-seconds",
        type=float,
        default=3.0,
        help="how long an obeying guest takes to power off (simulated seconds)",
    )
    sim.add_argument(
        "--template",
        action="append",
        default=[],
        metavar="VMID[@NODE]",
        help="start with a template VM to clone from (repeatable; node: the first of --nodes)",
    )
    sim.add_argument(
        "--tls-san",
        action="append",
        default=[],
        metavar="HOST",
        help="another DNS name or IP address the server certificate is valid for (repeatable)",
    )
    sim.add_argument(
        "--advertise-endpoint",
        default=None,
        metavar="URL",
        help="the URL clients reach the simulator at, e.g. https://pve-simulator.ns.svc:8006; "
        "published by --publish-secret and added to the server certificate",
    )
    sim.add_argument(
        "--publish-secret",
        action="append",
        default=[],
        metavar="NAMESPACE/NAME",
        help="once serving, write the operator's credentials Secret (endpoint, tokenId, "
        "tokenSecret of the first --token, caCert) through the Kubernetes API (in-cluster "
        "service account or kubeconfig) and keep it so (repeatable)",
    )
    sim.add_argument(
        "--publish-resync",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how often a published Secret is checked and put back if changed or deleted",
    )
    sim.add_argument(
        "--pve-version",
        default="9.1.1",
        metavar="VERSION",
        help="the Proxmox VE release to behave as, 7.4 up to 9.x (GET /version; e.g. 8.1.4 "
        "refuses the stop parameter overrule-shutdown, which came with 8.2)",
    )
    sim.add_argument(
        "--control-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve the plain-HTTP control endpoint (POST /control/<method>: faults, "
        "outages, ACLs, guests) on this port; off by default, 0 picks a free port",
    )
    sim.add_argument(
        "--control-host",
        default="127.0.0.1",
        help="address of the control endpoint (it has no authentication: keep it private)",
    )
    sim.set_defaults(run=_simulator)

    crd = commands.add_parser("crd", help="print the ProxmoxVM CRD generated from the models")
    crd.set_defaults(run=_crd)

    demo = commands.add_parser(
        "demo",
        help="the sandbox: simulator, local Kubernetes API, operator and kubectl, on this "
        "machine alone, playing three destroys",
    )
    demo.add_argument(
        "--non-interactive",
        action="store_true",
        help="plain lines, no spinner or colours (the default when stdout is not a terminal); "
        "the exit code says whether every act's checks held",
    )
    demo.add_argument(
        "--keep-running",
        action="store_true",
        help="leave the sandbox up after the story, with a kubeconfig to try it; Ctrl-C ends it",
    )
    demo.set_defaults(run=_demo)

    apidoc = commands.add_parser(
        "apidoc", help="print the API reference (docs/api.md) generated from the CRD"
    )
    apidoc.set_defaults(run=_apidoc)

    monitoring = commands.add_parser(
        "monitoring",
        help="print a monitoring artefact generated from code (the files in manifests/monitoring)",
    )
    monitoring.add_argument(
        "artefact",
        choices=("rules", "prometheus-rule", "dashboard"),
        help="a Prometheus rules file, the same rules as a PrometheusRule, or the Grafana "
        "dashboard JSON",
    )
    monitoring.set_defaults(run=_monitoring)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
