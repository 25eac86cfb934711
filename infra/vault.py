"""Key Vault with RBAC, purge protection, soft delete and a deny-by-default network. It holds the
secrets the hosts cannot make themselves, one source each: the app's field-encryption key and the
two S3 writers' access keys. Each secret is readable by exactly one host: its VM's managed identity
gets "Key Vault Secrets User" scoped to that one secret, never to the vault. (Database passwords
are not here: Ansible generates them once on the control node and the db and app hosts get them
from there, so there is one source.)"""
from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_random as random
from pulumi_azure_native import authorization, keyvault

from trustops.infra.config import StackConfig

KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
FIELD_KEY_NAME = "field-key-1"


def access_key_secret(purpose: str) -> str:
    """The Key Vault secret that holds the `purpose` writer's access key (JSON, as the roles read it)."""
    return f"{purpose}-writer-access-key"


@dataclass
class VaultArgs:
    cfg: StackConfig
    resource_group_name: pulumi.Input[str]
    allowed_subnet_ids: list[pulumi.Input[str]]
    # host -> (its VM's managed-identity principal, {secret name: value}); the app host also gets
    # the field key, made here.
    host_secrets: dict[str, tuple[pulumi.Input[str], dict[str, pulumi.Input[str]]]] = field(default_factory=dict)
    field_key_host: str = "app-1"


class Vault(pulumi.ComponentResource):
    def __init__(self, name: str, args: VaultArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("trustops:infra:Vault", name, None, opts)
        cfg, child = args.cfg, pulumi.ResourceOptions(parent=self)
        client = authorization.get_client_config_output()
        self.vault = keyvault.Vault(
            f"{name}-kv", resource_group_name=args.resource_group_name, location=cfg.azure_location,
            properties={
                "tenant_id": client.tenant_id, "sku": {"family": "A", "name": "standard"},
                "enable_rbac_authorization": True, "enable_soft_delete": True, "soft_delete_retention_in_days": 90,
                "enable_purge_protection": True, "public_network_access": "Enabled",
                "network_acls": {"default_action": "Deny", "bypass": "AzureServices", "ip_rules": [],
                                 "virtual_network_rules": [{"id": s} for s in args.allowed_subnet_ids]},
            }, tags=cfg.tags, opts=child)
        # 32 random bytes = an AES-256-GCM key (REST-03), version 1; rotation adds field-key-2 ...
        self.field_key = random.RandomBytes(f"{name}-field-key-1", length=32, opts=child)
        role_definition = client.subscription_id.apply(
            lambda sub: f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/"
                        f"{KEY_VAULT_SECRETS_USER}")
        self.secret_names: dict[str, list[str]] = {}     # host -> the secrets it may read
        for host, (principal, secrets) in args.host_secrets.items():
            if host == args.field_key_host:
                secrets = {FIELD_KEY_NAME: self.field_key.base64, **secrets}
            self.secret_names[host] = sorted(secrets)
            for secret_name, value in secrets.items():
                secret = keyvault.Secret(
                    f"{name}-{secret_name}", resource_group_name=args.resource_group_name,
                    vault_name=self.vault.name, secret_name=secret_name,
                    properties={"value": pulumi.Output.secret(value), "content_type": "application/json"
                                if secret_name.endswith("access-key") else "text/plain"},
                    tags={**cfg.tags, "reader": host},
                    opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["properties"]))
                authorization.RoleAssignment(
                    f"{name}-{host}-reads-{secret_name}", principal_id=principal, principal_type="ServicePrincipal",
                    role_definition_id=role_definition, scope=secret.id, opts=child)
        self.register_outputs({"vault_uri": self.vault.properties.vault_uri})
