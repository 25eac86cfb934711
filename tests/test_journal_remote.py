"""Central journals (issue 19), without a lab: the retention is one number said twice (the role and the
RoPA a privacy reviewer reads), the upload flow is declared once (FLOWS) on the port group_vars gives,
and only certificates of the platform CA get in, each host to its own receiver."""
from __future__ import annotations

import re

import jinja2
import yaml

from trustops.converge import ANSIBLE_DIR, role_default
from trustops.infra.network import FLOWS

ROLE = ANSIBLE_DIR / "roles" / "journal_remote"
PORT = yaml.safe_load((ANSIBLE_DIR / "group_vars" / "all.yml").read_text())["trustops_journal_port"]


def test_the_central_journals_are_kept_as_long_as_the_ropa_says():
    keep = role_default("journal_remote", "journal_remote_keep_days")
    [activity] = [a for a in yaml.safe_load((ANSIBLE_DIR.parent / "app" / "ropa.yaml").read_text())["activities"]
                  if a["name"] == "Central host logs"]
    assert activity["retention"].startswith(f"{keep} days"), (keep, activity["retention"])
    vacuum = (ROLE / "templates" / "trustops-journal-vacuum.service.j2").read_text()
    assert "--vacuum-time={{ journal_remote_keep_days }}d" in vacuum and "--vacuum-size={{ journal_remote_max_use }}" in vacuum


def test_every_uploading_role_has_its_flow_to_ops_on_the_group_vars_port():
    """Every role uploads to ops, ops to the other ops hosts (high availability)."""
    uploaders = {f.source for f in FLOWS if f.to == "ops" and f.port == PORT}
    assert uploaders == {"app", "db", "ops"}, uploaders


def _hosts_vars(var: str, host: str, groups: dict[str, list[str]]) -> list[str]:
    """A role default that names hosts, rendered for `host` of an inventory with `groups`."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters["difference"] = lambda a, b: [x for x in a if x not in b]
    return env.from_string(role_default("journal_remote", var)).render(inventory_hostname=host, groups=groups)


def test_each_host_sends_to_every_ops_host_but_itself_and_each_ops_host_takes_every_other_host():
    """Losing one ops host loses no host's journal: each of the others keeps a copy of every host's."""
    groups = {"app": ["app-1"], "db": ["db-1"], "ops": ["ops-1", "ops-2"]}
    groups["all"] = [h for g in ("app", "db", "ops") for h in groups[g]]
    receivers = {h: _hosts_vars("journal_remote_receivers", h, groups) for h in groups["all"]}
    assert receivers == {"app-1": "['ops-1', 'ops-2']", "db-1": "['ops-1', 'ops-2']", "ops-1": "['ops-2']",
                         "ops-2": "['ops-1']"}, receivers
    assert _hosts_vars("journal_remote_senders", "ops-2", groups) == "['app-1', 'db-1', 'ops-1']"
    one_ops = {"app": ["app"], "db": ["db"], "ops": ["ops"], "all": ["app", "db", "ops"]}
    assert _hosts_vars("journal_remote_receivers", "ops", one_ops) == "[]"   # one ops host: it keeps its own


def test_only_the_platform_ca_is_trusted_and_only_the_uploader_reads_the_key():
    upload = (ROLE / "templates" / "trustops-journal-upload@.service.j2").read_text()
    [exec_start] = re.findall(r"^ExecStart=(/.+)$", upload, re.M)
    assert "--trust={{ journal_remote_tls_dir }}/ca.crt" in exec_start and "--trust=all" not in upload
    assert "--save-state={{ journal_remote_upload_state_dir }}/%i.state" in exec_start   # a cursor per receiver
    assert re.search(r"^SupplementaryGroups=.*\{\{ journal_remote_key_group \}\}", upload, re.M)
    front = (ROLE / "templates" / "trustops-journal.conf.j2").read_text()
    assert "ssl_verify_client on;" in front and "ssl_client_certificate {{ journal_remote_tls_dir }}/ca.crt;" in front


def test_the_front_sends_each_host_to_its_own_receiver_and_no_other_name_anywhere():
    """The map from a certificate's name to an instance, rendered for hosts named as on the twin."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters["regex_replace"] = lambda value, pattern, repl: re.sub(pattern, repl, value)
    conf = env.from_string((ROLE / "templates" / "trustops-journal.conf.j2").read_text()).render(
        journal_remote_senders=["app-1", "db-1"], journal_remote_socket_dir="/run/x", journal_remote_tls_dir="/etc/x",
        private_ip="10.0.3.4", trustops_journal_port=PORT)
    assert '"CN=db-1" "db-1";' in conf and "server unix:/run/x/db-1.sock;" in conf
    assert '"db-1" trustops_journal_db_1;' in conf and "upstream trustops_journal_db_1 {" in conf
    assert re.search(r'default "";\n}', conf) and 'if ($trustops_journal_upstream = "")' in conf
    assert f"listen 10.0.3.4:{PORT} ssl;" in conf
