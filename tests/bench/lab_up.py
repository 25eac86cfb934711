"""Benchmark (not a test): cold and warm `trustops lab up`, against a named peer measured in the
same run: one plain `docker run` of the same host image until sshd answers (the floor any lab
of systemd containers pays).

  cold  = no lab (containers, network, keys absent); images cached unless --from-scratch
  warm  = the same command again on the running lab

for both kinds of lab: the flat one (three hosts on one network) and the twin (TRUSTOPS_LAB_KIND=twin:
the `lab` Pulumi stack run under mocks and materialised: subnets, router with the NSGs, jump host).
"""
from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from pathlib import Path


from trustops.lab import environment, images
from trustops.lab.system import Progress, wait_tcp
from trustops.wait import until

ROOT = Path(__file__).resolve().parents[2]
CFGS = {"flat": environment.LabConfig(name="trustops-bench", port_base=2600, state_dir=ROOT / ".lab-trustops-bench",
                                      kind="flat"),
        "twin": environment.LabConfig(name="trustops-bench-twin", port_base=2700,
                                      state_dir=ROOT / ".lab-trustops-bench-twin", kind="twin")}


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--from-scratch", action="store_true", help="also remove cached lab images first")
    ap.add_argument("--kind", action="append", choices=sorted(CFGS), help="which lab(s) (default: both)")
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
    for kind in args.kind or sorted(CFGS):
        cfg = CFGS[kind]
        try:
            cold = timed(lambda: environment.up(cfg, Progress()))
            warm = timed(lambda: environment.up(cfg, quiet))
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


if __name__ == "__main__":
    main()
