"""trustops-aide-check: AIDE's summary read into metrics, on AIDE 0.18's real report text; a failed or
garbled run is a failed check (never "no changes"), and the metrics file is replaced whole."""
from __future__ import annotations

import base64
import hashlib
import io
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from trustops.converge import role_default
from trustops import aide_check

# AIDE 0.18.3's report on a lab host after a file was added to /usr/local/bin (summary and lists)
CHANGED = """Start timestamp: 2026-12-02 11:49:18 +0000 (AIDE 0.18.3)
AIDE found differences between database and filesystem!!
Ignored e2fs attributes: EINV

Summary:
  Total number of entries:\t17660
  Added entries:\t\t1
  Removed entries:\t\t0
  Changed entries:\t\t3

---------------------------------------------------
Added entries:
---------------------------------------------------

f+++++++++++++++++: /usr/local/bin/evil-test

---------------------------------------------------
Changed entries:
---------------------------------------------------

d =.... .c.. .. . : /usr
d =b... .c.. .. . : /usr/local
d =.... mc.n .. . : /usr/local/bin

"""
CLEAN = """Start timestamp: 2026-12-02 03:40:01 +0000 (AIDE 0.18.3)
AIDE found NO differences between database and filesystem. Looks okay!!
"""


@pytest.mark.parametrize("code, output, want", [
    (5, CHANGED, {"added": 1, "removed": 0, "changed": 3}),
    (0, CLEAN, {"added": 0, "removed": 0, "changed": 0}),
    (17, "Configuration error", None),            # aide(1): 14 and up are errors
    (18, CLEAN, None),
    (0, "", None),                                  # killed or truncated: no summary, not "clean"
    (4, CHANGED.split("Summary:")[0], None),        # changes said, counts missing
    (-9, CHANGED, None),                            # SIGKILL
])
def test_parse(code, output, want):
    assert aide_check.parse(code, output) == want


def test_render_a_failed_run_has_no_counts_but_a_time():
    text = aide_check.render(None, 1_700_000_000)
    assert "trustops_aide_last_run_success 0" in text and "trustops_aide_last_run_timestamp_seconds 1700000000" in text
    assert "trustops_aide_changed_entries{" not in text


def test_main_writes_the_metrics_file_atomically(tmp_path, monkeypatch):
    out = tmp_path / "aide.prom"
    out.write_text("old\n")
    db = tmp_path / "aide.db"
    db.write_text("baseline")
    monkeypatch.setattr(aide_check, "check", lambda config: {"added": 0, "removed": 3, "changed": 0})
    assert aide_check.main([str(out), "--db", str(db)]) == 0
    assert 'trustops_aide_changed_entries{kind="removed"} 3' in out.read_text()
    assert {p.name for p in tmp_path.iterdir()} == {"aide.prom", "aide.db"}   # no temporary file left


def test_no_baseline_takes_one(tmp_path, monkeypatch):
    db = tmp_path / "aide.db"
    calls = []
    monkeypatch.setattr(aide_check, "baseline", lambda config, path: calls.append(path) or dict.fromkeys(aide_check.KINDS, 0))
    monkeypatch.setattr(aide_check, "check", lambda config: pytest.fail("checked against no baseline"))
    assert aide_check.main([str(tmp_path / "aide.prom"), "--db", str(db)]) == 0
    assert calls == [db]


def test_a_missing_metrics_directory_is_one_line(tmp_path, capsys):
    assert aide_check.main([str(tmp_path / "no" / "aide.prom")]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


# --- A deploy of the trustops package against tampering, with the real AIDE on a virtualenv of its own --------


def _wheel(wheels: Path, build: str, files: dict[str, str]) -> Path:
    """A wheel of the distribution `demo` 1.0 (one version, new builds: as the lab's package), with a console script.
    Its bytes depend on `files` only (fixed member times), as the same build's wheel would."""
    info = "demo-1.0.dist-info"
    members = {**files, f"{info}/METADATA": f"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\nSummary: {build}\n",
               f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
               f"{info}/entry_points.txt": "[console_scripts]\ndemo-tool = demo:main\n"}
    record = [f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b'=').decode()},"
              f"{len(text.encode())}" for name, text in members.items()] + [f"{info}/RECORD,,"]
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as z:
        for name, text in {**members, f"{info}/RECORD": "\n".join(record) + "\n"}.items():
            z.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)), text)
    path = wheels / "demo-1.0-py3-none-any.whl"
    if path.is_file() and path.read_bytes() == data.getvalue():
        return path     # as the role's copy: an unchanged wheel is not written again
    for old in wheels.glob("*.whl"):
        old.unlink()
    path.write_bytes(data.getvalue())
    return path


def _deploy(venv: Path, wheels: Path, build: str) -> None:
    """What the trustops_package role does (install.yml): an unchanged wheel set is not reinstalled;
    a new one is force-reinstalled, then its checksums written."""
    wheel = _wheel(wheels, build, {"demo/__init__.py": f"BUILD = {build!r}\n\ndef main():\n    print(BUILD)\n",
                                   "demo/core.py": f"VALUE = {build!r}\n"})
    stamp = venv / aide_check.WHEELS_STAMP
    if stamp.is_file() and stamp.read_text() == hashlib.sha256(wheel.read_bytes()).hexdigest() + "\n":
        return
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet",
                    "--disable-pip-version-check", "--no-deps", "--no-index", "--force-reinstall", str(wheel)],
                   check=True, capture_output=True, timeout=120)
    (venv / aide_check.WHEELS_STAMP).write_text(hashlib.sha256(wheel.read_bytes()).hexdigest() + "\n")


@pytest.fixture
def deployed(tmp_path):
    """A virtualenv with `demo` deployed, under AIDE's Debian-like rule (timestamps and inodes too), baseline taken."""
    assert shutil.which("aide"), "aide is not installed (scripts/bootstrap --test installs it)"
    opt, state = tmp_path / "opt", tmp_path / "state"
    venv, wheels = opt / "venv", opt / "wheels"
    wheels.mkdir(parents=True)
    state.mkdir()
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    _deploy(venv, wheels, "b1")
    conf = tmp_path / "aide.conf"
    conf.write_text(f"database_in=file:{state}/aide.db\ndatabase_out=file:{state}/aide.db.new\ngzip_dbout=no\n"
                    f"report_url=stdout\nFull = p+ftype+i+n+u+g+s+m+c+sha256\n{opt} Full\n")
    args = [str(tmp_path / "aide.prom"), "--config", str(conf), "--db", str(state / "aide.db"),
            "--venv", str(venv), "--wheels", str(wheels)]
    assert aide_check.main(args) == 0 and (state / "aide.db").exists()
    site = next(venv.glob("lib/python*/site-packages"))

    def counts() -> dict[str, int]:
        assert aide_check.main(args) == 0
        text = (tmp_path / "aide.prom").read_text()
        return {k: int(n) for k, n in re.findall(r'trustops_aide_changed_entries\{kind="(\w+)"\} (\d+)', text)}

    return venv, wheels, site, conf, counts


def test_a_deploy_is_not_reported_though_it_rewrites_the_tree(deployed):
    """(Its old helper force-reinstalled an unchanged wheel set, which the role never does: when the
    two builds of "b2" fell in one 2-second zip timestamp, the stamp was the same, nothing was taken
    in, and the rewritten tree was reported; fast machines failed, slow ones passed.)"""
    venv, wheels, _, conf, counts = deployed
    _deploy(venv, wheels, "b2")
    plain = subprocess.run(["aide", "--config", str(conf), "--check"], capture_output=True, text=True)
    assert aide_check.parse(plain.returncode, plain.stdout)["changed"] >= 5, plain.stdout   # what a check alone sees
    assert counts() == {"added": 0, "removed": 0, "changed": 0}
    _deploy(venv, wheels, "b2")      # the same wheels again: not reinstalled, nothing new, nothing reported
    assert counts() == {"added": 0, "removed": 0, "changed": 0}


def test_tampering_is_reported_with_or_without_a_deploy(deployed):
    venv, wheels, site, _, counts = deployed
    (site / "demo" / "core.py").write_text("VALUE = 'evil'\n")
    (site / "zz-evil.pth").write_text("import os\n")
    (site / "demo" / "backdoor.py").write_text("import os\n")
    got = counts()
    assert got["added"] == 2 and got["changed"] >= 1, got
    _deploy(venv, wheels, "b3")     # the deploy writes core.py back from the wheel; what it did not write stays
    got = counts()
    assert got["added"] == 2, got
    assert (site / "demo" / "core.py").read_text() == "VALUE = 'b3'\n"


def test_what_a_blue_green_switch_rewrites_is_outside_what_aide_watches():
    """The app role rewrites its slot files at every switch: where AIDE watched them (/etc/trustops),
    the next daily check reported each deploy as a change."""
    excludes = [re.compile(rx) for rx in role_default("aide", "aide_exclude")]
    for name in ("app_live_slot_file", "app_upstream_file"):
        path = role_default("app", name)
        assert any(rx.match(path) for rx in excludes), f"{name} ({path}) is watched by AIDE"


def _role_config(tmp_path: Path) -> Path:
    """The aide role's configuration, rendered as Ansible renders it."""
    from tests.playbooks import role_template

    conf = tmp_path / "trustops-aide.conf"
    conf.write_text(role_template("aide", "trustops-aide.conf.j2").render(
        aide_db=str(tmp_path / "aide.db"), aide_checksums=role_default("aide", "aide_checksums"),
        aide_exclude=role_default("aide", "aide_exclude")))
    return conf


def _rule(conf: Path, kind: str, path: str) -> str:
    """AIDE's own answer for one path: '-' (not watched) or the attributes it records."""
    proc = subprocess.run(["aide", "--config", str(conf), "--path-check", f"{kind}:{path}"],
                          capture_output=True, text=True, timeout=60)
    line = proc.stdout.strip()
    assert line.startswith(("[X]", "[ ]")), f"{path}: {proc.returncode} {line} {proc.stderr}"
    return "-" if line.startswith("[ ]") else line.split("rule: '", 1)[1].split("' (", 1)[0].rsplit(" ", 1)[-1]


def _attrs(names: str) -> str:
    """AIDE's attribute list as --path-check prints it (written out as words: the joined form reads
    as a secret to detect-secrets)."""
    return "+".join(names.split())


# Debian's groups, as AIDE expands them (the role's template defines them with Debian's names)
FULL = _attrs("l p u g s c m i b n acl sha512 selinux xattrs ftype e2fsattrs caps")
VAR_FILE = _attrs("l p u g n acl selinux xattrs ftype e2fsattrs caps")
VAR_DIR = _attrs("p u g i n acl selinux xattrs ftype e2fsattrs caps")


@pytest.mark.skipif(shutil.which("aide") is None, reason="needs Debian's aide (scripts/bootstrap installs it)")
@pytest.mark.parametrize("kind, path, attrs", [
    # what an intruder changes: every attribute and the checksum
    ("f", "/etc/passwd", FULL), ("f", "/usr/bin/sudo", FULL), ("f", "/etc/ssh/sshd_config", FULL),
    ("f", "/root/.ssh/authorized_keys", FULL), ("f", "/home/deploy/.ssh/authorized_keys", FULL),
    ("f", "/opt/trustops/venv/bin/python3", FULL), ("f", "/etc/systemd/system/trustops-monitor.service", FULL),
    ("f", "/boot/vmlinuz", FULL), ("f", "/usr/lib/x86_64-linux-gnu/libc.so.6", FULL),
    # rewritten in place by dpkg and the resolver (Debian's VarFile): owner, mode, type, links
    ("f", "/var/lib/dpkg/status", VAR_FILE), ("f", "/etc/resolv.conf", VAR_FILE), ("d", "/etc", VAR_DIR),
    # never watched: kernel interfaces, churn with its own integrity
    ("d", "/proc", "-"), ("d", "/sys", "-"), ("f", "/dev/shm/PostgreSQL.1234", "-"), ("f", "/var/log/auth.log", "-"),
    ("f", "/var/lib/postgresql/15/main/postgresql.auto.conf", "-"), ("f", "/var/lib/docker/overlay2/x", "-"),
    ("f", "/run/sshd.pid", "-"), ("f", "/tmp/x", "-"), ("f", "/var/lib/aide/aide.db", "-"),
])
def test_the_roles_configuration_watches_what_an_intruder_changes_and_skips_churn(tmp_path, kind, path, attrs):
    """The role's own configuration (none of aide-common's) on the real AIDE: a path's rule as AIDE picks it."""
    conf = _role_config(tmp_path)
    assert subprocess.run(["aide", "--config", str(conf), "--config-check"], capture_output=True,
                          timeout=60).returncode == 0
    assert _rule(conf, kind, path) == attrs


def test_the_checks_default_configuration_is_the_roles():
    assert aide_check.DEFAULT_CONFIG == role_default("aide", "aide_config")
