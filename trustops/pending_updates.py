"""Pending package updates as Prometheus textfile metrics, measured with apt itself: on the host,
inside every image a running container uses, and Postgres' running minor against the mirror's.

apt's view is `apt-get -s dist-upgrade` over the lists of the host's configured mirror; an image
is measured against the same lists with its own dpkg status (read out of the image with
`docker create`/`cp`, never run). The lists are refreshed at most every REFRESH_SECONDS, so a
scrape or a run costs no download. A view that cannot be had (apt failing or locked, the mirror
down for longer than LISTS_MAX_AGE, an unreadable image) exports check_success 0 and no count:
unknown is never reported as 0 pending. apt's lists are kept apart from the system's (beside the
state), so this never takes the lock unattended-upgrades or a converge needs.

    trustops-host-metrics updates OUT.prom [--state FILE] [--no-images] [--apt-option K=V ...]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

STATE_FILE = "/var/lib/trustops/pending-updates/state.json"   # under /var/lib/trustops: AIDE excludes it
DPKG_STATUS = "/var/lib/dpkg/status"
REFRESH_SECONDS = 6 * 3600          # apt-get update at most this often (apt-daily refreshes daily too)
LISTS_MAX_AGE = 24 * 3600           # a view older than this is stale: unknown, not a count
# The policy: a security update may stay pending this long (unattended-upgrades runs daily on the
# hosts; images wait for the rolling patch). The alert rules (patch-rules.yml) say the same number.
GRACE_SECONDS = 3 * 86400
RUN_EVERY_MAX = 2 * 3600            # a measurement older than this is not current
APT_TIMEOUT = 600                   # one apt-get (update against a slow mirror) may take this long
DOCKER_TIMEOUT = 120
STATUS_MAX_BYTES = 64 * 1024 * 1024  # an image's dpkg status larger than this is refused as hostile
SECURITY_LABEL = "Debian-Security"
MEASURE_LABEL = "trustops.measure=pending-updates"   # on the containers created to read an image
POSTGRES_SERVER = re.compile(r"^postgresql-(\d+)$")
# `Inst pkg [installed] (candidate Label:Version/Archive, ... [arch])` in apt-get -s output.
INST = re.compile(r"^Inst (\S+) \[([^\]]+)\] \((\S+) (.*?)(?: \[[^\]]+\])?\)")


class MeasureError(Exception):
    """The view could not be had; `reason` is a fixed word for the metric's label."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass
class Pending:
    package: str
    installed: str
    candidate: str
    security: bool


def parse_simulation(text: str) -> list[Pending]:
    """Upgrades of installed packages in `apt-get -s dist-upgrade` output (new installs and removals
    are not updates). Security: any release of the candidate labelled Debian-Security or in a
    -security suite."""
    out = []
    for line in text.splitlines():
        m = INST.match(line)
        if not m:
            continue
        releases = [r.strip() for r in m.group(4).split(",")]
        security = any(r.split(":", 1)[0] == SECURITY_LABEL or r.rsplit("/", 1)[-1].endswith("-security")
                       for r in releases)
        out.append(Pending(m.group(1), m.group(2), m.group(3), security))
    return out


@dataclass
class Apt:
    """apt-get with extra -o options (a test points them at a scratch root and a local mirror)."""

    options: list[str] = field(default_factory=list)
    config: Path | None = None      # an apt.conf read after the options (see no_hooks)

    def _run(self, args: list[str], timeout: float = APT_TIMEOUT) -> subprocess.CompletedProcess:
        opts = [a for o in self.options for a in ("-o", o)] + (["-c", str(self.config)] if self.config else [])
        try:
            return subprocess.run([args[0], *opts, *args[1:]], capture_output=True, text=True, timeout=timeout,
                                  env=dict(os.environ, LC_ALL="C", DEBIAN_FRONTEND="noninteractive"))
        except subprocess.TimeoutExpired as exc:
            raise MeasureError("apt-timeout", f"{' '.join(args[:2])} ran past {timeout:g}s") from exc
        except OSError as exc:
            raise MeasureError("apt-missing", str(exc)) from exc

    def refresh(self) -> None:
        """apt-get update; any index that fails to download (mirror down, lock held) is a failure."""
        p = self._run(["apt-get", "-q", "update", "--error-on=any"])
        if p.returncode != 0:
            raise MeasureError("refresh-failed", _last_error(p))

    def status_path(self) -> Path:
        given = [o.split("=", 1)[1] for o in self.options if o.startswith("Dir::State::status=")]
        return Path(given[-1] if given else DPKG_STATUS)

    def simulate(self, status: Path | None = None) -> list[Pending]:
        """What dist-upgrade would upgrade, for this dpkg status (default the host's own)."""
        check_status(status or self.status_path())
        extra = ["-o", f"Dir::State::status={status}"] if status else []
        p = self._run(["apt-get", "-s", "-q", "-o", "Debug::NoLocking=1", *extra, "dist-upgrade"])
        if p.returncode != 0:
            raise MeasureError("apt-failed", _last_error(p))
        return parse_simulation(p.stdout)

    def candidate(self, package: str) -> str | None:
        p = self._run(["apt-cache", "policy", package])
        m = re.search(r"^\s*Candidate: (\S+)", p.stdout, re.M)
        return m.group(1) if p.returncode == 0 and m and m.group(1) != "(none)" else None


def check_status(path: Path) -> None:
    """apt reads an empty or garbled dpkg status as a system with nothing (or nothing known)
    installed, which would say 0 pending: a status whose dpkg itself is not installed is refused."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise MeasureError("status-invalid", f"{path}: {exc.strerror}") from exc
    if not re.search(r"^Package: dpkg\n(?:[^\n]+\n)*?Status: install ok installed$", text, re.M):
        raise MeasureError("status-invalid", f"{path} does not list dpkg as installed: not a dpkg database")


NO_HOOKS = """// trustops pending updates: the system's apt hooks are not for our private lists (and a
// hook writing outside the unit's sandbox, e.g. apt-show-versions' cache, fails the update).
#clear APT::Update::Pre-Invoke;
#clear APT::Update::Post-Invoke;
#clear APT::Update::Post-Invoke-Success;
"""


def no_hooks(directory: Path) -> Path:
    """An apt.conf that clears the update hooks the system's apt.conf.d installs."""
    path = directory / "no-hooks.conf"
    if not path.exists() or path.read_text() != NO_HOOKS:
        _atomic_write(path, NO_HOOKS, 0o644)
    return path


def private_lists(directory: Path) -> list[str]:
    """apt options for lists and cache of our own beside the state (the configured sources, the
    host's dpkg status): our apt-get update never holds the system's lists lock, so it cannot
    block unattended-upgrades or a converge, nor be blocked by them."""
    for sub in ("lists/partial", "cache/archives/partial"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    return [f"Dir::State::lists={directory / 'lists'}", f"Dir::Cache={directory / 'cache'}"]


def _last_error(p: subprocess.CompletedProcess) -> str:
    lines = [l for l in (p.stderr + p.stdout).splitlines() if l.startswith(("E:", "W:"))] or \
        (p.stderr or p.stdout).strip().splitlines() or [f"exit {p.returncode}"]
    return lines[-1][:300]


# --- state kept between runs (first-seen times, last refresh) ----------------------------------

def load_state(path: Path) -> dict:
    """The previous run's state; a missing, torn or hostile file starts afresh (said on stderr)."""
    try:
        state = json.loads(path.read_text())
        if not isinstance(state, dict) or not all(isinstance(state.get(k, {}), dict)
                                                  for k in ("first_seen", "last_success", "behind_since")):
            raise ValueError("not a state object")
        return state
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, RecursionError) as exc:
        print(f"pending-updates: state {path} unreadable ({type(exc).__name__}), starting afresh", file=sys.stderr)
        return {}


def save_state(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, json.dumps(state, sort_keys=True), 0o600)


def _atomic_write(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _number(value, default: float | None = None) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def first_seen(state: dict, scope: str, packages: list[str], now: float) -> dict[str, float]:
    """When each pending security package was first seen pending in this scope; packages no longer
    pending are forgotten (a later update of the same package starts its own clock)."""
    known = state.setdefault("first_seen", {}).get(scope)
    known = known if isinstance(known, dict) else {}
    seen = {p: _number(known.get(p), now) for p in packages}
    state["first_seen"][scope] = seen
    return seen


# --- images ------------------------------------------------------------------------------------

def running_images(docker: str = "docker") -> dict[str, str]:
    """Image id -> the reference its containers were started from, for every running container."""
    ids = _docker([docker, "ps", "-q"]).split()
    if not ids:
        return {}
    out = _docker([docker, "inspect", "--format", "{{.Image}} {{.Config.Image}}", *ids])
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def _docker(args: list[str], binary: bool = False):
    try:
        p = subprocess.run(args, capture_output=True, timeout=DOCKER_TIMEOUT, text=not binary)
    except subprocess.TimeoutExpired as exc:
        raise MeasureError("docker-failed", f"{args[1]} ran past {DOCKER_TIMEOUT}s") from exc
    except OSError as exc:
        raise MeasureError("docker-failed", str(exc)) from exc
    if p.returncode != 0:
        err = p.stderr if isinstance(p.stderr, str) else p.stderr.decode(errors="replace")
        raise MeasureError("docker-failed", f"{args[1]}: {err.strip()[-200:]}")
    return p.stdout


def remove_leftovers(docker: str = "docker") -> None:
    """Containers a killed run created and never removed (never started: only read from)."""
    left = _docker([docker, "ps", "-aq", "--filter", f"label={MEASURE_LABEL}", "--filter", "status=created"]).split()
    if left:
        _docker([docker, "rm", "-f", *left])


def _file_from(docker: str, container: str, path: str) -> bytes:
    """One regular file out of a created container (`docker cp` gives a tar); size-capped."""
    try:
        data = _docker([docker, "cp", f"{container}:{path}", "-"], binary=True)
    except MeasureError as exc:
        raise MeasureError("image-unreadable", str(exc)) from exc
    try:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            member = tar.next()
            if member is None or not member.isfile():
                raise MeasureError("image-unreadable", f"{path} is not a regular file in the image")
            if member.size > STATUS_MAX_BYTES:
                raise MeasureError("image-unreadable", f"{path} is {member.size} bytes, over {STATUS_MAX_BYTES}")
            return tar.extractfile(member).read()
    except tarfile.TarError as exc:
        raise MeasureError("image-unreadable", f"{path}: {exc}") from exc


def image_files(image: str, docker: str = "docker") -> tuple[bytes, str]:
    """The image's dpkg status and its Debian codename, from a container that is created and
    removed, never started: nothing of the image runs."""
    cid = _docker([docker, "create", "--network", "none", "--label", MEASURE_LABEL, image, "/nonexistent"]).strip()
    try:
        status = _file_from(docker, cid, "/var/lib/dpkg/status")
        os_release = _file_from(docker, cid, "/usr/lib/os-release").decode(errors="replace")
    finally:
        subprocess.run([docker, "rm", "-f", cid], capture_output=True, timeout=DOCKER_TIMEOUT)
    return status, codename(os_release)


def codename(os_release: str) -> str:
    m = re.search(r"^VERSION_CODENAME=\"?([a-z]+)\"?$", os_release, re.M)
    return m.group(1) if m else ""


# --- Postgres ----------------------------------------------------------------------------------

def version_number(version: str) -> int | None:
    """150010 for Debian's 15.10-0+deb12u1 (Postgres' own server_version_num for 15.10)."""
    m = re.match(r"^(?:\d+:)?(\d+)\.(\d+)", version)
    return int(m.group(1)) * 10000 + int(m.group(2)) if m else None


def postgres_versions(apt: Apt, with_candidate: bool = True) -> dict[str, dict[str, int]]:
    """Major -> {installed, candidate, running} as server_version_num; a source not measured is left out."""
    try:
        p = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Version} ${db:Status-Abbrev}\n", "postgresql-*"],
                           capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"pending-updates: dpkg-query: {exc}", file=sys.stderr)
        return {}
    out: dict[str, dict[str, int]] = {}
    for line in p.stdout.splitlines():
        parts = line.split()
        m = POSTGRES_SERVER.match(parts[0]) if len(parts) >= 3 else None
        if not m or not parts[2].startswith("ii"):
            continue
        got = {"installed": version_number(parts[1])}
        cand = apt.candidate(parts[0]) if with_candidate else None
        got["candidate"] = version_number(cand) if cand else None
        got["running"] = _running_postgres(m.group(1))
        out[m.group(1)] = {k: v for k, v in got.items() if v is not None}
    return out


def _running_postgres(major: str) -> int | None:
    """The running server's version (a package upgraded without a restart still runs the old one)."""
    try:
        p = subprocess.run(["runuser", "-u", "postgres", "--", f"/usr/lib/postgresql/{major}/bin/psql", "-XAtq",
                            "-c", "SHOW server_version_num"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    value = p.stdout.strip()
    return int(value) if p.returncode == 0 and value.isdigit() else None


# --- one run -----------------------------------------------------------------------------------

@dataclass
class Scope:
    labels: dict[str, str]
    key: str
    pending: list[Pending] | None = None
    error: str | None = None


def measure(apt: Apt, state: dict, now: float, images: bool | dict[str, str] = True, postgres: bool = True,
            docker: str = "docker", host_codename: str | None = None) -> list[str]:
    """One run: refresh the lists when due, measure every scope, and the metrics' lines. `images`:
    those of the running containers (True), none, or these (image id -> reference)."""
    lists_at = _number(state.get("lists_refreshed"))
    refresh_error = None
    if lists_at is None or now - lists_at >= REFRESH_SECONDS:
        try:
            apt.refresh()
            lists_at = state["lists_refreshed"] = now
        except MeasureError as exc:
            refresh_error = exc
            print(f"pending-updates: {exc}", file=sys.stderr)
    stale = lists_at is None or now - lists_at > LISTS_MAX_AGE
    scopes = [Scope({"scope": "host"}, "host")]
    if images:
        scopes += _image_scopes(apt, docker, host_codename if host_codename is not None else _host_codename(),
                                images if isinstance(images, dict) else None)
    for s in scopes:
        if s.error is None and stale:
            s.error = refresh_error.reason if refresh_error else "lists-stale"
        if s.error is None and s.pending is None:
            try:
                s.pending = apt.simulate()
            except MeasureError as exc:
                s.error = exc.reason
                print(f"pending-updates: host: {exc}", file=sys.stderr)
    lines = _render(scopes, state, now, lists_at)
    if postgres:   # a stale view has no candidate to compare with: the check's failure says so
        lines += _render_postgres(postgres_versions(apt, with_candidate=not stale), state, now)
    return lines


def _host_codename() -> str:
    try:
        return codename(Path("/etc/os-release").read_text())
    except OSError:
        return ""


def _image_scopes(apt: Apt, docker: str, host_codename: str, found: dict[str, str] | None) -> list[Scope]:
    try:
        remove_leftovers(docker)
        found = running_images(docker) if found is None else found
    except MeasureError as exc:
        if exc.reason == "docker-failed" and "No such file" in str(exc):
            return []        # no Docker on this host: no image to measure
        return [Scope({"scope": "image", "image": "unknown"}, "image:unknown", error=exc.reason)]
    scopes = []
    for image_id, ref in sorted(found.items()):
        s = Scope({"scope": "image", "image": ref}, f"image:{image_id}")
        try:
            status, name = image_files(image_id, docker)
            if name != host_codename:
                raise MeasureError("release-mismatch", f"image is {name or 'not Debian'}, the host's lists {host_codename}")
            with tempfile.TemporaryDirectory(prefix="trustops-image-dpkg-") as tmp:
                (Path(tmp) / "status").write_bytes(status)
                s.pending = apt.simulate(Path(tmp) / "status")
        except MeasureError as exc:
            s.error = exc.reason
            print(f"pending-updates: image {ref}: {exc}", file=sys.stderr)
        scopes.append(s)
    return scopes


def _labels(d: dict[str, str]) -> str:
    return ",".join(f'{k}="{_escape(v)}"' for k, v in d.items())


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


HELP = {
    "trustops_updates_run_timestamp_seconds": "When this measurement ran (a stopped timer leaves it old).",
    "trustops_updates_check_success": "1 when apt's view of pending updates was measured this run (reason says why not).",
    "trustops_updates_last_success_timestamp_seconds": "When pending updates were last measured.",
    "trustops_updates_lists_timestamp_seconds": "When apt's lists were last refreshed from the mirror.",
    "trustops_pending_updates": "Packages with a newer version on the mirror (origin security or other).",
    "trustops_pending_security_updates_since_timestamp_seconds":
        "When the oldest pending security update was first seen pending.",
    "trustops_postgres_version": "Postgres server_version_num: running, installed and the mirror's candidate.",
    "trustops_postgres_behind_since_timestamp_seconds":
        "Since when the running Postgres is older than the mirror's candidate.",
}


def _render(scopes: list[Scope], state: dict, now: float, lists_at: float | None) -> list[str]:
    last = state.setdefault("last_success", {})
    series: dict[str, list[str]] = {k: [] for k in HELP}
    for s in scopes:
        lab = _labels(s.labels)
        if s.error is not None:
            series["trustops_updates_check_success"].append(f'{{{lab},reason="{s.error}"}} 0')
        else:
            last[s.key] = now
            series["trustops_updates_check_success"].append(f"{{{lab}}} 1")
            sec = sorted(p.package for p in s.pending if p.security)
            series["trustops_pending_updates"] += [f'{{{lab},origin="security"}} {len(sec)}',
                                                    f'{{{lab},origin="other"}} {len(s.pending) - len(sec)}']
            seen = first_seen(state, s.key, sec, now)
            if seen:
                series["trustops_pending_security_updates_since_timestamp_seconds"].append(
                    f"{{{lab}}} {int(min(seen.values()))}")
        if _number(last.get(s.key)) is not None:
            series["trustops_updates_last_success_timestamp_seconds"].append(f"{{{lab}}} {int(last[s.key])}")
    live = {s.key for s in scopes}
    for k in ("first_seen", "last_success"):   # images no longer running are forgotten
        state[k] = {key: v for key, v in state.get(k, {}).items() if key in live}
    if lists_at is not None:
        series["trustops_updates_lists_timestamp_seconds"].append(f" {int(lists_at)}")
    series["trustops_updates_run_timestamp_seconds"].append(f" {int(now)}")
    return _lines(series)


def _render_postgres(versions: dict[str, dict[str, int]], state: dict, now: float) -> list[str]:
    behind = state.setdefault("behind_since", {})
    series: dict[str, list[str]] = {"trustops_postgres_version": [], "trustops_postgres_behind_since_timestamp_seconds": []}
    for major, got in sorted(versions.items()):
        series["trustops_postgres_version"] += [f'{{major="{major}",source="{k}"}} {v}' for k, v in sorted(got.items())]
        current = got.get("running", got.get("installed"))
        if "candidate" in got and current is not None and got["candidate"] > current:
            since = behind[major] = _number(behind.get(major), now)
            series["trustops_postgres_behind_since_timestamp_seconds"].append(f'{{major="{major}"}} {int(since)}')
        elif current is not None:
            behind.pop(major, None)
    return _lines(series)


def _lines(series: dict[str, list[str]]) -> list[str]:
    out = []
    for name, values in series.items():
        if values:
            out += [f"# HELP {name} {HELP[name]}", f"# TYPE {name} gauge"]
            out += [f"{name}{v}" for v in values]
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="trustops-host-metrics updates", description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="the .prom file the node exporter's textfile collector reads")
    ap.add_argument("--state", default=STATE_FILE, help=f"first-seen times and last refresh (default {STATE_FILE})")
    ap.add_argument("--no-images", action="store_true", help="do not measure the images of running containers")
    ap.add_argument("--no-postgres", action="store_true", help="do not measure Postgres' versions")
    ap.add_argument("--apt-option", action="append", default=[], metavar="KEY=VALUE",
                    help="an apt -o option for every apt call (repeatable)")
    args = ap.parse_args(argv)
    bad = [o for o in args.apt_option if "=" not in o]
    if bad:
        ap.error(f"--apt-option {bad[0]!r} is not KEY=VALUE")
    state_path, now = Path(args.state), time.time()
    state = load_state(state_path)
    apt = Apt(private_lists(state_path.parent) + args.apt_option, no_hooks(state_path.parent))
    lines = measure(apt, state, now, images=not args.no_images, postgres=not args.no_postgres)
    _atomic_write(Path(args.out), "\n".join(lines) + "\n", 0o644)
    save_state(state_path, state)
    return 0
