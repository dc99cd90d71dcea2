#!/usr/bin/env bash
# Set-up for a fresh Debian 12 machine (Debian packages and PyPI reachable, nothing else):
# apt packages, a venv on /usr/bin/python3 that sees Debian's torch, pinned PyPI packages (incl.
# fairseq), and the CMake build. Idempotent; quiet on success, loud on failure.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

APT_PACKAGES=(
  build-essential cmake ninja-build ccache git pkg-config
  libtorch-dev python3-torch python3-dev python3-venv python3-numpy
  libopenblas0-pthread            # real BLAS for Debian's torch (reference BLAS otherwise)
  pybind11-dev googletest libgtest-dev libgmock-dev libbenchmark-dev
  clang libclang-rt-14-dev        # the checkpoint reader's libFuzzer target
  qt6-base-dev libqcustomplot-dev  # the desktop analyzer (Qt 6 Widgets + QCustomPlot)
  xvfb xauth                      # its test with a real window
)

install_apt() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

make_venv() {
  if [ ! -x "$DECAYFW_VENV/bin/python" ]; then
    /usr/bin/python3 -m venv --system-site-packages "$DECAYFW_VENV"
  fi
  "$DECAYFW_VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$DECAYFW_ROOT/scripts/requirements.txt"
  # The package and the fairseq plugin are used from the source tree (the build writes _C in place).
  local site
  site="$("$DECAYFW_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  printf '%s\n%s\n' "$DECAYFW_ROOT/bindings/python" "$DECAYFW_ROOT/plugin" > "$site/decayfw-source.pth"
  if [ -x "$DECAYFW_ROOT/scripts/install_fairseq.sh" ]; then
    DECAYFW_VENV="$DECAYFW_VENV" "$DECAYFW_ROOT/scripts/install_fairseq.sh"
  fi
}

configure_and_build() {
  cmake -S "$DECAYFW_ROOT" -B "$DECAYFW_BUILD" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache \
    ${DECAYFW_CMAKE_ARGS:-}
  cmake --build "$DECAYFW_BUILD" -j "$JOBS"
}

step apt-packages install_apt
step python-venv make_venv
step build configure_and_build
