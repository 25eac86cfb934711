"""The inventory contract shared by the lab and the Pulumi stack."""
import ast
import copy
from pathlib import Path

import pytest

from trustops import inventory as inv


def _site(**kw):
    base = dict(environment="dev", cloud="azure",
                networks={"app": "10.10.1.0/24", "db": "10.10.2.0/24", "ops": "10.10.3.0/24",
                          "admin": ["203.0.113.0/28"]},
                s3=inv.S3(region="eu-central-1", backups_bucket="b", files_bucket="f"))
    base.update(kw)
    return inv.Site(**base)


def _hosts():
    return [inv.Host("app-1", "app", "20.1.2.3", "10.10.1.4", ssh_sources=("20.50.60.0/28",)),
            inv.Host("db-1", "db", "10.10.2.4", "10.10.2.4", ssh_sources=("10.10.1.4/32",)),
            inv.Host("ops-1", "ops", "20.1.2.4", "10.10.3.4", ssh_sources=("10.10.1.4/32",))]


def test_build_has_every_role_group_and_validates():
    doc = inv.build(_site(), _hosts())
    assert set(doc["all"]["children"]) == {"app", "db", "ops"}
    assert doc["all"]["children"]["db"]["hosts"]["db-1"]["private_ip"] == "10.10.2.4"
    assert doc["all"]["vars"]["trustops_s3"]["endpoint_url"] is None
    assert inv.validate(doc) is doc


def test_missing_role_is_refused():
    with pytest.raises(inv.InventoryError, match="no host for role"):
        inv.build(_site(), _hosts()[:2])


def test_duplicate_names_and_bad_values_are_refused():
    with pytest.raises(inv.InventoryError, match="duplicate"):
        inv.build(_site(), _hosts() + [inv.Host("app-1", "app", "1.2.3.4", "10.10.1.5", ssh_sources=("1.2.3.0/28",))])
    web = inv.Host("x", "web", "1.2.3.4", "10.0.0.1", ssh_sources=("1.2.3.0/28",))
    with pytest.raises(inv.InventoryError, match=r"children\.web: Extra inputs"):
        inv.build(_site(), _hosts() + [web])
    with pytest.raises(inv.InventoryError, match=r"hosts\.x\.private_ip: value is not a valid .* \(got 'not-an-ip'\)"):
        inv.build(_site(), _hosts() + [inv.Host("x", "app", "1.2.3.4", "not-an-ip", ssh_sources=("1.2.3.0/28",))])
    with pytest.raises(inv.InventoryError, match="trustops_cloud: .*'gcp'"):
        inv.build(_site(cloud="gcp"), _hosts())
    with pytest.raises(inv.InventoryError,
                       match=r"trustops_networks\.db: Field required; .*trustops_networks\.ops: Field required$"):
        inv.build(_site(networks={"app": "10.0.0.0/24"}), _hosts())


def test_validate_rejects_a_broken_document():
    doc = inv.build(_site(), _hosts())
    del doc["all"]["vars"]["trustops_s3"]
    with pytest.raises(inv.InventoryError,
                       match=r"^inventory breaks the contract: all\.vars\.trustops_s3: Field required$"):
        inv.validate(doc)


def test_ansible_json_form_lists_hosts_and_hostvars():
    out = inv.to_ansible_json(inv.build(_site(), _hosts()))
    assert out["app"]["hosts"] == ["app-1"]
    assert out["_meta"]["hostvars"]["ops-1"]["ansible_host"] == "20.1.2.4"
    assert out["all"]["children"] == ["app", "db", "ops"]


def test_every_host_says_where_ssh_comes_from():
    doc = inv.build(_site(), _hosts())
    assert doc["all"]["children"]["db"]["hosts"]["db-1"]["trustops_ssh_sources"] == ["10.10.1.4/32"]
    hosts = _hosts()
    hosts[1] = inv.Host("db-1", "db", "10.10.2.4", "10.10.2.4")
    with pytest.raises(inv.InventoryError,
                       match="db-1.trustops_ssh_sources: empty: the firewall would lock Ansible out"):
        inv.build(_site(), hosts)
    hosts[1] = inv.Host("db-1", "db", "10.10.2.4", "10.10.2.4", ssh_sources=("nowhere",))
    with pytest.raises(inv.InventoryError, match=r"db-1\.trustops_ssh_sources\.0: .*network \(got 'nowhere'\)"):
        inv.build(_site(), hosts)
    hosts[1] = inv.Host("db-1", "db", "10.10.2.4", "10.10.2.4", ssh_sources="10.0.0.0/24")  # type: ignore[arg-type]
    with pytest.raises(inv.InventoryError, match="db-1.trustops_ssh_sources: Input should be a valid list"):
        inv.build(_site(), hosts)
    del doc["all"]["children"]["ops"]["hosts"]["ops-1"]["trustops_ssh_sources"]
    with pytest.raises(inv.InventoryError, match="ops-1.trustops_ssh_sources: Field required"):
        inv.validate(doc)


MALFORMED = [   # (what is wrong, edit of a good document, the one line that must name it)
    ("not a mapping", lambda d: ["all"], r"\(top level\): Input should be a valid dictionary"),
    ("no all", lambda d: d.pop("all"), r"^inventory breaks the contract: all: Field required$"),
    ("all is empty", lambda d: d.update(all=None), r"all: Input should be a valid dictionary"),
    ("children a list", lambda d: d["all"].update(children=["app"]), r"all\.children: Input should be a valid dict"),
    ("a group lost", lambda d: d["all"]["children"].pop("ops"), r"all\.children\.ops: Field required"),
    ("a group without hosts", lambda d: d["all"]["children"]["ops"].update(hosts=None),
     r"all: no host for role\(s\) \['ops'\]"),
    ("a host in two groups", lambda d: d["all"]["children"]["ops"]["hosts"].update(
        {"db-1": {**d["all"]["children"]["db"]["hosts"]["db-1"], "trustops_role": "ops"}}),
     r"all: host\(s\) \['db-1'\] in more than one group"),
    ("a host in the wrong group", lambda d: d["all"]["children"]["app"]["hosts"]["app-1"].update(trustops_role="db"),
     r"all: host\(s\) \['app-1'\] in the app group say another trustops_role"),
    ("a port out of range", lambda d: d["all"]["children"]["app"]["hosts"]["app-1"].update(ansible_port=0),
     r"app-1\.ansible_port: Input should be greater than 0 \(got 0\)"),
    ("a port that is no number", lambda d: d["all"]["children"]["app"]["hosts"]["app-1"].update(ansible_port="ssh"),
     r"app-1\.ansible_port: Input should be a valid integer.* \(got 'ssh'\)"),
    ("no host address", lambda d: d["all"]["children"]["app"]["hosts"]["app-1"].pop("ansible_host"),
     r"app-1\.ansible_host: Field required"),
    ("a subnet with host bits", lambda d: d["all"]["vars"]["trustops_networks"].update(app="10.10.1.4/24"),
     r"trustops_networks\.app: value is not a valid IPv4 or IPv6 network \(got '10\.10\.1\.4/24'\)"),
    ("an admin CIDR that is none", lambda d: d["all"]["vars"]["trustops_networks"].update(admin=["office"]),
     r"trustops_networks\.admin\.0: .* \(got 'office'\)"),
    ("an unknown S3 key", lambda d: d["all"]["vars"]["trustops_s3"].update(bucket="x"),
     r"trustops_s3\.bucket: Extra inputs are not permitted"),
    ("an empty bucket name", lambda d: d["all"]["vars"]["trustops_s3"].update(files_bucket=""),
     r"trustops_s3\.files_bucket: String should have at least 1 character"),
    ("no environment", lambda d: d["all"]["vars"].pop("trustops_environment"),
     r"all\.vars\.trustops_environment: Field required"),
]


@pytest.mark.parametrize("what,edit,line", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_a_malformed_inventory_is_refused_in_one_line_naming_the_key(what, edit, line):
    doc = copy.deepcopy(inv.build(_site(), _hosts()))
    broken = edit(doc)
    with pytest.raises(inv.InventoryError, match=line) as caught:
        inv.validate(broken if isinstance(broken, list) else doc)
    assert "\n" not in str(caught.value)


def test_a_managed_database_needs_no_db_host_and_extra_variables_pass():
    doc = inv.build(_site(extra_vars={"trustops_managed_database": True, "trustops_database_host": "pg"}),
                    [h for h in _hosts() if h.role != "db"])
    assert doc["all"]["children"]["db"]["hosts"] == {} and inv.validate(doc) is doc
    doc["all"]["children"]["app"]["hosts"]["app-1"]["anything_else"] = 1
    inv.validate(doc)


def test_the_contract_is_a_leaf_module():
    """The lab, the stack and the CLI import it; it imports nothing of the project."""
    tree = ast.parse(Path(inv.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in imported if m and m.split(".")[0] == "trustops"}, imported
