"""Images for the containers runtime, built locally and tagged by a hash of their inputs.

One image, `stickler-node`, runs every part of a cluster: HAProxy, NGINX, the fixture app
and the reference proxy. It is built from compose/images/node/Dockerfile on top of a base:

- an official image (default `debian:bookworm-slim`) where a registry answers, or
- with `offline` (automatic when no registry answers), a Debian rootfs made by
  `debootstrap --variant=minbase` from the machine's apt mirror, `docker import`ed.

The rootfs tarball is cached under $STICKLER_CACHE (default ~/.cache/stickler), and every
image is tagged with a hash of what went into it, so a second build is a lookup.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from harness.errors import MissingDependency, SticklerError
from harness.runtime import docker_env

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE_DIR = ROOT / "compose" / "images" / "node"
SOURCES = ROOT / "harness"
NODE_REPO = "stickler-node"
BASE_REPO = "stickler-base"
OFFICIAL_BASE = "debian:bookworm-slim"
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# What the base must hold: the balancers, and Python with the app's and proxy's imports.
PACKAGES = ("haproxy", "nginx-light", "caddy", "apache2", "redis-server", "python3",
            "python3-aiohttp", "python3-yaml", "python3-jinja2", "python3-uvloop",
            "python3-httptools", "python3-redis", "ca-certificates")
# Bump when the rootfs recipe below changes, so cached tarballs are not reused.
RECIPE = "2"

Log = Callable[[str], None]


class ImageError(SticklerError):
    """An image could not be built."""


def cache_dir() -> Path:
    base = os.environ.get("STICKLER_CACHE") or Path.home() / ".cache" / "stickler"
    path = Path(base) / "images"
    path.mkdir(parents=True, exist_ok=True)
    return path


def digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:16]


def apt_mirror(sources: Path = Path("/etc/apt")) -> str:
    """The machine's Debian mirror for `SUITE` (deb822 .sources or one-line lists)."""
    for f in sorted((sources / "sources.list.d").glob("*.sources")):
        for stanza in f.read_text(errors="replace").split("\n\n"):
            fields = dict(re.findall(r"^(\w[\w-]*):\s*(.+)$", stanza, re.M))
            if SUITE in fields.get("Suites", "").split() and "URIs" in fields:
                return fields["URIs"].split()[0]
    for f in [sources / "sources.list", *sorted((sources / "sources.list.d").glob("*.list"))]:
        if f.exists():
            m = re.search(rf"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+{SUITE}\s", f.read_text(), re.M)
            if m:
                return m.group(1)
    return DEFAULT_MIRROR


def rootfs_tarball(log: Log, mirror: str | None = None) -> Path:
    """A cached tar of a minimal Debian rootfs with PACKAGES (debootstrap on a miss)."""
    mirror = mirror or apt_mirror()
    key = digest(RECIPE, SUITE, mirror, *PACKAGES)
    tarball = cache_dir() / f"rootfs-{SUITE}-{key}.tar"
    if tarball.exists():
        log(f"rootfs: cached {tarball}")
        return tarball
    if not shutil.which("debootstrap"):
        raise MissingDependency("debootstrap is not installed; install it with "
                                "'apt-get install debootstrap' (needed for offline images)")
    if os.geteuid() != 0:
        raise ImageError("building the offline base runs debootstrap, which needs root")
    work = Path(tempfile.mkdtemp(prefix="stickler-rootfs-", dir=cache_dir()))
    try:
        rootfs = work / "rootfs"
        log(f"rootfs: debootstrap --variant=minbase {SUITE} from {mirror} (a few minutes)")
        _run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
              SUITE, str(rootfs), mirror], "debootstrap")
        # Smaller image: no package caches, lists, docs or locales.
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc",
                     "usr/share/man", "usr/share/locale", "usr/share/info"):
            shutil.rmtree(rootfs / junk, ignore_errors=True)
        (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
        (rootfs / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
        partial = work / "rootfs.tar"
        _run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(partial), "."], "tar")
        partial.replace(tarball)  # whole or not at all
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"rootfs: {tarball} ({tarball.stat().st_size / 2**20:.0f} MiB)")
    return tarball


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip()[-3000:]
        raise ImageError(f"{what} failed (exit {proc.returncode}):\n{tail}")


def _local(client, ref: str):
    import docker.errors

    try:
        return client.images.get(ref)
    except docker.errors.ImageNotFound:
        return None


def offline_base(client, log: Log) -> str:
    """`stickler-base:<hash of the rootfs recipe>`, imported from the cached rootfs."""
    mirror = apt_mirror()
    tag = f"{BASE_REPO}:{digest(RECIPE, SUITE, mirror, *PACKAGES)}"
    if _local(client, tag):
        log(f"base: {tag} (present)")
        return tag
    tarball = rootfs_tarball(log, mirror)
    log(f"base: docker import {tarball.name} as {tag}")
    repo, _, version = tag.partition(":")
    with tarball.open("rb") as data:
        client.api.import_image_from_data(
            data, repository=repo, tag=version,
            changes=['ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
                     'CMD ["/bin/bash"]'])
    if not _local(client, tag):
        raise ImageError(f"docker import of {tarball} did not produce {tag}")
    return tag


def resolve_base(client, base: str | None, offline: bool, log: Log) -> str:
    """The base image reference to build on, pulling or making it when missing."""
    import docker.errors

    if offline:
        return offline_base(client, log)
    wanted = base or OFFICIAL_BASE
    if _local(client, wanted):
        return wanted
    if base is None:
        # A base made offline earlier is as good as the official one: no registry round trip.
        made = _local(client, f"{BASE_REPO}:{digest(RECIPE, SUITE, apt_mirror(), *PACKAGES)}")
        if made:
            return made.tags[0]
    try:
        log(f"base: pulling {wanted}")
        client.images.pull(wanted)
        return wanted
    except docker.errors.APIError as exc:
        if base is not None:
            raise ImageError(f"cannot pull the base image {base!r}: {exc.explanation}; "
                             f"use --offline to build a base without a registry") from None
        log(f"base: no registry answers ({exc.explanation}); building the offline base")
        return offline_base(client, log)


def _source_files() -> list[Path]:
    return sorted(p for p in SOURCES.rglob("*.py") if "__pycache__" not in p.parts)


def node_tag(client, base_ref: str) -> str:
    """`stickler-node:<hash>` of the Dockerfile, the base image's id and the harness sources."""
    base_id = client.images.get(base_ref).id
    parts: list[bytes | str] = [base_ref, base_id]
    for f in sorted(DOCKERFILE_DIR.iterdir()):
        parts += [f.name, f.read_bytes()]
    for f in _source_files():
        parts += [str(f.relative_to(ROOT)), f.read_bytes()]
    return f"{NODE_REPO}:{digest(*parts)}"


def build(client=None, *, base: str | None = None, offline: bool | None = None,
          log: Log = print) -> str:
    """Build (or find) the node image and return its tag."""
    client = client or docker_env.client()
    base_ref = resolve_base(client, base, bool(offline), log)
    tag = node_tag(client, base_ref)
    if _local(client, tag):
        log(f"node: {tag} (up to date)")
        _tag_latest(client, tag)
        return tag
    with tempfile.TemporaryDirectory(prefix="stickler-build-") as ctx:
        for f in DOCKERFILE_DIR.iterdir():
            shutil.copy(f, ctx)
        for f in _source_files():
            dest = Path(ctx) / f.relative_to(ROOT)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, dest)
        log(f"node: docker build {tag} on {base_ref}")
        import docker.errors

        try:
            client.images.build(path=ctx, tag=tag, buildargs={"BASE": base_ref}, rm=True,
                                forcerm=True, labels={"stickler.image": "node"})
        except docker.errors.BuildError as exc:
            lines = "".join(str(c.get("stream", c.get("error", ""))) for c in exc.build_log)
            raise ImageError(f"docker build of {tag} failed: {exc.msg}\n{lines[-3000:]}") \
                from None
    _tag_latest(client, tag)
    _remove_older(client, tag, log)
    return tag


def _remove_older(client, keep: str, log: Log) -> None:
    """Drop node images of earlier inputs, so edits to the harness do not pile up images.
    An image a running cluster uses is refused by Docker, and stays."""
    import docker.errors

    for image in client.images.list(NODE_REPO):
        if keep in image.tags:
            continue
        for old in image.tags:
            try:
                client.images.remove(old)
                log(f"node: removed the older {old}")
            except docker.errors.APIError:
                pass


def _tag_latest(client, tag: str) -> None:
    """`stickler-node:latest` names the last build, for Compose files and by-hand use."""
    client.images.get(tag).tag(NODE_REPO, "latest")


def ensure_node_image(client, log: Log = lambda _: None) -> str:
    """The node image for a run: built on first use, found by its input hash afterwards."""
    override = os.environ.get("STICKLER_NODE_IMAGE")
    if override:
        return override
    return build(client, base=os.environ.get("STICKLER_BASE_IMAGE") or None,
                 offline=os.environ.get("STICKLER_OFFLINE") == "1" or None, log=log)
