"""Issue 15, item 8: encryption at host needs the subscription feature registered. The program
asks (the invoke's answer decides, under mocks as on Azure) before it declares any VM, and refuses
in one line naming the `az feature register` command."""
from __future__ import annotations

from pathlib import Path

import pytest

from trustops import mockrun as harness
from trustops.infra.compute import REGISTER_ENCRYPTION_AT_HOST
from trustops.infra.program import VM_COUNT

FEATURE = "Microsoft.Compute/EncryptionAtHost"


def test_registered_feature_lets_the_vms_be_declared(monkeypatch):
    monkeypatch.setitem(harness.FEATURE_STATES, FEATURE, "Registered")
    resources, _ = harness.run("dev")
    vms = [r for r in resources if r.type == "azure-native:compute:VirtualMachine"]
    assert len(vms) == sum(VM_COUNT.values()) == 4 and all(v.inputs["securityProfile"]["encryptionAtHost"] is True for v in vms)


@pytest.mark.parametrize("state", ["NotRegistered", "Registering", None])
def test_unregistered_feature_is_refused_in_one_line_before_any_vm(monkeypatch, state):
    if state is None:
        monkeypatch.delitem(harness.FEATURE_STATES, FEATURE)   # the invoke answers nothing useful
    else:
        monkeypatch.setitem(harness.FEATURE_STATES, FEATURE, state)
    seen: list[str] = []
    original = harness.RecordingMocks.new_resource

    def recording(self, args):
        seen.append(args.typ)
        return original(self, args)
    monkeypatch.setattr(harness.RecordingMocks, "new_resource", recording)
    with pytest.raises(Exception, match=r"subscription feature Microsoft.Compute/EncryptionAtHost is ") as err:
        harness.run("dev")
    message = str(err.value).strip()
    assert "\n" not in message and REGISTER_ENCRYPTION_AT_HOST in message
    assert (state or "NotRegistered") in message
    assert "azure-native:compute:VirtualMachine" not in seen


def test_readme_names_the_same_command():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert REGISTER_ENCRYPTION_AT_HOST in readme
