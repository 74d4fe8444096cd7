"""Docker Compose files for topologies, rendered from the same balancer templates as the
runtimes, for starting a topology by hand: `docker-compose up` (Compose v1, Debian's 1.29)
or `docker compose up` (v2) in compose/topologies/<name>/.

Each topology gets a directory with docker-compose.yml and the balancer's config. The file
uses format 2.4, which both Compose versions accept, fixed addresses on one network (as in
the containers runtime), and the balancer published on 127.0.0.1 only. For a config topology
the config is the user's file rewritten onto those addresses, and the user's folder (where
the rewrite finds certificates and maps) is mounted read-only at its own path.
"""

from __future__ import annotations

import ipaddress
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from harness.balancers import Endpoint, Layout
from harness.runtime import images, store
from harness.runtime.commands import replica_command
from harness.runtime.containers import (
    BALANCER_OFFSET,
    PORT,
    REPLICA_OFFSET,
    STORE_OFFSET,
    WORKDIR,
    container_adapter,
    extra_listeners,
    in_image,
)
from harness.topology import Topology

DEFAULT_SUBNET = "172.31.250.0/24"
IMAGE = f"${{STICKLER_IMAGE:-{images.NODE_REPO}:latest}}"
HEADER = """\
# Rendered by `stickler compose render` from {source}. Do not edit; render again.
# Needs the image: `stickler images build` (tags {repo}:latest).
# Start: docker-compose up  (or: docker compose up). The balancer answers on
# {scheme}://127.0.0.1:${{STICKLER_PORT:-8080}}/ ; reload it after editing {config}:
# {reload}
"""


def render(topology: Topology, subnet: str = DEFAULT_SUBNET) -> dict[str, str]:
    """File name -> text: docker-compose.yml and the balancer's config."""
    net = ipaddress.ip_network(subnet)
    if net.num_addresses < REPLICA_OFFSET + len(topology.replicas) + 2:
        raise ValueError(f"subnet {subnet} is too small for {len(topology.replicas)} replicas")
    adapter = container_adapter(topology.kind)
    replicas = {r.id: Endpoint(str(net.network_address + REPLICA_OFFSET + i), PORT)
                for i, r in enumerate(topology.replicas)}
    balancer_ip = str(net.network_address + BALANCER_OFFSET)
    # Published ports reach the balancer from the network's gateway (Docker takes .1).
    layout = Layout(Endpoint("0.0.0.0", PORT), replicas, WORKDIR,
                    trusted=str(net.network_address + 1))
    layout.secret = images.digest("compose", topology.name)  # stable, so renders diff clean
    name = adapter.config_name_for(topology)
    volumes = [f"./{name}:{WORKDIR / name}:ro"]
    if topology.config is not None:
        # A user's config: its further listeners, and its folder (certificates, maps, error
        # pages, which the rewrite names by their paths there) mounted read-only.
        layout.extra = extra_listeners(topology)
        volumes.append(f"{topology.config.folder}:{topology.config.folder}:ro")
    config = adapter.render(topology, layout)
    config_path = WORKDIR / name
    services: dict[str, Any] = {
        "balancer": {
            "image": IMAGE,
            "init": True,
            "command": in_image(topology.kind, adapter.command(config_path, layout)),
            **({"environment": adapter.environment(layout)} if adapter.environment(layout)
               else {}),
            "ports": [f"127.0.0.1:${{STICKLER_PORT:-8080}}:{PORT}"],
            "volumes": volumes,
            "depends_on": list(replicas),
            "networks": {"stickler": {"ipv4_address": balancer_ip}},
        },
    }
    store_url = None
    if topology.app.session_store == "redis":
        store_ip = str(net.network_address + STORE_OFFSET)
        store_url = store.url(store_ip, store.PORT)
        services[store.NAME] = {
            "image": IMAGE,
            "init": True,
            "command": store.redis_command("0.0.0.0", store.PORT, "/tmp", binary="redis-server"),
            "networks": {"stickler": {"ipv4_address": store_ip}},
        }
    for rid, ep in replicas.items():
        services[rid] = {
            "image": IMAGE,
            "init": True,
            "command": replica_command(topology, rid, store_url=store_url),
            **({"depends_on": [store.NAME]} if store_url else {}),
            "networks": {"stickler": {"ipv4_address": ep.host}},
        }
    doc = {"version": "2.4", "services": services,
           "networks": {"stickler": {"ipam": {"config": [{"subnet": subnet}]}}}}
    reload_argv = adapter.reload_command(config_path, layout)
    reload = (f"docker-compose exec balancer {' '.join(in_image(topology.kind, reload_argv))}"
              if reload_argv else
              f"docker-compose kill -s {adapter.reload_signal.name.removeprefix('SIG')} balancer")
    header = HEADER.format(source=_source(topology), repo=images.NODE_REPO, config=name,
                           reload=reload, scheme="https" if topology.tls else "http")
    text = header + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=100)
    return {"docker-compose.yml": text, name: config}


class _Dumper(yaml.SafeDumper):
    """Lists of plain values (commands, ports) on one line: easier to read and edit."""


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = all(isinstance(x, str | int) for x in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def _source(topology: Topology) -> str:
    if not topology.source:
        return topology.name
    root = Path(__file__).resolve().parents[1]
    path = Path(topology.source).resolve()
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def write(topology: Topology, out_dir: Path, subnet: str = DEFAULT_SUBNET) -> list[Path]:
    """Write the files into out_dir/<topology name>/, each by temp file and rename."""
    files = render(topology, subnet)
    target = out_dir / topology.name
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=target)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target / name)
        written.append(target / name)
    return written
