"""Balancer adapters by kind. A new balancer is one module here plus its template."""

from __future__ import annotations

from harness.balancers.apache import Apache
from harness.balancers.base import Adapter, Choice, Endpoint, Layout, ModeSpec, option_default
from harness.balancers.caddy import Caddy
from harness.balancers.haproxy import HAProxy
from harness.balancers.nginx import Nginx
from harness.balancers.reference import Reference

ADAPTERS: dict[str, Adapter] = {a.kind: a for a in (HAProxy(), Nginx(), Caddy(), Apache(),
                                                  Reference())}


def get_adapter(kind: str) -> Adapter:
    return ADAPTERS[kind]


__all__ = ["ADAPTERS", "Adapter", "Choice", "Endpoint", "Layout", "ModeSpec", "get_adapter",
           "option_default"]
