"""The web front's nginx site for the app, rendered from its template: the client address the app
trusts (X-Forwarded-For) is set by nginx alone in every proxied location, and sign-in POSTs are
rate-limited per client address (the lab test runs the real nginx with it)."""
from __future__ import annotations

import re
from pathlib import Path

import jinja2

from trustops.converge import role_default

TEMPLATE = Path(__file__).resolve().parents[2] / "ansible" / "roles" / "web_front" / "templates" / "benefits.conf.j2"


def rendered() -> str:
    env = jinja2.Environment(undefined=jinja2.ChainableUndefined)
    return env.from_string(TEMPLATE.read_text()).render(
        web_front_server_names=["benefits.example"], web_front_upstream="http://benefits_app",
        web_front_upstream_file="/var/lib/trustops/app/upstream.conf", private_ip="10.0.0.5",
        web_front_metrics_port=role_default("web_front", "web_front_metrics_port"), trustops_ops_addresses=["10.0.0.9"],
        ansible_facts={"all_ipv6_addresses": []})


def test_only_the_front_sets_the_forwarded_address():
    conf = rendered()
    assert "$proxy_add_x_forwarded_for" not in conf            # would append to what the client sent
    proxied = conf.count("proxy_pass ")
    assert conf.count("proxy_set_header X-Forwarded-For $remote_addr;") == proxied - 1   # all but /healthz


def test_sign_in_posts_are_rate_limited_per_source():
    conf = rendered()
    assert re.search(r"map \$request_method \$benefits_signin_key \{\s*POST\s+\$binary_remote_addr;\s*default \"\";",
                     conf)
    assert "limit_req_zone $benefits_signin_key zone=benefits_signin:" in conf
    block = re.search(r"location ~ \^/\(login\|mfa\|reauth\|password\)/ \{(.*?)\n    \}", conf, re.S).group(1)
    assert "limit_req zone=benefits_signin" in block and "limit_req_status 429;" in block
