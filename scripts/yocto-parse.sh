#!/usr/bin/env bash
# A real BitBake parse of the flight image (issue 14): the layers pinned in
# yocto/kas/spacenode-cm4.yml, our layer from this working tree, no network.
#
#   scripts/yocto-parse.sh LAYERS_DIR [KAS_FILE]
#
# LAYERS_DIR holds one checkout per repository of the kas file, named as
# there (bitbake, openembedded-core, meta-openembedded, meta-raspberrypi,
# meta-security, meta-rauc), each at its pinned commit; without LAYERS_DIR
# (and without $SPACENODE_YOCTO_LAYERS) the script prints how to make one
# and exits 0 with "skipped" (CI has no layers).
#
# Runs, with BB_NO_NETWORK = "1", as an unprivileged user (BitBake refuses
# root; as root the script switches to $SPACENODE_YOCTO_USER, default
# bbuser, which must exist):
#   bitbake -p                   parse every recipe of every layer
#   bitbake -e -b spacenoded_*.bb  the daemon's recipe alone, fully expanded
#                                (seconds: no parse of the other recipes)
#   bitbake -e spacenoded        the same through the provider resolution
#   bitbake -g spacenode-image spacenode-bundle  both task graphs, one run
# and fails on any ERROR, and on any WARNING that names our layer or one of
# its recipes (warnings of the other layers are printed, not fatal). The
# work directory ($SPACENODE_YOCTO_WORK, default /tmp/spacenode-yocto-parse)
# keeps BitBake's parse cache. Measured here: a full parse takes 24 to 39
# minutes on 2 cores shared with other builds (about 10 on idle ones). The
# first bitbake invocation in a new build directory computes another
# configuration hash than every later one (observed: later invocations
# share theirs), so its parse cache is never reused: a cheap `bitbake -e`
# (configuration only) goes first. SPACENODE_YOCTO_STEPS=p stops after
# `bitbake -p` and the single-recipe `bitbake -e -b`. Needs PyYAML (the .venv has it), git, and
# BitBake's host tools (chrpath diffstat cpio gawk, an en_US.UTF-8 locale).
# docs/yocto.md, "What is checked where".
set -euo pipefail

# SPACENODE_REPO_DIR: run a copy of this script (bash reads a script while
# it runs; editing the checkout's copy during a 10-minute parse breaks it).
REPO=${SPACENODE_REPO_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
LAYERS=${1:-${SPACENODE_YOCTO_LAYERS:-}}
KAS=${2:-$REPO/yocto/kas/spacenode-cm4.yml}
WORK=${SPACENODE_YOCTO_WORK:-/tmp/spacenode-yocto-parse}
BBUSER=${SPACENODE_YOCTO_USER:-bbuser}

# The repository's venv has PyYAML (tests/python/requirements.txt).
PY=${PYTHON:-$REPO/.venv/bin/python}
[ -x "$PY" ] || PY=python3
pins() { "$PY" "$REPO/scripts/yocto-kas.py" repos "$KAS"; }

if [ -z "$LAYERS" ]; then
  echo "yocto-parse: no LAYERS_DIR given. To run the BitBake parse, check out into one directory:"
  pins | while read -r name url branch commit _; do
    [ "$url" = - ] && continue
    echo "  git clone -b $branch $url LAYERS_DIR/$name && git -C LAYERS_DIR/$name checkout $commit"
  done
  echo "then (as a user other than root, or as root with a user '$BBUSER'):"
  echo "  scripts/yocto-parse.sh LAYERS_DIR"
  echo "yocto-parse: skipped"
  exit 0
fi
LAYERS=$(cd "$LAYERS" && pwd)

if [ "$(id -u)" = 0 ]; then
  id "$BBUSER" >/dev/null 2>&1 || {
    echo "error: BitBake refuses root; create an unprivileged user (useradd -m $BBUSER) or set SPACENODE_YOCTO_USER" >&2
    exit 1
  }
  AS=(runuser -u "$BBUSER" --)
  BBHOME=$(getent passwd "$BBUSER" | cut -d: -f6)
else
  AS=()
  BBHOME=$HOME
fi

# Each checkout at its pinned commit, or the parse would prove nothing.
BBLAYERS=""
BITBAKE=""
OECORE=""
while read -r name url branch commit layers; do
  if [ "$url" = - ]; then
    src=$WORK/spacenode
  else
    src=$LAYERS/$name
    [ -d "$src" ] || { echo "error: $src missing (git clone -b $branch $url $src)" >&2; exit 1; }
    head=$(git -c safe.directory='*' -C "$src" rev-parse HEAD)
    [ "$head" = "$commit" ] || {
      echo "error: $src is at $head, the kas file pins $commit (git -C $src checkout $commit)" >&2
      exit 1
    }
  fi
  [ "$name" = bitbake ] && BITBAKE=$src
  [ "$name" = openembedded-core ] && OECORE=$src
  [ "$layers" = - ] && continue
  IFS=, read -r -a list <<<"$layers"
  for layer in "${list[@]}"; do
    [ "$layer" = . ] && path=$src || path=$src/$layer
    BBLAYERS+="  $path \\"$'\n'
  done
done < <(pins)
[ -n "$BITBAKE" ] && [ -n "$OECORE" ] || { echo "error: no bitbake or openembedded-core repository in $KAS" >&2; exit 1; }

# Our layer from this working tree (tracked and new files, not target/):
# copied, so that the parse sees uncommitted edits and the unprivileged
# user owns the tree externalsrc hashes.
mkdir -p "$WORK"
[ "$(id -u)" = 0 ] && chown "$BBUSER" "$WORK"
rm -rf "$WORK/spacenode"
"${AS[@]}" mkdir -p "$WORK/spacenode" "$WORK/build/conf"
(cd "$REPO" && git ls-files -z -co --exclude-standard | tar --null -T - -cf -) |
  "${AS[@]}" tar -C "$WORK/spacenode" -xf -

{
  echo "# Written by scripts/yocto-parse.sh from $KAS"
  echo 'BBPATH = "${TOPDIR}"'
  echo 'BBFILES ?= ""'
  echo 'BBLAYERS = " \'
  printf '%s' "$BBLAYERS"
  echo '  "'
} | "${AS[@]}" tee "$WORK/build/conf/bblayers.conf" >/dev/null
{
  echo "# Written by scripts/yocto-parse.sh from $KAS"
  "$PY" "$REPO/scripts/yocto-kas.py" conf "$KAS"
  # DL_DIR, SSTATE_DIR and TMPDIR stay at their defaults under the build
  # directory (elsewhere BitBake warns about the hash equivalence database).
  echo 'BB_NO_NETWORK = "1"'
  # A parse writes next to nothing: no free-space monitor.
  echo 'BB_DISKMON_DIRS = ""'
} | "${AS[@]}" tee "$WORK/build/conf/local.conf" >/dev/null

LOG=$WORK/parse.log
rm -f "$LOG"
status=0
step() {
  echo "== bitbake $*"
  local out
  out=$(mktemp)
  if ! (cd "$WORK/build" && "${AS[@]}" env -i HOME="$BBHOME" LANG=en_US.UTF-8 LC_ALL=en_US.UTF-8 \
      PATH="$BITBAKE/bin:$OECORE/scripts:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin" \
      BUILDDIR="$WORK/build" bitbake "$@") >"$out" 2>&1; then
    status=1
    echo "   FAILED: bitbake $* (exit status)"
  fi
  { echo "== bitbake $*"; cat "$out"; } >>"$LOG"
  rm -f "$out"
}
# Warm-up: the configuration's first parse in this build directory (see above).
step -e >/dev/null
step -p
step -e -b "$WORK/spacenode/yocto/meta-spacenode/recipes-spacenode/spacenoded/spacenoded_0.1.0.bb"
if [ "${SPACENODE_YOCTO_STEPS:-all}" = all ]; then
  step -e spacenoded
  step -g spacenode-image spacenode-bundle
else
  echo "-- SPACENODE_YOCTO_STEPS=${SPACENODE_YOCTO_STEPS}: bitbake -e spacenoded and -g not run"
fi

# Any ERROR fails; a WARNING fails when it is about our layer.
grep -E '^(ERROR|WARNING):' "$LOG" | sort -u >"$WORK/findings.txt" || true
# Ours: the layer's files and recipes, the distro (not the work directory,
# whose path also says spacenode).
ours='meta-spacenode|spacenoded|spacenode-(image|bundle|system)|distro/spacenode|DISTRO spacenode|conf/spacenode/' 
errors=$(grep -c '^ERROR:' "$WORK/findings.txt" || true)
our_warnings=$(grep '^WARNING:' "$WORK/findings.txt" | grep -cE "$ours" || true)
other_warnings=$(grep '^WARNING:' "$WORK/findings.txt" | grep -vcE "$ours" || true)
if [ "$errors" -gt 0 ] || [ "$our_warnings" -gt 0 ]; then
  grep -E '^ERROR:' "$WORK/findings.txt" || true
  grep '^WARNING:' "$WORK/findings.txt" | grep -E "$ours" || true
  status=1
fi
if [ "$other_warnings" -gt 0 ]; then
  echo "-- $other_warnings warning(s) of other layers (not fatal):"
  grep '^WARNING:' "$WORK/findings.txt" | grep -vE "$ours" | sed 's/^/   /'
fi
grep -q 'crate://crates.io/' <(sed -n '/^== bitbake -e -b/,/^== bitbake -[eg] [^-]/p' "$LOG" | grep '^SRC_URI=') || {
  echo "error: bitbake -e spacenoded shows no crate:// SRC_URI" >&2
  status=1
}
if [ "$status" = 0 ]; then
  echo "yocto-parse: passed ($errors errors, $our_warnings warnings of meta-spacenode; full log $LOG)"
else
  echo "yocto-parse: FAILED ($errors errors, $our_warnings warnings of meta-spacenode; full log $LOG)" >&2
fi
exit "$status"
