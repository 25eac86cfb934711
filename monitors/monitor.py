"""The monitor: config, the line -> event -> detection pipeline, `replay` and the daemon loop."""
from __future__ import annotations

import ipaddress
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from trustops.monitors import events as ev
from trustops.monitors.alerts import AlertFanout
from trustops.monitors.app import AppParser
from trustops.monitors.config_model import INPUT_TYPES
from trustops.monitors import hostauth
from trustops.monitors.hostauth import HostAuthParser
from trustops.monitors.pg import DEBIAN_PREFIX, LOG_MESSAGES, PostgresParser, compile_prefix
from trustops.monitors.rules import (DEFAULT_RULES, Detection, OverrideError, RuleError, as_list, detection_for,
                                     duration, load_rules)
from trustops.monitors.speedups import FastEngine, make_engine, scanner_for
from trustops.monitors.tail import Checkpoint, FileTail, count_lines, expand
from trustops.monitors.ufw import UfwParser

DEFAULT_RUNBOOKS = "https://github.com/trustops/trustops/blob/main/runbooks"
PENDING_WAIT = 1.0  # seconds a password failure waits for its DETAIL line once its input is idle
SAVE_EVERY = 1.0   # seconds between checkpoint writes at most (and one at a clean stop)
# A daemon pass reads at most this long before it expires state, resolves alerts and saves (a
# backlog is then read on at once, without waiting for the poll); reads are small, and the alerts
# they detect are posted after each read, so an alert does not wait for a flood's backlog.
PASS_BUDGET = 0.25
READ_BYTES = 1 << 20


class ConfigError(ValueError):
    pass


# ------------------------------------------------------------------------------- config

_TOP_KEYS = {"instance", "inputs", "allowed_networks", "allowlist", "rules_file", "rules", "alertmanager",
             "runbook_base_url", "metrics", "state_dir", "start_at", "max_line_bytes", "poll_interval",
             "resolve_after", "rotate_wait", "max_tracked_groups", "max_alerts_per_rule", "max_alerts"}
_INPUT_KEYS = {"name", "type", "path", "format", "log_line_prefix", "journal_command", "only_dest"}


@dataclass
class InputSpec:
    name: str
    type: str                      # postgres | ufw | app (the benefits app's sign-in log)
    path: str | None = None
    format: str = "stderr"         # postgres: stderr | jsonlog
    log_line_prefix: str = DEBIAN_PREFIX
    journal_command: list[str] | None = None
    only_dest: list[str] | None = None  # ufw: only packets to these addresses (a shared kernel log)


@dataclass
class Config:
    instance: str
    inputs: list[InputSpec]
    allowed_networks: list[str] = field(default_factory=list)
    allowlist: list[str] = field(default_factory=list)
    rules_file: str = str(DEFAULT_RULES)
    rules: dict = field(default_factory=dict)
    alertmanager_urls: list[str] = field(default_factory=list)  # every peer of the Alertmanager cluster
    alertmanager_ca_file: str | None = None   # the CA of an https Alertmanager (the platform's), else the system's
    runbook_base_url: str = DEFAULT_RUNBOOKS
    metrics_listen: str | None = "127.0.0.1:9469"
    state_dir: str = "/var/lib/trustops-monitor"
    start_at: str = "end"
    max_line_bytes: int = 64 * 1024
    poll_interval: float = 1.0
    resolve_after: float = 600.0
    rotate_wait: float = 5.0
    max_tracked_groups: int = 300_000   # sources held by all rules together (each rule gets its share)
    max_alerts_per_rule: int = 100      # per-source alerts a rule fires; past it, one aggregate alert
    max_alerts: int = 1_000             # alerts firing in all


def _cidrs(v, what: str) -> list[str]:
    if v is None:
        return []
    if not isinstance(v, list):
        raise ConfigError(f"{what}: expected a list of CIDRs")
    for c in v:
        try:
            ipaddress.ip_network(str(c), strict=False)
        except ValueError as exc:
            raise ConfigError(f"{what}: {c!r} is not a CIDR ({exc})") from exc
    return [str(c) for c in v]


def load_config(path: Path | str | None = None, data: dict | None = None) -> Config:
    """Read and check a monitor config; every problem is a ConfigError with one clear line."""
    if data is None:
        try:
            data = yaml.safe_load(Path(path).read_text())  # type: ignore[arg-type]
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {path} not found") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    where = path or "config"
    from trustops.monitors.config_model import check
    try:
        check(data)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ConfigError(f"config: unknown keys {sorted(unknown)} (known: {sorted(_TOP_KEYS)})")
    inputs = []
    for i, raw in enumerate(data.get("inputs") or []):
        if not isinstance(raw, dict):
            raise ConfigError(f"inputs[{i}]: expected a mapping")
        bad = set(raw) - _INPUT_KEYS
        if bad:
            raise ConfigError(f"inputs[{i}]: unknown keys {sorted(bad)}")
        spec = InputSpec(**raw)
        if spec.type not in INPUT_TYPES:
            raise ConfigError(f"input {spec.name}: type must be one of {', '.join(INPUT_TYPES)}")
        if spec.type == "app" and not spec.path:
            raise ConfigError(f"input {spec.name}: an app input reads a file: give its path")
        if spec.type == "hostauth" and not (spec.path or spec.journal_command):
            spec.journal_command = hostauth.journal_command()  # the journal of exactly the programs it reads
        if bool(spec.path) == bool(spec.journal_command):
            raise ConfigError(f"input {spec.name}: give exactly one of path or journal_command")
        if spec.type == "postgres":
            if spec.format not in ("stderr", "jsonlog"):
                raise ConfigError(f"input {spec.name}: format must be stderr or jsonlog")
            try:
                compile_prefix(spec.log_line_prefix)
            except ValueError as exc:
                raise ConfigError(f"input {spec.name}: {exc}") from exc
        inputs.append(spec)
    if not inputs:
        raise ConfigError("config: no inputs")
    if len({i.name for i in inputs}) != len(inputs):
        raise ConfigError("config: input names must be unique")
    am = data.get("alertmanager") or {}
    url = am.get("url") if isinstance(am, dict) else None
    urls = am.get("urls") if isinstance(am, dict) else None
    if url is not None and urls is not None:
        raise ConfigError("alertmanager: give url (one Alertmanager) or urls (every peer of a cluster), not both")
    urls = [str(u) for u in (urls if urls is not None else [url] if url is not None else [])]
    for u in urls:
        if not re.match(r"^https?://[^/\s]+", u):
            raise ConfigError(f"alertmanager url {u!r}: expected http(s)://host:port")
    if len(set(urls)) != len(urls):
        raise ConfigError(f"alertmanager.urls: {urls} names a peer twice (it would get every alert twice)")
    ca_file = am.get("ca_file") if isinstance(am, dict) else None
    if ca_file is not None and not os.path.isfile(str(ca_file)):
        raise ConfigError(f"alertmanager.ca_file {ca_file!r}: no such file")
    metrics = data.get("metrics") or {}
    listen = metrics.get("listen", "127.0.0.1:9469") if isinstance(metrics, dict) else None
    if listen is not None and not re.match(r"^[\w.:\[\]-]+:\d+$", str(listen)):
        raise ConfigError(f"metrics.listen {listen!r}: expected host:port")
    start_at = data.get("start_at", "end")
    if start_at not in ("end", "beginning"):
        raise ConfigError("start_at must be end or beginning")
    cfg = Config(
        instance=str(data.get("instance") or socket.gethostname()), inputs=inputs,
        allowed_networks=_cidrs(data.get("allowed_networks"), "allowed_networks"),
        allowlist=_cidrs(data.get("allowlist"), "allowlist"),
        rules_file=str(data.get("rules_file") or DEFAULT_RULES), rules=data.get("rules") or {},
        alertmanager_urls=urls, alertmanager_ca_file=ca_file,
        runbook_base_url=str(data.get("runbook_base_url") or DEFAULT_RUNBOOKS),
        metrics_listen=listen, state_dir=str(data.get("state_dir") or "/var/lib/trustops-monitor"),
        start_at=start_at, max_line_bytes=int(data.get("max_line_bytes", 64 * 1024)),
        poll_interval=duration(data.get("poll_interval", "1s")),
        resolve_after=duration(data.get("resolve_after", "10m")),
        rotate_wait=duration(data.get("rotate_wait", "5s")),
        max_tracked_groups=int(data.get("max_tracked_groups", 300_000)),
        max_alerts_per_rule=int(data.get("max_alerts_per_rule", 100)),
        max_alerts=int(data.get("max_alerts", 1_000)),
    )
    try:
        rules = load_rules(cfg.rules_file, cfg.allowlist, cfg.rules)
    except OverrideError as exc:  # the config's `rules:` made a rule invalid
        raise ConfigError(f"{where}: {exc}") from None
    except RuleError as exc:  # its line names the rules file
        raise ConfigError(str(exc)) from None
    for r in rules:  # resolving while the source is quiet in its cooldown would flap the alert
        if cfg.resolve_after < r.cooldown:
            raise ConfigError(f"{where}: resolve_after: {cfg.resolve_after:g}s is shorter than the cooldown of "
                              f"{r.name} ({r.cooldown:g}s); allowed: at least the longest cooldown")
    return cfg


# ------------------------------------------------------------------------------- pipeline

# A Postgres stderr line matters if it is a FATAL, a DETAIL, a continuation (tab) or a LOG whose
# message starts with one of pg.MESSAGES' LOG texts; the rest (statements, checkpoints,
# "connection authenticated") is skipped before decoding or parsing.
_PG_LOG_MESSAGES = LOG_MESSAGES


_ATTACK_OUTCOMES = set(ev.ATTACK_OUTCOMES)
_ATTACK_OUTCOMES |= hostauth.FAILURE_OUTCOMES


def _log_failure(raw: bytes) -> None:
    """A line whose handling raised, to stderr (the journal): the first of each batch, with its
    traceback, so the bug can be fixed; the stream goes on."""
    import sys
    import traceback
    print(f"trustops-monitor: a line could not be handled and was skipped: {raw[:200]!r}", file=sys.stderr)
    traceback.print_exc(file=sys.stderr)


def _pg_line_matters(raw: bytes) -> bool:
    i = raw.find(b":  ")
    if i < 0:
        return raw[:1] == b"\t"
    if raw[i - 3:i] == b"LOG":
        return raw.startswith(_PG_LOG_MESSAGES, i + 3)
    return raw[i - 5:i] in (b"FATAL", b"ETAIL")


class Pipeline:
    """Lines of each input -> parser -> events -> rules -> detections, with exact counters."""

    def __init__(self, inputs: list[InputSpec], engine, on_detection=None) -> None:
        self.engine = engine
        self.on_detection = on_detection or (lambda d: None)
        self.parsers = {}
        self.scanners = {}  # the C hot path per input, when built (monitors/speedups.py)
        for spec in inputs:
            self.parsers[spec.name] = (PostgresParser(spec.log_line_prefix, spec.format) if spec.type == "postgres"
                                       else AppParser() if spec.type == "app"
                                       else HostAuthParser() if spec.type == "hostauth" else UfwParser(spec.only_dest))
            scanner = scanner_for(self.parsers[spec.name], engine)
            if scanner is not None:
                self.scanners[spec.name] = scanner
        self.lines: dict[str, int] = {}
        self.errors: dict[tuple[str, str], int] = {}
        self.events: dict[tuple[str, str], int] = {}
        self.detections: list[Detection] = []
        self.keep_detections = True
        self.by_source: dict[str, dict[str, int]] | None = None  # attacks: kind -> source -> count, on demand
        self._fed: dict[str, float] = {}  # input -> when it last gave lines
        self.on_raw = None  # the daemon takes the C engine's raw detections of a read itself (no texts for a flood)

    def process(self, name: str, raw_lines: list[bytes], final: bool = False) -> list[Detection]:
        """The lines of one read. Where reads split the stream does not matter: a password
        failure whose DETAIL line has not come yet waits across reads, released by `final` (the
        end of the input, or an input idle for a while: see `finish`)."""
        parser = self.parsers[name]
        before = parser.unparsed
        scanner = self.scanners.get(name)
        if raw_lines:
            self._fed[name] = time.monotonic()
        if scanner is not None:
            raw, invalid, failed = scanner.feed(raw_lines, self.events, self.by_source, final)
            found = []
            if self.on_raw is not None:
                if raw:
                    self.on_raw(raw)
            else:
                for r in raw:
                    self._report(self.engine.detection(r), found)
        else:
            found, invalid, failed = self._process_python(parser, raw_lines, final)
        self.lines[name] = self.lines.get(name, 0) + count_lines(raw_lines)
        if invalid:
            self.errors[(name, "invalid_utf8")] = self.errors.get((name, "invalid_utf8"), 0) + invalid
        if failed:
            self.errors[(name, "error")] = self.errors.get((name, "error"), 0) + failed
        unparsed = parser.unparsed - before
        if unparsed:
            self.errors[(name, "unparsed")] = self.errors.get((name, "unparsed"), 0) + unparsed
        return found

    def finish(self, name: str, idle: float = 0.0) -> list[Detection]:
        """Release what waits for a next line (a password failure without its DETAIL yet) once
        the input has given nothing for `idle` seconds."""
        if time.monotonic() - self._fed.get(name, 0.0) < idle:
            return []
        return self.process(name, [], final=True)

    def _process_python(self, parser, raw_lines: list[bytes], final: bool = False) -> tuple[list[Detection], int, int]:
        is_pg = isinstance(parser, PostgresParser)
        is_stderr = is_pg and parser.fmt == "stderr"
        found: list[Detection] = []
        invalid = failed = 0
        handle = self._handle
        for raw in expand(raw_lines):
            if b"\x00" in raw:  # binary garbage
                invalid += 1
                continue
            if is_stderr and not _pg_line_matters(raw):
                if not raw.isascii():  # skipped unparsed, but invalid UTF-8 is still counted
                    try:
                        raw.decode("utf-8")
                    except UnicodeDecodeError:
                        invalid += 1
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                invalid += 1
                continue
            try:
                for e in parser.feed(line.rstrip("\r")):
                    handle(e, found)
            except Exception:  # noqa: BLE001 - no line may stop the stream: counted, skipped, logged
                failed += 1
                if failed == 1:
                    _log_failure(raw)
        if is_pg and final:
            try:
                for e in parser.flush():
                    handle(e, found)
            except Exception:  # noqa: BLE001
                failed += 1
                _log_failure(b"(end of batch)")
        return found, invalid, failed

    def _handle(self, e: ev.Event, found: list[Detection]) -> None:
        k = ev.outcome_key(e)
        self.events[k] = self.events.get(k, 0) + 1
        if self.by_source is not None and k[1] in _ATTACK_OUTCOMES:
            per = self.by_source.setdefault(k[1], {})
            src = e.source or "unknown"
            per[src] = per.get(src, 0) + 1
        for d in self.engine.process(e):
            self._report(d, found)

    def _report(self, d: Detection, found: list[Detection]) -> None:
        found.append(d)
        if self.keep_detections:
            self.detections.append(d)
        self.on_detection(d)


def sniff_type(path: Path) -> tuple[str, str]:
    """(type, format) of a log file from its first lines, for `replay` without --type."""
    with open(path, "rb") as fh:
        head = fh.read(64 * 1024)
    if b"[UFW " in head:
        return "ufw", "stderr"
    if head.lstrip().startswith(b"{") and b'"event":"signin.' in head:
        return "app", "stderr"
    if head.lstrip().startswith(b"{") and b'"_COMM"' in head and b'"__REALTIME_TIMESTAMP"' in head:
        return "hostauth", "stderr"   # journalctl -o json of sshd, sudo, useradd/usermod/gpasswd
    if head.lstrip().startswith(b"{") and b"error_severity" in head:
        return "postgres", "jsonlog"
    return "postgres", "stderr"


def replay(paths: list[Path], rules_file: str = str(DEFAULT_RULES), allowed_networks=None, allowlist=None,
           overrides=None, log_line_prefix: str = DEBIAN_PREFIX, input_type: str | None = None,
           max_line: int = 64 * 1024, by_source: bool = False, on_detection=None) -> Pipeline:
    """Scan existing logs from their start (incident response); returns the pipeline with counts."""
    engine = make_engine(load_rules(rules_file, allowlist, overrides), allowed_networks)
    specs = []
    for i, p in enumerate(paths):
        if str(p) == "-" and not input_type:
            raise ValueError("reading standard input (-) needs --type")
        t, fmt = (input_type, "jsonlog" if input_type == "postgres-json" else "stderr") if input_type \
            else sniff_type(p)
        t = "postgres" if t.startswith("postgres") else t
        specs.append(InputSpec(name=f"{i}:{p.name}", type=t, path=str(p), format=fmt,
                               log_line_prefix=log_line_prefix))
    pipe = Pipeline(specs, engine, on_detection)
    pipe.keep_detections = on_detection is None
    if by_source:
        pipe.by_source = {}
    for spec in specs:
        if spec.path == "-":  # a pipe (e.g. journalctl -k -o json | ...): read it in batches
            import itertools
            import sys
            stdin = sys.stdin.buffer
            while batch := [line.rstrip(b"\n") for line in itertools.islice(stdin, 8192)]:
                pipe.process(spec.name, batch)
            pipe.finish(spec.name)
            continue
        tail = FileTail(Path(spec.path), max_line=max_line, blocks=spec.name in pipe.scanners)  # type: ignore[arg-type]
        while True:
            lines = tail.read(READ_BYTES * 2)  # 2 MiB reads: as fast as 8, and replay stays under 64 MiB
            if lines:
                pipe.process(spec.name, lines)
            elif tail.at_eof:   # a read inside one over-long line returns nothing but is not the end
                break
        if tail._buf:  # a last line without newline still counts
            pipe.process(spec.name, [tail._buf])
        pipe.finish(spec.name)
        if tail.stats.too_long:
            pipe.errors[(spec.name, "too_long")] = tail.stats.too_long
        tail.close()
    return pipe


# ------------------------------------------------------------------------------- daemon


class JournalTail:
    """Lines from `journalctl -o json --follow` (or any command printing journal JSON), resumed
    after the last processed cursor."""

    _CURSOR = re.compile(rb'"__CURSOR"\s*:\s*"([^"]+)"')
    RESTART_WAIT = 5.0  # seconds at least between starts of a command that keeps ending

    def __init__(self, command: list[str], cursor: str | None, wake: threading.Event) -> None:
        self.command = list(command)
        self.cursor = cursor
        self.q: queue.Queue[bytes] = queue.Queue()
        self._wake = wake
        self.restarts = 0
        self._start()

    def _start(self) -> None:
        args = list(self.command)
        if self.cursor:  # journalctl --lines=0 --after-cursor=C prints nothing from C on: what came meanwhile was lost
            args = [a for a in args if not a.startswith("--lines=")] + [f"--after-cursor={self.cursor}"]
        self._started = time.monotonic()
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self._pumping = threading.Thread(target=self._pump, args=(self.proc,), daemon=True)
        self._pumping.start()

    def _pump(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            self.q.put(line.rstrip(b"\n"))
            self._wake.set()

    def read(self) -> list[bytes]:
        out = []
        while True:
            try:
                out.append(self.q.get_nowait())
            except queue.Empty:
                break
        for line in reversed(out):
            m = self._CURSOR.search(line)
            if m:
                self.cursor = m.group(1).decode()
                break
        if not out and not self._pumping.is_alive() and self.proc.poll() is not None \
                and time.monotonic() - self._started >= self.RESTART_WAIT:
            # the command ended (killed, journald restarted): without this the input would go blind
            import sys
            print(f"trustops-monitor: {self.command[0]} ended (exit {self.proc.returncode}); starting it again "
                  "after the last cursor read", file=sys.stderr, flush=True)
            self.restarts += 1
            self._start()
        return out

    def lag_bytes(self) -> int:
        return self.q.qsize()

    def checkpoint(self):
        return {"cursor": self.cursor}

    def close(self) -> None:
        self.proc.terminate()


class Monitor:
    """The daemon: follows every input, runs the rules, alerts, exports metrics, checkpoints."""

    def __init__(self, cfg: Config, registry=None) -> None:
        from trustops.monitors.metrics import Metrics  # prometheus_client: the daemon's, not replay's cost

        self.cfg = cfg
        self.metrics = Metrics(registry)
        seen = set().union(*(ev.TYPES_OF_INPUT[i.type] for i in cfg.inputs))
        rules = [r for r in load_rules(cfg.rules_file, cfg.allowlist, cfg.rules)  # only rules its inputs can feed
                 if any(t in seen for t in as_list(r.match["type"]))]
        share = max(1, cfg.max_tracked_groups // max(len(rules), 1))
        for r in rules:  # the global bound on tracked sources, shared out among the rules
            r.max_groups = min(r.max_groups, share)
        self.rules = {r.name: r for r in rules}
        self.engine = make_engine(rules, cfg.allowed_networks)
        self.metrics.build_info.labels("c" if isinstance(self.engine, FastEngine) else "python").set(1)
        self.alerts = AlertFanout(cfg.alertmanager_urls, cfg.instance, cfg.runbook_base_url, cfg.resolve_after,
                                refresh=self._refresh, ca_file=cfg.alertmanager_ca_file,
                                max_per_rule=cfg.max_alerts_per_rule,
                                max_firing=cfg.max_alerts, top=self.engine.top)
        self._saved_at = 0.0
        self._detections: dict[str, int] = {}
        self.pipeline = Pipeline(cfg.inputs, self.engine, self._detected)
        if isinstance(self.engine, FastEngine):
            self.pipeline.on_raw = self._detected_raw
        self.pipeline.keep_detections = False
        self.checkpoint = Checkpoint(Path(cfg.state_dir) / "checkpoint.json")
        state = self.checkpoint.load()
        self.alerts.restore(state.get("alerts"))
        self.wake = threading.Event()
        self.stop = threading.Event()
        self.tails: dict[str, FileTail | JournalTail] = {}
        positions = state.get("inputs", {})
        for spec in cfg.inputs:
            if spec.journal_command:
                cur = (positions.get(spec.name) or {}).get("cursor")
                self.tails[spec.name] = JournalTail(spec.journal_command, cur, self.wake)
            else:
                self.tails[spec.name] = FileTail(Path(spec.path), start_at_end=cfg.start_at == "end",  # type: ignore[arg-type]
                                                 max_line=cfg.max_line_bytes, position=positions.get(spec.name),
                                                 blocks=spec.name in self.pipeline.scanners,
                                                 rotate_wait=cfg.rotate_wait)
        self._lag_since: dict[str, float | None] = {n: None for n in self.tails}
        self._reported: dict[tuple[str, str], int] = {}
        self._failing_exported: set[str] = set()  # sources on trustops_monitor_ssh_failing_source_attempts
        self._observer = None
        self.behind = False  # the last pass stopped at its budget with lines left to read

    def _refresh(self, d: Detection) -> Detection:
        """d with the real count at send time: the events its rule has matched for the source so
        far (the detection itself saw only up to the threshold)."""
        rule = self.rules.get(d.rule)
        n = self.engine.hits(d.rule, d.group) if rule is not None else None
        if n is None or n <= d.count:
            return d
        return detection_for(rule, d.group, n, d.first_ts, d.last_ts)

    def _detected(self, d: Detection) -> None:
        self._detections[d.rule] = self._detections.get(d.rule, 0) + 1  # exported once a step
        self.alerts.detected(d)

    def _detected_raw(self, raws: list) -> None:
        """A read's detections from the C engine. Texts are built only for a detection that gets
        an alert of its own; past its rule's bound a detection is only counted into the rule's
        aggregate, in bulk (a flood brings a million of them: per-detection Python work there was
        most of the daemon's time, and a real attack's lines wait behind it)."""
        rules, alerts = self.engine.rules, self.alerts
        folded: dict[int, int] = {}  # rule index -> detections folded into its aggregate after the first
        per_rule: dict[int, int] = {}
        for index, key, count, first, last, user, same in raws:
            per_rule[index] = per_rule.get(index, 0) + 1
            rule = rules[index]
            if not alerts.overflows(rule.name, key):
                alerts.detected(detection_for(rule, key, count, first, last, user, None if same < 0 else bool(same)))
            elif index in folded:
                folded[index] += 1
            else:  # the first makes the aggregate alert now: it takes its place among the bounds
                alerts.aggregate(rule.name, rule.severity, rule.mitre, key, count, first)
                folded[index] = 0
        for index, n in folded.items():
            if n:
                alerts.aggregated_more(rules[index].name, n)
        for index, n in per_rule.items():
            name = rules[index].name
            self.engine.detections_total[name] += n
            self._detections[name] = self._detections.get(name, 0) + n

    def step(self) -> int:
        """One pass: read every input, process, alert, save the checkpoint. Returns lines read."""
        total = 0
        now = time.time()
        started = time.monotonic()
        self.behind = False
        for name, tail in self.tails.items():
            while True:  # a backlog is read in small batches, for at most PASS_BUDGET a pass
                lines = tail.read(READ_BYTES) if isinstance(tail, FileTail) else tail.read()
                if not lines:
                    self.pipeline.finish(name, idle=PENDING_WAIT)
                    break
                self.pipeline.process(name, lines)
                self.alerts.flush()
                total += count_lines(lines)
                self.metrics.last_read.labels(name).set(now)
                if time.monotonic() - started > PASS_BUDGET:
                    self.behind = True
                    break
            if isinstance(tail, FileTail):
                st = tail.stats
                for kind, n in (("rename", st.rotations), ("truncate", st.truncations)):
                    self._bump(self.metrics.rotations.labels(name, kind), ("rot", name + kind), n)
                self._bump(self.metrics.lines_skipped.labels(name, "too_long"), ("long", name), st.too_long)
            lag = tail.lag_bytes()
            self.metrics.lag_bytes.labels(name).set(lag)
            if lag > 0:
                since = self._lag_since[name] = self._lag_since[name] or now
                self.metrics.lag_seconds.labels(name).set(now - since)
            else:
                self._lag_since[name] = None
                self.metrics.lag_seconds.labels(name).set(0)
        self._export_counts()
        self.engine.expire(now)
        if hostauth.CROSS_HOST_RULE in self.rules:  # for SshFailuresAcrossHosts in Prometheus (no host sees them all)
            self._export_failing_sources()
        self.alerts.tick(now)
        self.alerts.flush(now)
        self.metrics.alerts_queued.set(len(self.alerts.queue))
        self.metrics.alerts_firing.set(len(self.alerts.firing))
        self.metrics.groups.set(self.engine.groups())
        self._bump(self.metrics.alerts_sent, ("sent",), self.alerts.sent)
        self._bump(self.metrics.alert_failures, ("fail",), self.alerts.failures)
        self._bump(self.metrics.alerts_dropped, ("dropped",), self.alerts.dropped)
        for rule, n in self._detections.items():
            r = self.rules[rule]
            self._bump(self.metrics.detections.labels(rule, r.severity), ("det", rule), n)
        for rule, n in self.alerts.aggregated.items():
            self._bump(self.metrics.alerts_aggregated.labels(rule), ("agg", rule), n)
        for rule, n in self.engine.evicted.items():
            self._bump(self.metrics.groups_evicted.labels(rule), ("evict", rule), n)
        if now - self._saved_at >= SAVE_EVERY:  # a flood must not turn into a checkpoint write per read
            self.save()
        return total

    def _export_failing_sources(self) -> None:
        """The sources SshBruteForce tracks now, set in place: a scrape while this runs never sees
        the series gone (a cleared gauge would resolve SshFailuresAcrossHosts for one evaluation)."""
        gauge = self.metrics.ssh_failing_sources
        now = {source: hits for hits, source in self.engine.top(hostauth.CROSS_HOST_RULE, hostauth.CROSS_HOST_TOP)}
        for source in self._failing_exported - now.keys():
            gauge.remove(source)
        for source, hits in now.items():
            gauge.labels(source).set(hits)
        self._failing_exported = set(now)

    def _bump(self, counter, key, value: int) -> None:
        delta = value - self._reported.get(key, 0)
        if delta > 0:
            counter.inc(delta)
            self._reported[key] = value

    def _export_counts(self) -> None:
        p = self.pipeline
        for name, n in p.lines.items():
            self._bump(self.metrics.lines.labels(name), ("lines", name), n)
        for (name, reason), n in p.errors.items():
            self._bump(self.metrics.lines_skipped.labels(name, reason), ("err", name, reason), n)
        for (stype, outcome), n in p.events.items():
            self._bump(self.metrics.events.labels(stype, outcome), ("ev", stype, outcome), n)

    def save(self) -> None:
        self._saved_at = time.time()
        self.checkpoint.save({"inputs": {n: t.checkpoint() for n, t in self.tails.items()},
                              "alerts": self.alerts.dump(), "saved_at": time.time()})

    def _watch(self) -> None:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        wake = self.wake

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event):  # noqa: D401 - any change in a watched directory wakes the loop
                wake.set()

        dirs = {str(Path(s.path).parent) for s in self.cfg.inputs if s.path}
        try:
            self._observer = Observer()
            for d in dirs:
                if os.path.isdir(d):
                    self._observer.schedule(Handler(), d, recursive=False)
            self._observer.start()
        except OSError as exc:  # no inotify left (a host-wide limit): polling still reads everything
            import sys
            print(f"trustops-monitor: cannot watch {sorted(dirs)} ({exc}); polling every "
                  f"{self.cfg.poll_interval:g} s instead", file=sys.stderr, flush=True)
            self._observer = None

    def run(self) -> None:
        if self.cfg.metrics_listen:
            from prometheus_client import start_http_server

            host, _, port = self.cfg.metrics_listen.rpartition(":")
            start_http_server(int(port), addr=host.strip("[]"), registry=self.metrics.registry)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: (self.stop.set(), self.wake.set()))
        self._watch()
        self.alerts.on_sent = self.wake.set  # settle a post as soon as it is done
        self.alerts.start_sender()
        try:
            while not self.stop.is_set():
                self.wake.clear()  # cleared before the pass, so a change during it wakes the next
                self.step()
                if not self.behind:
                    self.wake.wait(self.cfg.poll_interval)
            self.alerts.stop_sender()
            self.step()
            self.save()
        finally:
            self.alerts.stop_sender()
            if self._observer is not None:
                self._observer.stop()
            for t in self.tails.values():
                t.close()
