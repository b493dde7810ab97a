"""Build (or reuse) the guest lane's kernel from Debian's ``linux-source-6.12``.

The kernel is cached outside the clone, keyed by the source package's version, the config
fragment and the virtme-ng version that writes the base config: the same inputs give the same
key, and a cached ``bzImage`` is reused without building.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lane.errors import LaneError, LaneFailure

SOURCE_PACKAGE = "linux-source-6.12"
SOURCE_TARBALL = Path("/usr/src/linux-source-6.12.tar.xz")
FRAGMENT = Path(__file__).with_name("kernel.fragment")


def cache_root() -> Path:
    """Where costly artefacts live: outside any clone, shared by every run on the machine."""
    env = os.environ.get("VFIO_CTS_CACHE")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/cache/vfio-mig-cts")
    return Path.home() / ".cache" / "vfio-mig-cts"


@dataclass(frozen=True)
class KernelArtifact:
    """A built kernel: its image, its config and the key it was built under."""

    bzimage: Path
    config: Path
    key: str
    release: str


def source_version() -> str:
    """The installed ``linux-source-6.12`` package's version."""
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", SOURCE_PACKAGE],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise LaneError(LaneFailure.NO_SOURCE,
                        f"{SOURCE_PACKAGE} is not installed: apt-get install {SOURCE_PACKAGE}") from exc
    if not out or not SOURCE_TARBALL.exists():
        raise LaneError(LaneFailure.NO_SOURCE,
                        f"{SOURCE_TARBALL} is missing: apt-get install {SOURCE_PACKAGE}")
    return out


def virtme_version() -> str:
    try:
        from importlib.metadata import version
        return version("virtme-ng")
    except Exception as exc:
        raise LaneError(LaneFailure.NO_TOOL, "virtme-ng is not installed: pip install virtme-ng") from exc


def build_key(pkg_version: str, fragment: bytes, vng_version: str) -> str:
    """The cache key: a digest of every input that changes the built image."""
    h = hashlib.sha256()
    for part in (pkg_version.encode(), fragment, vng_version.encode()):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()[:16]


def parse_fragment(text: str) -> dict[str, str]:
    """``CONFIG_X=v`` lines of a fragment; comments and blanks ignored."""
    items: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition("=")
        items[name] = value
    return items


def missing_items(fragment: dict[str, str], config_text: str) -> list[str]:
    """Fragment items the final .config does not carry (``=n`` means unset or absent)."""
    have = parse_fragment(config_text)
    unset = {line.split()[1] for line in config_text.splitlines()
             if line.startswith("# CONFIG_") and line.endswith(" is not set")}
    missing = []
    for name, value in fragment.items():
        if value == "n":
            if have.get(name, "n") not in ("n",) and name not in unset:
                missing.append(f"{name}={value} (have {have[name]})")
        elif have.get(name) != value:
            missing.append(f"{name}={value} (have {have.get(name, 'unset')})")
    return missing


def _extract(root: Path, pkg_version: str) -> Path:
    dest = root / "src" / pkg_version
    tree = dest / SOURCE_PACKAGE
    marker = dest / ".extracted"
    if marker.exists():
        return tree
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    print(f"lane: extracting {SOURCE_TARBALL} ...", flush=True)
    with tarfile.open(SOURCE_TARBALL) as tar:
        tar.extractall(dest, filter="tar")
    marker.touch()
    return tree


def _run(cmd: list[str], cwd: Path, log: Path, what: str) -> None:
    with log.open("ab") as out:
        proc = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise LaneError(LaneFailure.BUILD_FAILED,
                        f"{what} failed (exit {proc.returncode}); see {log}\n" + "\n".join(tail))


def _make_with_progress(cmd: list[str], cwd: Path, log: Path) -> None:
    """Run make, printing a progress line a minute with the object count so far."""
    start = time.monotonic()
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        while True:
            try:
                proc.wait(timeout=60)
                break
            except subprocess.TimeoutExpired:
                objs = sum(1 for line in log.read_text(errors="replace").splitlines()
                           if line.lstrip().startswith("CC"))
                print(f"lane: building kernel: {int(time.monotonic() - start)} s, {objs} files compiled",
                      flush=True)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise LaneError(LaneFailure.BUILD_FAILED,
                        f"kernel build failed (exit {proc.returncode}); see {log}\n" + "\n".join(tail))


def build_from_source(src: Path, out_dir: Path, fragment: Path, jobs: int) -> tuple[Path, Path]:
    """Configure ``src`` into ``out_dir`` (virtme-ng base + fragment) and build ``bzImage``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    log = out_dir / "build.log"
    configkernel = shutil.which("virtme-configkernel") or str(Path(sys.executable).with_name("virtme-configkernel"))
    _run([configkernel, "--defconfig", f"O={out_dir}"], cwd=src, log=log, what="virtme-configkernel")
    # virtme-ng appends its own generic items after any custom ones, so the fragment goes last, here.
    config = out_dir / ".config"
    with config.open("a") as conf:
        for name, value in parse_fragment(fragment.read_text()).items():
            conf.write(f"# {name} is not set\n" if value == "n" else f"{name}={value}\n")
    _run(["make", f"O={out_dir}", "olddefconfig"], cwd=src, log=log, what="make olddefconfig")
    missing = missing_items(parse_fragment(fragment.read_text()), config.read_text())
    if missing:
        raise LaneError(LaneFailure.BUILD_FAILED, "config fragment not applied: " + ", ".join(missing))
    _make_with_progress(["make", f"O={out_dir}", f"-j{jobs}", "bzImage"], cwd=src, log=log)
    return out_dir / "arch/x86/boot/bzImage", config


def kernel_release(build_dir: Path) -> str:
    rel = build_dir / "include/config/kernel.release"
    return rel.read_text().strip() if rel.exists() else "unknown"


@contextlib.contextmanager
def build_lock(path: Path) -> Iterator[None]:
    """One build per cache key at a time: a second lane waits for the first instead of building over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            print(f"lane: {f.read().strip() or 'another lane'} is building this kernel; waiting for it", flush=True)
            fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}")
        f.flush()
        yield


def ensure_kernel(jobs: int | None = None) -> KernelArtifact:
    """Return the cached kernel for the current inputs, building it first if need be."""
    root = cache_root()
    pkg = source_version()
    key = build_key(pkg, FRAGMENT.read_bytes(), virtme_version())
    with build_lock(root / "build" / f"{key}.lock"):
        return _ensure_kernel(root, pkg, key, jobs)


def _ensure_kernel(root: Path, pkg: str, key: str, jobs: int | None) -> KernelArtifact:
    kdir = root / "kernels" / key
    image, config = kdir / "bzImage", kdir / "config"
    if image.exists() and config.exists():
        print(f"lane: reusing cached kernel {kdir} ({SOURCE_PACKAGE} {pkg})", flush=True)
        return KernelArtifact(image, config, key, (kdir / "release").read_text().strip())
    src = _extract(root, pkg)
    build_dir = root / "build" / key
    print(f"lane: building {SOURCE_PACKAGE} {pkg} into {build_dir} (cold build: about 14 minutes on 2 cores)",
          flush=True)
    built, built_config = build_from_source(src, build_dir, FRAGMENT, jobs or os.cpu_count() or 2)
    kdir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(built_config, config)
    (kdir / "release").write_text(kernel_release(build_dir) + "\n")
    shutil.copy2(built, image.with_suffix(".tmp"))
    image.with_suffix(".tmp").rename(image)
    return KernelArtifact(image, config, key, kernel_release(build_dir))


def user_kernel(path: Path, jobs: int | None = None) -> KernelArtifact:
    """A maintainer's own kernel: a bzImage, or a source tree built here with the lane's fragment."""
    if path.is_file():
        config = path.with_name("config") if path.with_name("config").exists() else path
        return KernelArtifact(path, config, "user", "user")
    if (path / "Makefile").exists() and (path / "Kconfig").exists():
        out = path / ".vfio-mig-cts-build"
        image, config = build_from_source(path, out, FRAGMENT, jobs or os.cpu_count() or 2)
        return KernelArtifact(image, config, "user-tree", kernel_release(out))
    raise LaneError(LaneFailure.USAGE, f"--kernel {path}: neither a bzImage nor a kernel source tree")


if __name__ == "__main__":
    art = ensure_kernel()
    print(art.bzimage)
