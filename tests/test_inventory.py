"""The inventory contract shared by the lab and the Pulumi stack."""
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
    with pytest.raises(inv.InventoryError, match="role"):
        inv.Host("x", "web", "1.2.3.4", "10.0.0.1")
    with pytest.raises(ValueError):
        inv.Host("x", "app", "1.2.3.4", "not-an-ip")
    with pytest.raises(inv.InventoryError, match="cloud"):
        _site(cloud="gcp")
    with pytest.raises(inv.InventoryError, match="subnet"):
        _site(networks={"app": "10.0.0.0/24"})


def test_validate_rejects_a_broken_document():
    doc = inv.build(_site(), _hosts())
    del doc["all"]["vars"]["trustops_s3"]
    with pytest.raises(inv.InventoryError, match="contract"):
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
    with pytest.raises(inv.InventoryError, match="db-1.*no ssh_sources"):
        inv.build(_site(), hosts)
    with pytest.raises(inv.InventoryError, match="ssh source 'nowhere'"):
        inv.Host("x", "app", "1.2.3.4", "10.0.0.1", ssh_sources=("nowhere",))
    with pytest.raises(inv.InventoryError, match="not a string"):
        inv.Host("x", "app", "1.2.3.4", "10.0.0.1", ssh_sources="10.0.0.0/24")  # type: ignore[arg-type]
    del doc["all"]["children"]["ops"]["hosts"]["ops-1"]["trustops_ssh_sources"]
    with pytest.raises(inv.InventoryError, match="contract"):
        inv.validate(doc)
