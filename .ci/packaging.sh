#!/usr/bin/env bash
# The Debian packages of xent (debian/), checked as a distribution would
# (called by tests/run, suite "packaging"):
#   1. a clean copy of the tree (the files git tracks or would track, as they
#      are in the work tree), its source package (dpkg-source -b) and its
#      binary packages (dpkg-buildpackage -us -uc -b: libxent1, libxent-dev,
#      and the debug symbols)
#   2. lintian on both: no error, no warning (overrides only in
#      debian/*lintian-overrides, each with its reason)
#   3. apt-get install ./libxent1_*.deb ./libxent-dev_*.deb
#   4. the autopkgtests (debian/tests: a C consumer through pkg-config and
#      through CMake) against the installed packages, run by autopkgtest
#   5. purge; then no file of either package, no libxent in the linker cache
#      and no package installed by step 3 is left
# Steps 3-5 change the machine's installed packages for a minute: the step
# refuses to run when libxent1 or libxent-dev is installed already (it would
# remove them), and removes what it installed even when a check fails.
#
# Knobs: XENT_PACKAGING_NOCHECK=1 builds with DEB_BUILD_OPTIONS=nocheck (no
# test suites in the package build; tests/run sets it when the C++ suites
# passed on the same tree in the same run), XENT_PACKAGING_DEB_OPTIONS (more
# DEB_BUILD_OPTIONS for the package build: .ci/run passes noopt), XENT_JOBS (2),
# XENT_PACKAGING_BUILD (build/packaging): where the copy and the packages go.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
W=${XENT_PACKAGING_BUILD:-$ROOT/build/packaging}
JOBS=${XENT_JOBS:-2}
export DEBIAN_FRONTEND=noninteractive
log() { echo "[packaging] $*"; }
fail() { echo "[packaging] FAIL: $*"; exit 1; }
t_all=$SECONDS
timed() {  # timed NAME LOG CMD...: run with output to LOG (- : none), print its wall time
  local name=$1 out=$2 t0=$SECONDS rc
  shift 2
  if [ "$out" = - ]; then "$@"; else "$@" >"$out" 2>&1; fi
  rc=$?
  log "$name: $((SECONDS - t0)) s"
  return $rc
}

for p in libxent1 libxent-dev; do
  if [ "$(dpkg-query -W -f '${Status}' "$p" 2>/dev/null)" = "install ok installed" ]; then
    fail "$p is installed on this machine; this step installs and purges its own build (remove $p first)"
  fi
done

# --- tools and build dependencies -------------------------------------------
timed "packages" - .ci/deps.sh build-essential dpkg-dev debhelper fakeroot lintian autopkgtest cmake pkgconf git xz-utils ||
  fail "cannot install the packaging tools"
command -v git >/dev/null && git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1 || fail "$ROOT is not a git checkout"

# --- 1. clean copy, source package, binary packages -------------------------
version=$(dpkg-parsechangelog -l debian/changelog -S Version) || fail "cannot read debian/changelog"
upstream=${version%-*}
rm -rf "$W"
SRC=$W/xent-$upstream
mkdir -p "$SRC"
# Tracked files and new, not ignored ones, as they are now (a CI checkout: the
# commit); no build directory (nor debhelper's obj-<triplet>/ of an in-tree
# package build, which .gitignore does not list).
git ls-files -z --cached --others --exclude-standard | grep -zv '^obj-' | tar --null -T - -cf - | tar -xf - -C "$SRC" ||
  fail "cannot copy the tree"
log "clean copy of the tree: $SRC ($(find "$SRC" -type f | wc -l) files)"
# apt-get build-dep reads debian/control's Build-Depends.
timed "build dependencies" "$W/build-dep.log" apt-get build-dep -y -qq "$SRC" || { cat "$W/build-dep.log"; fail "apt-get build-dep"; }

# The upstream tarball of a 3.0 (quilt) source package: the tree without debian/.
tar -C "$W" --exclude="xent-$upstream/debian" --owner=0 --group=0 --sort=name -cJf "$W/xent_$upstream.orig.tar.xz" \
  "xent-$upstream" || fail "cannot make the upstream tarball"
(cd "$W" && timed "dpkg-source -b" "$W/source.log" dpkg-source -b "xent-$upstream") ||
  { cat "$W/source.log"; fail "dpkg-source -b"; }

opts="parallel=$JOBS${XENT_PACKAGING_DEB_OPTIONS:+ $XENT_PACKAGING_DEB_OPTIONS}"
[ "${XENT_PACKAGING_NOCHECK:-0}" = 1 ] && opts="nocheck $opts"
log "dpkg-buildpackage -us -uc -b with DEB_BUILD_OPTIONS=\"$opts\" (log: $W/build.log)"
(cd "$SRC" && export DEB_BUILD_OPTIONS=$opts && timed "dpkg-buildpackage" "$W/build.log" dpkg-buildpackage -us -uc -b)
rc=$?
# The test summary of the package build (meson test), or why it failed.
summary=$(grep -E '^(Ok|Expected Fail|Fail|Unexpected Pass|Skipped|Timeout): ' "$W/build.log" | tr -s ' \n' ' ')
[ -z "$summary" ] || log "meson test in the package build: $summary"
grep -E "dpkg-gensymbols: (warning|error)" -A30 "$W/build.log" | sed -n 1,40p
[ $rc -eq 0 ] || { tail -60 "$W/build.log"; fail "dpkg-buildpackage (log: $W/build.log)"; }
arch=$(dpkg --print-architecture)
changes=$W/xent_${version}_$arch.changes
[ -f "$changes" ] || fail "no $changes"
debs=("$W/libxent1_${version}_$arch.deb" "$W/libxent-dev_${version}_$arch.deb")
for d in "${debs[@]}"; do
  [ -f "$d" ] || fail "no $d"
  log "$(basename "$d"): $(stat -c %s "$d") bytes"
  dpkg-deb -c "$d" | awk '{ print "    " $6 ($7 ? " " $7 " " $8 : "") }'
done

# --- 2. lintian --------------------------------------------------------------
ok=0
t0=$SECONDS
# The source package and the binaries (the .changes of a -b build) in two
# runs, without --show-overrides: lintian 2.116 exits 2 (its "run-time error"
# status) with no tag above info level when given the .dsc and the .changes at
# once, or the .changes with --show-overrides. The overrides and their reasons
# are in debian/*lintian-overrides.
: >"$W/lintian.txt"
for what in "$W/xent_$version.dsc" "$changes"; do
  lintian --fail-on error,warning --display-info "$what" >>"$W/lintian.txt" 2>&1
  rc=$?
  if [ $rc -ne 0 ]; then
    echo "lintian $(basename "$what"): exit status $rc" >>"$W/lintian.txt"
    ok=1
  fi
done
if [ $ok -eq 0 ]; then log "lintian: no errors, no warnings ($((SECONDS - t0)) s)"; else log "lintian: errors or warnings ($((SECONDS - t0)) s)"; fi
sed 's/^/    /' "$W/lintian.txt"
[ $ok -eq 0 ] || fail "lintian"

# --- 3. install ---------------------------------------------------------------
before=$W/packages.before
after=$W/packages.after
dpkg-query -W -f '${binary:Package} ${Status}\n' | awk '$4 == "installed" { print $1 }' | sort >"$before"
cleanup() {  # purge what step 3 installed, whatever happened
  local new
  apt-get purge -y -qq libxent1 libxent-dev >"$W/purge.log" 2>&1
  dpkg-query -W -f '${binary:Package} ${Status}\n' | awk '$4 == "installed" { print $1 }' | sort >"$after"
  new=$(comm -13 "$before" "$after")
  # shellcheck disable=SC2086
  [ -z "$new" ] || apt-get purge -y -qq $new >>"$W/purge.log" 2>&1
}
trap cleanup EXIT
timed "apt-get install ./*.deb" "$W/install.log" apt-get install -y -qq "${debs[@]}" ||
  { cat "$W/install.log"; fail "apt-get install ${debs[*]}"; }
dpkg-query -W -f '${binary:Package} ${Status}\n' | awk '$4 == "installed" { print $1 }' | sort >"$after"
log "installed: $(comm -13 "$before" "$after" | tr '\n' ' ')"
files=$W/files.txt
dpkg -L libxent1 libxent-dev | sort -u >"$files"

# --- 4. autopkgtests against the installed packages ---------------------------
# The null virtualization server: the tests run here, on what is installed.
t0=$SECONDS
if autopkgtest --no-built-binaries --output-dir "$W/autopkgtest" "$W/xent_$version.dsc" -- null >"$W/autopkgtest.log" 2>&1; then
  log "autopkgtest: passed ($((SECONDS - t0)) s)"
else
  sed 's/^/    /' "$W/autopkgtest.log" | tail -60
  fail "autopkgtest (log: $W/autopkgtest.log)"
fi
sed -n '/^pkg-config *PASS\|^cmake *PASS\|@@@@@@@@@@@@@@@@@@@@ summary/,$p' "$W/autopkgtest.log" | sed 's/^/    /'
for t in pkg-config cmake; do
  grep -h '^ok: ' "$W/autopkgtest/$t-stdout" 2>/dev/null | sed "s/^/    $t: /"
done

# --- 5. purge, and nothing left --------------------------------------------
trap - EXIT
cleanup
ok=0
for p in libxent1 libxent-dev; do
  st=$(dpkg-query -W -f '${Status}' "$p" 2>/dev/null || true)
  case $st in "" | "unknown ok not-installed" | "purge ok not-installed") ;; *) echo "FAIL: $p is still known to dpkg: $st"; ok=1 ;; esac
done
left=0
while read -r f; do
  # Files and links of the packages; directories only when the packages alone
  # own them (xent's own include, cmake and doc directories).
  if [ -d "$f" ] && [ ! -L "$f" ]; then
    case $f in */xent | */cmake/xent | /usr/share/doc/libxent*) ;; *) continue ;; esac
  fi
  if [ -e "$f" ] || [ -L "$f" ]; then echo "FAIL: left behind: $f"; left=1; fi
done <"$files"
[ $left -eq 0 ] || ok=1
ldconfig -p >"$W/ldconfig.txt"
if grep -q 'libxent' "$W/ldconfig.txt"; then echo "FAIL: libxent still in the linker cache"; ok=1; fi
if ! diff -u "$before" "$after" >"$W/packages.diff"; then
  echo "FAIL: the installed packages differ from before the install:"; cat "$W/packages.diff"; ok=1
fi
[ $ok -eq 0 ] || fail "purge left things behind"
log "purged: no file of the $(wc -l <"$files") paths, no linker cache entry, no package left"
log "total: $((SECONDS - t_all)) s"
