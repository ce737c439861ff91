"""The Linux `.deb`: layout, control file, and the search for its `Depends:`.

Layout: the bundle in /usr/lib/desktop-app/, a relative /usr/bin/desktop-app symlink to
its executable (the bootloader finds its folder through /proc/self/exe, so the link works
from any root), the menu entry in /usr/share/applications/, the icon in every hicolor
size plus the SVG. The menu and icon caches are refreshed by the desktop-file-utils and
hicolor-icon-theme triggers, so the package needs no maintainer scripts.

`find_depends` is how the Depends list in installer/manifest.py was found: every ELF file
the app loads (the executable, Python extension modules, the Qt plugins it needs) is run
through `ldd` with the bundle's own library folders first; whatever resolves outside the
bundle is a system library, and `dpkg -S` names its package. Optional Qt plugins
(Wayland, EGL, VNC, input methods) only give Recommends. Run on a full desktop system it
finds everything; a library missing here shows up as "not found".
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import manifest as m

# Qt plugins the app cannot show its window or images without; the rest are optional.
ESSENTIAL_QT_PLUGINS = re.compile(
    r"plugins/(platforms/libq(xcb|offscreen|minimal)\.so|xcbglintegrations/|imageformats/"
    r"|iconengines/|platformthemes/libqxdgdesktopportal)"
)


def package_name(variant: str) -> str:
    return m.APP_NAME if variant == "cpu" else f"{m.APP_NAME}-{variant}"


def is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(4) == b"\x7fELF"
    except OSError:
        return False


def _is_root(rel: str) -> bool:
    """ELF files loaded on their own (not only as another library's dependency)."""
    if "/Qt/plugins/" in rel or rel.startswith("PySide6/Qt/plugins/"):
        return True
    name = rel.rsplit("/", 1)[-1]
    return (
        "/" not in rel.removeprefix("_internal/")
        and not name.startswith("lib")  # executable
        or ".cpython-" in name
        or name.endswith(".abi3.so")
        or "lib-dynload/" in rel
    )


def _ldd(path: Path, lib_path: str) -> dict[str, str | None]:
    """Every library `path` loads, directly or not: soname -> resolved path (None: not
    found), resolved the way the frozen app does, the bundle's folders first."""
    env = {**os.environ, "LD_LIBRARY_PATH": lib_path}
    out = subprocess.run(["ldd", str(path)], capture_output=True, text=True, env=env).stdout
    found: dict[str, str | None] = {}
    for line in out.splitlines():
        hit = re.match(r"\s*(\S+) => (not found|(\S+))", line)
        if hit:
            found[hit.group(1)] = None if hit.group(2) == "not found" else hit.group(3)
    return found


def _needed(path: Path) -> list[str]:
    """The sonames an ELF file names itself (DT_NEEDED), not their dependencies."""
    out = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def _owner(path: str) -> str | None:
    real = os.path.realpath(path)
    candidates = {path, real}
    for p in list(candidates):  # merged /usr: dpkg may know either spelling
        if p.startswith("/usr/lib/"):
            candidates.add(p.removeprefix("/usr"))
        elif p.startswith("/lib/"):
            candidates.add("/usr" + p)
    for p in sorted(candidates):
        done = subprocess.run(["dpkg", "-S", p], capture_output=True, text=True)
        if done.returncode == 0:
            return done.stdout.split(":", 1)[0].strip()
    return None


def find_depends(bundle: Path) -> dict[str, object]:
    """Debian packages the bundle's own files link to directly, by measurement.

    For each file the app loads on its own (executable, extension modules, Qt plugins),
    `ldd` resolves everything it loads; the system libraries that a file *inside* the
    bundle names as DT_NEEDED are the package's dependencies (their own dependencies are
    their packages' business, as with dpkg-shlibdeps).
    """
    files = [p for p in bundle.rglob("*") if p.is_file() and not p.is_symlink() and is_elf(p)]
    lib_dirs = sorted({str(p.parent) for p in files if ".so" in p.name})
    lib_path = ":".join([str(bundle / "_internal"), *lib_dirs])
    needs: dict[str, set[str]] = {"depends": set(), "recommends": set()}
    missing: dict[str, set[str]] = {}
    libs: dict[str, str] = {}
    needed_cache: dict[str, list[str]] = {}
    for f in files:
        rel = f.relative_to(bundle).as_posix()
        if not _is_root(rel):
            continue
        optional = "plugins/" in rel and not ESSENTIAL_QT_PLUGINS.search(rel)
        closure = _ldd(f, lib_path)
        inside = [str(f)] + [p for p in closure.values() if p and p.startswith(str(bundle))]
        direct: set[str] = set()
        for member in inside:
            if member not in needed_cache:
                needed_cache[member] = _needed(Path(member))
            direct.update(needed_cache[member])
        for soname in direct:
            where = closure.get(soname)
            if soname not in closure:
                continue  # the dynamic loader itself (ld-linux), or a versioned alias
            if where is None:
                missing.setdefault(soname, set()).add(rel)
                continue
            if where.startswith(str(bundle)):
                continue
            owner = libs.get(where) or _owner(where) or f"?{where}"
            libs[where] = owner
            needs["recommends" if optional else "depends"].add(owner)
    needs["recommends"] -= needs["depends"]
    return {
        "depends": sorted(needs["depends"]),
        "recommends": sorted(needs["recommends"]),
        "not_found_here": {k: sorted(v)[:3] for k, v in sorted(missing.items())},
        "system_libraries": dict(sorted(libs.items())),
    }


def glibc_needed(bundle: Path) -> str:
    """The newest GLIBC symbol version any file in the bundle asks for: the libc6 the
    package needs. It follows the build machine (PyInstaller bundles its libstdc++)."""
    newest = (2, 17)
    for f in bundle.rglob("*"):
        if f.is_file() and not f.is_symlink() and is_elf(f):
            out = subprocess.run(["objdump", "-T", str(f)], capture_output=True, text=True)
            for major, minor in re.findall(r"GLIBC_(\d+)\.(\d+)", out.stdout):
                newest = max(newest, (int(major), int(minor)))
    return f"{newest[0]}.{newest[1]}"


def desktop_entry() -> str:
    """The menu entry (resources/desktop-app.desktop): `Exec=desktop-app gui %f` opens the
    window searching by the image a file manager passes."""
    return m.DESKTOP_FILE.read_text()


def stage(bundle: Path, variant: str, staging: Path, glibc: str = "2.28") -> Path:
    """The package's file tree, ready for dpkg-deb."""
    if staging.exists():
        shutil.rmtree(staging)
    lib = staging / "usr" / "lib" / m.APP_NAME
    shutil.copytree(bundle, lib, symlinks=True)
    bin_dir = staging / "usr" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / m.APP_NAME).symlink_to(f"../lib/{m.APP_NAME}/{m.APP_NAME}")
    apps = staging / "usr" / "share" / "applications"
    apps.mkdir(parents=True)
    (apps / f"{m.APP_NAME}.desktop").write_text(desktop_entry())
    icons = staging / "usr" / "share" / "icons" / "hicolor"
    for size, png in m.icon_pngs().items():
        target = icons / f"{size}x{size}" / "apps"
        target.mkdir(parents=True)
        shutil.copyfile(png, target / f"{m.APP_NAME}.png")
    (icons / "scalable" / "apps").mkdir(parents=True)
    shutil.copyfile(m.ICON_SVG_SOURCE, icons / "scalable" / "apps" / f"{m.APP_NAME}.svg")
    doc = staging / "usr" / "share" / "doc" / package_name(variant)
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(
        f"{m.APP_NAME} {m.version()}: MIT licence. The bundle in /usr/lib/{m.APP_NAME} carries "
        "third-party libraries under their own licences (PyTorch: BSD; Qt for Python: "
        "LGPLv3; Chroma: Apache-2.0; OpenCV: Apache-2.0; see their *.dist-info folders).\n"
    )
    for path in staging.rglob("*"):  # what dpkg expects, whatever the umask was
        if path.is_symlink():
            continue
        if path.is_dir():
            path.chmod(0o755)
        else:
            path.chmod(0o755 if os.access(path, os.X_OK) else 0o644)
    control = staging / "DEBIAN"
    control.mkdir()
    (control / "control").write_text(control_text(staging, variant, glibc))
    return staging


def control_text(staging: Path, variant: str, glibc: str = "2.28") -> str:
    installed_kib = sum(
        (p.lstat().st_size + 1023) // 1024 for p in staging.rglob("*") if not p.is_dir()
    )
    arch = subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
    ).stdout.strip()
    fields = {
        "Package": package_name(variant),
        "Version": m.version(),
        "Architecture": arch,
        "Maintainer": m.MAINTAINER,
        "Installed-Size": str(installed_kib),
        "Depends": ", ".join(f"libc6 (>= {glibc})" if d == "libc6" else d for d in m.DEB_DEPENDS),
        "Recommends": ", ".join(m.DEB_RECOMMENDS),
        "Section": m.DEB_SECTION,
        "Priority": "optional",
        "Homepage": m.HOMEPAGE,
    }
    if variant != "cpu":  # both install /usr/lib/desktop-app
        fields["Conflicts"] = fields["Replaces"] = fields["Provides"] = m.APP_NAME
    body = "".join(f"{k}: {v}\n" for k, v in fields.items() if v)
    label = {
        "cpu": "CPU build, ONNX Runtime",
        "cpu-torch": "CPU build with PyTorch, for CLIP",
    }.get(variant, f"{variant.upper()} (CUDA) build")
    return body + (
        f"Description: image similarity search for your photo folders ({label})\n"
        f" {m.DESCRIPTION}: drop a photo, a crop or a region of one, and see the most\n"
        " similar photos in the folders you chose, indexed locally in the background.\n"
    )


def build_deb(bundle: Path, variant: str, out_dir: Path) -> Path:
    glibc = glibc_needed(bundle)
    staging = stage(bundle, variant, m.ROOT / "build" / f"deb-{variant}", glibc)
    arch = re.search(r"^Architecture: (\S+)$", (staging / "DEBIAN/control").read_text(), re.M)
    assert arch is not None
    out = out_dir / f"{package_name(variant)}_{m.version()}_{arch.group(1)}.deb"
    print(f"[build] $ dpkg-deb --build {staging} {out}", flush=True)
    # zstd -9: several times faster than xz -6, a little larger; dpkg reads zstd
    # from 1.21.18 (Debian 12, Ubuntu 21.10), older than any system the bundle runs on
    # (its libc6 minimum is Debian 12's).
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zzstd", "-z9", "--build", str(staging), str(out)],
        check=True,
    )
    shutil.rmtree(staging)
    return out


def installed_size_kib(deb: Path) -> int:
    out = subprocess.run(
        ["dpkg-deb", "--field", str(deb), "Installed-Size"], capture_output=True, text=True
    )
    return int(out.stdout.strip())
