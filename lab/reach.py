"""Reachability in the twin: what the program's NSGs allow (trustops.lab.nsg.allowed) for every
source (the internet, each VM) x destination VM x port, and what the live lab does, probed in
parallel with short timeouts. Allowed flows must connect; denied ones must time out (a drop,
as on Azure, not a reset)."""
from __future__ import annotations

import json
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor

from trustops.lab import nsg, stack, twin

INTERNET = "internet"
# the ports the roles use (SSH, web, Postgres, Prometheus and Alertmanager, exporters, monitors)
ROLE_PORTS = (22, 80, 443, 5432, 9090, 9093, 9097, 9100, 9469, 9470, 19532)

# Seconds a probe's listeners live: long enough for one matrix (a few seconds), short so a port
# they took is soon free again for a service that (re)starts there.
LISTENER_LIFETIME = 60
_LISTENER = r"""
import socket, sys, threading, os
ports = [int(p) for p in sys.argv[1:]]
socks = []
for p in ports:
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("0.0.0.0", p)); s.listen(64); socks.append(s)
    except OSError:
        pass   # a real service listens there already
def serve(s):
    while True:
        c, _ = s.accept(); c.close()
if os.fork():
    sys.exit(0)
for s in socks:
    threading.Thread(target=serve, args=(s,), daemon=True).start()
threading.Event().wait(LIFETIME)
"""

_PROBE = r"""
import json, socket, sys
from concurrent.futures import ThreadPoolExecutor
timeout = float(sys.argv[1]); targets = json.loads(sys.argv[2])
def probe(t):
    s = socket.socket(); s.settimeout(timeout)
    try:
        s.connect((t[0], t[1])); return "open"
    except socket.timeout:
        return "timeout"
    except ConnectionRefusedError:
        return "refused"
    except OSError as e:
        return "error:" + e.__class__.__name__
    finally:
        s.close()
with ThreadPoolExecutor(64) as ex:
    print(json.dumps(list(ex.map(probe, targets))))
"""


def expected(plan: stack.Plan, admin_ip: str = twin.ADMIN_ADDRESS, ports=ROLE_PORTS) -> dict[tuple, bool]:
    """(source, destination VM name, port) -> allowed, from the program's rules. The internet
    reaches only VMs with a public IP (its traffic arrives from the admin address)."""
    out: dict[tuple, bool] = {}
    for dst in plan.vms.values():
        for port in ports:
            if dst.public_ip:
                out[(INTERNET, dst.name, port)] = nsg.allowed(plan, admin_ip, dst, "tcp", port)
            for src in plan.vms.values():
                if src is not dst:
                    out[(src.name, dst.name, port)] = nsg.allowed(plan, src.private_ip, dst, "tcp", port, src_vm=src)
    return out


def start_listeners(cfg, plan: stack.Plan, ports=ROLE_PORTS) -> None:
    for vm in plan.vms.values():
        subprocess.run(["docker", "exec", cfg.container(vm.lab_key), "python3", "-c",
                        _LISTENER.replace("LIFETIME", str(LISTENER_LIFETIME)),
                        *map(str, ports)], check=True, capture_output=True, timeout=30)


def _probe_local(targets: list[tuple[str, int]], timeout: float) -> list[str]:
    def probe(t):
        s = socket.socket()
        s.settimeout(timeout)
        try:
            s.connect(t)
            return "open"
        except socket.timeout:
            return "timeout"
        except ConnectionRefusedError:
            return "refused"
        except OSError as e:
            return "error:" + type(e).__name__
        finally:
            s.close()
    with ThreadPoolExecutor(64) as ex:
        return list(ex.map(probe, targets))


def live(cfg, plan: stack.Plan, ports=ROLE_PORTS, timeout: float = 2.0) -> dict[tuple, str]:
    """(source, destination VM name, port) -> open | timeout | refused, probed now: every VM's
    probes in one process inside it, all sources at once."""
    keys_by_source: dict[str, list[tuple]] = {}
    for key in expected(plan, ports=ports):
        keys_by_source.setdefault(key[0], []).append(key)

    def address(key):
        dst = plan.vms[key[1]]
        return (dst.public_ip if key[0] == INTERNET else dst.private_ip), key[2]

    def run_source(source: str) -> list[str]:
        targets = [address(k) for k in keys_by_source[source]]
        if source == INTERNET:
            return _probe_local(targets, timeout)
        proc = subprocess.run(["docker", "exec", cfg.container(plan.vms[source].lab_key), "python3", "-c", _PROBE,
                               str(timeout), json.dumps(targets)], capture_output=True, text=True,
                              timeout=60 + timeout)
        return json.loads(proc.stdout)
    with ThreadPoolExecutor(len(keys_by_source)) as ex:
        results = dict(zip(keys_by_source, ex.map(run_source, keys_by_source)))
    return {k: r for source, keys in keys_by_source.items() for k, r in zip(keys, results[source])}


def mismatches(plan: stack.Plan, observed: dict[tuple, str]) -> list[str]:
    want = expected(plan, ports=sorted({k[2] for k in observed}))
    bad = []
    for key, allowed in sorted(want.items()):
        got = observed[key]
        if (allowed and got != "open") or (not allowed and got != "timeout"):
            bad.append(f"{key[0]} -> {key[1]}:{key[2]}: NSGs {'allow' if allowed else 'deny'}, lab says {got}")
    return bad
