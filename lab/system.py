"""What the lab needs from the machine: root, a running Docker engine, debootstrap, free ports.

Each check either fixes the situation (installs a package, starts dockerd) or raises LabError
with one line that says what is wrong and how to fix it.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from trustops.wait import NotSettled, until


class LabError(RuntimeError):
    """A failure the operator can act on; its message is one line: what failed, how to fix it."""


class Progress:
    """Step-by-step progress on stderr, with elapsed time, so a long `lab up` is never silent."""

    def __init__(self, quiet: bool = False) -> None:
        self.start = time.monotonic()
        self.quiet = quiet

    def step(self, message: str) -> None:
        if not self.quiet:
            print(f"[{time.monotonic() - self.start:6.1f}s] {message}", file=sys.stderr, flush=True)


def run(args: list[str], *, check: bool = True, input: str | None = None,
        timeout: float | None = 600) -> subprocess.CompletedProcess:
    """Run a command, capturing its output; on failure raise LabError with its last stderr line."""
    try:
        proc = subprocess.run(args, input=input, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError as exc:
        raise LabError(f"{args[0]}: command not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{' '.join(args[:3])} ... timed out after {timeout:.0f}s") from exc
    if check and proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
        raise LabError(f"{' '.join(args[:4])} failed (exit {proc.returncode}): {last}")
    return proc


def write_atomically(path: Path, data: bytes, mode: int = 0o600, uid: int | None = None) -> None:
    """`data` at `path` with `mode` (and owner `uid` when given) by a temporary file beside it, made
    anew so a leftover's looser mode is not inherited, then a rename: a run killed mid-way leaves
    the old file or the new one, never half of one, and never readable by others even briefly."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    if uid is not None:
        os.chown(tmp, uid, uid)
    tmp.replace(path)


def is_root() -> bool:
    return os.geteuid() == 0


def require_root(why: str) -> None:
    if not is_root():
        raise LabError(f"{why} needs root: run it as root (or with sudo)")


def apt_install(packages: list[str], progress: Progress) -> None:
    require_root(f"installing {', '.join(packages)}")
    if not shutil.which("apt-get"):
        raise LabError(f"{', '.join(packages)} missing and this machine has no apt-get: install them by hand")
    progress.step(f"installing {', '.join(packages)} with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for args in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *packages]):
        proc = subprocess.run(args, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            last = (proc.stderr.strip() or proc.stdout.strip() or "?").splitlines()[-1]
            raise LabError(f"{', '.join(packages)} missing and could not be installed ({last}); "
                           f"check the network to Debian's mirror, or install them by hand")


def docker_ready() -> bool:
    return shutil.which("docker") is not None and run(["docker", "info"], check=False, timeout=20).returncode == 0


def ensure_docker(progress: Progress) -> None:
    """Docker engine installed and answering; start dockerd when it is not running."""
    if docker_ready():
        return
    if not shutil.which("dockerd"):
        apt_install(["docker.io"], progress)
    require_root("starting the Docker engine")
    progress.step("starting the Docker engine (dockerd)")
    if Path("/run/systemd/system").is_dir() and shutil.which("systemctl"):
        run(["systemctl", "start", "docker"], check=False)
    else:
        log = open("/var/log/trustops-dockerd.log", "ab")
        subprocess.Popen(["dockerd"], stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                         start_new_session=True)
    try:
        until(docker_ready, 60, "the Docker engine answering")
    except NotSettled as exc:
        raise LabError(f"{exc}; see /var/log/trustops-dockerd.log (or `journalctl -u docker`)") from exc


def ensure_debootstrap(progress: Progress) -> None:
    if not shutil.which("debootstrap"):
        apt_install(["debootstrap"], progress)


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_tcp(host: str, port: int, timeout: float) -> bool:
    """Whether something accepts connections on host:port within `timeout` seconds."""
    def accepts() -> bool:
        with socket.create_connection((host, port), timeout=1):
            return True
    try:
        return until(accepts, timeout, f"a listener on {host}:{port}", interval=0.2, retry_on=(OSError,))
    except NotSettled:
        return False
