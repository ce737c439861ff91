"""Build the packaged app on the machine this runs on, package it, and smoke-test it.

    python installer/build.py [--variant cpu|gpu] [--with-weights FILE [--weights-model M]]
    make installer                      (the same, CPU variant)

Steps (each prints what it does; the first failure stops the build):
1. a build venv per variant (`.venv-build` for both CPU variants, `.venv-build-gpu`) with
   the variant's torch (installer/manifest.py pins it) and the app with its `installer`
   extra;
2. for a variant without torch at run time (`cpu`, the default): the offline encoder
   exported to ONNX (installer/export_onnx.py, checked against PyTorch) into
   `build/onnx-models-VARIANT/`, which the bundle carries;
3. PyInstaller with installer/desktop-app.spec: a one-folder bundle in
   `dist/VARIANT/desktop-app/` (for `cpu`: checked to hold no torch);
4. the smoke test (installer/smoke.py) on the bundle: headless searches and the window
   under Xvfb, whose screenshot is kept as `dist/VARIANT/window.png`;
5. on Linux: a `.deb` and a portable `.tar.gz` in `dist/`, then the .deb unpacked into a
   scratch root (`dpkg -x`) and smoke-tested from there with nothing but the package's
   /usr/bin on PATH;
6. sizes as JSON in `dist/VARIANT/sizes.json`, with the largest parts of the bundle.

Windows and macOS installers are made from the bundle by installer/windows/desktop-app.iss
(Inno Setup) and installer/macos/make_dmg.sh; the workflows in .github/workflows/ run
this script and then those on their runners.

`--find-depends` lists the Debian packages the bundle's libraries need from the system
(the .deb's Depends in installer/manifest.py come from it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import debian  # noqa: E402
import manifest as m  # noqa: E402

ROOT = m.ROOT


def say(text: str) -> None:
    print(f"[build] {text}", flush=True)


def run(cmd: list[str], **kw: object) -> None:
    say("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True, **kw)  # type: ignore[call-overload]


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def make_venv(variant: str, python: str) -> Path:
    """The variant's build venv, with its torch pins and the app (editable: the spec
    bundles the source tree)."""
    venv = ROOT / m.build_venv_name(variant)
    if not venv_python(venv).exists():
        run([python, "-m", "venv", str(venv)])
    pins = m.variant_pins(variant, sys.platform)
    py = str(venv_python(venv))
    pip = [py, "-m", "pip", "install", "--upgrade-strategy", "only-if-needed"]
    wanted = [*pins["requirements"], "-e", f"{ROOT}[installer]"]  # type: ignore[misc]
    extra = ["--extra-index-url", str(pins["extra_index"])] if pins["extra_index"] else []
    try:
        run([*pip, *(extra if pins["index_first"] else []), *wanted])
    except subprocess.CalledProcessError:
        if not extra or pins["index_first"]:
            raise
        # the pinned torch lives in PyTorch's own index when the configured one lacks it
        run([*pip, *extra, *wanted])
    probe = "import torch; print(torch.__version__, torch.version.cuda)"
    got = subprocess.run([py, "-c", probe], capture_output=True, text=True, check=True).stdout
    say(f"build venv torch: {got.strip()}")
    if ("None" not in got.split()[-1]) != pins["expect_cuda"]:
        raise SystemExit(f"[build] the {variant} variant got the wrong torch: {got.strip()}")
    return venv


def export_onnx(venv: Path, variant: str) -> Path:
    """The offline encoder's ONNX export for a bundle without torch (export_onnx.py)."""
    out = ROOT / "build" / f"onnx-models-{variant}"
    run([str(venv_python(venv)), str(ROOT / "installer" / "export_onnx.py"), str(out)])
    return out


def check_torch_free(bundle: Path) -> None:
    """A variant without torch at run time must hold none of what manifest.py leaves
    out for it (a stray import would pull it back in silently)."""
    internal = bundle / "_internal"
    found = [
        name
        for name in m.TORCH_FREE_EXCLUDES
        if "." not in name and ((internal / name).exists() or (internal / f"{name}.libs").exists())
    ]
    if found:
        raise SystemExit(f"[build] the bundle should hold no {', '.join(found)}")
    say("bundle holds no torch, torchvision, open_clip or onnx")


def largest_parts(bundle: Path, count: int = 15) -> dict[str, int]:
    """Bytes per top-level entry of the bundle's `_internal` folder, largest first."""
    internal = bundle / "_internal"
    if not internal.is_dir():
        return {}
    sizes = {
        entry.name: tree_bytes(entry) if entry.is_dir() else entry.lstat().st_size
        for entry in internal.iterdir()
    }
    return dict(sorted(sizes.items(), key=lambda kv: -kv[1])[:count])


def check_budget(variant: str, installed_kib: int) -> None:
    """Fail the build when the .deb grew past the variant's budget (manifest.py)."""
    budget = m.DEB_INSTALLED_BUDGET_MB.get(variant)
    installed_mb = installed_kib * 1024 / 1e6
    if budget is not None and installed_mb > budget:
        raise SystemExit(
            f"[build] the {variant} .deb takes {installed_mb:.1f} MB installed, over its "
            f"{budget} MB budget: see the largest parts above, and manifest.py's excludes"
        )


def pyinstaller(
    venv: Path, variant: str, weights: Path | None, weights_model: str, onnx: Path | None
) -> Path:
    env = {**os.environ, "DESKTOP_APP_VARIANT": variant}
    if onnx is not None:
        env["DESKTOP_APP_ONNX_MODELS"] = str(onnx)
    if weights is not None:
        env["DESKTOP_APP_WEIGHTS"] = str(weights.resolve())
        env["DESKTOP_APP_WEIGHTS_MODEL"] = weights_model
    dist = ROOT / "dist" / variant
    run(
        [
            str(venv_python(venv)),
            "-m",
            "PyInstaller",
            "--noconfirm",
            "--clean",
            "--distpath",
            str(dist),
            "--workpath",
            str(ROOT / "build" / f"pyinstaller-{variant}"),
            str(ROOT / "installer" / "desktop-app.spec"),
        ],
        env=env,
    )
    return dist / m.APP_NAME


def strip_libraries(bundle: Path) -> None:
    """Drop the symbol tables of the libraries manifest.STRIP_LIBS names (Linux only)."""
    if not sys.platform.startswith("linux") or shutil.which("strip") is None:
        return
    before = after = 0
    for pattern in m.STRIP_LIBS:
        for lib in sorted(bundle.glob(pattern)):
            if lib.is_symlink() or not lib.is_file():
                continue
            size = lib.stat().st_size
            subprocess.run(["strip", "--strip-unneeded", str(lib)], check=True)
            before, after = before + size, after + lib.stat().st_size
    say(f"stripped libraries: {before / 1e6:.0f} -> {after / 1e6:.0f} MB")


def remove_dangling_links(bundle: Path) -> None:
    """PyInstaller links top-level library names to the files it collected; the spec
    drops some of those files (torchvision's CUDA ops, EGLFS), which leaves links to
    nothing behind."""
    for link in bundle.rglob("*"):
        if link.is_symlink() and not link.exists():
            say(f"  removing dangling link {link.relative_to(bundle)}")
            link.unlink()


def tree_bytes(folder: Path) -> int:
    return sum(p.lstat().st_size for p in folder.rglob("*") if not p.is_dir())


def smoke(venv: Path, exe: Path, path: str | None, screenshot: Path | None) -> dict:
    cmd = [str(venv_python(venv)), str(ROOT / "installer" / "smoke.py"), str(exe)]
    if path is not None:
        cmd += ["--path", path]
    if screenshot is not None:
        cmd += ["--screenshot", str(screenshot)]
    say("$ " + " ".join(cmd))
    done = subprocess.run(cmd, capture_output=True, text=True)
    sys.stderr.write(done.stderr)
    print(done.stdout, flush=True)
    if done.returncode != 0:
        raise SystemExit(f"[build] smoke test failed on {exe}")
    return json.loads(done.stdout)


def make_tarball(bundle: Path, variant: str) -> Path:
    arch = platform.machine().lower()
    out = ROOT / "dist" / f"{m.APP_NAME}-{m.version()}-linux-{arch}-{variant}.tar.gz"
    say(f"writing {out.name}")
    with tarfile.open(out, "w:gz", compresslevel=6) as tar:
        tar.add(bundle, arcname=f"{m.APP_NAME}-{m.version()}")
    return out


def deb_scratch_smoke(venv: Path, deb: Path) -> dict:
    """Unpack the .deb into a scratch root and smoke-test it from there."""
    with tempfile.TemporaryDirectory(prefix="desktop-app-deb-") as tmp:
        root = Path(tmp)
        run(["dpkg-deb", "-x", str(deb), str(root)])
        return smoke(venv, root / "usr" / "bin" / m.APP_NAME, str(root / "usr" / "bin"), None)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Build, package and smoke-test desktop-app.")
    p.add_argument("--variant", choices=sorted(m.VARIANTS), default="cpu")
    p.add_argument(
        "--with-weights",
        type=Path,
        default=None,
        metavar="FILE",
        help="bundle these CLIP weights (an offline, CLIP-ready installer)",
    )
    p.add_argument(
        "--weights-model",
        default="ViT-B-32:laion2b_s34b_b79k",
        metavar="ARCH:TAG",
        help="which open_clip model the weights are (default: the app's default)",
    )
    p.add_argument("--python", default=sys.executable, help="the Python the build venv uses")
    p.add_argument("--skip-venv", action="store_true", help="reuse the build venv as it is")
    p.add_argument(
        "--venv",
        type=Path,
        default=None,
        help="build from this existing venv (implies --skip-venv; it must hold the app, "
        "its dependencies and PyInstaller)",
    )
    p.add_argument("--skip-pyinstaller", action="store_true", help="package the existing bundle")
    p.add_argument("--no-smoke", action="store_true")
    p.add_argument(
        "--skip-bundle-smoke",
        action="store_true",
        help="smoke-test only the packaged app (the bundle passed already)",
    )
    p.add_argument(
        "--find-depends",
        action="store_true",
        help="print the Debian packages the built bundle needs, and stop",
    )
    args = p.parse_args(argv)

    bundle = ROOT / "dist" / args.variant / m.APP_NAME
    if args.find_depends:
        print(json.dumps(debian.find_depends(bundle), indent=1))
        return 0
    if args.with_weights is not None and not args.with_weights.is_file():
        raise SystemExit(f"[build] --with-weights: {args.with_weights} is not a file")
    if args.with_weights is not None and not m.torch_at_runtime(args.variant):
        # CLIP's towers are not exported at build time yet, and its tokenizer needs torch
        raise SystemExit(
            f"[build] --with-weights: the {args.variant} build runs without PyTorch and "
            "cannot run CLIP; use --variant cpu-torch (or gpu) for a CLIP-ready installer"
        )
    if ":" not in args.weights_model:
        raise SystemExit("[build] --weights-model wants ARCH:TAG, e.g. ViT-B-32:laion2b_s34b_b79k")

    started = time.monotonic()
    venv = ROOT / m.build_venv_name(args.variant)
    if args.venv is not None:
        venv = args.venv.absolute()
    elif not args.skip_venv:
        venv = make_venv(args.variant, args.python)
    if not args.skip_pyinstaller:
        onnx = None if m.torch_at_runtime(args.variant) else export_onnx(venv, args.variant)
        bundle = pyinstaller(venv, args.variant, args.with_weights, args.weights_model, onnx)
        strip_libraries(bundle)
        remove_dangling_links(bundle)
    if not m.torch_at_runtime(args.variant):
        check_torch_free(bundle)
    exe = bundle / (m.APP_NAME + (".exe" if os.name == "nt" else ""))
    sizes: dict[str, object] = {"variant": args.variant, "bundle_bytes": tree_bytes(bundle)}
    say(f"bundle: {bundle} ({sizes['bundle_bytes'] / 1e6:.0f} MB)")
    sizes["largest_parts_bytes"] = largest_parts(bundle)
    for name, size in sizes["largest_parts_bytes"].items():  # type: ignore[attr-defined]
        say(f"  {size / 1e6:7.1f} MB  {name}")
    if not (args.no_smoke or args.skip_bundle_smoke):
        sizes["smoke_bundle"] = smoke(venv, exe, None, ROOT / "dist" / args.variant / "window.png")
    if sys.platform.startswith("linux"):
        deb = debian.build_deb(bundle, args.variant, ROOT / "dist")
        sizes["deb"] = deb.name
        sizes["deb_bytes"] = deb.stat().st_size
        sizes["deb_installed_kib"] = debian.installed_size_kib(deb)
        check_budget(args.variant, int(sizes["deb_installed_kib"]))  # type: ignore[call-overload]
        tarball = make_tarball(bundle, args.variant)
        sizes["tar_gz"] = tarball.name
        sizes["tar_gz_bytes"] = tarball.stat().st_size
        if not args.no_smoke:
            sizes["smoke_deb"] = deb_scratch_smoke(venv, deb)
    sizes["build_seconds"] = round(time.monotonic() - started)
    out = ROOT / "dist" / args.variant / "sizes.json"
    out.write_text(json.dumps(sizes, indent=1, default=str))
    say(f"done in {sizes['build_seconds']} s; sizes in {out}")
    for key in ("bundle_bytes", "deb_bytes", "tar_gz_bytes"):
        if key in sizes:
            say(f"  {key[:-6]}: {int(sizes[key]) / 1e6:.1f} MB")  # type: ignore[call-overload]
    if "deb_installed_kib" in sizes:
        say(f"  deb installed: {int(sizes['deb_installed_kib']) * 1024 / 1e6:.1f} MB")  # type: ignore[call-overload]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
