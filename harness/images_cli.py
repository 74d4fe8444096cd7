"""`stickler images build` and `stickler clean`: the containers runtime's images and leftovers."""

from __future__ import annotations

import argparse
import time


def add_parser(sub: argparse._SubParsersAction) -> None:
    images = sub.add_parser("images", help="build the container images the topologies need")
    images.add_argument("action", choices=["build"])
    images.add_argument("--offline", action="store_true",
                        help="make the base from a debootstrap rootfs (automatic when no "
                             "registry answers)")
    images.add_argument("--base", default=None, metavar="IMAGE",
                        help="a Debian-based image to build on (default: debian:bookworm-slim "
                             "when a registry answers)")
    images.set_defaults(func=cmd_images)

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


def cmd_clean(args: argparse.Namespace) -> int:
    from harness.runtime import containers

    removed = containers.clean(everything=args.all)
    for kind, name in removed:
        print(f"removed {kind} {name}")
    print(f"{len(removed)} removed")
    return 0
