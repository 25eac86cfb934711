"""The project's shape (issue 20): one installable top-level package whose console scripts are
every program a host runs, and roles that take nothing from the repository by relative path."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from trustops import package

ROOT = Path(__file__).resolve().parent.parent
HOST_COMMANDS = {"trustops-monitor", "trustops-pgbackup", "trustops-alert-sink", "trustops-host-metrics"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return package.build_trustops_wheel(tmp_path_factory.mktemp("wheel"), pure=True)


def test_the_wheel_has_one_top_level_package_and_the_host_commands(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        info = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = z.read(info).decode()
    assert {n.split("/")[0] for n in names if ".dist-info/" not in n} == {"trustops"}
    for sub in ("monitors", "backups", "lab", "infra", "controls"):
        assert f"trustops/{sub}/__init__.py" in names, sub
    assert "trustops/monitors/prometheus/monitor-rules.yml" in names   # the alerting role installs it from here
    assert {line.split("=")[0].strip() for line in scripts.splitlines() if "=" in line} >= HOST_COMMANDS | {"trustops"}


def test_pip_install_into_a_fresh_virtualenv_gives_one_top_level_package(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    proc = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                           "--disable-pip-version-check", str(wheel)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    site = next((venv / "lib").glob("python3.*/site-packages"))
    top = {p.name for p in site.iterdir() if not p.name.endswith((".dist-info", ".pth", "__pycache__"))
           and p.name not in ("pip", "_distutils_hack", "setuptools", "pkg_resources")
           and not p.name.startswith("distutils-precedence")}
    assert top == {"trustops"}
    assert all((venv / "bin" / cmd).exists() for cmd in HOST_COMMANDS)


def test_the_wheelhouse_is_built_once_per_source_change(monkeypatch, tmp_path):
    builds = []
    monkeypatch.setattr(package, "_build", lambda out: (builds.append(out), (out / "trustops-0-py3-none-any.whl")
                                                        .write_bytes(b"")))
    first = package.wheelhouse(tmp_path)
    again = package.wheelhouse(tmp_path)
    assert first["built"] and not again["built"] and len(builds) == 1
    monkeypatch.setattr(package, "fingerprint", lambda root=None: "changed")
    assert package.wheelhouse(tmp_path)["built"] and len(builds) == 2


def test_a_second_build_meanwhile_waits_for_the_first_and_takes_its_wheels(monkeypatch, tmp_path):
    """A converge begins the build in the background; a converge killed meanwhile leaves it running,
    and the next one's build must not build (or clear the wheels) alongside it."""
    import threading
    import time
    started, builds = threading.Event(), []

    def slow_build(out):
        builds.append(out)
        started.set()
        time.sleep(0.5)
        (out / "trustops-0-py3-none-any.whl").write_bytes(b"")
    monkeypatch.setattr(package, "_build", slow_build)
    results = {}
    first = threading.Thread(target=lambda: results.update(first=package.wheelhouse(tmp_path)))
    first.start()
    assert started.wait(10)
    results["second"] = package.wheelhouse(tmp_path)
    first.join(10)
    assert results["first"]["built"] and not results["second"]["built"] and len(builds) == 1
    assert (tmp_path / "trustops-0-py3-none-any.whl").exists()


def test_no_file_under_ansible_reaches_out_of_it_by_relative_path():
    offenders = []
    for path in sorted((ROOT / "ansible").rglob("*")):
        if path.is_file() and ".cache" not in path.parts:
            for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if "../" in line:
                    offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_every_role_that_runs_the_package_declares_it():
    """A role converged on its own gets the package (meta dependency), not a copy of repository files."""
    import yaml

    for role in ("monitors", "alerting", "backups", "metrics"):
        meta = yaml.safe_load((ROOT / "ansible" / "roles" / role / "meta" / "main.yml").read_text())
        assert {"role": "trustops_package"} in meta["dependencies"], role


def test_the_pulumi_program_package_holds_no_test_harness():
    """trustops.infra is the program Pulumi runs; the mocks harness (trustops.mockrun) lives beside it."""
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "infra").rglob("*.py") if "set_mocks" in p.read_text()]
    assert not offenders, offenders


@pytest.mark.parametrize("role", ["app", "web_front", "alerting", "monitors", "backups", "metrics"])
def test_a_split_role_imports_one_tagged_file_per_concern_and_reads_os_specifics_from_vars(role):
    """tasks/main.yml only picks the OS's vars file and imports per-concern files, each with its tag,
    so an operator can run or skip one concern (the hardening role's pattern)."""
    import yaml

    tasks = yaml.safe_load((ROOT / "ansible" / "roles" / role / "tasks" / "main.yml").read_text())
    first, concerns = tasks[0], tasks[1:]
    assert "ansible.builtin.include_vars" in first
    assert (ROOT / "ansible" / "roles" / role / "vars" / "Debian.yml").exists()
    assert concerns and all("ansible.builtin.import_tasks" in t and t.get("tags") for t in concerns), \
        [t.get("name") for t in concerns if "ansible.builtin.import_tasks" not in t or not t.get("tags")]
