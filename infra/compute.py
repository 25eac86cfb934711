"""A Debian 12 VM per role: SSH keys only, encryption at host, a managed identity, no public IP
except on the app VM (443/80 and the SSH jump). cloud-init leaves it ready for Ansible."""
from __future__ import annotations

import base64
from dataclasses import dataclass

import pulumi
from pulumi_azure_native import compute, features, network

from trustops.infra.config import StackConfig, StackConfigError

DEBIAN_12 = {"publisher": "Debian", "offer": "debian-12", "sku": "12-gen2", "version": "latest"}

CLOUD_INIT = """#cloud-config
# Leaves the host as the lab leaves a container: a deploy user with the key and sudo, python3
# for Ansible, security updates applied. Everything else is Ansible's (ansible/).
users:
  - name: deploy
    groups: [sudo]
    shell: /bin/bash
    sudo: "ALL=(ALL) NOPASSWD:ALL"
    lock_passwd: true
    ssh_authorized_keys: ["{key}"]
ssh_pwauth: false
disable_root: true
package_update: true
package_upgrade: true
packages: [python3, python3-apt, sudo]
"""

# The db VM keeps Postgres on its own managed disk (LUN 0), formatted and mounted by cloud-init
# before the postgres role installs anything, so /var/lib/postgresql never lands on the OS disk.
POSTGRES_DATA_LUN = 0
POSTGRES_DATA_DISK_GB = 64
# Where Azure's udev rules show a VM's data disk at LUN n (the lab's twin reads it too).
AZURE_LUN_DEVICE = "/dev/disk/azure/scsi1/lun{lun}"
POSTGRES_DATA_DEVICE = AZURE_LUN_DEVICE.format(lun=POSTGRES_DATA_LUN)
POSTGRES_DATA_MOUNT = "/var/lib/postgresql"
CLOUD_INIT_DB_DISK = f"""disk_setup:
  {POSTGRES_DATA_DEVICE}: {{table_type: gpt, layout: true, overwrite: false}}
fs_setup:
  - {{label: pgdata, filesystem: ext4, device: {POSTGRES_DATA_DEVICE}, partition: auto, overwrite: false}}
mounts:
  - [LABEL=pgdata, {POSTGRES_DATA_MOUNT}, ext4, "defaults,nofail,x-systemd.device-timeout=60", "0", "2"]
"""


def cloud_init(role: str, ssh_public_key: str) -> str:
    text = CLOUD_INIT.format(key=ssh_public_key.strip())
    return text + (CLOUD_INIT_DB_DISK if role == "db" else "")


# Encryption at host (REST-01) needs this subscription feature registered, or every VM fails to create.
ENCRYPTION_AT_HOST_FEATURE = ("Microsoft.Compute", "EncryptionAtHost")
REGISTER_ENCRYPTION_AT_HOST = (f"az feature register --namespace {ENCRYPTION_AT_HOST_FEATURE[0]} "
                               f"--name {ENCRYPTION_AT_HOST_FEATURE[1]}")


def require_encryption_at_host(provider: pulumi.ProviderResource) -> None:
    """Refuse, before any VM is declared, a subscription where encryption at host is not
    registered: `pulumi up` would otherwise fail on each VM half-way through, after the network."""
    namespace, name = ENCRYPTION_AT_HOST_FEATURE
    try:
        found = features.get_subscription_feature_registration(
            feature_name=name, provider_namespace=namespace, opts=pulumi.InvokeOptions(provider=provider))
        state = (found.properties.state if found.properties else None) or "unknown"
    except Exception as exc:  # noqa: BLE001 - the API answers 404 for a feature never registered
        state = f"unknown ({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__})"
    if state != "Registered":
        raise StackConfigError(f"subscription feature {namespace}/{name} is {state}, the VMs use encryption at "
                               f"host: run `{REGISTER_ENCRYPTION_AT_HOST}`, wait until it shows Registered, then "
                               f"`az provider register --namespace {namespace}`")


@dataclass
class VmArgs:
    cfg: StackConfig
    role: str
    resource_group_name: pulumi.Input[str]
    subnet_id: pulumi.Input[str]
    public: bool = False
    index: int = 1          # the role's index-th VM: its address and computer name (ops-2)


def host_name(role: str, index: int) -> str:
    """The VM's computer name and the inventory's host name: app-1, ops-2."""
    return f"{role}-{index}"


def vm_resource_name(role: str, index: int) -> str:
    """trustops-ops for the first VM of a role (the name it always had: a new name would replace
    the VM), trustops-ops-2 for the next ones."""
    return f"trustops-{role}" if index == 1 else f"trustops-{role}-{index}"


class Vm(pulumi.ComponentResource):
    def __init__(self, name: str, args: VmArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("trustops:infra:Vm", name, None, opts)
        cfg, child = args.cfg, pulumi.ResourceOptions(parent=self)
        ipconf: dict = {"name": "primary", "primary": True, "subnet": {"id": args.subnet_id},
                        "private_ip_allocation_method": "Static", "private_ip_address": cfg.host_ip(args.role, args.index)}
        self.public_ip = None
        if args.public:
            self.public_ip = network.PublicIPAddress(
                f"{name}-pip", resource_group_name=args.resource_group_name, location=cfg.azure_location,
                public_ip_allocation_method="Static", sku={"name": "Standard"}, tags=cfg.tags, opts=child)
            ipconf["public_ip_address"] = {"id": self.public_ip.id}
        self.nic = network.NetworkInterface(
            f"{name}-nic", resource_group_name=args.resource_group_name, location=cfg.azure_location,
            ip_configurations=[ipconf], tags=cfg.tags, opts=child)
        custom_data = base64.b64encode(cloud_init(args.role, cfg.ssh_public_key).encode()).decode()
        storage: dict = {"image_reference": DEBIAN_12,
                         "os_disk": {"create_option": "FromImage", "delete_option": "Delete",
                                     "managed_disk": {"storage_account_type": "Premium_LRS"}}}
        if args.role == "db":
            # Detach, not Delete: replacing the VM must not take the database with it.
            storage["data_disks"] = [{"lun": POSTGRES_DATA_LUN, "name": f"{name}-pgdata", "create_option": "Empty",
                                      "disk_size_gb": POSTGRES_DATA_DISK_GB, "caching": "ReadOnly",
                                      "delete_option": "Detach",
                                      "managed_disk": {"storage_account_type": "Premium_LRS"}}]
        self.vm = compute.VirtualMachine(
            f"{name}-vm", resource_group_name=args.resource_group_name, location=cfg.azure_location,
            hardware_profile={"vm_size": cfg.db_vm_size if args.role == "db" else cfg.vm_size},
            network_profile={"network_interfaces": [{"id": self.nic.id, "primary": True}]},
            os_profile={
                "computer_name": host_name(args.role, args.index), "admin_username": "deploy", "custom_data": custom_data,
                "linux_configuration": {
                    "disable_password_authentication": True,
                    "ssh": {"public_keys": [{"path": "/home/deploy/.ssh/authorized_keys",
                                             "key_data": cfg.ssh_public_key.strip()}]},
                    "patch_settings": {"patch_mode": "ImageDefault", "assessment_mode": "ImageDefault"},
                },
            },
            storage_profile=storage,
            # Managed boot diagnostics: the serial console still works after a firewall lockout.
            diagnostics_profile={"boot_diagnostics": {"enabled": True}},
            security_profile={"encryption_at_host": True},   # REST-01: host + platform-managed keys
            identity={"type": "SystemAssigned"},
            tags={**cfg.tags, "role": args.role}, opts=child)
        self.register_outputs({"vm_id": self.vm.id})
