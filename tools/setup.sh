#!/usr/bin/env bash
# Idempotent set-up: venv, pinned ROS 2 (kilted) wheels, torch CPU, Python deps, the FR3 assets,
# hamster_msgs built into the venv, and this project installed (editable).
# Re-running with nothing changed only compares a checksum of the inputs and exits.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HAMSTER_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3.11}"
STAMP="$VENV/.hamster-setup.sha256"
cd "$ROOT"

inputs_checksum() {
  # The package list too: the editable install maps only the packages find_packages saw (a folder's
  # __init__.py), so a new package needs a reinstall before its console scripts can import it.
  { cat tools/setup.sh requirements/*.txt setup.py setup.cfg package.xml hamster_ros/_cloud_kernels.c \
      msgs/CMakeLists.txt msgs/package.xml msgs/msg/* msgs/srv/* msgs/action/*; printf '%s\n' */__init__.py; } \
    | sha256sum | cut -d' ' -f1
}

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(inputs_checksum)" ] && [ -x "$VENV/bin/python" ]; then
  echo "setup: up to date ($VENV)"
  exit 0
fi

if ! command -v "$PYTHON" >/dev/null; then
  echo "setup: $PYTHON not found; the pinned ROS 2 wheels need CPython 3.11 (set PYTHON=...)" >&2
  exit 1
fi
start=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
filter() { grep -v "is ignored: it is neither a file nor a directory" || true; }

echo "setup: torch (CPU) first, so nothing later pulls a CUDA build"
"${PIP[@]}" torch==2.13.0 2>&1 | filter
echo "setup: ROS 2 kilted wheels and Python dependencies"
"${PIP[@]}" -c requirements/constraints.txt -r requirements/ros-kilted.txt -r requirements/python.txt 2>&1 | filter
echo "setup: FR3 + Franka hand assets (franky-sim, assets only: --no-deps, never imported)"
"${PIP[@]}" --no-deps franky-sim==1.0.4 2>&1 | filter

# The ROS wheels' CMake exports carry paths of the machine that built them.
PY_INCLUDE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
NP_INCLUDE="$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')"
{ grep -rlE "/opt/python/cp311-cp311/(include|lib)" "$VENV/share" --include='*.cmake' 2>/dev/null || true; } \
  | xargs -r sed -i \
      -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$NP_INCLUDE#g" \
      -e "s#/opt/python/cp311-cp311/include/python3.11#$PY_INCLUDE#g"

echo "setup: building hamster_msgs into the venv"
BUILD="$ROOT/build/hamster_msgs"
rm -rf "$BUILD"; mkdir -p "$BUILD"
# The bootstrapper's environment (LD_LIBRARY_PATH, ...) as the venv's python sees it.
eval "$("$VENV/bin/python" - <<'PY'
import os, shlex
for key in ("LD_LIBRARY_PATH", "PATH"):
    print(f"export {key}={shlex.quote(os.environ.get(key, ''))}")
PY
)"
export PATH="$VENV/bin:$PATH"
AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV" cmake -S msgs -B "$BUILD" \
  -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF \
  -DCMAKE_BUILD_TYPE=Release > "$ROOT/build/hamster_msgs.configure.log" 2>&1 \
  || { tail -30 "$ROOT/build/hamster_msgs.configure.log"; exit 1; }
cmake --build "$BUILD" -j2 > "$ROOT/build/hamster_msgs.build.log" 2>&1 \
  || { tail -30 "$ROOT/build/hamster_msgs.build.log"; exit 1; }
cmake --install "$BUILD" > /dev/null

echo "setup: installing hamster_runtime (editable)"
"${PIP[@]}" --no-deps --no-build-isolation -e . 2>&1 | filter

"$VENV/bin/python" -c "import rclpy, hamster_msgs.msg, mujoco, torch; assert torch.__version__.startswith('2.13.0')"
inputs_checksum > "$STAMP"
echo "setup: done in $(( $(date +%s) - start )) s ($VENV)"
