"""The app image's archive on the control node (role app_image, lab): saved once per image under a
temporary name and renamed when complete, so a save killed half-way (the machine's crash, or the
save's own processes killed) is never shipped, a failed docker save leaves no archive, and a
half-written file of another run is never taken for an archive. Runs the role's own save script through ansible-playbook on this machine's
Docker, with a one-file image made here."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path

import pytest

from trustops.converge import ansible_env

ROOT = Path(__file__).resolve().parent.parent
ROLE = ROOT / "ansible" / "roles" / "app_image"


@pytest.fixture(scope="module")
def tiny_image():
    """A one-file image, made here with docker import and removed after."""
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.skip("no Docker daemon")
    tag = f"trustops-test/archive:{uuid.uuid4().hex[:12]}"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = b"trustops archive test\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    subprocess.run(["docker", "import", "-", tag], input=buf.getvalue(), check=True, capture_output=True)
    yield tag
    subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


def _book(tmp_path: Path, image: str) -> Path:
    book = tmp_path / "save.yml"
    book.write_text(f"""
- hosts: localhost
  connection: local
  gather_facts: false
  vars_files: ["{ROLE}/defaults/main.yml", "{ROLE}/vars/main.yml"]
  vars:
    trustops_cloud: lab
    trustops_lab_app_image: "{image}"
    trustops_secrets_dir: "{tmp_path / 'state'}"
  tasks:
    - name: Save
      ansible.builtin.shell: "{{{{ app_image_save_script }}}}"
      args: {{executable: /bin/bash}}
      register: saved
    - name: Said
      ansible.builtin.debug: {{msg: "SAVED={{{{ 'saved' in saved.stdout_lines }}}}"}}
""")
    (tmp_path / "state").mkdir(exist_ok=True)
    return book


def _run(book: Path, env: dict | None = None, **kw) -> subprocess.CompletedProcess | subprocess.Popen:
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", str(book)]
    return subprocess.run(cmd, env=env or ansible_env(), capture_output=True, text=True, timeout=120, **kw)


def _kill_all(book: Path, pids: Path) -> None:
    victims = {int(p) for p in pids.read_text().split()} if pids.exists() else set()
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(book).encode() in (proc / "cmdline").read_bytes():
                victims.add(int(proc.name))
        except OSError:
            pass
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _archive(state: Path, image: str) -> Path:
    return state / ("app-image-" + "".join(c if c.isalnum() or c in "_.-" else "_" for c in image) + ".tar.gz")


def test_saved_once_under_its_name_other_images_and_old_leftovers_removed(tmp_path, tiny_image):
    book = _book(tmp_path, tiny_image)
    state = tmp_path / "state"
    archive = _archive(state, tiny_image)
    other = state / "app-image-trustops-lab_app_0123456789ab.tar"
    other.write_bytes(b"an older image's archive")
    before = state / "app-image.tar"            # the one-name archive of before
    before.write_bytes(b"old layout")
    fresh_partial = Path(f"{archive}.partial.AbCdEf")   # another run's save, still writing
    fresh_partial.write_bytes(b"half")
    old_partial = Path(f"{archive}.partial.XyZ123")     # a killed run's, hours ago
    old_partial.write_bytes(b"half")
    old = time.time() - 2 * 3600
    os.utime(old_partial, (old, old))

    first = _run(book)
    assert first.returncode == 0, first.stdout[-3000:]
    assert "SAVED=True" in first.stdout
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
    assert tiny_image in manifest[0]["RepoTags"]
    assert not other.exists() and not before.exists() and not old_partial.exists()
    assert fresh_partial.read_bytes() == b"half"          # left to its run, never renamed or shipped
    assert sorted(p.name for p in state.glob(f"{archive.name}.partial.*")) == [fresh_partial.name]

    mtime = archive.stat().st_mtime_ns
    second = _run(book)
    assert second.returncode == 0, second.stdout[-3000:]
    assert "SAVED=False" in second.stdout
    assert archive.stat().st_mtime_ns == mtime


def test_a_save_killed_half_way_leaves_no_archive_and_the_next_run_saves(tmp_path, tiny_image):
    book = _book(tmp_path, tiny_image)
    state = tmp_path / "state"
    archive = _archive(state, tiny_image)
    shim = tmp_path / "bin"
    shim.mkdir()
    pids = tmp_path / "save.pids"
    (shim / "docker").write_text('#!/bin/sh\n# docker save, slowly: a part of the archive, then a long wait that fails\n'
                                 f'echo $$ $PPID >> {pids}\nhead -c 65536 /dev/urandom\n'
                                 'sleep 300\nexit 1\n')
    (shim / "docker").chmod(0o755)
    env = ansible_env() | {"PATH": f"{shim}:{os.environ['PATH']}"}
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", str(book)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not list(state.glob(f"{archive.name}.partial.*")):
            assert time.monotonic() < deadline and proc.poll() is None, "the save never began"
            time.sleep(0.2)
        time.sleep(0.5)                       # it is writing
    finally:    # everything, as a crash would: the converge, its workers (mitogen's leave their
        # session), the script and the save; no trap runs
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        _kill_all(book, pids)
    assert not archive.exists()
    assert list(state.glob(f"{archive.name}.partial.*"))   # its leftover, not taken for the archive

    again = _run(book)
    assert again.returncode == 0, again.stdout[-3000:]
    assert "SAVED=True" in again.stdout
    with tarfile.open(archive) as tar:
        assert "manifest.json" in tar.getnames()


def test_a_failed_docker_save_leaves_no_archive_and_fails_the_task(tmp_path, tiny_image):
    """docker save fails after the pipe's gzip made a valid empty archive: pipefail fails the
    script, so nothing is renamed into place (the next run would have shipped 20 bytes forever)."""
    book = _book(tmp_path, tiny_image)
    state = tmp_path / "state"
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "docker").write_text("#!/bin/sh\necho 'Error response from daemon: no space left on device' >&2\nexit 1\n")
    (shim / "docker").chmod(0o755)
    failed = _run(book, env=ansible_env() | {"PATH": f"{shim}:{os.environ['PATH']}"})
    assert failed.returncode != 0
    assert "no space left on device" in failed.stdout
    assert not _archive(state, tiny_image).exists()
    assert not list(state.glob("app-image-*"))            # its temporary removed too
