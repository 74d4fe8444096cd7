"""`stickler images build`, `stickler compose render` and `stickler clean`: the containers
runtime's images, Compose files and leftovers."""

from __future__ import annotations

import argparse
import time


def add_parser(sub: argparse._SubParsersAction) -> None:
    images = sub.add_parser("images", help="build the container images the topologies need")
    images.add_argument("action", choices=["build"], help="build: the node image (and its "
                        "offline base when no registry answers)")
    images.add_argument("--offline", action="store_true",
                        help="make the base from a debootstrap rootfs (automatic when no "
                             "registry answers)")
    images.add_argument("--base", default=None, metavar="IMAGE",
                        help="a Debian-based image to build on (default: debian:bookworm-slim "
                             "when a registry answers)")
    images.set_defaults(func=cmd_images)

    compose = sub.add_parser("compose", help="render docker-compose files for topologies")
    compose.add_argument("action", choices=["render"],
                         help="render: write docker-compose.yml and the balancer config")
    compose.add_argument("files", nargs="*", metavar="TOPOLOGY",
                         help="topology YAML files (default: fixtures/topologies/*.yaml)")
    compose.add_argument("--topology", action="append", default=[], metavar="FILE",
                         help="a topology YAML file (repeatable), as other commands take it")
    compose.add_argument("--out-dir", default=None, metavar="DIR",
                         help="write DIR/<topology>/ (default: compose/topologies/)")
    compose.add_argument("--out", dest="out_dir", help=argparse.SUPPRESS)  # the old spelling
    compose.add_argument("--subnet", default=None, metavar="CIDR",
                         help="the network's subnet (default: 172.31.250.0/24)")
    compose.set_defaults(func=cmd_compose)

    clean = sub.add_parser("clean", help="remove containers and networks that crashed runs left")
    clean.add_argument("--all", action="store_true",
                       help="remove every Stickler container and network, live runs' too")
    clean.set_defaults(func=cmd_clean)


def cmd_images(args: argparse.Namespace) -> int:
    from harness.errors import InputError
    from harness.runtime import images

    if args.offline and args.base:
        raise InputError("--offline builds its own base; drop --base or --offline",
                         key="--base")
    start = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - start:6.1f}s] {message}", flush=True)

    tag = images.build(base=args.base, offline=args.offline or None, log=log)
    print(f"{tag} ready in {time.monotonic() - start:.1f}s")
    return 0


def cmd_compose(args: argparse.Namespace) -> int:
    import ipaddress
    from pathlib import Path

    from harness import compose
    from harness.errors import InputError
    from harness.suite import ROOT, TOPOLOGY_DIR
    from harness.topology import load_topology

    subnet = args.subnet or compose.DEFAULT_SUBNET
    try:
        ipaddress.ip_network(subnet)
    except ValueError as exc:
        raise InputError(f"expected a subnet like 172.31.250.0/24: {exc}", key="--subnet") \
            from None
    files = [*args.files, *args.topology] or sorted(str(p) for p in TOPOLOGY_DIR.glob("*.yaml"))
    topologies = [load_topology(f) for f in files]  # all validated before any output
    out = Path(args.out_dir) if args.out_dir else ROOT / "compose" / "topologies"
    for topology in topologies:
        try:
            written = compose.write(topology, out, subnet)
        except ValueError as exc:
            raise InputError(str(exc), key="--subnet") from None
        print(f"{topology.source}: {written[0].parent}/")
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    from harness.runtime import containers

    removed = containers.clean(everything=args.all)
    for kind, name in removed:
        print(f"removed {kind} {name}")
    print(f"{len(removed)} removed")
    return 0
