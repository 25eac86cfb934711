"""Runs the Pulumi program under `pulumi.runtime.set_mocks` (no CLI, no cloud) and records every
resource it declares, with the inputs as the engine (and CrossGuard) would see them. A harness, not
part of the Pulumi program (trustops.infra) it runs: the tests, the lab twin (trustops.lab.stack)
and the evidence engine use it (`python -m trustops.mockrun STACK` prints the policy results)."""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

import pulumi
import yaml
from pulumi.runtime.mocks import MockMonitor

ROOT = Path(__file__).resolve().parents[1]


MOCK_ACCOUNT_ID = "123456789012"   # moto's default account, so the lab twin's buckets match
GENERATED = "generated-at-deploy-time"   # what mocks answer for any provider-generated value
# The subscription features the mocked subscription has registered ("namespace/name" -> state);
# a test changes it to see the program refuse an unregistered one.
FEATURE_STATES = {"Microsoft.Compute/EncryptionAtHost": "Registered"}


@dataclass
class Declared:
    type: str
    name: str
    inputs: dict
    parent: str = ""                              # the parent's URN, as CrossGuard sees it
    dependencies: tuple[str, ...] = ()            # URNs this resource waits for (depends_on and inputs)
    urn: str = ""


class RecordingMonitor(MockMonitor):
    """The mock monitor, also recording each registration's URN, parent and dependencies (the
    engine orders creation by these; Mocks.new_resource is not told them)."""

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            declared = next(d for d in reversed(self.mocks.resources)
                            if d.type == request.type and d.name == request.name and not d.urn)
            declared.parent = request.parent
            declared.urn = response.urn
            declared.dependencies = tuple(request.dependencies)
        return response


class RecordingMocks(pulumi.runtime.Mocks):
    """Records every resource; with preview=True it returns no provider-computed values (ids, ARNs,
    addresses), as a preview of a new stack sees them: unknown."""

    def __init__(self, preview: bool = False) -> None:
        self.resources: list[Declared] = []
        self.preview = preview

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        inputs = dict(args.inputs)
        self.resources.append(Declared(args.typ, args.name, inputs))
        state = dict(inputs)
        if self.preview:
            return ["", state]
        if args.typ == "azure-native:network:PublicIPAddress":
            state["ipAddress"] = "203.0.113.10" if args.name.endswith("app-pip") else "203.0.113.20"
        if args.typ == "azure-native:compute:VirtualMachine":
            state["identity"] = {"type": "SystemAssigned", "principalId": f"principal-{args.name}"}
        if args.typ == "azure-native:keyvault:Vault":
            state["properties"] = {**inputs.get("properties", {}),
                                   "vaultUri": f"https://{args.name}.vault.azure.net/"}
        if args.typ.startswith("aws:s3/bucket:Bucket"):
            state["arn"] = f"arn:aws:s3:::{inputs.get('bucket', args.name)}"
        if args.typ == "random:index/randomPassword:RandomPassword":
            state["result"] = GENERATED
        if args.typ == "random:index/randomBytes:RandomBytes":
            state["base64"] = "Z2VuZXJhdGVkLWF0LWRlcGxveS10aW1l"
        if args.typ == "aws:iam/accessKey:AccessKey":
            state["secret"] = GENERATED
        if args.typ == "azure-native:dbforpostgresql:Server":
            state["fullyQualifiedDomainName"] = f"{args.name}.postgres.database.azure.com"
        state.setdefault("name", inputs.get("name", args.name))
        return [args.name + "_id", state]

    def call(self, args: pulumi.runtime.MockCallArgs):
        if args.token == "azure-native:authorization:getClientConfig":
            return {"tenantId": "00000000-0000-0000-0000-000000000001",
                    "subscriptionId": "00000000-0000-0000-0000-000000000002",
                    "clientId": "c", "objectId": "o"}
        if args.token == "azure-native:features:getSubscriptionFeatureRegistration":
            name = f"{args.args.get('providerNamespace')}/{args.args.get('featureName')}"
            return {"name": args.args.get("featureName"), "id": name,
                    "properties": {"state": FEATURE_STATES.get(name, "NotRegistered")}}
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": MOCK_ACCOUNT_ID, "arn": f"arn:aws:iam::{MOCK_ACCOUNT_ID}:user/mocks",
                    "id": MOCK_ACCOUNT_ID, "userId": "mocks"}
        return {}


def stack_config(stack: str) -> dict[str, str]:
    """The stack file's config plus what an operator sets with `pulumi config set` (never committed):
    a public key and admin CIDRs, both made at run time."""
    doc = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    cfg = {k: json.dumps(v) if not isinstance(v, str) else v for k, v in doc.items()}
    cfg["trustops:sshPublicKey"] = _public_key()
    cfg.setdefault("trustops:adminCidrs", json.dumps([public_admin_cidr()]))
    return cfg


def public_admin_cidr() -> str:
    """A random globally routable /28 that is no documentation range (nothing is sent to it)."""
    import ipaddress
    import random

    from trustops.infra.config import DOCUMENTATION_RANGES

    while True:
        net = ipaddress.ip_network(f"{random.randint(1, 223)}.{random.randint(0, 255)}."
                                   f"{random.randint(0, 255)}.{random.randrange(0, 256, 16)}/28")
        if net.is_global and not any(net.overlaps(d) for d in DOCUMENTATION_RANGES if d.version == 4):
            return str(net)


def run(stack: str, config_override: dict[str, str] | None = None, program=None, preview: bool = False):
    """Declares the stack's resources under mocks; returns (resources, resolved outputs).
    preview=True: as a preview of a new stack (computed values unknown)."""
    mocks = RecordingMocks(preview=preview)
    pulumi.runtime.set_mocks(mocks, project="trustops", stack=stack, preview=preview,
                             monitor=RecordingMonitor(mocks))
    pulumi.runtime.set_all_config({**stack_config(stack), **(config_override or {})})
    if program is None:
        from trustops.infra.program import main as program
    outputs = program()
    resolved = {}
    if outputs:
        async def collect():
            for k, v in outputs.items():
                resolved[k] = await v.future()
        loop = asyncio.get_event_loop()
        loop.run_until_complete(collect())
    _settle()
    return mocks.resources, resolved


def _settle() -> None:
    """Waits until every pending registration has reached the mocks."""
    from pulumi.runtime import settings
    from pulumi.runtime.sync_await import _sync_await

    async def wait():
        while True:
            rpcs = settings.SETTINGS.outputs
            if not rpcs:
                break
            await asyncio.gather(*list(rpcs), return_exceptions=True)
            if all(t.done() for t in rpcs):
                break
    try:
        asyncio.get_event_loop().run_until_complete(wait())
    except Exception:  # noqa: BLE001 - best effort; resources are recorded already
        _sync_await  # keep linters quiet about the import


def as_policy_resources(resources: list[Declared]) -> list[tuple[str, str, dict]]:
    """(type, name, props) as the policy functions take them."""
    return [(r.type, r.name, r.inputs) for r in resources]


def _public_key() -> str:
    """A public key made at run time (nothing key-like is committed, not even for mocks)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pub = Ed25519PrivateKey.generate().public_key()
    return pub.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode() + " mocks"


def main(argv: list[str] | None = None) -> int:
    """One stack per process: Pulumi's mock runtime is global state."""
    import sys

    from trustops.infra.policy.rules import evaluate

    (stack,) = argv if argv is not None else sys.argv[1:]
    resources, _ = run(stack)
    found = evaluate(as_policy_resources(resources))
    print(json.dumps({"stack": stack, "resources": len(resources), "policies": found}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
