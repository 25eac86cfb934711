"""Benchmark (not a test): cold and warm `trustops lab up`, against a named peer measured in the
same run: one plain `docker run` of the same host image until sshd answers (the floor any lab
of systemd containers pays).

  cold  = no lab (containers, network, keys absent); images cached unless --from-scratch
  warm  = the same command again on the running lab

for both kinds of lab: the flat one (three hosts on one network) and the twin (TRUSTOPS_LAB_KIND=twin:
the `lab` Pulumi stack run under mocks and materialised: subnets, router with the NSGs, jump host).

Then the converge of the new twin (the default lab) with ansible/site.yml (skip it with --no-converge):

  first  = the new hosts to what the playbook says (packages, services, the app)
  second = the same converge again, nothing to change (it must report changed=0); its peer is the first

with the machine's load average before and after each, as the machine may be shared.
"""
from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from pathlib import Path


from tests.playbooks import recap
from trustops.converge import converge
from trustops.lab import environment, images
from trustops.lab.system import Progress, wait_tcp
from trustops.wait import until

ROOT = Path(__file__).resolve().parents[2]
CFGS = {"flat": environment.LabConfig(name="trustops-bench", port_base=2600, state_dir=ROOT / ".lab-trustops-bench",
                                      kind="flat"),
        "twin": environment.LabConfig(name="trustops-bench-twin", port_base=2700,
                                      state_dir=ROOT / ".lab-trustops-bench-twin", kind="twin")}

CONVERGED = "twin"    # the default kind, the suite's: the one whose converge is timed


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def peer_single_host(image: str) -> float:
    name = "trustops-bench-peer"
    subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    t = time.perf_counter()
    subprocess.run(["docker", "run", "-d", "--name", name, "-p", "127.0.0.1:2699:22", "--cap-add", "ALL",
                    "--cap-drop", "SYS_RESOURCE", "--security-opt", "seccomp=unconfined", "--cgroupns=host",
                    "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run", "--tmpfs", "/run/lock", image],
                   check=True, capture_output=True)
    def banner() -> bool:   # sshd's banner, not just the docker-proxy accepting
        with socket.create_connection(("127.0.0.1", 2699), timeout=1) as s:
            return s.recv(4).startswith(b"SSH")
    until(banner, 60, "the peer container's sshd banner", interval=0.1, retry_on=(OSError,))
    elapsed = time.perf_counter() - t
    subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    return elapsed


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def converge_twice(cfg: environment.LabConfig) -> list[tuple[str, float, str, dict]]:
    """First and second converge of a new lab: seconds, load before/after, each host's changed count."""
    out = []
    for run in ("first", "second"):
        log = cfg.state_dir / f"bench-converge-{run}.log"
        before = load()
        took = timed(lambda: converge(cfg.inventory_file, log, Progress(quiet=True)))
        changed = {host: r["changed"] for host, r in recap(log.read_text()).items()}
        out.append((run, took, f"{before} -> {load()}", changed))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--from-scratch", action="store_true", help="also remove cached lab images first")
    ap.add_argument("--kind", action="append", choices=sorted(CFGS), help="which lab(s) (default: both)")
    ap.add_argument("--no-converge", action="store_true", help="only the lab's own timings, no converge")
    args = ap.parse_args()
    quiet = Progress(quiet=True)
    for cfg in CFGS.values():
        environment.down(cfg, quiet)
    if args.from_scratch:
        out = subprocess.run(["docker", "images", "-q", "--filter", "reference=trustops-lab/*"],
                             capture_output=True, text=True).stdout.split()
        if out:
            subprocess.run(["docker", "rmi", "-f", *out], capture_output=True)
    figures = {}
    converges = []
    for kind in args.kind or sorted(CFGS):
        cfg = CFGS[kind]
        try:
            cold = timed(lambda: environment.up(cfg, Progress()))
            warm = timed(lambda: environment.up(cfg, quiet))
            if kind == CONVERGED and not args.no_converge:
                converges = converge_twice(cfg)
        finally:
            environment.down(cfg, quiet)
        figures[kind] = (cold, warm)
    host_image = images.build("host", images.base_image(quiet), quiet)
    peer = peer_single_host(host_image)
    for kind, (cold, warm) in figures.items():
        print(f"{kind}: cold lab up ({'from scratch' if args.from_scratch else 'images cached'}): {cold:6.2f} s")
        print(f"{kind}: warm lab up (no change)                  : {warm:6.2f} s   (cold/warm = {cold / warm:.1f}x)")
        print(f"{kind}: cold lab up / peer                       : {cold / peer:.1f}x")
    print(f"peer: one docker run to sshd banner              : {peer:6.2f} s")
    if converges:
        first = converges[0][1]
        for run, took, loads, changed in converges:
            print(f"{CONVERGED}: converge site.yml, {run:6}               : {took:6.2f} s   (first/this = {first / took:.1f}x; "
                  f"load {loads}; changed {changed})")
        if any(converges[1][3].values()):
            sys.exit("the second converge changed something: site.yml is not idempotent")


if __name__ == "__main__":
    main()
