"""The stack: reads config, pins providers to the EU regions, wires the components, and exports
the inventory in the contract's shape (trustops/inventory.py) for Ansible."""
from __future__ import annotations

import pulumi
import pulumi_aws as aws
from pulumi_azure_native import Provider as AzureProvider
from pulumi_azure_native import dbforpostgresql, resources

from trustops.infra.compute import Vm, VmArgs
from trustops.infra.config import StackConfig
from trustops.infra.network import Network, NetworkArgs
from trustops.infra.storage import Buckets, BucketsArgs
from trustops.infra.vault import Vault, VaultArgs
from trustops import inventory


def main() -> dict[str, pulumi.Output]:
    cfg = StackConfig.from_pulumi()
    azure = AzureProvider("azure-eu", location=cfg.azure_location)
    aws_eu = aws.Provider("aws-eu", region=cfg.aws_region, default_tags={"tags": cfg.tags})
    opts = pulumi.ResourceOptions(provider=azure)

    rg = resources.ResourceGroup(f"trustops-{cfg.environment}", location=cfg.azure_location, tags=cfg.tags,
                                 opts=opts)
    net = Network("trustops", NetworkArgs(cfg, rg.name), opts)
    roles = ["app", "ops"] + ([] if cfg.use_flexible_server else ["db"])
    vms = {role: Vm(f"trustops-{role}", VmArgs(cfg, role, rg.name, net.subnets[role].id, public=role == "app"),
                    opts) for role in roles}
    vault = Vault("trustops", VaultArgs(cfg, rg.name, [net.subnets[r].id for r in ("app", "db", "ops")],
                                        readers={r: vms[r].vm.identity.principal_id for r in vms}), opts)
    buckets = Buckets("trustops", BucketsArgs(cfg, aws_eu))

    db_host: pulumi.Input[str] = cfg.host_ip("db")
    if cfg.use_flexible_server:
        db_host = _flexible_server(cfg, rg, net, vault, opts)

    app_ip = vms["app"].public_ip.ip_address  # type: ignore[union-attr]
    inv = pulumi.Output.all(app_ip, buckets.buckets["backups"].bucket, buckets.buckets["files"].bucket,
                            db_host, vault.vault.properties.vault_uri).apply(
        lambda a: _inventory(cfg, app_public_ip=a[0], backups=a[1], files=a[2], db_host=a[3], vault_uri=a[4]))
    outputs = {
        "inventory": inv,
        "resourceGroup": rg.name,
        "vaultUri": vault.vault.properties.vault_uri,
        "appPublicIp": app_ip,
        "backupsBucket": buckets.buckets["backups"].bucket,
        "filesBucket": buckets.buckets["files"].bucket,
        "databaseHost": pulumi.Output.from_input(db_host),
        "secrets": pulumi.Output.secret(vault.secrets),
    }
    for k, v in outputs.items():
        pulumi.export(k, v)
    return outputs


def _inventory(cfg: StackConfig, app_public_ip: str, backups: str, files: str, db_host: str,
               vault_uri: str) -> dict:
    jump = f"-o ProxyJump=deploy@{app_public_ip}"
    hosts = [inventory.Host("app-1", "app", app_public_ip, cfg.host_ip("app")),
             inventory.Host("ops-1", "ops", cfg.host_ip("ops"), cfg.host_ip("ops"), ssh_common_args=jump)]
    if not cfg.use_flexible_server:
        hosts.append(inventory.Host("db-1", "db", cfg.host_ip("db"), cfg.host_ip("db"), ssh_common_args=jump))
    site = inventory.Site(
        environment=cfg.environment, cloud="azure",
        networks={"app": cfg.subnet("app"), "db": cfg.subnet("db"), "ops": cfg.subnet("ops"),
                  "admin": list(cfg.admin_cidrs)},
        s3=inventory.S3(region=cfg.aws_region, backups_bucket=backups, files_bucket=files),
        extra_vars={"trustops_azure_location": cfg.azure_location, "trustops_key_vault_uri": vault_uri,
                    "trustops_database_host": db_host, "trustops_managed_database": cfg.use_flexible_server},
    )
    return inventory.build(site, hosts)


def _flexible_server(cfg, rg, net, vault, opts) -> pulumi.Output:
    """Azure Database for PostgreSQL (flexible server), private access only, in place of the db VM."""
    server = dbforpostgresql.Server(
        "trustops-postgres", resource_group_name=rg.name, location=cfg.azure_location, version="15",
        sku={"name": "Standard_B2ms", "tier": "Burstable"}, storage={"storage_size_gb": 64},
        administrator_login="trustops_admin",
        administrator_login_password=vault.secrets["db-trustops-admin-password"],
        network={"delegated_subnet_resource_id": net.subnets["postgres"].id, "public_network_access": "Disabled"},
        backup={"backup_retention_days": 7, "geo_redundant_backup": "Disabled"},
        tags=cfg.tags, opts=opts)
    return server.fully_qualified_domain_name
