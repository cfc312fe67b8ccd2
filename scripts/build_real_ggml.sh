#!/bin/sh
# Build REAL ggml libraries (libggml-base + one CPU backend, as dynamic backends) for the opt-in
# tests/verify/test_real_ggml.py, and lay them out the way Ollama installs them.
#
#   scripts/build_real_ggml.sh SRC [OUT]
#
# SRC is a checkout you fetched yourself; this script downloads nothing. Either
#   - Ollama:  git clone https://github.com/ollama/ollama && git -C ollama checkout v0.22.1
#              (any tag that still vendors ggml under ml/backend/ggml/ggml; the top-level
#              CMakeLists.txt is Ollama's own build, the one its releases use), or
#   - ggml:    git clone https://github.com/ggml-org/ggml
# OUT (default /tmp/realggml/out) receives a host root:
#   OUT/usr/local/lib/ollama/libggml-base.so*        (what Ollama ships at the top level)
#   OUT/usr/local/lib/ollama/libggml-cpu-x64.so      (Ollama's baseline CPU variant, top level too)
#   OUT/usr/local/lib/ollama/libggml-cpu-{alderlake,skylakex}.so  (variants whose ggml_backend_score()
#                                                    is 0 on a CPU without AVX-VNNI / AVX-512)
# then run:  VGPU_FIX_REAL_GGML=OUT python -m pytest -q tests/verify/test_real_ggml.py
#
# Only ggml-base and the CPU variants in $VARIANTS are compiled (1-2 minutes on 2 cores):
# the CPU variants exist only with GGML_CPU_ALL_VARIANTS=ON, so that is configured, but only those
# targets are built, without a build-tree RUNPATH (an installed release has none, and one
# would let the loader find libggml-base in the build tree after a test removed it). The CUDA, HIP and Vulkan backends are switched off (CUDA takes hours).
set -eu

SRC=$(cd "${1:?usage: $0 SRC [OUT]}" && pwd)
OUT=${2:-/tmp/realggml/out}
BUILD=${BUILD_DIR:-$OUT.build}
JOBS=${JOBS:-2}
VARIANTS=${VARIANTS:-x64 alderlake skylakex}
GEN=""
command -v ninja >/dev/null 2>&1 && GEN="-G Ninja"

if [ -f "$SRC/ml/backend/ggml/ggml/src/ggml-backend-reg.cpp" ]; then
    KIND=ollama              # Ollama's top-level CMakeLists (sets GGML_BACKEND_DL, ALL_VARIANTS)
elif [ -f "$SRC/src/ggml-backend-reg.cpp" ] && [ -f "$SRC/CMakeLists.txt" ]; then
    KIND=ggml
else
    echo "$SRC is neither an Ollama nor a ggml checkout" >&2
    exit 2
fi

# shellcheck disable=SC2086
cmake -S "$SRC" -B "$BUILD" $GEN \
    -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=ON \
    -DGGML_BACKEND_DL=ON \
    -DGGML_CPU_ALL_VARIANTS=ON \
    -DGGML_NATIVE=OFF \
    -DGGML_CCACHE=OFF \
    -DGGML_CUDA=OFF -DGGML_HIP=OFF -DGGML_VULKAN=OFF -DGGML_METAL=OFF \
    -DCMAKE_CUDA_COMPILER=OFF -DCMAKE_HIP_COMPILER=OFF \
    -DCMAKE_SKIP_BUILD_RPATH=ON \
    -DGGML_BUILD_TESTS=OFF -DGGML_BUILD_EXAMPLES=OFF
TARGETS=ggml-base
for v in $VARIANTS; do TARGETS="$TARGETS ggml-cpu-$v"; done
# shellcheck disable=SC2086
cmake --build "$BUILD" -j "$JOBS" --target $TARGETS

LIB="$OUT/usr/local/lib/ollama"
rm -rf "$LIB"
mkdir -p "$LIB"
# copy real files and the SONAME links exactly as the build left them (cp -P keeps symlinks)
find "$BUILD" -name 'libggml-base.so*' -exec cp -P {} "$LIB/" \;
for v in $VARIANTS; do find "$BUILD" -name "libggml-cpu-$v.so*" -exec cp -P {} "$LIB/" \; ; done
{ echo "kind=$KIND"; echo "source=$SRC"
  git -C "$SRC" rev-parse HEAD 2>/dev/null | sed 's/^/commit=/' || true; } > "$OUT/BUILD-INFO"
echo "built from $KIND checkout $SRC:"
ls -l "$LIB"
