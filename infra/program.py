"""The stack: reads config, pins providers to the EU regions, wires the components, and exports
the inventory in the contract's shape (trustops/inventory.py) for Ansible. No output carries a
secret: each host reads its own secrets from Key Vault with its managed identity (vault.py)."""
from __future__ import annotations

import pulumi
import pulumi_aws as aws
from pulumi_azure_native import Provider as AzureProvider
from pulumi_azure_native import resources

from trustops.infra.bedrock import PURPOSE as BEDROCK, BedrockInvoker, BedrockInvokerArgs
from trustops.infra.compute import (POSTGRES_DATA_DEVICE, POSTGRES_DATA_MOUNT, Vm, VmArgs, host_name,
                                    require_encryption_at_host, vm_resource_name)
from trustops.infra.config import StackConfig
from trustops.infra.network import Network, NetworkArgs
from trustops.infra.storage import Buckets, BucketsArgs
from trustops.infra.vault import Vault, VaultArgs, access_key_secret
from trustops import inventory

# How many VMs each role runs. Two ops hosts: Alertmanager as a cluster and Prometheus as an HA
# pair, so losing one still pages (issue 19).
VM_COUNT = {"app": 1, "db": 1, "ops": 2}
HOSTS = {role: tuple(host_name(role, i) for i in range(1, n + 1)) for role, n in VM_COUNT.items()}
# Which writer's key each host gets (and nothing else): the app stores receipts, db writes backups.
HOST_AWS_WRITER = {"app": "files", "db": "backups"}


def main() -> dict[str, pulumi.Output]:
    cfg = StackConfig.from_pulumi()
    azure = AzureProvider("azure-eu", location=cfg.azure_location)
    aws_eu = aws.Provider("aws-eu", region=cfg.aws_region, default_tags={"tags": cfg.tags})
    opts = pulumi.ResourceOptions(provider=azure)

    rg = resources.ResourceGroup(f"trustops-{cfg.environment}", location=cfg.azure_location, tags=cfg.tags,
                                 opts=opts)
    require_encryption_at_host(azure)
    net = Network("trustops", NetworkArgs(cfg, rg.name), opts)
    vms = {host_name(role, i): Vm(vm_resource_name(role, i),
                                  VmArgs(cfg, role, rg.name, net.subnets[role].id, public=role == "app", index=i),
                                  opts)
           for role, n in VM_COUNT.items() for i in range(1, n + 1)}
    buckets = Buckets("trustops", BucketsArgs(cfg, aws_eu))
    host_secrets = {
        host: (vms[host].vm.identity.principal_id, {access_key_secret(purpose): buckets.credentials_json(purpose)})
        for role, purpose in HOST_AWS_WRITER.items() for host in HOSTS[role]}
    # The app's identity for Claude on Bedrock in the EU (HOST-03): its key for the app host only.
    bedrock = BedrockInvoker("trustops", BedrockInvokerArgs(cfg, aws_eu))
    for host in HOSTS["app"]:
        host_secrets[host][1][access_key_secret(BEDROCK)] = bedrock.credentials_json()
    vault = Vault("trustops", VaultArgs(cfg, rg.name, [net.subnets[r].id for r in ("app", "db", "ops")],
                                        host_secrets=host_secrets, field_key_host=HOSTS["app"][0]), opts)

    app_ip = vms[HOSTS["app"][0]].public_ip.ip_address  # type: ignore[union-attr]
    inv = pulumi.Output.all(app_ip, buckets.names["backups"], buckets.names["files"],
                            vault.vault.properties.vault_uri, net.nat_ip.ip_address).apply(
        lambda a: _inventory(cfg, app_public_ip=a[0], backups=a[1], files=a[2], vault_uri=a[3],
                             nat_ip=a[4], vault_secrets=vault.secret_names))
    outputs = {
        "inventory": inv,
        "resourceGroup": rg.name,
        "vaultUri": vault.vault.properties.vault_uri,
        "appPublicIp": app_ip,
        "egressIp": net.nat_ip.ip_address,
        "backupsBucket": buckets.names["backups"],
        "filesBucket": buckets.names["files"],
    }
    for k, v in outputs.items():
        pulumi.export(k, v)
    return outputs


def _inventory(cfg: StackConfig, app_public_ip: str, backups: str, files: str, vault_uri: str, nat_ip: str,
               vault_secrets: dict[str, list[str]]) -> dict:
    """Ansible reaches app over its public IP from the admin CIDRs, and db and ops through it
    (ProxyJump): their SSH comes from the app VM's private address, so that is what their
    firewalls must let in."""
    jump = f"-o ProxyJump=deploy@{app_public_ip}"
    behind_jump = (f"{cfg.host_ip('app')}/32",)
    hosts = [inventory.Host(HOSTS["app"][0], "app", app_public_ip, cfg.host_ip("app"), ssh_sources=cfg.admin_cidrs)]
    hosts += [inventory.Host(host, role, cfg.host_ip(role, i), cfg.host_ip(role, i), ssh_common_args=jump,
                             ssh_sources=behind_jump)
              for role in ("db", "ops") for i, host in enumerate(HOSTS[role], start=1)]
    site = inventory.Site(
        environment=cfg.environment, cloud="azure",
        networks={"app": cfg.subnet("app"), "db": cfg.subnet("db"), "ops": cfg.subnet("ops"),
                  "admin": list(cfg.admin_cidrs)},
        s3=inventory.S3(region=cfg.aws_region, backups_bucket=backups, files_bucket=files),
        extra_vars={"trustops_azure_location": cfg.azure_location, "trustops_key_vault_uri": vault_uri,
                    # secret names only (never values): each host reads these with its managed identity
                    "trustops_key_vault_secrets": {h: list(n) for h, n in sorted(vault_secrets.items())},
                    "trustops_egress_ip": nat_ip,
                    "trustops_postgres_data_device": POSTGRES_DATA_DEVICE,
                    "trustops_postgres_data_mount": POSTGRES_DATA_MOUNT,
                    "trustops_database_host": cfg.host_ip("db"), "trustops_managed_database": False},
    )
    return inventory.build(site, hosts)
