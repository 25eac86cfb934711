"""The lab's images: a Debian 12 base (debootstrap + docker import, or a registry image), the
systemd host image and the S3 endpoint image. Each tag carries a digest of what built it, so an
unchanged image is reused and a changed Dockerfile gives a new one."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from trustops.lab.system import LabError, Progress, ensure_debootstrap, require_root, run

IMAGES_DIR = Path(__file__).resolve().parent / "images"
BASE_TAG = os.environ.get("TRUSTOPS_BASE_TAG", "trustops-lab/bookworm-base:latest")
DEFAULT_MIRROR = "http://deb.debian.org/debian"


def image_exists(tag: str) -> bool:
    return run(["docker", "image", "inspect", tag], check=False).returncode == 0


def image_id(tag: str) -> str:
    return run(["docker", "image", "inspect", "-f", "{{.Id}}", tag]).stdout.strip()


def base_image(progress: Progress) -> str:
    """The Debian 12 base: $TRUSTOPS_BASE_IMAGE (e.g. debian:bookworm from a registry), or one
    made here with debootstrap, because this machine may reach no container registry."""
    wanted = os.environ.get("TRUSTOPS_BASE_IMAGE")
    if wanted:
        if not image_exists(wanted):
            progress.step(f"pulling base image {wanted}")
            run(["docker", "pull", wanted], timeout=900)
        return wanted
    if image_exists(BASE_TAG):
        return BASE_TAG
    require_root("building the Debian 12 base image with debootstrap")
    ensure_debootstrap(progress)
    mirror = os.environ.get("TRUSTOPS_DEBIAN_MIRROR", DEFAULT_MIRROR)
    workdir = Path(tempfile.mkdtemp(prefix="trustops-debootstrap-", dir="/var/tmp"))
    rootfs, log = workdir / "rootfs", workdir / "debootstrap.log"
    try:
        progress.step(f"building Debian 12 base image with debootstrap from {mirror} (about a minute)")
        with open(log, "w") as out:
            proc = subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs), mirror],
                                  stdout=out, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise LabError(f"debootstrap failed (exit {proc.returncode}): {tail[0]}; check the network to "
                           f"{mirror} or set TRUSTOPS_DEBIAN_MIRROR / TRUSTOPS_BASE_IMAGE")
        _as_in_debians_docker_image(rootfs)
        progress.step("importing the base image into Docker")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        imp = subprocess.run(["docker", "import", "-", BASE_TAG], stdin=tar.stdout, capture_output=True, text=True)
        tar.wait()
        if imp.returncode != 0 or tar.returncode != 0:
            raise LabError(f"docker import of the base image failed: {imp.stderr.strip()[-200:]}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return BASE_TAG


def _as_in_debians_docker_image(rootfs: Path) -> None:
    """What Debian's own Docker image (debian:bookworm, the Dockerfiles' default base) adds to a
    debootstrap tree and this image should have too: dpkg without an fsync per file. Four hosts
    unpacking packages on one disk at once spent their first converge waiting on it."""
    (rootfs / "etc/dpkg/dpkg.cfg.d").mkdir(parents=True, exist_ok=True)
    (rootfs / "etc/dpkg/dpkg.cfg.d/docker-apt-speedup").write_text("force-unsafe-io\n")


def build_all(base: str, progress: Progress, specs: dict[str, dict]) -> dict[str, str]:
    """Build several images from one base side by side (`specs`: name -> build()'s keyword
    arguments): each spends most of its time on a mirror, PyPI or one core, so together they take
    about as long as the longest. Every build runs to its end (what succeeded stays cached); the
    first failure, in `specs` order, is raised."""
    with ThreadPoolExecutor(max_workers=len(specs), thread_name_prefix="image") as pool:
        futures = {name: pool.submit(build, name, base, progress, **kwargs) for name, kwargs in specs.items()}
    return {name: future.result() for name, future in futures.items()}


def build(name: str, base: str, progress: Progress, build_args: dict[str, str] | None = None, prepare=None,
          context: Path | None = None) -> str:
    """Build <context>/Dockerfile (default lab/images/<name>/) from `base` unless an image with the
    same inputs exists. `prepare(context_dir)` adds generated files (a wheelhouse) to a copy of the
    context first."""
    context = context or IMAGES_DIR / name
    digest = hashlib.sha256()
    digest.update(image_id(base).encode())
    for path in sorted(context.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(context)).encode() + path.read_bytes())
    for k, v in sorted((build_args or {}).items()):
        digest.update(f"{k}={v}".encode())
    tag = f"trustops-lab/{name}:{digest.hexdigest()[:12]}"
    if image_exists(tag):
        return tag
    progress.step(f"building image {tag} (apt-get from Debian's mirror)")
    with tempfile.TemporaryDirectory(prefix=f"trustops-{name}-") as tmp:
        if prepare is not None:
            shutil.copytree(context, tmp, dirs_exist_ok=True)
            context = Path(tmp)
            prepare(context)
        return _docker_build(name, base, tag, context, build_args)


def _docker_build(name: str, base: str, tag: str, context: Path,
                  build_args: dict[str, str] | None) -> str:
    args = ["docker", "build", "-q", "-t", tag,
            "--label", "trustops.image=1", "--build-arg", f"BASE_IMAGE={base}"]
    for k, v in (build_args or {}).items():
        args += ["--build-arg", f"{k}={v}"]
    proc = subprocess.run([*args, str(context)], capture_output=True, text=True,
                          env=dict(os.environ, DOCKER_BUILDKIT="0"))
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise LabError(f"building {name} image failed: {tail}; check the network to Debian's mirror / PyPI")
    return tag


def wheelhouse(what: str, requirements: list[str], progress: Progress):
    """A `prepare` step: download the wheels of `requirements` (pip arguments: specifiers, or
    `-r file`) here, where pip reaches PyPI with this machine's trust store, into the build
    context's wheels/."""
    def prepare(context: Path) -> None:
        progress.step(f"downloading the wheels of {what}")
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:",
                               "-d", str(context / "wheels"), *requirements],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise LabError(f"downloading the wheels of {what} failed: {proc.stderr.strip().splitlines()[-1:]}; "
                           f"check the network to PyPI")
    return prepare
