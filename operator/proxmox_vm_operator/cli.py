"""The ``proxmox-vm-operator`` command line."""

from __future__ import annotations

import argparse
import logging
import secrets
import signal
import sys
import threading
from collections.abc import Sequence


def _simulator(args: argparse.Namespace) -> int:
    from .simulator import GuestBehaviour, Simulator

    tokens: dict[str, str] = {}
    for token in args.token:
        token_id, sep, secret = token.rpartition("=")
        if not sep or "!" not in token_id:
            print(
                "--token must look like 'user@realm!name=SECRET'",
                file=sys.stderr,
            )
            return 2
        tokens[token_id] = secret
    simulator = Simulator(
        nodes=[n for n in args.nodes.split(",") if n],
        tokens=tokens,
        host=args.host,
        port=args.port,
        time_scale=args.time_scale,
        cert_dir=args.cert_dir,
        default_guest=GuestBehaviour(
            obeys_acpi=args.guest_acpi == "obey", shutdown_seconds=args.guest_shutdown_seconds
        ),
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with simulator:
        print(f"endpoint: {simulator.endpoint}", flush=True)
        print(f"ca-file: {simulator.ca_file}", flush=True)
        print(f"nodes: {args.nodes}", flush=True)
        print(f"tokens: {', '.join(tokens) or '(none)'}", flush=True)
        print(f"guests: {args.guest_acpi} ACPI shutdown requests", flush=True)
        stop.wait()
    return 0


def _run(args: argparse.Namespace) -> int:
    import kopf
    import prometheus_client

    from . import handlers, kube, metrics
    from .controller.budget import TaskBudget
    from .controller.connections import ClientPool
    from .controller.destroyer import Destroyer
    from .controller.reconciler import Reconciler

    if args.namespace and args.all_namespaces:
        print("use either -n/--namespace or -A/--all-namespaces", file=sys.stderr)
        return 2
    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat[args.log_format.upper()])
    logging.getLogger("kopf.objects").addFilter(handlers.ProgressLogFilter())
    kube.configure()

    settings = handlers.operator_settings(standalone=args.standalone)

    pool = ClientPool(observer=metrics.observe_api_call)
    budget = TaskBudget(args.max_tasks_per_node)  # shared: one limit per node for all work
    runtime = handlers.Runtime(
        reconciler=Reconciler(pool, budget),
        destroyer=Destroyer(pool, budget, stall_after=args.stall_after),
        tracker=metrics.DestroyTracker(),
    )
    prometheus_client.start_http_server(args.metrics_port, addr=args.bind_address)
    host = f"[{args.bind_address}]" if ":" in args.bind_address else args.bind_address
    try:
        kopf.run(
            registry=handlers.registry,
            settings=settings,
            standalone=args.standalone,
            priority=args.priority if args.priority is not None else secrets.randbelow(10**6) + 1,
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            liveness_endpoint=f"http://{host}:{args.liveness_port}/healthz",
            memo=kopf.Memo(runtime=runtime),
        )
    finally:
        pool.close()
    return 0


def _crd(args: argparse.Namespace) -> int:
    from .crd import render_crd

    sys.stdout.write(render_crd())
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
        "--standalone",
        action="store_true",
        help="run without kopf peering (only one operator replica may run then)",
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
        metavar="USER@REALM!NAME=SECRET",
        help="an API token the simulator accepts (repeatable)",
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
    sim.set_defaults(run=_simulator)

    crd = commands.add_parser("crd", help="print the ProxmoxVM CRD generated from the models")
    crd.set_defaults(run=_crd)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
