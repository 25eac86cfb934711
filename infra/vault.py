"""Key Vault with RBAC, purge protection, soft delete and a deny-by-default network; it holds the
app's field-encryption key and the database passwords, generated here as Pulumi secrets."""
from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_random as random
from pulumi_azure_native import authorization, keyvault

from trustops.infra.config import StackConfig

KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
DB_ROLES = ("benefits_app", "trustops_backup", "trustops_monitor", "trustops_admin")


@dataclass
class VaultArgs:
    cfg: StackConfig
    resource_group_name: pulumi.Input[str]
    allowed_subnet_ids: list[pulumi.Input[str]]
    readers: dict[str, pulumi.Input[str]] = field(default_factory=dict)   # role -> principal id


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
                "network_acls": {"default_action": "Deny", "bypass": "AzureServices",
                                 "virtual_network_rules": [{"id": s} for s in args.allowed_subnet_ids]},
            }, tags=cfg.tags, opts=child)
        # 32 random bytes = an AES-256-GCM key (REST-03), version 1; rotation adds field-key-2 ...
        self.field_key = random.RandomBytes(f"{name}-field-key-1", length=32, opts=child)
        self.secrets = {"field-key-1": self.field_key.base64}
        for role in DB_ROLES:
            pw = random.RandomPassword(f"{name}-{role}-password", length=40, special=False, opts=child)
            self.secrets[f"db-{role.replace('_', '-')}-password"] = pw.result
        for secret_name, value in self.secrets.items():
            keyvault.Secret(f"{name}-{secret_name}", resource_group_name=args.resource_group_name,
                            vault_name=self.vault.name, secret_name=secret_name,
                            properties={"value": value, "content_type": "text/plain"}, tags=cfg.tags,
                            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["properties"]))
        for role, principal in args.readers.items():
            authorization.RoleAssignment(
                f"{name}-{role}-secrets-user", principal_id=principal, principal_type="ServicePrincipal",
                role_definition_id=client.subscription_id.apply(
                    lambda sub: f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/"
                                f"{KEY_VAULT_SECRETS_USER}"),
                scope=self.vault.id, opts=child)
        self.register_outputs({"vault_uri": self.vault.properties.vault_uri})
