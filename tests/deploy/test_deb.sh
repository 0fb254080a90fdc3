#!/usr/bin/env bash
# test_deb.sh - the Debian package: built with CPack from this build folder, then
#  1. its contents and control files (binary, man page, unit, conffile, maintainer scripts,
#     dependencies found by dpkg-shlibdeps);
#  2. unpacked into a scratch root (dpkg -x): the installed binary serves stories260K on
#     loopback, GET /health is 200 and a completion answers;
#  3. when this runs as root and may mount: installed with dpkg -i into a throw-away
#     overlay of this Debian 12 system (its own mount namespace, nothing reaches the host):
#     postinst makes the sov system user and /var/lib/sov owned by it, systemd-analyze
#     verify accepts the installed unit, and /usr/bin/sov serves as the sov user from
#     /var/lib/sov/models (chroot), /health 200.
set -euo pipefail
BUILD=$(cd "$(dirname "${SOV_BIN:?}")" && pwd)
MODEL=${SOV_SHARED_MODELS:-../shared/models}/stories260K.gguf
if [ ! -f "$MODEL" ]; then
  [ "${SOV_REQUIRE_SHARED:-}" = 1 ] && { echo "FAIL: $MODEL is missing"; exit 1; }
  echo "SKIP: $MODEL is missing"; exit 77
fi
for t in cpack dpkg-deb curl; do
  command -v $t >/dev/null || { echo "SKIP: $t is not installed"; exit 77; }
done
MODEL=$(cd "$(dirname "$MODEL")" && pwd)/$(basename "$MODEL")
W=$(mkdir -p "${SOV_TEST_TMP:-/tmp}" && mktemp -d "${SOV_TEST_TMP:-/tmp}/deb.XXXXXX")
W=$(cd "$W" && pwd)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT
fail=0
check() { if eval "$1"; then echo "ok   $2"; else echo "FAIL $2"; fail=1; fi; }

t0=$(date +%s)
cpack -G DEB -B "$W/pkg" --config "$BUILD/CPackConfig.cmake" >"$W/cpack.log" 2>&1 || { cat "$W/cpack.log"; exit 1; }
DEB=$(ls "$W"/pkg/sov_*.deb)
echo "package: $(basename "$DEB") ($(stat -c %s "$DEB") bytes, cpack $(($(date +%s) - t0)) s)"

# ---- 1. contents
dpkg-deb -x "$DEB" "$W/root"
dpkg-deb -e "$DEB" "$W/ctl"
check '[ -x "$W/root/usr/bin/sov" ]' "/usr/bin/sov"
check 'zcat "$W/root/usr/share/man/man1/sov.1.gz" | grep -q "^\.SH FILES"' "man page sov(1) with its FILES section"
check 'zcat "$W/root/usr/share/man/man1/sov.1.gz" | grep -q "sov pull\|pull"' "the man page lists the commands (from --help)"
check 'grep -q "^ExecStart=/usr/bin/sov serve" "$W/root/lib/systemd/system/sov.service"' "unit starts /usr/bin/sov"
check 'cmp -s "$W/root/lib/systemd/system/sov.service" "$SOV_SOURCE_DIR/deploy/systemd/sov.service"' "the unit is deploy/systemd/sov.service as is"
check '[ -f "$W/root/etc/sov/sov.conf" ] && grep -qx /etc/sov/sov.conf "$W/ctl/conffiles"' "/etc/sov/sov.conf is a conffile"
check 'grep -q "adduser --system" "$W/ctl/postinst" && [ -x "$W/ctl/postinst" ]' "postinst makes the system user"
check 'dpkg-deb -f "$DEB" Depends | grep -q "libcurl4" && dpkg-deb -f "$DEB" Depends | grep -q "adduser"' \
  "Depends: shared libraries (dpkg-shlibdeps) and adduser"
check '! dpkg-deb -c "$DEB" | grep -q "usr/local\|var/lib"' "nothing under /usr/local; state is made by postinst"

# ---- 1b. make install's rules: PREFIX and DESTDIR, the unit following the prefix
opt_before=$([ -e /opt/sov ] && echo present || echo absent)
DESTDIR="$W/stage" cmake --install "$BUILD" --prefix /opt/sov >"$W/install.log" 2>&1 || { cat "$W/install.log"; exit 1; }
check '[ -x "$W/stage/opt/sov/bin/sov" ] && [ -f "$W/stage/opt/sov/etc/sov/sov.conf" ] && [ -f "$W/stage/opt/sov/share/man/man1/sov.1.gz" ]' \
  "cmake --install --prefix /opt/sov with DESTDIR: binary, config, man page staged"
check 'grep -q "^ExecStart=/opt/sov/bin/sov serve" "$W/stage/opt/sov/lib/systemd/system/sov.service" &&
  grep -q "^EnvironmentFile=/opt/sov/etc/sov/sov.conf" "$W/stage/opt/sov/lib/systemd/system/sov.service"' \
  "the installed unit's paths follow the prefix"
check '[ "$opt_before" = present ] || [ ! -e /opt/sov ]' "nothing installed outside DESTDIR"

# ---- 2. the unpacked binary serves
serve_and_check() { # ready-file, then the command; checks /health and one completion
  local ready=$1; shift
  "$@" >"$W/serve.log" 2>&1 &
  pids+=($!)
  local pid=$!
  for _ in $(seq 300); do [ -s "$ready" ] && break; kill -0 $pid 2>/dev/null || break; sleep 0.1; done
  if [ ! -s "$ready" ]; then cat "$W/serve.log"; return 1; fi
  read -r host port <"$ready"
  local code
  code=$(curl -s -o "$W/health" -w '%{http_code}' "http://$host:$port/health")
  [ "$code" = 200 ] || { echo "/health answered $code"; return 1; }
  curl -sf "http://$host:$port/v1/completions" -H 'Content-Type: application/json' \
    -d '{"prompt": "Once upon a time", "max_tokens": 8}' >"$W/completion" || return 1
  grep -q '"text"' "$W/completion" || return 1
  kill -TERM $pid
  wait $pid || true
}
check 'serve_and_check "$W/ready1" "$W/root/usr/bin/sov" serve -m "$MODEL" --host 127.0.0.1 --port 0 \
  --ready-file "$W/ready1" --state-dir "$W/state1" -t 1' "the unpacked /usr/bin/sov serves stories260K: /health 200, a completion"

# ---- 3. dpkg -i into a throw-away overlay of this system
inside() { # runs in its own mount namespace: $W/merged is / with writes going to $W/up
  set -e
  mount -t overlay overlay -o "lowerdir=/,upperdir=$W/up,workdir=$W/work" "$W/merged"
  mount -t proc proc "$W/merged/proc"
  mount --rbind /dev "$W/merged/dev"
  cp "$DEB" "$W/merged/tmp/sov.deb"
  rm -f "$W/merged/var/lib/man-db/auto-update" # no man-db index rebuild in the throw-away root
  chroot "$W/merged" getent passwd sov >/dev/null && { echo "the host already has a sov user"; return 3; }
  chroot "$W/merged" dpkg -i /tmp/sov.deb >"$W/dpkg.log" 2>&1 || { cat "$W/dpkg.log"; return 1; }
  chroot "$W/merged" getent passwd sov | grep -q ':/var/lib/sov:' || { echo "no sov user"; return 1; }
  chroot "$W/merged" getent passwd sov | awk -F: '$3 >= 1000 { exit 1 }' || { echo "sov is not a system user"; return 1; }
  [ "$(chroot "$W/merged" stat -c %U:%a /var/lib/sov)" = sov:750 ] || { echo "/var/lib/sov not sov's"; return 1; }
  if command -v systemd-analyze >/dev/null; then
    chroot "$W/merged" systemd-analyze verify /lib/systemd/system/sov.service >"$W/verify.log" 2>&1 ||
      { cat "$W/verify.log"; return 1; }
  fi
  install -o "$(stat -c %u "$W/merged/var/lib/sov")" -m 0644 "$MODEL" "$W/merged/var/lib/sov/models/stories260K.gguf"
  serve_and_check "$W/merged/var/lib/sov/ready" chroot --userspec=sov:sov "$W/merged" /usr/bin/sov serve \
    -m /var/lib/sov/models/stories260K.gguf --host 127.0.0.1 --port 0 --ready-file /var/lib/sov/ready \
    --state-dir /var/lib/sov -t 1 || return 1
  [ "$(chroot "$W/merged" stat -c %U /var/lib/sov/ready)" = sov ] ||
    { echo "the server did not write its state folder as sov"; return 1; }
  chroot "$W/merged" dpkg --purge sov >>"$W/dpkg.log" 2>&1 || { cat "$W/dpkg.log"; return 1; }
  ! chroot "$W/merged" getent passwd sov >/dev/null || { echo "purge left the sov user"; return 1; }
}
if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null && command -v dpkg >/dev/null &&
   unshare -m true 2>/dev/null; then
  mkdir -p "$W/up" "$W/work" "$W/merged"
  export W DEB MODEL
  export -f inside serve_and_check
  set +e
  t0=$(date +%s)
  unshare -m --propagation private bash -c 'pids=(); inside' >"$W/inside.log" 2>&1
  rc=$?
  set -e
  cat "$W/inside.log"
  echo "overlay install, serve, purge: $(($(date +%s) - t0)) s"
  if [ $rc = 3 ]; then
    echo "skip the overlay install: the host already has a sov user"
  else
    check '[ $rc = 0 ]' "dpkg -i in a throw-away root: sov system user, /var/lib/sov, unit verified, serves as sov, purge"
  fi
else
  echo "skip the overlay install (needs root and mount namespaces)"
fi
exit $fail
