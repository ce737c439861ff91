"""The packaging stays consistent with the package, without building anything: the spec,
the build script and the platform installer scripts name an entry point, data files,
icons and modules that exist; the .deb's file tree is laid out as a desktop expects; the
window's new command-line options work; bundled CLIP weights are found.

Building the installers is too slow for CI (`make installer`, see the README)."""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import os
import re
import shutil
import sys
import tomllib
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "installer"))

import debian  # noqa: E402
import manifest as m  # noqa: E402

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_entry_point_is_the_console_script() -> None:
    assert PYPROJECT["project"]["scripts"][m.APP_NAME] == m.CONSOLE_SCRIPT
    module, func = m.CONSOLE_SCRIPT.split(":")
    tree = ast.parse(m.ENTRY_SCRIPT.read_text())
    imported = {
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert (module, func) in imported
    spec_text = (ROOT / "installer" / "desktop-app.spec").read_text()
    assert "m.ENTRY_SCRIPT" in spec_text
    compile(spec_text, "desktop-app.spec", "exec")  # at least valid Python


def test_data_files_and_runtime_hooks_exist() -> None:
    for source, _dest in m.DATAS:
        assert (ROOT / source).exists(), source
    photos = [p for p in m.SAMPLES_DIR.iterdir() if p.suffix == ".jpg"]
    assert len(photos) >= 4
    for photo in photos:
        with Image.open(photo) as im:
            im.verify()
    spec_text = (ROOT / "installer" / "desktop-app.spec").read_text()
    for hook in re.findall(r'"rthooks" / "([^"]+)"', spec_text):
        assert (ROOT / "installer" / "rthooks" / hook).is_file()
    for package in m.COLLECT_DATA:
        assert importlib.util.find_spec(package) is not None, package
    for dist in m.COPY_METADATA:
        importlib.metadata.distribution(dist)  # raises when not installed


def test_hidden_imports_exist_and_are_collected() -> None:
    for module in m.HIDDEN_IMPORTS:
        assert importlib.util.find_spec(module) is not None, module
        assert m.chromadb_wanted(module), f"{module} is both wanted and skipped"


def test_chroma_components_named_in_its_settings_are_bundled() -> None:
    """Chroma loads its components by dotted name; each one an embedded client can name
    must exist and be collected, or the frozen app fails at its first store open."""
    from chromadb.config import Settings

    defaults = Settings()
    named = {
        value.rsplit(".", 1)[0]
        for key, value in defaults.model_dump().items()
        if key.endswith("_impl") and isinstance(value, str) and value.startswith("chromadb.")
    }
    for module in named:
        if importlib.util.find_spec(module) is None:
            continue  # a default Chroma itself no longer ships; never loaded
        distributed = ".distributed" in module
        assert m.chromadb_wanted(module) != distributed, module
    assert "chromadb.api.rust" in named


def test_excluded_modules_are_not_imported_by_the_app() -> None:
    imported: set[str] = set()
    for source in (ROOT / "desktop_app").rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module)
    for module in imported:
        for excluded in m.EXCLUDES:
            assert not (module == excluded or module.startswith(excluded + ".")), module


@pytest.mark.slow  # imports torch and open_clip
def test_excluded_modules_are_not_loaded_by_what_the_app_imports() -> None:
    """A module left out of the bundle must not be imported by torch, Chroma or Qt when
    the app starts using them (torch imports torch.testing._internal, for one)."""
    import chromadb  # noqa: F401
    import open_clip  # noqa: F401
    import torch.utils.checkpoint  # noqa: F401
    from PySide6 import QtWidgets  # noqa: F401

    import desktop_app.cli  # noqa: F401
    import desktop_app.engine.encoders.efficientnet  # noqa: F401

    test_tools = {"pytest", "pytestqt", "mypy", "ruff"}
    for excluded in set(m.EXCLUDES) - test_tools - m.OPTIONAL_IMPORTS:
        loaded = [n for n in sys.modules if n == excluded or n.startswith(excluded + ".")]
        assert not loaded, f"{excluded} is excluded from the bundle but loaded: {loaded[:3]}"


def test_icons_exist_in_every_size_and_format() -> None:
    for size, png in m.icon_pngs().items():
        with Image.open(png) as im:
            assert im.size == (size, size) and im.mode == "RGBA"
    with Image.open(m.ICON_ICO) as ico:
        assert {(16, 16), (32, 32), (48, 48), (256, 256)} <= set(ico.info["sizes"])
    with Image.open(m.ICON_ICNS) as icns:
        assert icns.format == "ICNS" and icns.size[0] >= 512
    assert (m.ICON_DIR / "desktop-app.svg").read_bytes() == m.ICON_SVG_SOURCE.read_bytes()


def test_icons_are_package_data_found_through_importlib_resources() -> None:
    from desktop_app.resources import ICON_SIZES, icon_paths

    assert ICON_SIZES == m.ICON_PNG_SIZES
    assert [p.name for p in icon_paths()] == [f"desktop-app-{s}.png" for s in ICON_SIZES]
    globs = PYPROJECT["tool"]["setuptools"]["package-data"]["desktop_app.resources"]
    for path in m.ICON_DIR.iterdir():
        assert any(path.match(g) for g in globs), f"{path.name} would be left out of a wheel"
    spec = (ROOT / "installer" / "desktop-app.spec").read_text()
    assert "m.COLLECT_DATA" in spec
    assert "desktop_app" in m.COLLECT_DATA
    # the C modules' sources and the type stubs stay out of the bundle
    assert "excludes=m.COLLECT_DATA_EXCLUDES" in spec
    engine = Path("desktop_app/engine")
    for source in ("_hamming.c", "_buffers.h", "_hamming.pyi"):
        assert any((engine / source).match(g) for g in m.COLLECT_DATA_EXCLUDES), source
    for kept in ("resources/desktop-app-64.png", "engine/_hamming.cpython-311-x86_64-linux-gnu.so"):
        assert not any(Path("desktop_app", kept).match(g) for g in m.COLLECT_DATA_EXCLUDES)


def test_menu_entry_opens_the_window_with_the_chosen_image() -> None:
    from desktop_app.cli import build_parser

    entry = debian.desktop_entry()
    assert re.search(r"^Icon=desktop-app$", entry, re.M)
    exec_line = re.search(r"^Exec=(.*)$", entry, re.M)
    assert exec_line is not None
    argv = exec_line.group(1).replace("%f", "/photos/a.jpg").split()
    assert argv[0] == m.APP_NAME
    args = build_parser().parse_args(argv[1:])
    assert args.command == "gui" and args.image == Path("/photos/a.jpg")


def test_windows_and_macos_scripts_point_at_what_the_build_makes() -> None:
    iss = (ROOT / "installer" / "windows" / "desktop-app.iss").read_text()
    icon = re.search(r"^SetupIconFile=(.*)$", iss, re.M)
    assert icon is not None
    iss_dir = ROOT / "installer" / "windows"
    assert (iss_dir / icon.group(1).replace("\\", "/")).resolve() == m.ICON_ICO
    assert '"..\\..\\dist\\" + Variant + "\\desktop-app"' in iss
    assert 'gui ""%1""' in iss  # "Open with" passes the image to `gui`
    dmg = (ROOT / "installer" / "macos" / "make_dmg.sh").read_text()
    assert 'app="dist/$variant/desktop-app.app"' in dmg
    for workflow in (ROOT / ".github" / "workflows").glob("installer-*.yml"):
        text = workflow.read_text()
        for script in re.findall(r"installer[/\\][\w/\\.-]+\.(?:py|sh|iss)", text):
            assert (ROOT / script.replace("\\", "/")).is_file(), f"{workflow.name}: {script}"


def test_variant_pins_name_one_torch_each() -> None:
    for variant in m.VARIANTS:
        for platform in ("linux", "win32", "darwin"):
            pins = m.variant_pins(variant, platform)
            reqs = pins["requirements"]
            assert isinstance(reqs, list)
            assert [r.split("==")[0] for r in reqs] == ["torch", "torchvision"]
    assert m.variant_pins("cpu", "linux")["requirements"][0].endswith("+cpu")  # type: ignore[index]


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="needs dpkg (Debian/Ubuntu)")
def test_deb_tree_has_launcher_menu_entry_icons_and_depends(tmp_path: Path) -> None:
    bundle = tmp_path / "desktop-app"
    (bundle / "_internal" / "resources" / "samples").mkdir(parents=True)
    exe = bundle / "desktop-app"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o700)
    root = debian.stage(bundle, "cpu", tmp_path / "stage")
    launcher = root / "usr" / "bin" / "desktop-app"
    assert launcher.is_symlink() and not os.readlink(launcher).startswith("/")
    assert launcher.resolve() == (root / "usr" / "lib" / "desktop-app" / "desktop-app").resolve()
    assert os.access(launcher, os.X_OK)
    assert (root / "usr/share/applications/desktop-app.desktop").is_file()
    for size in m.ICON_PNG_SIZES:
        assert (root / f"usr/share/icons/hicolor/{size}x{size}/apps/desktop-app.png").is_file()
    assert (root / "usr/share/icons/hicolor/scalable/apps/desktop-app.svg").is_file()
    control = (root / "DEBIAN" / "control").read_text()
    fields = dict(line.split(": ", 1) for line in control.splitlines() if ": " in line)
    assert fields["Package"] == "desktop-app" and fields["Version"] == m.version()
    assert int(fields["Installed-Size"]) > 0
    for package in ("libc6", "libxcb-cursor0", "libxcb-icccm4", "libxcb-keysyms1"):
        assert re.search(rf"(^|[ |,]){re.escape(package)}\b", fields["Depends"]), package
    gpu = debian.control_text(root, "gpu")
    assert "Package: desktop-app-gpu" in gpu and "Conflicts: desktop-app" in gpu


@pytest.mark.slow  # imports torch
def test_bundled_clip_weights_are_used_before_any_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from desktop_app.engine import bundled
    from desktop_app.engine.encoders.clip import cached_weights, resolve_weights

    assert bundled.CLIP_WEIGHTS_DIR == m.CLIP_WEIGHTS_DIR
    assert bundled.bundled_clip_weights("ViT-B-32", "laion2b_s34b_b79k") is None  # from source
    folder = tmp_path / m.CLIP_WEIGHTS_DIR / "ViT-B-32" / "laion2b_s34b_b79k"
    folder.mkdir(parents=True)
    weights = folder / "open_clip_model.safetensors"
    weights.write_bytes(b"weights")
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_weights("ViT-B-32", "laion2b_s34b_b79k", allow_download=False) == weights
    assert cached_weights("ViT-B-32", "laion2b_s34b_b79k") == weights  # `models` lists it


def _gui(tmp_path: Path, *args: str) -> int:
    """`desktop-app gui ...` as its own process (offscreen): running the window's event
    loop inside the test process would end it for every later Qt test."""
    import subprocess

    from desktop_app.engine.settings import HISTOGRAM_MODEL, Settings

    home = tmp_path / "gui-home"
    Settings(model=HISTOGRAM_MODEL).save(home / "config" / "settings.json")
    env = {**os.environ, "DESKTOP_APP_HOME": str(home), "QT_QPA_PLATFORM": "offscreen"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "desktop_app", "gui", *args]
    return subprocess.run(cmd, env=env, cwd=ROOT, timeout=300).returncode


def test_gui_quit_after_saves_a_screenshot_with_the_packaged_icon(tmp_path: Path, qapp) -> None:  # type: ignore[no-untyped-def]
    """`desktop-app gui IMAGE --quit-after S --screenshot PNG`, which the packaged app's
    smoke test and the docs' screenshots rely on."""
    from PySide6.QtGui import QIcon

    from desktop_app.resources import icon_paths

    shot = tmp_path / "window.png"
    photo = sorted(m.SAMPLES_DIR.glob("*.jpg"))[0]
    assert _gui(tmp_path, str(photo), "--quit-after", "1.5", "--screenshot", str(shot)) == 0
    with Image.open(shot) as im:
        assert im.size[0] >= 640 and im.size[1] >= 400
        assert len(im.convert("RGB").getcolors(1 << 20) or []) > 20  # not a blank window
    icon = QIcon()  # what run_gui gives the window, from the package data
    for png in icon_paths():
        icon.addFile(str(png))
    sizes = {s.width() for s in icon.availableSizes()}
    assert {16, 32, 256, 512} <= sizes


def test_gui_screenshot_that_cannot_be_written_fails(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder" / "window.png"
    assert _gui(tmp_path, "--quit-after", "0.5", "--screenshot", str(missing)) == 1
    assert not missing.exists()
