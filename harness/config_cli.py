"""`stickler inspect CONFIG` and `stickler check CONFIG`: the user's own balancer config,
what Stickler finds in it and the one line for CI that judges it (harness/configs)."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import yaml

from harness.configs import KINDS
from harness.errors import InputError


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", metavar="CONFIG",
                   help="your haproxy.cfg, nginx.conf, Caddyfile (or Caddy JSON) or "
                        "Apache config (a vhost file or httpd.conf)")
    p.add_argument("--kind", choices=list(KINDS),
                   help="the balancer the config is for (default: from its name)")
    p.add_argument("--backend", metavar="NAME",
                   help="the backend (HAProxy) or upstream (NGINX) to test; may be left out "
                        "when only one receives every request")
    p.add_argument("--replicas", type=int, metavar="N",
                   help="replicas in place of its servers (default: one per server line)")
    p.add_argument("--app-cookie", default="sid", metavar="NAME",
                   help="your app's own session cookie (default: sid)")
    p.add_argument("--tls-ca", metavar="FILE",
                   help="a CA file (PEM) to check a TLS frontend's certificate against "
                        "(default: not checked)")
    p.add_argument("--session-store", default="memory", choices=["memory", "redis"],
                   help="where your app keeps sessions: each server's memory (default) or "
                        "a Redis all servers share")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    ins = sub.add_parser("inspect", help="show what Stickler finds in your balancer config "
                                         "and which checks apply")
    _config_args(ins)
    ins.add_argument("--json", action="store_true", help="print JSON")
    ins.set_defaults(func=cmd_inspect)

    chk = sub.add_parser("check", help="judge your balancer config: every applicable check "
                                       "(exit 0: all pass, 1: a failure or unknown, 2: bad "
                                       "input)")
    _config_args(chk)
    chk.add_argument("--suite", action="append", default=[], metavar="NAME",
                     help="only this suite (repeatable)")
    chk.add_argument("--runtime", default="processes", choices=["processes", "containers"],
                     help="how the cluster is started: local processes (default) or Docker "
                          "containers (the config's folder is copied into the balancer's)")
    chk.add_argument("--seed", type=int, help="rerun with this seed")
    chk.add_argument("--jobs", "-j", metavar="N", help="checks run at once (default: auto)")
    chk.add_argument("--report-dir", metavar="DIR",
                     help="where to write the report (default: reports/<timestamp>/)")
    chk.add_argument("-k", metavar="EXPR", help="pytest -k filter on check ids")
    chk.add_argument("-v", "--verbose", action="store_true",
                     help="one line per check as it ends")
    chk.set_defaults(func=cmd_check)


def _topology_doc(args: argparse.Namespace, path: Path, name: str) -> dict[str, Any]:
    balancer: dict[str, Any] = {"config": str(path)}
    if args.kind:
        balancer["kind"] = args.kind
    if args.backend:
        balancer["backend"] = args.backend
    if getattr(args, "tls_ca", None):
        balancer["tls_ca"] = str(Path(args.tls_ca).resolve())
    doc: dict[str, Any] = {"name": name, "balancer": balancer,
                           "app": {"session_cookie": args.app_cookie,
                                   "session_store": args.session_store}}
    if args.replicas is not None:
        doc["replicas"] = args.replicas
    return doc


def _name(path: Path) -> str:
    """A topology name for a config: its folder for a file named for the balancer."""
    generic = ("haproxy", "nginx", "caddyfile", "caddy", "apache", "apache2", "httpd")
    stem = path.parent.name if path.stem.lower() in generic else path.stem
    return re.sub(r"[^a-z0-9-]+", "-", stem.lower()).strip("-")[:40] or "config"


def load(args: argparse.Namespace):
    """The config topology for the command line (validated by the balancer's own tools),
    and its YAML document (what `check` keeps in the report)."""
    import tempfile

    from harness.topology import load_topology

    path = Path(args.config).resolve()
    if not path.exists():
        raise InputError("no such file", file=args.config)
    doc = _topology_doc(args, path, _name(path))
    with tempfile.TemporaryDirectory(prefix="stickler-config-") as tmp:
        file = Path(tmp) / "topology.yaml"
        file.write_text(yaml.safe_dump(doc, sort_keys=False))
        return load_topology(file), doc


def applicability(topology) -> dict[str, Any]:
    """The checks that apply to a config topology, and for the others of its balancer why
    not (another mechanism, another option, a runtime)."""
    from harness.check import checks_for, when_options
    from harness.expectations import EXPECTATIONS_DIR, load_expectations

    applying = checks_for(topology)
    ids = {e.id for e in applying}
    options = when_options(topology)
    others: dict[str, int] = {}
    differing = []
    for exp in load_expectations(EXPECTATIONS_DIR / f"{topology.kind}.yaml"):
        if exp.id in ids:
            continue
        if topology.expect not in exp.modes:
            for mode in exp.modes:
                others[mode] = others.get(mode, 0) + 1
            continue
        wants = [f"{k}={v}" for k, v in exp.when.items() if options.get(k) != v and not (
            isinstance(v, list) and options.get(k) == tuple(v))]
        store = options.get("app.session_store", "memory")
        if exp.when.get("app.session_store", "memory") != store and not wants:
            wants = [f"app.session_store={exp.when.get('app.session_store', 'memory')}"]
        differing.append({"id": exp.id, "why": "needs " + ", ".join(wants) + " (this config: "
                          + ", ".join(f"{w.split('=')[0]}={options.get(w.split('=')[0])}"
                                      for w in wants) + ")"})
    return {
        "apply": [{"id": e.id, "suite": e.suite, "title": e.title,
                   **({"runtimes": list(e.runtimes)} if e.runtimes else {})} for e in applying],
        "not_apply": differing,
        "other_mechanisms": dict(sorted(others.items())),
    }


def inspection(topology) -> dict[str, Any]:
    config = topology.config
    out = config.to_dict()
    out["judged_as"] = topology.expect or None
    if not topology.expect:
        out["unjudged"] = [f.message for f in config.findings if f.severity == "unjudged"]
    out["checks"] = applicability(topology)
    return out


def cmd_inspect(args: argparse.Namespace) -> int:
    topology, _ = load(args)
    data = inspection(topology)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(render_text(data))
    return 0


def render_text(d: dict[str, Any]) -> str:
    lines = [f"{d['file']} ({d['kind']}): backend {d['backend']}, {len(d['servers'])} servers"]
    for s in d["servers"]:
        where = f"line {s['line']}: " if s["line"] else ""
        lines.append(f"  {where}{s['name']} {s['address']} {' '.join(s['params'])}"
                     f"  -> replica {s['replica']}".replace(f"{s['name']} {s['name']}",
                                                            s["name"]))
    lines.append(f"affinity: {d['mechanism']}")
    if d["judged_as"]:
        opts = ", ".join(f"{k}={'<secret>' if k == 'secret' and v else v}"
                         for k, v in d["options"].items())
        lines.append(f"judged as: {d['kind']} {d['judged_as']} ({opts})")
    else:
        lines.append("judged as: no mechanism Stickler has checks for; the requirements "
                     "still apply")
        lines += [f"  unknown: {why}" for why in d.get("unjudged", [])]
    lines.append(f"client addresses: {d['client_ip']}")
    lines.append("failover:")
    lines += [f"  {k}: {v}" for k, v in d["failover"].items()]
    if d["findings"]:
        lines.append("findings:")
        lines += [f"  {f['severity']}{' line ' + str(f['line']) if f['line'] else ''}: "
                  f"{f['message']}" for f in d["findings"]]
    checks = d["checks"]
    lines.append(f"checks that apply ({len(checks['apply'])}):")
    lines += [f"  {c['suite']:<11} {c['id']}: {c['title']}"
              + (f" [{', '.join(c['runtimes'])} only]" if c.get("runtimes") else "")
              for c in checks["apply"]]
    if checks["not_apply"]:
        lines.append(f"checks of {d['judged_as']} that do not apply "
                     f"({len(checks['not_apply'])}):")
        lines += [f"  {c['id']}: {c['why']}" for c in checks["not_apply"]]
    if checks["other_mechanisms"]:
        lines.append("checks of other mechanisms (not this config's): " + ", ".join(
            f"{m} {n}" for m, n in checks["other_mechanisms"].items()))
    return "\n".join(lines)


def cmd_check(args: argparse.Namespace) -> int:
    import time

    from harness.cli import REPORTS, cmd_conformance
    from harness.report.checks import write_json_atomic

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    report_dir = Path(args.report_dir or REPORTS / stamp)
    if (report_dir / "report.json").exists():
        raise InputError("a report is already there; choose another --report-dir",
                         file=str(report_dir / "report.json"))
    topology, doc = load(args)  # refused before anything is written
    report_dir.mkdir(parents=True, exist_ok=True)
    file = report_dir / "topology.yaml"  # the config topology that runs, kept in the report
    file.write_text(yaml.safe_dump(doc, sort_keys=False))
    data = inspection(topology)
    _keep_rewrite(topology, report_dir)
    print(render_text(data))
    print()
    conf = argparse.Namespace(topology=[str(file)], balancer=[], suite=args.suite,
                              runtime=args.runtime, seed=args.seed, jobs=args.jobs,
                              report_dir=str(report_dir), k=args.k, exitfirst=False,
                              verbose=args.verbose)
    code = cmd_conformance(conf)
    report_file = report_dir / "report.json"
    if report_file.exists():
        report = json.loads(report_file.read_text())
        report["config"] = data
        unknown = data.get("unjudged", [])
        if unknown:
            report["summary"]["unknown"] += len(unknown)
            report["summary"]["total"] += len(unknown)
            report["checks"] += [{"id": f"{topology.kind}.conformance", "title": "What the "
                                  "balancer's docs say this mechanism does",
                                  "topology": topology.name, "balancer": topology.kind,
                                  "verdict": "unknown", "reason": why, "suite": "conformance"}
                                 for why in unknown]
            for why in unknown:
                print(f"UNKNOWN {topology.name} {topology.kind}.conformance: {why}")
            code = max(code, 1)
        from harness.configs.findings import measured

        report["findings"] = measured(report["checks"], data)
        for f in report["findings"]:
            print(f"FINDING {f['check']}: {f['finding']}")
            for said in f["config_says"]:
                print(f"  the config: {said}")
        write_json_atomic(report_file, report)
    return code


def _keep_rewrite(topology, report_dir: Path) -> None:
    """The rewritten config as it runs (with example addresses: each run has its own), and
    what was changed, beside the report."""
    from harness.balancers import Layout
    from harness.configs import rewrite

    layout = Layout.example(topology.replica_ids, report_dir / "run",
                            topology.config.listeners - 1)
    result = rewrite(topology.config, topology, layout)
    name = topology.config.path.name
    (report_dir / f"rewritten-{name}").write_text(result.text)
    (report_dir / "rewrite-notes.txt").write_text("\n".join(result.notes) + "\n")


