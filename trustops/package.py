"""The project as wheels the hosts install (ansible/roles/trustops_package): built once on the control
node per source change, so a role never copies source files out of the repository.

Three kinds of wheel go into one wheelhouse directory:
- `trustops-*-cp311-cp311-linux_x86_64.whl`: the package with the monitor's C hot path, built by this
  Python (3.11, as Debian 12's python3), for hosts whose Python and machine it fits;
- `trustops-*-py3-none-any.whl`: the same package without the C extension, for any other host (the
  monitor then runs in pure Python and says so in `trustops_monitor_build_info{hot_path}`);
- the runtime libraries Debian 12 has too old or not at all (pydantic 2 and its dependencies), at
  the versions installed beside this Python, so hosts run what the tests ran.

`python -m trustops.package DIR` prints the wheelhouse as JSON; a second run with unchanged
sources builds nothing and says `"built": false` (Ansible's changed_when reads it).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from importlib import metadata
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
# What goes into the wheel: the build files and the folders pyproject's package-dir maps.
SOURCES = ["pyproject.toml", "setup.py", "trustops", "monitors", "lab", "infra", "controls", "backups"]
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.so", "*.egg-info", "build", "node_modules")
# Runtime libraries the hosts take from this control node rather than from Debian (bookworm has
# pydantic 1.10): the version installed here, the one the tests ran.
HOST_WHEELS = ["pydantic", "pydantic-core", "annotated-types", "typing-extensions", "typing-inspection"]
PURE_ENV = "TRUSTOPS_BUILD_PURE"   # setup.py leaves the C extension out when it is set
STAMP = "wheelhouse.json"
LOCK = ".wheelhouse.lock"   # held while a build checks or fills the wheelhouse


class PackageError(RuntimeError):
    pass


def _files(root: Path) -> list[Path]:
    out = []
    for name in SOURCES:
        p = root / name
        if p.is_file():
            out.append(p)
        elif p.is_dir():
            for f in sorted(p.rglob("*")):
                rel = f.relative_to(root).parts
                if f.is_file() and not any(part in ("__pycache__", "build", "node_modules") or part.endswith(
                        ".egg-info") for part in rel) and f.suffix not in (".pyc", ".so"):
                    out.append(f)
    return out


def fingerprint(root: Path = PROJECT_DIR) -> str:
    """sha256 over the paths and contents of what the wheel is built from, and the pinned host wheels."""
    h = hashlib.sha256()
    for f in _files(root):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    for name in HOST_WHEELS:
        h.update(f"{name}=={metadata.version(name)}\n".encode())
    h.update(sysconfig.get_platform().encode() + sys.version.split()[0].encode())
    return h.hexdigest()


def _run(cmd: list[str], what: str, env: dict | None = None) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-3:]
        raise PackageError(f"{what} failed (exit {proc.returncode}): {' | '.join(tail)}")


def _copy_sources(dest: Path) -> Path:
    """A copy of what the wheel is built from: a shared checkout's build/ and egg-info stay untouched."""
    dest.mkdir()
    for name in SOURCES:
        p = PROJECT_DIR / name
        if p.is_dir():
            shutil.copytree(p, dest / name, ignore=IGNORED)
        elif p.is_file():
            shutil.copy2(p, dest / name)
    return dest


def build_trustops_wheel(out: Path, pure: bool) -> Path:
    """One trustops wheel into `out`: with the C hot path for this Python, or pure Python (`pure`)."""
    # pyproject's build-system (setuptools>=68) in pip's isolated build environment; the same bytes
    # for the same sources (SOURCE_DATE_EPOCH)
    env = dict(os.environ, SOURCE_DATE_EPOCH="315532800")
    if pure:
        env[PURE_ENV] = "1"
    else:
        env.pop(PURE_ENV, None)
    before = set(Path(out).glob("trustops-*.whl"))
    with tempfile.TemporaryDirectory(prefix="trustops-wheel-") as tmp:
        src = _copy_sources(Path(tmp) / "src")
        _run([sys.executable, "-m", "pip", "--disable-pip-version-check", "wheel", "--no-deps", "-q", "-w", str(out),
              str(src)], f"building the {'pure-Python ' if pure else ''}trustops wheel", env)
    made = sorted(set(Path(out).glob("trustops-*.whl")) - before)
    if len(made) != 1:
        raise PackageError(f"expected one new trustops wheel in {out}, found {[p.name for p in made]}")
    return made[0]


def _build(out: Path) -> None:
    build_trustops_wheel(out, pure=False)
    build_trustops_wheel(out, pure=True)
    pins = [f"{name}=={metadata.version(name)}" for name in HOST_WHEELS]
    _run([sys.executable, "-m", "pip", "--disable-pip-version-check", "download", "-q", "--no-deps",
          "--only-binary=:all:", "--python-version", "3.11", "--platform", "manylinux2014_x86_64",
          "--platform", "manylinux_2_17_x86_64", "-d", str(out), *pins],
         f"fetching the hosts' runtime wheels ({', '.join(pins)})")


def wheelhouse(out_dir: Path) -> dict:
    """The wheelhouse for the current sources, built only when they changed since the last build.
    One build at a time: a converge begins it in the background (a converge killed meanwhile leaves
    it running) and the next converge's build waits for it, then finds its wheels."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _wheelhouse(out_dir)


def _wheelhouse(out_dir: Path) -> dict:
    want = fingerprint()
    stamp = out_dir / STAMP
    if stamp.exists():
        try:
            old = json.loads(stamp.read_text())
        except ValueError:
            old = {}
        if old.get("fingerprint") == want and all((out_dir / w).exists() for w in old.get("wheels", [])):
            return dict(old, built=False, dir=str(out_dir))
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out_dir))
    try:
        _build(staging)
        for old_wheel in out_dir.glob("*.whl"):
            old_wheel.unlink()
        names = []
        for whl in sorted(staging.glob("*.whl")):
            whl.replace(out_dir / whl.name)
            names.append(whl.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    native = [n for n in names if n.startswith("trustops-") and not n.endswith("-none-any.whl")]
    pure = [n for n in names if n.startswith("trustops-") and n.endswith("-none-any.whl")]
    if len(pure) != 1 or len(native) > 1:
        raise PackageError(f"unexpected trustops wheels in {out_dir}: {names}")
    result = {"fingerprint": want, "wheels": names, "trustops_pure": pure[0],
              "trustops_native": native[0] if native else None,
              "native_tag": f"cp{sys.version_info.major}{sys.version_info.minor}-{sysconfig.get_platform()}",
              "deps": [n for n in names if not n.startswith("trustops-")]}
    tmp = stamp.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(stamp)
    return dict(result, built=True, dir=str(out_dir))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m trustops.package WHEELHOUSE_DIR", file=sys.stderr)
        return 2
    try:
        print(json.dumps(wheelhouse(Path(args[0]))))
    except (PackageError, OSError) as exc:
        print(f"trustops.package: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
