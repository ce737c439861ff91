# Build targets. `make installer` builds, packages and smoke-tests the CPU variant on the
# machine it runs on (Linux: bundle, .deb, .tar.gz; see installer/build.py). Needs Python
# 3.11+, and on Linux dpkg-deb, Xvfb and xwininfo (README: "Building the installers").
PYTHON ?= python3
VARIANT ?= cpu
BUILD_ARGS ?=

.PHONY: installer installer-gpu icons deb-depends clean-installer

installer:
	$(PYTHON) installer/build.py --variant $(VARIANT) --python $(PYTHON) $(BUILD_ARGS)

installer-gpu:
	$(PYTHON) installer/build.py --variant gpu --python $(PYTHON) $(BUILD_ARGS)

# Re-render the icons after editing resources/desktop-app.svg (needs the app's venv).
icons:
	.venv/bin/python installer/make_icons.py

# The system packages the built bundle links to (the source of the .deb's Depends).
deb-depends:
	$(PYTHON) installer/build.py --variant $(VARIANT) --find-depends

clean-installer:
	rm -rf build/pyinstaller-* build/deb-* dist/
