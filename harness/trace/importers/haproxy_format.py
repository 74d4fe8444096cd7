"""HAProxy custom log formats (`log-format`, configuration.txt 8.2.6) compiled to a regular
expression, so a log written by `option httpslog` or by a user's own `log-format` imports
like an `option httplog` one. Pure.

The format is given as in haproxy.cfg (quotes, `\\ ` for a space and `%%` for a `%` are
undone). Each `%var` (with optional `%{+Q,...}` flags) or `%[sample]` becomes a field of
the regex; the rest must match literally. The fields an import needs: a time (`%tr`,
`%trg`, `%trl`, `%t`, `%T`, `%Tl` or `%Ts`), the request (`%r`, or `%HM` with `%HU`, or
`%HM` with `%HP` and `%HQ`); read when present: `%ci`, `%ST`, `%s`, `%hr`, `%CC`, `%CS`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.errors import InputError

HTTPLOG = ("%ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %CC %CS %tsc "
           "%ac/%fc/%bc/%sc/%rc %sq/%bq %hr %hs %{+Q}r")
# configuration.txt 8.2.4: "strict equivalent of option httpslog"
HTTPSLOG = (HTTPLOG + " %[fc_err]/%[ssl_fc_err,hex]/%[ssl_c_err]/%[ssl_c_ca_err]/"
            "%[ssl_fc_is_resumed] %[ssl_fc_sni]/%sslv/%sslc")
# 8.2.3: "strict equivalent of option httplog clf"
HTTPLOG_CLF = ('%{+Q}o %{-Q}ci - - [%trg] %r %ST %B \\"\\" \\"\\" %cp %ms %ft %b %s %TR %Tw %Tc '
               '%Tr %Ta %tsc %ac %fc %bc %sc %rc %sq %bq %CC %CS %hrl %hsl')
NAMED = {"httplog": HTTPLOG, "httpslog": HTTPSLOG, "httplog-clf": HTTPLOG_CLF}

DATE = r"\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d"
ZONE = r" [+-]\d{4}"
# The variables of the table in 8.2.6, longest first where one is a prefix of another.
VARIABLES = ("HPO", "HM", "HP", "HQ", "HU", "HV", "ID", "CC", "CS", "ST", "Ta", "Tc", "Td",
             "Tl", "Th", "Ti", "Tq", "TR", "Tr", "Ts", "Tt", "Tu", "Tw", "ac", "bc", "bi",
             "bp", "bq", "ci", "cp", "fc", "fi", "fp", "ft", "lc", "hrl", "hr", "hsl", "hs",
             "ms", "pid", "rc", "rt", "sc", "si", "sp", "sq", "sslc", "sslv", "trg", "trl",
             "tr", "tsc", "ts", "B", "H", "T", "U", "b", "f", "o", "r", "s", "t")
FIELD = {
    "t": DATE + r"\.\d{3}", "tr": DATE + r"\.\d{3}", "trg": DATE + ZONE, "trl": DATE + ZONE,
    "T": DATE + ZONE, "Tl": DATE + ZONE, "Ts": r"[0-9A-Fa-f]+", "ms": r"\d{3}",
    "r": r".*?", "hr": r"\{[^}]*\}", "hs": r"\{[^}]*\}",
    # CLF style: each captured header quoted, separated by spaces
    "hrl": r'(?:"[^"]*"(?: "[^"]*")*)?', "hsl": r'(?:"[^"]*"(?: "[^"]*")*)?',
}
OPTIONAL = ("hr", "hs")  # written only when headers are captured
NUMERIC = {"B", "ST", "Ta", "Tc", "Td", "Th", "Ti", "Tq", "TR", "Tr", "Tt", "Tu", "Tw", "U",
           "ac", "bc", "bp", "bq", "cp", "fc", "fp", "lc", "pid", "rc", "rt", "sc", "sp",
           "sq"}
TIMES = ("tr", "trg", "trl", "t", "T", "Tl", "Ts")
# Q quotes strings only, and not all of them (observed on 2.6, `%{+Q}o`: %t, %ST bare; and
# in `option httplog clf` logs: %tsc bare, %hrl quoted header by header)
UNQUOTED = NUMERIC | set(TIMES) | {"ms", "ts", "tsc", "hrl", "hsl"}
TOKEN = re.compile(r"%(?:\{(?P<flags>[^}]*)\})?(?:\[(?P<sample>[^\]]*)\]|(?P<var>"
                   + "|".join(VARIABLES) + r"))")


@dataclass(frozen=True)
class LogFormat:
    pattern: re.Pattern[str]
    fields: tuple[str, ...]  # group i+1 holds fields[i]: a variable name, or "[sample]"
    text: str

    def values(self, match: re.Match[str]) -> dict[str, str]:
        """Each variable's text (the first of a name that occurs twice), without quotes."""
        out: dict[str, str] = {}
        for name, value in zip(self.fields, match.groups(), strict=True):
            if value is not None:
                quoted = len(value) > 1 and value[0] == value[-1] == '"' and \
                    name not in ("hrl", "hsl")
                out.setdefault(name, value[1:-1] if quoted else value)
        return out


def unquote(text: str) -> str:
    """The format as HAProxy reads it from haproxy.cfg: outer quotes gone, `\\ ` a space,
    `%%` a literal `%` (kept as `%%` here: the tokenizer skips it)."""
    text = text.strip()
    if len(text) > 1 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1]
    return re.sub(r"\\(.)", r"\1", text)


def compile_log_format(given: str) -> LogFormat:
    text = unquote(NAMED.get(given, given))
    parts, fields, pos = ["^"], [], 0
    global_flags = ""
    for m in TOKEN.finditer(text):
        if m.start() > 0 and text[m.start() - 1] == "%" and \
                (m.start() < 2 or text[m.start() - 2] != "%"):
            continue  # `%%x`: a literal '%' then text
        parts.append(re.escape(text[pos:m.start()].replace("%%", "%")))
        pos = m.end()
        if m["var"] in OPTIONAL and text[pos:pos + 1] == " ":
            # No capture configured: HAProxy leaves the block out, and its space with it
            # (observed on 2.6: `{host} "GET ..."` under `%hr %hs %{+Q}r`).
            parts.append(f"(?:({FIELD[m['var']]}) )?")
            fields.append(m["var"])
            pos += 1
            continue
        var = m["var"]
        flags = m["flags"] or ""
        if var == "o":  # flags for every variable after it; it writes nothing, nor its space
            global_flags = flags
            pos += text[pos:pos + 1] == " "
            continue
        # Q quotes strings only (observed on 2.6: `%{+Q}o` leaves %t and %ST bare)
        quoted = "+Q" in f"{global_flags},{flags}" and "-Q" not in flags and \
            var not in UNQUOTED
        name = f"[{m['sample']}]" if m["sample"] is not None else var
        if var in FIELD:
            field = FIELD[var]
        elif var in NUMERIC:
            field = r"[+-]?\d+"
        else:
            field = r"\S*" if not quoted else r'[^"]*'
        parts.append(f'("{field}"|-)' if quoted else f"({field})")
        fields.append(name)
    parts.append(re.escape(text[pos:].replace("%%", "%")) + "$")
    names = set(fields)
    if not names & set(TIMES):
        raise InputError(f"the log-format has no time: expected one of "
                         f"{', '.join('%' + t for t in TIMES)}", key="--log-format")
    if "r" not in names and not ({"HM", "HU"} <= names or {"HM", "HP"} <= names):
        raise InputError("the log-format has no request: expected %r (or %HM with %HU)",
                         key="--log-format")
    try:
        pattern = re.compile("".join(parts))
    except re.error as exc:  # defensive: every part is escaped or ours
        raise InputError(f"cannot read the log-format: {exc}", key="--log-format") from None
    return LogFormat(pattern, tuple(fields), text)


def request_line(values: dict[str, str]) -> str | None:
    """The request line from %r, or rebuilt from %HM %HU %HV (or %HP%HQ)."""
    if "r" in values:
        return values["r"]
    target = values.get("HU") or (values.get("HP", "") + values.get("HQ", ""))
    if not values.get("HM") or not target:
        return None
    return f"{values['HM']} {target} {values.get('HV') or 'HTTP/1.1'}"
