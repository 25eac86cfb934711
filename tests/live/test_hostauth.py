"""Host security logs as the ops host's Prometheus sees them: every host's monitor follows its
journal for sshd, sudo and group changes (the `hostauth` input), and the rule that correlates
SSH failures across hosts is loaded. Asked on the ops host with promtool, as the other
monitoring checks are."""
from __future__ import annotations

import pytest

from tests.live.test_monitoring import _query
from trustops.controls.evidence import CouldNotCheck
from trustops.wait import until


@pytest.mark.probe("host-auth-monitoring")
def test_every_host_follows_its_sshd_sudo_and_group_changes(site, settle):
    """Every host's monitor follows its journal's sshd, sudo and group changes, and Prometheus has the
    rule that finds one source failing SSH on several hosts. Right after a converge the monitor may
    still be starting: the check waits (bounded) and then names the hosts that are missing."""
    for name in site.need("ops"):
        h, prometheus = site.host(name), site.prometheus_url(name)

        def settled():
            following = {m["metric"].get("host") for m in _query(
                h, prometheus, 'trustops_monitor_lag_bytes{input="hostauth"}', name)}
            missing = sorted(set(site.hosts) - following)
            assert not missing, f"{name}: no monitor follows the journal's sshd/sudo/group changes on {missing}"
            groups = {m["metric"].get("rule_group", "").rsplit(";", 1)[-1]
                      for m in _query(h, prometheus, "prometheus_rule_group_rules", name)}
            assert "trustops-hostauth" in groups, f"{name}: rule group trustops-hostauth (SshFailuresAcrossHosts) " \
                                                  "is not loaded"
            return True
        until(settled, settle, f"{name}: every host's monitor following its host authentication events", interval=3,
              retry_on=(AssertionError, CouldNotCheck))
