"""The Docker environment: defaults for Testcontainers, and a client that says clearly when
no daemon answers.

Testcontainers would start Ryuk (its reaper image cannot be pulled without a registry) and,
inside a container (/.dockerenv), would reach published ports through the bridge gateway.
Stickler cleans up by label itself (harness/runtime/containers.py) and publishes ports on
127.0.0.1, so both defaults are set here unless the user set them.
"""

from __future__ import annotations

import os

from harness.errors import MissingDependency

DEFAULTS = {"TESTCONTAINERS_RYUK_DISABLED": "true", "TC_HOST": "127.0.0.1"}
HINT = ("start one with '.ci/dockerd.sh start' (as root: installs docker.io if missing and "
        "runs dockerd in the background; '.ci/dockerd.sh stop' stops it)")


def apply_defaults(environ: dict[str, str] | None = None) -> None:
    env = os.environ if environ is None else environ
    for key, value in DEFAULTS.items():
        env.setdefault(key, value)


def client():
    """A docker SDK client for the daemon, or MissingDependency naming the way out."""
    apply_defaults()
    try:
        import docker
    except ImportError:
        raise MissingDependency("the docker SDK is not installed; pip install docker") from None
    try:
        c = docker.from_env(timeout=120)
        c.ping()
        return c
    except Exception as exc:  # docker raises several kinds here: all mean "no daemon"
        raise MissingDependency(f"no Docker daemon answers ({type(exc).__name__}); "
                                f"{HINT}") from None


def available() -> bool:
    try:
        client().close()
        return True
    except MissingDependency:
        return False
