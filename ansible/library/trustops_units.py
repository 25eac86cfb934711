#!/usr/bin/python
"""Several systemd units brought to one state in one module run: one `systemctl show` reads them all,
and systemctl runs only for what differs.

Why: ansible.builtin.systemd_service runs once per unit (a task, or a loop item, each about 0.1 s
of a converge on four hosts even when nothing changes). A role's "these units run" is one task.
"""
from __future__ import annotations

DOCUMENTATION = r"""
module: trustops_units
short_description: Systemd units started or stopped, enabled or disabled, masked or not, in one run
options:
  names:
    description: The units, as systemctl takes them (a name without a suffix is a .service).
    type: list
    elements: str
    required: true
  state:
    description: started or stopped; unset leaves it.
    type: str
    choices: [started, stopped]
  enabled:
    description: Whether each starts at boot; unset leaves it.
    type: bool
  masked:
    description: Whether each is masked; unset leaves it.
    type: bool
"""

RETURN = r"""
actions:
  description: The systemctl commands run (or that would run, in check mode), in order.
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

PROPERTIES = ("Id", "LoadState", "ActiveState", "UnitFileState")
RUNNING = ("active", "activating", "reloading")
ENABLED = ("enabled", "enabled-runtime", "static", "alias", "indirect", "generated")


def read(module, systemctl, names):
    """Each unit's properties, in the order named (systemctl show prints a block per unit)."""
    rc, out, err = module.run_command([systemctl, "show", f"--property={','.join(PROPERTIES)}", "--", *names])
    if rc != 0:
        module.fail_json(msg=f"systemctl show failed (exit {rc}): {(err or out).strip()}")
    blocks = [dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
              for block in out.strip().split("\n\n")]
    if len(blocks) != len(names):
        module.fail_json(msg=f"systemctl show gave {len(blocks)} units for {len(names)} names")
    return blocks


def wanted_actions(params, unit):
    """The systemctl verbs that bring one unit (its properties) to what params ask, in order."""
    verbs = []
    masked = unit.get("UnitFileState") in ("masked", "masked-runtime")
    if params["masked"] is True and not masked:
        verbs.append("mask")
    if params["masked"] is False and masked:
        verbs.append("unmask")
    if params["enabled"] is True and not masked and unit.get("UnitFileState") not in ENABLED:
        verbs.append("enable")
    if params["enabled"] is False and unit.get("UnitFileState") in ("enabled", "enabled-runtime"):
        verbs.append("disable")
    running = unit.get("ActiveState") in RUNNING
    if params["state"] == "started" and not running:
        verbs.append("start")
    if params["state"] == "stopped" and running:
        verbs.append("stop")
    return verbs


def main():
    module = AnsibleModule(argument_spec={
        "names": {"type": "list", "elements": "str", "required": True},
        "state": {"type": "str", "choices": ["started", "stopped"]},
        "enabled": {"type": "bool"},
        "masked": {"type": "bool"},
    }, supports_check_mode=True)
    names = module.params["names"]
    if not names:
        module.exit_json(changed=False, actions=[])
    systemctl = module.get_bin_path("systemctl", required=True)
    actions = []
    for name, unit in zip(names, read(module, systemctl, names)):
        if unit.get("LoadState") == "not-found" and module.params["state"] != "stopped":
            module.fail_json(msg=f"{name}: no such unit on this host", actions=actions, changed=bool(actions))
        for verb in wanted_actions(module.params, unit):
            actions.append(f"{verb} {name}")
            if module.check_mode:
                continue
            rc, out, err = module.run_command([systemctl, verb, "--", name])
            if rc != 0:
                said = (err or out).strip().splitlines()
                module.fail_json(msg=f"{name}: systemctl {verb} failed (exit {rc}): {said[-1] if said else 'no output'}",
                                 actions=actions, changed=True)
    module.exit_json(changed=bool(actions), actions=actions)


if __name__ == "__main__":
    main()
