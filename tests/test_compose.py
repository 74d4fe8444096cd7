"""Compose files: the committed ones match a fresh render of every sample topology, Compose
v1 accepts them, and one really comes up and serves on 127.0.0.1 (then goes away)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from harness import compose
from harness.cli import main
from harness.runtime import docker_env, images, net
from harness.suite import TOPOLOGY_DIR
from harness.topology import load_topology

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "compose" / "topologies"
SAMPLES = sorted(TOPOLOGY_DIR.glob("*.yaml"))
COMPOSE_V1 = shutil.which("docker-compose")
# A user's own config (TLS termination; its certificate in the config's folder).
TLS_CONFIG = ROOT / "fixtures" / "configs" / "haproxy" / "tls-termination" / "topology.yaml"


def test_committed_files_match_the_templates(tmp_path):
    assert main(["compose", "render", "--out", str(tmp_path)]) == 0
    fresh = {p.relative_to(tmp_path): p.read_text() for p in tmp_path.rglob("*") if p.is_file()}
    committed = {p.relative_to(COMMITTED): p.read_text()
                 for p in COMMITTED.rglob("*") if p.is_file()}
    assert sorted(fresh) == sorted(committed), "run `stickler compose render` and commit"
    stale = [str(name) for name, text in fresh.items() if committed[name] != text]
    assert not stale, f"stale Compose files (run `stickler compose render`): {stale}"
    assert len({p.parent for p in fresh}) == len(SAMPLES)


def test_render_puts_replicas_on_fixed_addresses_and_publishes_on_loopback():
    topology = load_topology(TOPOLOGY_DIR / "nginx-ip-hash.yaml")
    files = compose.render(topology, "10.99.0.0/24")
    assert set(files) == {"docker-compose.yml", "nginx.conf"}
    assert "server 10.99.0.10:8080" in files["nginx.conf"]
    assert "127.0.0.1:${STICKLER_PORT:-8080}:8080" in files["docker-compose.yml"]
    with pytest.raises(ValueError, match="too small"):
        compose.render(topology, "10.99.0.0/30")


def test_a_config_topology_gets_its_rewrite_and_its_folder_mounted_read_only():
    topology = load_topology(TLS_CONFIG)
    files = compose.render(topology, "10.99.0.0/24")
    assert set(files) == {"docker-compose.yml", "haproxy.cfg"}
    folder = topology.config.folder
    assert f"{folder}:{folder}:ro" in files["docker-compose.yml"]
    assert "# https://127.0.0.1:" in files["docker-compose.yml"]
    assert "server a1 10.99.0.10:8080 check cookie a1" in files["haproxy.cfg"]
    assert "bind 0.0.0.0:8080 ssl crt certs/shop.pem" in files["haproxy.cfg"]
    assert f"default-path origin {folder}" in files["haproxy.cfg"]


def test_bad_subnet_is_an_input_error(tmp_path, capsys):
    assert main(["compose", "render", "--subnet", "not-a-net", "--out", str(tmp_path)]) == 2
    assert "--subnet" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.skipif(not COMPOSE_V1, reason="docker-compose (v1) is not installed")
@pytest.mark.parametrize("sample", [p.stem for p in SAMPLES])
def test_compose_v1_accepts_the_file(sample):
    proc = subprocess.run([COMPOSE_V1, "config", "-q"], cwd=COMMITTED / sample,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.integration
@pytest.mark.skipif(not COMPOSE_V1 or not docker_env.available(),
                    reason="needs docker-compose and a Docker daemon")
@pytest.mark.parametrize("topology_file, replicas", [
    (TOPOLOGY_DIR / "haproxy-roundrobin.yaml", {"r1", "r2", "r3"}),
    (TLS_CONFIG, {"a1", "a2", "a3"})])
def test_compose_up_serves_through_the_balancer(tmp_path, topology_file, replicas):
    import ssl

    client = docker_env.client()
    image = images.ensure_node_image(client)
    port = net.free_port("127.0.0.1")
    project = f"stickler-itest-{os.getpid()}"
    topology = load_topology(topology_file)
    # A subnet Docker has not handed out, so parallel runs and other stacks do not collide.
    compose.write(topology, tmp_path, "172.31.251.0/24")
    cwd = tmp_path / topology.name
    scheme = "https" if topology.tls else "http"
    unverified = ssl._create_unverified_context()  # the fixture's self-signed certificate
    env = {**os.environ, "STICKLER_IMAGE": image, "STICKLER_PORT": str(port)}
    cmd = [COMPOSE_V1, "-p", project]
    try:
        up = subprocess.run([*cmd, "up", "-d"], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=120)
        assert up.returncode == 0, up.stderr
        seen = set()
        deadline = time.monotonic() + 20
        while len(seen) < 3 and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{scheme}://127.0.0.1:{port}/", timeout=2,
                                            context=unverified) as resp:
                    seen.add(resp.headers["X-Replica"])
            except OSError:
                time.sleep(0.2)
        assert seen == replicas
    finally:
        subprocess.run([*cmd, "down", "-v", "-t", "2"], cwd=cwd, env=env,
                       capture_output=True, timeout=120)
    flt = {"label": f"com.docker.compose.project={project}"}
    assert client.containers.list(all=True, filters=flt) == []
    assert client.networks.list(filters=flt) == []
    client.close()
