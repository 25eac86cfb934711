"""`ufw status verbose` read as a rule table, so a check judges rules, not substrings: a rule for
5432 from Anywhere, from (v6) Anywhere or from a whole network is found wherever it sits."""
from __future__ import annotations

import re
from dataclasses import dataclass

_RULE = re.compile(r"^(?P<to>\S.*?)\s+(?P<action>(?:ALLOW|DENY|REJECT|LIMIT)(?: (?:IN|OUT|FWD))?)\s+"
                   r"(?P<source>\S.*?)(?:\s+#.*)?$")


@dataclass(frozen=True)
class Rule:
    to: str         # "5432/tcp", "5432/tcp (v6)", "5432 on eth1", "Anywhere"
    action: str     # "ALLOW IN", "DENY IN", "LIMIT", ...
    source: str     # the From column: "Anywhere", "Anywhere (v6)", "10.0.0.5", "10.0.0.0/8"

    @property
    def allows(self) -> bool:
        return self.action.split()[0] in ("ALLOW", "LIMIT") and not self.action.endswith(("OUT", "FWD"))

    def covers_port(self, port: int) -> bool:
        """Whether the To column opens `port` (a single port, a list, a range; "Anywhere" is every port)."""
        spec = self.to.split()[0]
        if spec == "Anywhere":
            return True
        ports = spec.split("/")[0]
        for part in ports.split(","):
            low, _, high = part.partition(":")
            if low.isdigit() and int(low) <= port <= int(high if high.isdigit() else low):
                return True
        return False

    @property
    def source_address(self) -> str:
        """The From column's address or network, without ufw's " (v6)" and any port."""
        return self.source.removesuffix(" (v6)").split()[0]


def rules(status: str) -> list[Rule]:
    """The rule table below the To/Action/From header; ValueError when there is no table (ufw
    inactive or the text is not ufw's) or a row that does not read as a rule."""
    lines = status.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.split() == ["--", "------", "----"]) + 1
    except StopIteration:
        raise ValueError("no rule table in the ufw status") from None
    out = []
    for line in lines[start:]:
        if not line.strip():
            continue
        m = _RULE.match(line.strip())
        if not m:
            raise ValueError(f"not a ufw rule: {line.strip()!r}")
        out.append(Rule(m["to"], " ".join(m["action"].split()), m["source"]))
    return out


def open_to_others(status: str, port: int, allowed: set[str]) -> list[Rule]:
    """The rules that let anything but the `allowed` addresses reach `port`."""
    return [r for r in rules(status) if r.allows and r.covers_port(port) and r.source_address not in allowed]
