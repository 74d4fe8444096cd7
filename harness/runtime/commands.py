"""The fixture app's command line, the same for every runtime and for Compose files."""

from __future__ import annotations

from harness.topology import Topology


def replica_command(topology: Topology, rid: str, *, host: str = "0.0.0.0", port: int = 8080,
                    python: str = "python3", store_url: str | None = None) -> list[str]:
    """Replica `rid` of `topology` listening on host:port (all of a container's addresses
    by default), with the session store at `store_url` when the app uses a shared one."""
    region = next((r.region for r in topology.replicas if r.id == rid), None)
    app = topology.app
    cmd = [python, "-m", "harness.app", "--id", rid, "--host", host,
           "--port", str(port), "--session-cookie", app.session_cookie]
    if app.affinity_cookie:
        cmd += ["--affinity-cookie", app.affinity_cookie]
    if region:
        cmd += ["--region", region]
    if app.replay_mode:
        cmd += ["--replay-mode", app.replay_mode,
                "--peers", ",".join(r.id for r in topology.replicas)]
    if app.leader:
        cmd += ["--leader", app.leader]
    if app.replay_cache_ttl:
        cmd += ["--replay-cache-ttl", str(app.replay_cache_ttl)]
    if app.replay_options:
        cmd += ["--replay-options", app.replay_options]
    if app.health_path != "/healthz":
        cmd += ["--health-path", app.health_path]
    if store_url:
        cmd += ["--session-store", store_url]
    return cmd
