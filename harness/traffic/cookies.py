"""A per-user cookie jar for one host (pure; the driver feeds it Set-Cookie values)."""

from __future__ import annotations

from dataclasses import dataclass, field


def parse_set_cookie(value: str) -> tuple[str, str, dict[str, str]]:
    """`name=value; Attr=x; Flag` -> (name, value, {attr: x, flag: ""}); attrs lower-cased."""
    first, *attrs = value.split(";")
    name, _, val = first.partition("=")
    parsed = {}
    for attr in attrs:
        k, _, v = attr.strip().partition("=")
        if k:
            parsed[k.lower()] = v.strip()
    return name.strip(), val.strip().strip('"'), parsed


@dataclass
class CookieJar:
    cookies: dict[str, str] = field(default_factory=dict)

    def update(self, set_cookie_values: list[str]) -> None:
        for raw in set_cookie_values:
            name, value, attrs = parse_set_cookie(raw)
            if not name:
                continue
            if attrs.get("max-age", "").lstrip("-").isdigit() and int(attrs["max-age"]) <= 0:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value

    def header(self) -> str | None:
        if not self.cookies:
            return None
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())
