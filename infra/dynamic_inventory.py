#!/usr/bin/env python3
"""Ansible dynamic inventory from a Pulumi stack's `inventory` output (the contract in
trustops/inventory.py):

    ansible-playbook -i infra/dynamic_inventory.py ansible/site.yml     # stack from $PULUMI_STACK
    infra/dynamic_inventory.py --list [--stack dev] [--from-file out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from trustops import inventory


def stack_outputs(stack: str | None, from_file: str | None) -> dict:
    if from_file:
        return json.loads(Path(from_file).read_text())
    # Only the `inventory` output, and no --show-secrets: the inventory holds no secret, and a
    # decrypted copy of every output has no business in Ansible's process or its logs.
    args = ["pulumi", "stack", "output", "--json"] + (["--stack", stack] if stack else [])
    try:
        proc = subprocess.run(args, capture_output=True, text=True, check=False,
                              cwd=Path(__file__).resolve().parent.parent)
    except FileNotFoundError:
        sys.exit("dynamic_inventory: the pulumi CLI is not installed (https://www.pulumi.com/docs/install/)")
    if proc.returncode != 0:
        sys.exit(f"dynamic_inventory: `{' '.join(args)}` failed: {proc.stderr.strip()[-300:]}")
    return json.loads(proc.stdout)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--host")
    ap.add_argument("--stack", default=os.environ.get("PULUMI_STACK"))
    ap.add_argument("--from-file", help="a saved `pulumi stack output --json`")
    a = ap.parse_args(argv)
    outputs = stack_outputs(a.stack, a.from_file)
    if "inventory" not in outputs:
        sys.exit("dynamic_inventory: the stack has no `inventory` output; run `pulumi up` first")
    try:
        data = inventory.to_ansible_json(outputs["inventory"])
    except inventory.InventoryError as exc:
        sys.exit(f"dynamic_inventory: {exc}")
    if a.host:
        print(json.dumps(data["_meta"]["hostvars"].get(a.host, {})))
    else:
        print(json.dumps(data, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
