#!/usr/bin/env bash
# bench/ep.sh - expert parallelism over MPI on this machine (docs/TP.md, "--ep"): `sov bench`
# of a mixture-of-experts model as one process and with its routed experts split over EP = 2
# and 4 ranks, each rank one thread, with every rank's peak resident memory (sampled from
# /proc every 0.1 s: the experts' share of it should fall as 1/R, the rest stays whole).
# The model: -m FILE, or a qwen3moe-shaped synthetic one made once with `sov gen-model` into
# $BENCH_MODELS (default build/bench-models): dim 2048, 8 layers, 32/4 heads, 64 experts of
# width 768, 8 used, Q4_0 (1.4 GB). Ranks talk over shared memory unless BTL says otherwise
# (BTL=tcp,self: loopback TCP, as machines would). Each rank also says how long it waited
# in exchanges and commands (SOV_TP_STATS=1). More ranks than cores are oversubscribed:
# then the figures show the cost of sharing the cores, not the split; compare ratios within
# one run on a busy machine.
#
#   bench/ep.sh [-m FILE] [-r REPEATS] [-p N] [-n N] [--ranks "1 2 4"]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
sov=${SOV_BIN:-$here/build/sov}
models=${BENCH_MODELS:-$here/build/bench-models}
btl=${BTL:-vader,self}
r=1 p=64 n=32 ranks="1 2 4" f=
while [ $# -gt 0 ]; do
  case $1 in
    -m) f=$2; shift 2 ;; -r) r=$2; shift 2 ;; -p) p=$2; shift 2 ;; -n) n=$2; shift 2 ;;
    --ranks) ranks=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "ep.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -x "$sov" ] || { echo "ep.sh: no $sov: build first (make build)" >&2; exit 1; }
command -v mpirun >/dev/null || { echo "ep.sh: mpirun is missing: apt-get install openmpi-bin" >&2; exit 1; }
if [ -z "$f" ]; then
  mkdir -p "$models"
  f=$models/qwen3moe-8l-2048-x64-q4_0.gguf
  if [ ! -f "$f" ]; then
    "$sov" gen-model -o "$f.tmp" --arch qwen3moe --dim 2048 --layers 8 --heads 32 --kv-heads 4 --experts 64 \
      --experts-used 8 --expert-ffn 768 --vocab 32000 --type Q4_0 >&2
    mv "$f.tmp" "$f"
  fi
fi
[ "$(id -u)" -eq 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
tag=ep-bench-$$
export SOV_BENCH_TAG=$tag

# VmRSS, RssAnon and RssFile (MiB) of every sov process tagged $tag, by MPI rank: at its
# peak (one process: while loading, the file pages read and the repacked copies side by
# side) and when it held the most anonymous memory (running: every repacked weight made,
# the file pages they came from released)
sample_rss() {
  python3 - "$tag" <<'EOF'
import os, sys, time
tag = ("SOV_BENCH_TAG=" + sys.argv[1]).encode()
peak, run = {}, {}
while True:
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            env = open("/proc/%s/environ" % p, "rb").read().split(b"\0")
            if tag not in env or open("/proc/%s/comm" % p).read().strip() != "sov":
                continue
            rank = next((e.split(b"=")[1].decode() for e in env if e.startswith(b"OMPI_COMM_WORLD_RANK=")), "0")
            st = dict(l.split(":", 1) for l in open("/proc/%s/status" % p).read().splitlines() if ":" in l)
        except (OSError, ValueError):
            continue
        kb = lambda k: int(st.get(k, "0 kB").split()[0]) / 1024
        now = (kb("VmRSS"), kb("RssAnon"), kb("RssFile"))
        if now[0] > peak.get(rank, (0, 0, 0))[0]:
            peak[rank] = now
        if now[1] >= run.get(rank, (0, 0, 0))[1]:
            run[rank] = now
    if os.path.exists(sys.argv[1] + ".stop"):
        break
    time.sleep(0.1)
for rank in sorted(peak, key=int):
    print("   rank %s: peak RSS %.0f MiB (anonymous %.0f, file %.0f); running %.0f MiB (anonymous %.0f, file %.0f)"
          % ((rank,) + peak[rank] + run[rank]))
EOF
}

echo "model: $f"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores"
cd "$(mktemp -d)"
for R in $ranks; do
  rm -f "$tag.stop"
  sample_rss > rss.txt &
  sampler=$!
  if [ "$R" = 1 ]; then
    echo "== EP 1 (one process)"
    "$sov" bench -m "$f" -p "$p" -n "$n" -r "$r" -t 1 --no-bandwidth 2>/dev/null | grep -E '^\| [pt][pg]|per token'
  else
    echo "== EP $R (btl $btl)"
    mpirun --oversubscribe -np "$R" --mca btl "$btl" --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo \
      -x SOV_BENCH_TAG -x SOV_TP_STATS=1 "$sov" bench -m "$f" -p "$p" -n "$n" -r "$r" -t 1 --no-bandwidth --ep "$R" \
      2>err.txt | grep -E '^\| [pt][pg]|per token'
    grep -o 'tp rank.*waited.*' err.txt | sort -k3n | sed 's/^/   /' || true
  fi
  touch "$tag.stop"
  wait "$sampler"
  cat rss.txt
done
