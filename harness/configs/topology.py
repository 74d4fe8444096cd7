"""A config topology: the user's balancer config in front of N replicas.

    balancer: {kind: haproxy, config: ./haproxy.cfg, backend: app}
    replicas: 3

Its mode, options, health checks and client-address transport are what was found in the
file (harness/configs), so the expectations of the mechanism the config really has judge it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import MappingProxyType
from typing import Any

from harness.balancers import ADAPTERS, option_default
from harness.configs import KINDS, Finding, UserConfig, detect_kind, read_config
from harness.errors import InputError
from harness.topology import (
    CONFIG_KEYS,
    MAX_REPLICAS,
    SUITE_NAME,
    TOKEN,
    AppSettings,
    Replica,
    Topology,
)
from harness.yamlsrc import Doc

APP_KEYS = ("session_cookie", "session_store")


def config_topology(doc: Doc, data: dict[str, Any]) -> Topology:
    bal = doc.mapping(data["balancer"], "balancer", CONFIG_KEYS)
    raw_path = bal.get("config")
    if not isinstance(raw_path, str) or not raw_path:
        raise doc.error("balancer.config", "expected the path of your balancer's config file")
    path = (Path(doc.file).parent / raw_path).resolve()
    kind = bal.get("kind")
    if kind is None and path.is_file():
        kind = detect_kind(path)
    if kind not in KINDS:
        raise doc.error("balancer.kind", f"expected the kind of the config: one of "
                        f"{', '.join(KINDS)}; got {kind!r}")
    backend = bal.get("backend")
    if backend is not None and not isinstance(backend, str):
        raise doc.error("balancer.backend", f"expected a backend name, got {backend!r}")
    replicas = data.get("replicas")
    if replicas is not None and (not isinstance(replicas, int) or isinstance(replicas, bool)
                                 or not 1 <= replicas <= MAX_REPLICAS):
        raise doc.error("replicas", f"expected 1 to {MAX_REPLICAS} replicas (default: one per "
                        f"server line of the backend), got {replicas!r}")
    app = doc.mapping(data.get("app") or {}, "app", APP_KEYS)
    session_cookie = app.get("session_cookie", "sid")
    if not isinstance(session_cookie, str) or not TOKEN.match(session_cookie):
        raise doc.error("app.session_cookie", f"expected your app's session cookie name, got "
                        f"{session_cookie!r}")
    store = app.get("session_store", "memory")
    if store not in ("memory", "redis"):
        raise doc.error("app.session_store", f"expected memory or redis, got {store!r}")
    suites = data.get("suites", [])
    if not isinstance(suites, list) or not all(isinstance(x, str) and SUITE_NAME.match(x)
                                                 for x in suites):
        raise doc.error("suites", "expected a list of suite names, e.g. [failover]")
    config = read_config(kind, path, backend)
    tls_ca = bal.get("tls_ca")
    if tls_ca is not None:
        ca = (Path(doc.file).parent / str(tls_ca)).resolve()
        if not isinstance(tls_ca, str) or not ca.is_file():
            raise doc.error("balancer.tls_ca", f"expected the path of a CA file (PEM) to "
                            f"check the frontend's certificate against; no file {ca}")
        config = dataclasses.replace(config, tls_ca=str(ca))
    client_ip = bal.get("client_ip", config.client_ip)
    if client_ip not in ADAPTERS[kind].client_ip_transports:
        raise doc.error("balancer.client_ip", f"expected one of "
                        f"{', '.join(ADAPTERS[kind].client_ip_transports)}")
    expect = data.get("expect")
    if expect is not None and expect not in ADAPTERS[kind].modes:
        raise doc.error("expect", f"unknown mode {expect!r} for {kind}; expected one of: "
                        f"{', '.join(sorted(ADAPTERS[kind].modes))}")
    name = data.get("name") or Path(doc.file).stem
    if not isinstance(name, str):
        raise doc.error("name", f"expected a string, got {name!r}")
    return build(config, name=name, replicas=replicas, session_cookie=session_cookie,
                 session_store=store, client_ip=client_ip, expect=expect, source=doc.file,
                 description=str(data.get("description") or ""), suites=tuple(suites))


def build(config: UserConfig, *, name: str, replicas: int | None = None,
          session_cookie: str = "sid", session_store: str = "memory",
          client_ip: str | None = None, expect: str | None = None, source: str | None = None,
          description: str = "", suites: tuple[str, ...] = ()) -> Topology:
    """The Topology for a user's config (also what `stickler check` builds from a file)."""
    adapter = ADAPTERS[config.kind]
    count = replicas or len(config.servers)
    ids = config.replica_ids[:count]
    if len(set(ids)) != len(ids):
        raise InputError(f"two servers of {config.backend} would be the same replica "
                         f"({', '.join(ids)}); give them distinct names or cookie values",
                         file=str(config.path))
    n = 1
    while len(ids) < count:
        if f"r{n}" not in ids:
            ids.append(f"r{n}")
        n += 1
    mode = config.mode or ""
    options = dict(config.options)
    if mode:
        spec = adapter.modes[mode]
        options = {k: options.get(k, option_default(d)) for k, d in spec.options.items()}
        if spec.app_session_cookie_from:
            session_cookie = options[spec.app_session_cookie_from]
    if options.get("cookie") == session_cookie and mode in ("cookie-insert", "cookie"):
        config = dataclasses.replace(config, findings=(*config.findings, Finding(
            "warning", f"the affinity cookie {session_cookie} is also your app's session "
            f"cookie: the balancer's value takes the place of the app's", None)))
    affinity = None
    if mode and adapter.modes[mode].app_affinity_cookie_from:
        affinity = options[adapter.modes[mode].app_affinity_cookie_from]
    return Topology(
        name=name, kind=config.kind, mode=mode,
        replicas=tuple(Replica(rid) for rid in ids),
        options=MappingProxyType(options),
        health_check=MappingProxyType(dict(config.health_check)),
        app=AppSettings(session_cookie=session_cookie, affinity_cookie=affinity,
                        session_store=session_store, health_path=config.health_path),
        expect=expect or mode, client_ip=client_ip or config.client_ip, source=source,
        description=description or f"{config.path.name}: {config.mechanism}",
        suites=suites, config=config,
    )
