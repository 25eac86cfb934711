"""A spoofed flood (issue 17, defect 2): tracked sources and firing alerts stay within their
bounds, the overflow becomes one aggregate alert per rule naming the top offenders, and every
source dropped or aggregated is counted."""
import json
import time

import pytest

from tests.services import Webhook
from trustops.monitors.monitor import Monitor, load_config


@pytest.fixture
def capture():
    hook = Webhook()
    yield hook
    hook.close()


def _now() -> str:
    """The time the line is written (live: nothing expires yet). Not the time the module was
    imported: in the whole suite that is many minutes before the test runs, past the rules' windows."""
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000+00:00", time.gmtime())


def _ufw(src: str, dpt: int = 5432) -> str:
    return (f"{_now()} db-1 kernel: [UFW BLOCK] IN=eth0 OUT= SRC={src} "
            f"DST=10.0.0.4 LEN=40 PROTO=TCP SPT=4000 DPT={dpt} WINDOW=1\n")


def test_a_spoofed_flood_stays_bounded_and_is_aggregated(tmp_path, capture):
    log = tmp_path / "ufw.log"
    flood = [_ufw(f"198.18.{i // 250}.{i % 250 + 1}") for i in range(3000)]
    attacker = "203.0.113.77"
    for i in range(40):  # a real prober going on during the spoofed flood
        flood.insert(75 * i + i, _ufw(attacker))
    log.write_text("".join(flood))
    cfg = load_config(data={"instance": "db-1", "start_at": "beginning", "state_dir": str(tmp_path / "state"),
                            "inputs": [{"name": "ufw", "type": "ufw", "path": str(log)}],
                            "alertmanager": {"url": f"http://127.0.0.1:{capture.port}"}, "metrics": {"listen": None},
                            "max_tracked_groups": 1100, "max_alerts_per_rule": 20, "max_alerts": 50})
    mon = Monitor(cfg)
    mon.step()
    reg = mon.metrics.registry
    assert len(mon.alerts.firing) <= 50
    probes = [k for k in mon.alerts.firing if k.startswith("UfwDatabasePortProbe|")]
    assert len(probes) == 21  # 20 one by one, then the aggregate
    posted = [a for batch in capture.received for a in batch]
    aggs = [a for a in posted if a["labels"].get("aggregate") == "true"]
    agg = aggs[-1]  # posted after the read that made it, and again by the pass's re-send
    assert {a["annotations"]["summary"] for a in aggs} == {agg["annotations"]["summary"]}
    assert agg["labels"]["source"] == "many" and agg["labels"]["alertname"] == "UfwDatabasePortProbe"
    assert "2981 detections" in agg["annotations"]["summary"]
    assert f"top: {attacker} (40)" in agg["annotations"]["summary"]
    assert reg.get_sample_value("trustops_monitor_alerts_aggregated_total", {"rule": "UfwDatabasePortProbe"}) == 2981
    assert mon.engine.groups() <= 1100
    evicted = reg.get_sample_value("trustops_monitor_groups_evicted_total", {"rule": "UfwDatabasePortProbe"})
    assert evicted == 3001 - 1100 // len(mon.rules)
    mon.save()
    assert len(json.dumps(mon.checkpoint.load())) < 200_000
    for t in mon.tails.values():
        t.close()
