"""Pending updates measured by real apt (apt-get update and -s dist-upgrade) against a Debian-shaped
mirror served on loopback, in a scratch apt root: counts by origin, first-seen times that survive
runs, and the hostile cases (mirror down, lists lock held, torn state, unreadable or foreign images)
that must say unknown, never 0 pending."""
from __future__ import annotations

import fcntl
import functools
import hashlib
import http.server
import subprocess
import threading
from pathlib import Path

import pytest

from trustops import host_metrics, pending_updates as pu
from trustops.lab import system
from trustops.lab.system import Progress

ARCH = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()
# suite -> (label, archive, {package: version}) on the mirror
MIRROR = {
    "bookworm": ("Debian", "oldstable", {"libfoo": "1.0-1", "bar": "2.0-2", "security-tools": "3.0-2",
                                         "baz": "1.0-1", "postgresql-15": "15.10-0+deb12u1"}),
    "bookworm-security": ("Debian-Security", "oldstable-security", {"libfoo": "1.0-1+deb12u1"}),
}
INSTALLED = {"dpkg": "1.21.22", "libfoo": "1.0-1", "bar": "2.0-1", "security-tools": "3.0-1", "baz": "1.0-1"}


def _stanza(name: str, version: str, status: bool) -> str:
    head = f"Package: {name}\n" + ("Status: install ok installed\n" if status else "")
    tail = "" if status else f"Filename: pool/{name}_{version}.deb\nSize: 1\nSHA256: {'0' * 64}\n"
    return f"{head}Version: {version}\nArchitecture: {ARCH}\nMaintainer: t <t@example.org>\n{tail}Description: t\n\n"


def status_text(installed: dict[str, str]) -> str:
    return "".join(_stanza(n, v, True) for n, v in installed.items())


def make_mirror(root: Path) -> None:
    for suite, (label, archive, pkgs) in MIRROR.items():
        rel = f"main/binary-{ARCH}/Packages"
        packages = root / "dists" / suite / rel
        packages.parent.mkdir(parents=True, exist_ok=True)
        packages.write_text("".join(_stanza(n, v, False) for n, v in pkgs.items()))
        data = packages.read_bytes()
        (root / "dists" / suite / "Release").write_text(
            f"Origin: Debian\nLabel: {label}\nSuite: {archive}\nCodename: {suite}\nVersion: 12\n"
            f"Date: Sat, 01 Jan 2026 00:00:00 UTC\nArchitectures: {ARCH}\nComponents: main\n"
            f"SHA256:\n {hashlib.sha256(data).hexdigest()} {len(data)} {rel}\n")


class Mirror:
    """The mirror on loopback; `down()` stops answering (connection refused), `requests` counts GETs."""

    def __init__(self, root: Path):
        self.requests = 0
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                outer.requests += 1
                super().do_GET()

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def env(tmp_path):
    """A scratch apt root whose sources name the loopback mirror; the host's status as INSTALLED."""
    make_mirror(tmp_path / "mirror")
    mirror = Mirror(tmp_path / "mirror")
    a = tmp_path / "apt"
    for d in ("sources.list.d", "preferences.d", "lists/partial", "cache/archives/partial"):
        (a / d).mkdir(parents=True)
    (a / "sources.list").write_text("".join(f"deb [trusted=yes] http://127.0.0.1:{mirror.port}/ {s} main\n"
                                            for s in MIRROR))
    (a / "status").write_text(status_text(INSTALLED))
    opts = [f"Dir::Etc::sourcelist={a}/sources.list", f"Dir::Etc::sourceparts={a}/sources.list.d",
            f"Dir::Etc::preferencesparts={a}/preferences.d", f"Dir::State::lists={a}/lists",
            f"Dir::State::status={a}/status", f"Dir::State::extended_states={a}/extended_states",
            f"Dir::Cache={a}/cache", "APT::Sandbox::User=root", "Acquire::Languages=none",
            "Acquire::http::Timeout=5", "Acquire::Retries=0"]
    yield {"apt": pu.Apt(opts), "mirror": mirror, "root": a, "state": {}}
    if mirror.server.fileno() != -1:
        mirror.down()


def run(env, now: float, **kw) -> dict[str, float]:
    kw = {"images": False, "postgres": False, **kw}
    lines = pu.measure(env["apt"], env["state"], now, **kw)
    got = {l.rsplit(" ", 1)[0]: float(l.rsplit(" ", 1)[1]) for l in lines if not l.startswith("#")}
    assert got.pop("trustops_updates_run_timestamp_seconds") == now
    return got


def test_apt_counts_security_and_other_updates_on_the_host(env):
    got = run(env, 1000.0)
    assert got['trustops_updates_check_success{scope="host"}'] == 1
    assert got['trustops_pending_updates{scope="host",origin="security"}'] == 1      # libfoo only
    assert got['trustops_pending_updates{scope="host",origin="other"}'] == 2         # bar, security-tools
    assert got['trustops_pending_security_updates_since_timestamp_seconds{scope="host"}'] == 1000
    assert got["trustops_updates_lists_timestamp_seconds"] == 1000


def test_first_seen_survives_runs_and_ends_when_patched(env):
    run(env, 1000.0)
    requests = env["mirror"].requests
    got = run(env, 1000.0 + 3600)
    assert env["mirror"].requests == requests, "refreshed the lists again within REFRESH_SECONDS"
    assert got['trustops_pending_security_updates_since_timestamp_seconds{scope="host"}'] == 1000
    (env["root"] / "status").write_text(status_text({**INSTALLED, "libfoo": "1.0-1+deb12u1"}))
    got = run(env, 1000.0 + 7200)
    assert got['trustops_pending_updates{scope="host",origin="security"}'] == 0
    assert not any(k.startswith("trustops_pending_security_updates_since") for k in got)


def test_a_mirror_down_for_long_is_unknown_never_zero(env):
    run(env, 1000.0)
    env["mirror"].down()
    got = run(env, 1000.0 + pu.REFRESH_SECONDS)            # refresh fails, yesterday's lists still count
    assert got['trustops_updates_check_success{scope="host"}'] == 1
    got = run(env, 1000.0 + pu.LISTS_MAX_AGE + 1)
    assert got == {'trustops_updates_check_success{scope="host",reason="refresh-failed"}': 0,
                   'trustops_updates_last_success_timestamp_seconds{scope="host"}': 1000 + pu.REFRESH_SECONDS,
                   "trustops_updates_lists_timestamp_seconds": 1000}


def test_never_refreshed_is_unknown(env):
    env["mirror"].down()
    got = run(env, 1000.0)
    assert got == {'trustops_updates_check_success{scope="host",reason="refresh-failed"}': 0}


def test_a_held_lists_lock_fails_the_refresh_not_the_run(env):
    with open(env["root"] / "lists" / "lock", "w") as lock:
        fcntl.lockf(lock, fcntl.LOCK_EX)
        with pytest.raises(pu.MeasureError, match="refresh-failed.*lock"):
            env["apt"].refresh()
        got = run(env, 1000.0)
    assert got == {'trustops_updates_check_success{scope="host",reason="refresh-failed"}': 0}
    assert run(env, 1060.0)['trustops_updates_check_success{scope="host"}'] == 1


def test_main_keeps_lists_of_its_own_so_a_held_system_lock_does_not_matter(env, tmp_path):
    """The command line's run: its apt lists beside its state, never the system's (whose lock
    unattended-upgrades or a converge may hold for minutes); the system's update hooks (here one
    that fails, as apt-show-versions' did in the unit's sandbox on a lab host) are not run."""
    opts = [o for o in env["apt"].options if not o.startswith(("Dir::State::lists=", "Dir::Cache="))]
    opts.append("APT::Update::Post-Invoke-Success::=false")
    state, out = tmp_path / "st" / "state.json", tmp_path / "out.prom"
    with open(env["root"] / "lists" / "lock", "w") as lock:
        fcntl.lockf(lock, fcntl.LOCK_EX)
        args = ["updates", str(out), "--state", str(state), "--no-images", "--no-postgres"]
        assert host_metrics.main(args + [a for o in opts for a in ("--apt-option", o)]) == 0
    text = out.read_text()
    assert 'trustops_updates_check_success{scope="host"} 1' in text, text
    assert 'trustops_pending_updates{scope="host",origin="security"} 1' in text
    assert list((state.parent / "lists").glob("*_Packages*")), "lists not kept beside the state"
    assert not list((env["root"] / "lists").glob("*_Packages*")), "the system's lists were written"


@pytest.mark.parametrize("text", ["", "Package: x\nVersion: \x00garbage\nStatus: install ok installed\n\n" * 3,
                                  status_text({"libfoo": "1.0-1"}),
                                  status_text(INSTALLED).replace("Package: dpkg\nStatus: install ok installed",
                                                                 "Package: dpkg\nStatus: deinstall ok config-files")])
def test_an_empty_or_garbled_dpkg_status_is_unknown(env, text):
    """apt itself reads these as 'nothing to upgrade'."""
    run(env, 1000.0)
    (env["root"] / "status").write_text(text)
    got = run(env, 1060.0)
    assert got['trustops_updates_check_success{scope="host",reason="status-invalid"}'] == 0
    assert not any(k.startswith("trustops_pending_updates") for k in got)


@pytest.mark.parametrize("text", ["", "[]", '{"first_seen": []}', "{" * 100000, '{"lists_refreshed": "soon"}',
                                  '{"first_seen": {"host": {"libfoo": "x"}}}'])
def test_a_torn_or_hostile_state_starts_afresh(env, tmp_path, text):
    path = tmp_path / "state.json"
    path.write_text(text)
    env["state"] = pu.load_state(path)
    got = run(env, 5000.0)
    assert got['trustops_pending_security_updates_since_timestamp_seconds{scope="host"}'] == 5000


def test_postgres_version_numbers():
    assert pu.version_number("15.10-0+deb12u1") == 150010
    assert pu.version_number("1:15.8-1.pgdg120+1") == 150008
    assert pu.version_number("garbage") is None


def test_postgres_behind_since_is_kept_until_caught_up():
    state: dict = {}
    text = "\n".join(pu._render_postgres({"15": {"running": 150008, "installed": 150010, "candidate": 150010}},
                                         state, 100.0))
    assert 'trustops_postgres_behind_since_timestamp_seconds{major="15"} 100' in text
    assert 'trustops_postgres_version{major="15",source="running"} 150008' in text
    pu._render_postgres({"15": {"running": 150008, "candidate": 150010}}, state, 200.0)
    assert state["behind_since"] == {"15": 100.0}
    text = "\n".join(pu._render_postgres({"15": {"running": 150010, "candidate": 150010}}, state, 300.0))
    assert "behind_since" not in text and state["behind_since"] == {}


def test_bad_apt_option_is_one_line_error(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        host_metrics.main(["updates", str(tmp_path / "x.prom"), "--apt-option", "nonsense"])
    assert exc.value.code == 2
    assert "--apt-option 'nonsense' is not KEY=VALUE" in capsys.readouterr().err


# --- images: real Docker, images built from scratch with only the files the measurement reads ----

def _image(tmp_path: Path, name: str, files: dict[str, str]) -> str:
    ctx = tmp_path / name
    ctx.mkdir()
    lines = ["FROM scratch"]
    for i, (dest, text) in enumerate(files.items()):
        (ctx / f"f{i}").write_text(text)
        lines.append(f"COPY f{i} {dest}")
    (ctx / "Dockerfile").write_text("\n".join(lines) + "\n")
    tag = f"trustops-test/pending-{name}:{hashlib.sha256(str(files).encode()).hexdigest()[:8]}"
    subprocess.run(["docker", "build", "-q", "-t", tag, str(ctx)], check=True, capture_output=True,
                   env={"DOCKER_BUILDKIT": "0", "PATH": "/usr/bin:/bin"})
    return tag


@pytest.fixture
def docker():
    """Docker as the lab uses it (started when it is not running); the images made are removed."""
    system.ensure_docker(Progress(quiet=True))
    made: list[str] = []
    yield made
    if made:
        subprocess.run(["docker", "rmi", "-f", *made], capture_output=True)


BOOKWORM = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_CODENAME=bookworm\n'


def test_images_measured_from_their_dpkg_status_without_running_them(env, tmp_path, docker):
    stale = _image(tmp_path, "stale", {"/var/lib/dpkg/status": status_text({"dpkg": "1", "libfoo": "1.0-1"}),
                                      "/usr/lib/os-release": BOOKWORM})
    trixie = _image(tmp_path, "trixie", {"/var/lib/dpkg/status": status_text({"dpkg": "1", "libfoo": "1.0-1"}),
                                        "/usr/lib/os-release": BOOKWORM.replace("bookworm", "trixie")})
    empty = _image(tmp_path, "empty", {"/etc/hostname": "x\n"})
    docker += [stale, trixie, empty]
    images = {subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", t], capture_output=True, text=True)
              .stdout.strip(): t for t in (stale, trixie, empty)}
    leftover = subprocess.run(["docker", "create", "--label", pu.MEASURE_LABEL, stale, "/x"], capture_output=True,
                              text=True, check=True).stdout.strip()   # as a run killed mid-way leaves it
    got = run(env, 1000.0, images=images, host_codename="bookworm")
    assert got[f'trustops_pending_updates{{scope="image",image="{stale}",origin="security"}}'] == 1
    assert got[f'trustops_pending_updates{{scope="image",image="{stale}",origin="other"}}'] == 0
    assert got[f'trustops_updates_check_success{{scope="image",image="{trixie}",reason="release-mismatch"}}'] == 0
    assert got[f'trustops_updates_check_success{{scope="image",image="{empty}",reason="image-unreadable"}}'] == 0
    assert not any(f'image="{trixie}",origin' in k or f'image="{empty}",origin' in k for k in got)
    # (by the measurement's label: other containers come and go meanwhile, e.g. the lab's bring-up)
    left = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={pu.MEASURE_LABEL}"], capture_output=True,
                          text=True, check=True).stdout.split()
    assert leftover and left == [], "a measuring container was left behind, or a killed run's leftover not removed"


def test_the_alert_rules_and_live_checks_use_the_policys_grace_period():
    """The 3 days of the policy are GRACE_SECONDS; the PromQL in patch-rules.yml says the same."""
    import yaml

    rules_file = Path(__file__).resolve().parents[1] / "ansible" / "roles" / "alerting" / "files" / "patch-rules.yml"
    rules = {r["alert"]: r["expr"] for g in yaml.safe_load(rules_file.read_text())["groups"] for r in g["rules"]}
    for name in ("SecurityUpdatesPending", "PostgresMinorBehind"):
        assert rules[name].endswith(f"> {pu.GRACE_SECONDS // 86400} * 86400"), (name, rules[name])
    assert f"> {pu.RUN_EVERY_MAX // 3600} * 3600" in rules["PendingUpdatesNotMeasured"]
