#!/usr/bin/env bash
# packaging_test.sh SOURCE_DIR BUILD_DIR CMAKE CPACK CC CXX GENERATOR
#
# varve as its users get it, from a finished build (CTest label `packaging`):
#   1. `cmake --install` into a temporary prefix;
#   2. examples/consumer (a C and a C++ program) built against it with
#      find_package(varve), on the shared and on the static library, and run;
#   3. find_package's version rule (0.1 accepted, 0.2 and 1.0 refused) and
#      its components;
#   4. the same programs built with pkg-config alone (varve.pc), shared and
#      fully static, and run;
#   5. tests/packaging/subdirectory: a parent project that add_subdirectory()s
#      the source tree, builds only the libraries, and runs the programs;
#   6. where dpkg-deb exists: cpack -G DEB, the three packages' metadata and
#      contents, each unpacked with dpkg -x into a scratch root (nothing is
#      installed into the system), and the programs built and run against it.
# Any step that fails fails the test.
set -euo pipefail

if (($# != 7)); then
  echo "usage: $0 SOURCE_DIR BUILD_DIR CMAKE CPACK CC CXX GENERATOR" >&2
  exit 2
fi
src=$1 build=$2 cmake=$3 cpack=$4 cc=$5 cxx=$6 generator=$7
work=$(mktemp -d "${TMPDIR:-/tmp}/varve_packaging.XXXXXX")
trap 'rm -rf "$work"' EXIT
version=$(sed -n 's/^project(varve VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")
[[ -n $version ]] || { echo "no version in $src/CMakeLists.txt" >&2; exit 1; }
# Nice and two jobs: the build machines are shared.
jobs=(--parallel 2)
build_tool=(nice -n 10 "$cmake" --build)

step() { printf '\n== %s\n' "$*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

# This test installs and packages the build tree as it stands. cpack's
# preinstall step builds the tree first: with sources edited since the build,
# it relinked libraries and tools that other tests of the same ctest run were
# executing (they failed for it). A tree with work left is refused instead.
if [[ $generator == Ninja ]]; then
  pending=$("$cmake" --build "$build" -- -n 2>&1 | tail -n 1)
  [[ $pending == "ninja: no work to do." ]] ||
    fail "the build tree $build is not up to date; build it, then run the tests ($pending)"
fi
# Runs a command quietly, showing its output only when it fails.
quiet() {
  local log
  log=$(mktemp "$work/log.XXXXXX")
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2
    fail "$*"
  fi
}

# The consumer programs in $1 (a build directory), run on fresh log dirs.
run_consumers() {
  local dir=$1 tag=$2
  "$dir/consumer_c" "$work/logs/$tag-c" | tail -1
  "$dir/consumer_cxx" "$work/logs/$tag-cxx" | tail -1
}

# Shared: libvarve.so.0 is needed and found under $2 (not elsewhere on the
# machine). Static: libvarve is not needed at all.
check_linkage() {
  local exe=$1 expect=$2 where=${3:-}
  if [[ $expect == shared ]]; then
    readelf -d "$exe" | grep -q 'NEEDED.*\[libvarve\.so\.0\]' || fail "$exe does not need libvarve.so.0"
    local resolved
    resolved=$(ldd "$exe" | awk '/libvarve\.so\.0/ {print $3}')
    [[ $resolved == "$where"/* ]] || fail "$exe loads libvarve.so.0 from '$resolved', not from $where"
  else
    if readelf -d "$exe" | grep -q 'NEEDED.*libvarve'; then fail "$exe links libvarve dynamically"; fi
  fi
}

# examples/consumer against the installation under prefix $1 with find_package.
consume_cmake() {
  local prefix=$1 linkage=$2 tag=$3 static=OFF
  [[ $linkage == static ]] && static=ON
  local dir="$work/consumer-$tag"
  quiet "$cmake" -S "$src/examples/consumer" -B "$dir" -G "$generator" \
    -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" \
    -DCMAKE_PREFIX_PATH="$prefix" -Dvarve_USE_STATIC_LIBS=$static
  local found
  found=$(sed -n 's/^varve_DIR:PATH=//p' "$dir/CMakeCache.txt")
  [[ $found == "$prefix"/* ]] || fail "find_package(varve) used $found, not the package under $prefix"
  quiet "${build_tool[@]}" "$dir" "${jobs[@]}"
  check_linkage "$dir/consumer_c" "$linkage" "$prefix"
  check_linkage "$dir/consumer_cxx" "$linkage" "$prefix"
  run_consumers "$dir" "$tag"
}

# examples/consumer built with the compilers and pkg-config alone.
consume_pkg_config() {
  local libdir=$1 tag=$2 prefix=$3
  local dir="$work/pc-$tag"
  mkdir -p "$dir"
  export PKG_CONFIG_PATH="$libdir/pkgconfig"
  [[ $(pkg-config --modversion varve) == "$version" ]] || fail "pkg-config --modversion varve"
  # Shared: the run path is the user's business; here it points at the prefix.
  # shellcheck disable=SC2046  # pkg-config's output is meant to split
  "$cc" -o "$dir/consumer_c" "$src/examples/consumer/main.c" \
    $(pkg-config --cflags --libs varve) -Wl,-rpath,"$libdir"
  # shellcheck disable=SC2046
  "$cxx" -std=c++20 -o "$dir/consumer_cxx" "$src/examples/consumer/main.cc" \
    $(pkg-config --cflags --libs varve) -Wl,-rpath,"$libdir"
  check_linkage "$dir/consumer_c" shared "$prefix"
  check_linkage "$dir/consumer_cxx" shared "$prefix"
  run_consumers "$dir" "pc-$tag-shared"
  # Static: Libs.private and Requires.private bring the C++ runtime, xxHash,
  # liburing and threads; -static makes it one self-contained executable.
  mkdir -p "$dir/static"
  # shellcheck disable=SC2046
  "$cc" -static -o "$dir/static/consumer_c" "$src/examples/consumer/main.c" \
    $(pkg-config --static --cflags --libs varve) 2>"$dir/static.log" || { cat "$dir/static.log" >&2; fail "static C link"; }
  # shellcheck disable=SC2046
  "$cxx" -std=c++20 -static -o "$dir/static/consumer_cxx" "$src/examples/consumer/main.cc" \
    $(pkg-config --static --cflags --libs varve) 2>>"$dir/static.log" || { cat "$dir/static.log" >&2; fail "static C++ link"; }
  for exe in "$dir/static/consumer_c" "$dir/static/consumer_cxx"; do
    if readelf -d "$exe" 2>/dev/null | grep -q NEEDED; then fail "$exe is not static"; fi
  done
  run_consumers "$dir/static" "pc-$tag-static"
  unset PKG_CONFIG_PATH
}

# find_package(varve VERSION [COMPONENTS ...]) from prefix $1: must it succeed?
find_package_outcome() {
  local prefix=$1 want=$2 request=$3
  local dir
  dir=$(mktemp -d "$work/find.XXXXXX")
  cat >"$dir/CMakeLists.txt" <<EOF
cmake_minimum_required(VERSION 3.16)
project(find_varve LANGUAGES CXX)
find_package(varve $request REQUIRED)
EOF
  if "$cmake" -S "$dir" -B "$dir/build" -G "$generator" -DCMAKE_CXX_COMPILER="$cxx" \
       -DCMAKE_PREFIX_PATH="$prefix" >"$dir/log" 2>&1; then
    [[ $want == found ]] || fail "find_package(varve $request) succeeded against $version"
  else
    [[ $want == refused ]] || { cat "$dir/log" >&2; fail "find_package(varve $request) failed"; }
  fi
  echo "find_package(varve $request): $want"
}

mkdir -p "$work/logs"

step "cmake --install into a temporary prefix"
prefix="$work/prefix"
quiet "$cmake" --install "$build" --prefix "$prefix"
pc=$(find "$prefix" -name varve.pc)
[[ -n $pc ]] || fail "no varve.pc installed"
libdir=$(dirname "$(dirname "$pc")")
for f in include/varve/varve.h include/varve/varve_c.h include/varve/export.h bin/varve; do
  [[ -f $prefix/$f ]] || fail "$f not installed"
done
for f in libvarve.a libvarve.so.$version cmake/varve/varveConfig.cmake \
         cmake/varve/varveConfigVersion.cmake cmake/varve/varveSharedTargets.cmake \
         cmake/varve/varveStaticTargets.cmake; do
  [[ -f $libdir/$f ]] || fail "$libdir/$f not installed"
done
[[ $(readlink "$libdir/libvarve.so.0") == "libvarve.so.$version" ]] || fail "libvarve.so.0 link"
[[ $(readlink "$libdir/libvarve.so") == "libvarve.so.0" ]] || fail "libvarve.so link"
readelf -d "$libdir/libvarve.so.$version" | grep -q 'SONAME.*\[libvarve\.so\.0\]' || fail "SONAME"
echo "installed under $prefix"

step "find_package(varve): shared"
consume_cmake "$prefix" shared prefix-shared
step "find_package(varve): static (varve_USE_STATIC_LIBS)"
consume_cmake "$prefix" static prefix-static

step "find_package(varve): versions and components"
minor=${version%.*}
major=${version%%.*}
find_package_outcome "$prefix" found "$minor"
find_package_outcome "$prefix" found "$version"
find_package_outcome "$prefix" refused "$major.$((${minor#*.} + 1))"
find_package_outcome "$prefix" refused "$((major + 1)).0"
find_package_outcome "$prefix" found "$minor COMPONENTS shared static"
find_package_outcome "$prefix" refused "$minor COMPONENTS python"

step "pkg-config: shared and static"
consume_pkg_config "$libdir" prefix "$prefix"

step "add_subdirectory(varve) from a parent project"
subdir="$work/subdirectory"
quiet "$cmake" -S "$src/tests/packaging/subdirectory" -B "$subdir" -G "$generator" \
  -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" -DVARVE_SOURCE_DIR="$src"
quiet "${build_tool[@]}" "$subdir" "${jobs[@]}"
built_tests=$(find "$subdir" -type f \( -name '*_test' -o -name 'varve-*' -o -name accounts_demo \) | head -5)
[[ -z $built_tests ]] || fail "the parent's build made varve's tests or tools: $built_tests"
check_linkage "$subdir/consumer_c" static
check_linkage "$subdir/consumer_c_shared" shared "$subdir"
run_consumers "$subdir" subdirectory
"$subdir/consumer_c_shared" "$work/logs/subdirectory-c-shared" | tail -1

if ! command -v dpkg-deb >/dev/null; then
  step "Debian packages: skipped (no dpkg-deb on this machine)"
  exit 0
fi
step "cpack -G DEB"
debs="$work/debs"
quiet "$cpack" -G DEB --config "$build/CPackConfig.cmake" -B "$debs"
arch=$(dpkg --print-architecture)
lib_deb="$debs/libvarve0_${version}-1_${arch}.deb"
dev_deb="$debs/libvarve-dev_${version}-1_${arch}.deb"
tools_deb="$debs/varve-tools_${version}-1_${arch}.deb"
for d in "$lib_deb" "$dev_deb" "$tools_deb"; do
  [[ -f $d ]] || fail "cpack made no $(basename "$d") (made: $(ls "$debs"/*.deb 2>/dev/null))"
  echo "$(basename "$d"): $(dpkg-deb -f "$d" Depends)"
done
depends_on() {
  dpkg-deb -f "$1" Depends | tr ',' '\n' | grep -q "^ *$2\( \|$\)" || fail "$(basename "$1") does not depend on $2"
}
if command -v dpkg-shlibdeps >/dev/null; then
  depends_on "$lib_deb" libxxhash0
  depends_on "$lib_deb" liburing2
  depends_on "$lib_deb" libzstd1
  depends_on "$lib_deb" libsodium23
  depends_on "$lib_deb" libstdc++6
  if readelf -d "$build/varve" | grep -q 'NEEDED.*librdkafka'; then depends_on "$tools_deb" librdkafka1; fi
fi
dpkg-deb -f "$dev_deb" Depends | grep -q "libvarve0 (= ${version}-1)" || fail "libvarve-dev does not depend on libvarve0 (= ${version}-1)"
depends_on "$dev_deb" libxxhash-dev
depends_on "$dev_deb" liburing-dev
depends_on "$dev_deb" libzstd-dev
depends_on "$dev_deb" libsodium-dev
# What goes where: the runtime package holds the shared library and nothing else.
contents() { dpkg-deb -c "$1" | awk '{print $6}' | grep -v '/$'; }
lib_files=$(contents "$lib_deb")
grep -qE '/libvarve\.so\.0$' <<<"$lib_files" || fail "libvarve0 lacks libvarve.so.0"
grep -qE "/libvarve\.so\.$version\$" <<<"$lib_files" || fail "libvarve0 lacks libvarve.so.$version"
if grep -vqE '/libvarve\.so\.0(\.[0-9.]+)?$|/usr/share/doc/' <<<"$lib_files"; then
  fail "libvarve0 holds more than the library: $lib_files"
fi
contents "$dev_deb" | grep -q '/include/varve/varve_c.h$' || fail "libvarve-dev lacks the headers"
contents "$dev_deb" | grep -qE '/libvarve\.so$' || fail "libvarve-dev lacks libvarve.so"
contents "$tools_deb" | grep -q '/usr/bin/varve$' || fail "varve-tools lacks /usr/bin/varve"

step "the packages unpacked into a scratch root (dpkg -x), and used from there"
root="$work/root"
for d in "$lib_deb" "$dev_deb" "$tools_deb"; do dpkg -x "$d" "$root"; done
pc=$(find "$root" -name varve.pc)
consume_cmake "$root/usr" shared deb-shared
consume_cmake "$root/usr" static deb-static
consume_pkg_config "$(dirname "$(dirname "$pc")")" deb "$root/usr"
"$root/usr/bin/varve" create "$work/logs/tools-log" >/dev/null
"$root/usr/bin/varve" stat "$work/logs/tools-log" >/dev/null
echo "varve-tools: /usr/bin/varve create + stat ran"
echo
echo "packaging: ok"
