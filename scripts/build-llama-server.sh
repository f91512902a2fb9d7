#!/usr/bin/env bash
# Build llama.cpp's `llama-server` (CPU only) for llamaswap's end-to-end tests.
#
# The llama.cpp sources come from the llama-cpp-python sdist on PyPI, which vendors a
# complete llama.cpp tree (tools/server included), so only PyPI is needed.
# Everything lives in a cache directory outside the repository:
#
#   $CACHE/dl/      the downloaded sdist (~77 MB)
#   $CACHE/src/     vendor/llama.cpp unpacked from it
#   $CACHE/build/   the cmake build tree (~90 MB)
#   $CACHE/bin/     llama-server (~15 MB, self-contained) + llama-server.stamp
#
# Only $CACHE/bin/ is needed afterwards (CI can cache just that folder).
# When bin/llama-server exists and its stamp matches this script's configuration,
# the script is a fast no-op. All progress goes to stderr; stdout gets exactly one
# line, the binary path, so `BIN=$(bash scripts/build-llama-server.sh)` works.
#
# Environment:
#   LLAMASWAP_E2E_CACHE      cache directory (default: $HOME/.cache/llamaswap-e2e)
#   LLAMASWAP_E2E_JOBS       parallel build jobs (default: nproc)
#   LLAMASWAP_E2E_REBUILD=1  ignore the cached binary and build again
#   PYTHON                   interpreter whose pip downloads the sdist
#                            (default: the repo's .venv/bin/python if present, else python3)
set -euo pipefail

LLAMA_CPP_PYTHON_VERSION=0.3.36
LLAMA_CPP_PYTHON_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e

CACHE="${LLAMASWAP_E2E_CACHE:-$HOME/.cache/llamaswap-e2e}"
JOBS="${LLAMASWAP_E2E_JOBS:-$(nproc)}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# ggml drops *all* SIMD flags when SOURCE_DATE_EPOCH is set (reproducible-build
# mode), which gives a binary many times slower.
unset SOURCE_DATE_EPOCH

log() { printf 'build-llama-server: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

CMAKE_FLAGS=(
  -DCMAKE_BUILD_TYPE=Release
  -DBUILD_SHARED_LIBS=OFF          # one self-contained executable
  -DGGML_NATIVE=OFF                # portable; x86-64 still gets SSE4.2/AVX/AVX2/FMA/F16C/BMI2
  -DLLAMA_BUILD_SERVER=ON
  -DLLAMA_BUILD_TOOLS=ON
  -DLLAMA_BUILD_TESTS=OFF
  -DLLAMA_BUILD_EXAMPLES=OFF
  -DLLAMA_BUILD_APP=OFF
  -DLLAMA_USE_PREBUILT_UI=OFF      # else: downloads the web UI from Hugging Face ...
  -DLLAMA_BUILD_UI=OFF             # ... or runs `npm ci`; the API works without the UI
  -DLLAMA_OPENSSL=OFF              # no HTTPS client needed: models are local files
  # The sdist is no git checkout, so name the build for `llama-server --version`
  # (otherwise "commit unknown", or the commit of any git repo around the cache dir).
  -DLLAMA_BUILD_NUMBER=0
  -DLLAMA_BUILD_COMMIT="llama-cpp-python-$LLAMA_CPP_PYTHON_VERSION"
)

BIN_DIR="$CACHE/bin"
BINARY="$BIN_DIR/llama-server"
STAMP="$BIN_DIR/llama-server.stamp"
STAMP_TEXT="llama-cpp-python $LLAMA_CPP_PYTHON_VERSION ${CMAKE_FLAGS[*]}"

is_current() {
  [[ -x "$BINARY" && -f "$STAMP" && "$(cat "$STAMP")" == "$STAMP_TEXT" ]]
}

# Fast path: nothing to do.
if [[ "${LLAMASWAP_E2E_REBUILD:-0}" != 1 ]] && is_current; then
  echo "$BINARY"
  exit 0
fi

mkdir -p "$CACHE"
# Serialise concurrent runs (e.g. two test sessions asking for a build at once).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CACHE/.lock"
  flock 9
  if [[ "${LLAMASWAP_E2E_REBUILD:-0}" != 1 ]] && is_current; then
    echo "$BINARY"
    exit 0
  fi
fi

# --- prerequisites -----------------------------------------------------------
if ! command -v cmake >/dev/null 2>&1; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "cmake not found; installing it with apt-get"
    apt-get update >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends cmake >&2
  else
    die "cmake (>= 3.14) is required: apt-get install cmake"
  fi
fi
log "$(cmake --version | head -n1)"
command -v c++ >/dev/null 2>&1 || die "a C++ compiler is required: apt-get install build-essential"
command -v make >/dev/null 2>&1 || command -v ninja >/dev/null 2>&1 \
  || die "make or ninja is required: apt-get install build-essential"

if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$REPO_ROOT/.venv/bin/python" ]]; then
    PYTHON="$REPO_ROOT/.venv/bin/python"
  else
    PYTHON=python3
  fi
fi
"$PYTHON" -m pip --version >/dev/null 2>&1 \
  || die "'$PYTHON -m pip' does not work; set PYTHON to an interpreter with pip"

if command -v ccache >/dev/null 2>&1; then
  log "using ccache"
  CMAKE_FLAGS+=(-DGGML_CCACHE=ON)
else
  CMAKE_FLAGS+=(-DGGML_CCACHE=OFF)
fi

# --- sources -------------------------------------------------------------------
SDIST_NAME="llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION"
SDIST="$CACHE/dl/$SDIST_NAME.tar.gz"
SRC="$CACHE/src/$SDIST_NAME"
LLAMA_CPP="$SRC/vendor/llama.cpp"

if [[ ! -f "$SDIST" ]]; then
  log "downloading llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION sdist from PyPI"
  "$PYTHON" -m pip download --quiet --no-deps --no-binary :all: \
    "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" -d "$CACHE/dl" >&2
fi

if [[ ! -f "$LLAMA_CPP/CMakeLists.txt" ]]; then
  actual="$(sha256sum "$SDIST" | cut -d' ' -f1)"
  if [[ "$actual" != "$LLAMA_CPP_PYTHON_SHA256" ]]; then
    rm -f "$SDIST"
    die "sha256 mismatch for $SDIST_NAME.tar.gz: got $actual (file removed; run again)"
  fi
  log "unpacking vendor/llama.cpp"
  # Unpack into a scratch folder first so an interrupted run never leaves a half tree.
  tmp="$CACHE/src/.unpack.$$"
  rm -rf "$tmp" "$SRC"
  mkdir -p "$tmp"
  tar -xzf "$SDIST" -C "$tmp" "$SDIST_NAME/vendor/llama.cpp"
  mv "$tmp/$SDIST_NAME" "$SRC"
  rmdir "$tmp"
fi

# --- configure and build ---------------------------------------------------------
BUILD="$CACHE/build"
start=$SECONDS
log "configuring ($BUILD)"
cmake -S "$LLAMA_CPP" -B "$BUILD" "${CMAKE_FLAGS[@]}" >&2
log "building target llama-server with -j$JOBS"
cmake --build "$BUILD" --config Release --target llama-server -j "$JOBS" >&2
log "configure + build took $((SECONDS - start)) s"

built="$BUILD/bin/llama-server"
[[ -x "$built" ]] || die "build finished but $built is missing"
# Catches e.g. a CPU without the instructions the binary was built for (SIGILL).
"$built" --version >&2 2>&1 || die "$built --version failed"

# Install atomically, then write the stamp.
mkdir -p "$BIN_DIR"
cp "$built" "$BINARY.tmp.$$"
mv -f "$BINARY.tmp.$$" "$BINARY"
printf '%s' "$STAMP_TEXT" > "$STAMP"
log "installed $BINARY ($(du -h "$BINARY" | cut -f1))"
echo "$BINARY"
