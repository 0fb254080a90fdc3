#!/usr/bin/env bash
# tp_netem.sh - sov's tensor parallelism through the emulated links: measured tokens/s of
# `mpirun -np R sov bench --tp R` in bench/netns.sh's namespaces against the cost model of
# docs/SCALE-OUT.md, per profile, with the ratio.
#
#   bench/tp_netem.sh [-m MODEL.gguf] [-R "2"] [-P "none dc slow"] [-p 64] [-n 16] [-s tp|pp]
#
# -s pp: pipeline parallelism (--pp R, docs/TP.md) instead, predicted as R stages of 1/R of
# the compute each, micro-batches of mb = max(ceil(T / 2R), 16) tokens (M of them), and
# one point-to-point message p2p(m) = k(m) alpha + m / beta per stage boundary per micro-
# batch plus one back to rank 0 (the rows wanting logits: 1 x n_embd floats here):
#   step = (R - 1) (t_stage + p2p(mb E 4)) + M max(t_stage, p2p(mb E 4)) + p2p(E 4),
#   t_stage = mb / (R rate_1)   (decode: t_1 + (R - 1) p2p(E 4) + p2p(E 4))
# (rank 0's broadcast of the step overlaps stage 0's compute).
#
# The prediction, per profile and rank count R:
#   1. the single-rank compute time of one step, measured: `sov bench` without --tp on the
#      same model, 1 thread, prompt of p tokens (pp) and decode (tg, T = 1), run as R
#      independent processes at once through the harness, so that each sees the share of
#      this box's cores a rank of the TP job gets (on R machines: one machine each); the
#      sharded matmuls make it 1/R per rank: t_compute = t_1 / R
#   2. the link's alpha and beta, measured: bench_allreduce's ping-pong through the same
#      profile, fitted by netfit.py
#   3. per step 2 x n_layer all-reduces of T x n_embd floats as sov does them (src/tp/tp.c:
#      up to 64 KB an all-gather and a sum, k(m) alpha + (R-1) m / beta; above, a reduce-
#      scatter and an all-gather, 2 [k(m/R) alpha + (R-1)(m/R)/beta]), plus rank 0's two
#      broadcasts of the step (header and token ids), 2 [alpha + (R-1) b / beta]
#   predicted tokens/s = T / (t_compute + t_allreduce + t_broadcast)
# n_layer and n_embd are read from the model (sov inspect). Without -m a synthetic llama
# (dim 1024, 8 layers, Q8_0) is written to build/bench-models first.
#
# Needs root, mpirun, a sov built with MPI and --tp (issue 16; until that is merged this
# script says so and exits 1) and bench_allreduce (build/bench).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
sov=${SOV_BIN:-$here/../build/sov}
bench_dir=${SOV_BENCH_DIR:-$here/../build/bench}
model="" ranks="2" profiles="none dc slow" pp=64 tg=16 split=tp
while [ $# -gt 0 ]; do
    case "$1" in
    -m) model=$2; shift 2 ;;
    -R) ranks=$2; shift 2 ;;
    -P) profiles=$2; shift 2 ;;
    -p) pp=$2; shift 2 ;;
    -n) tg=$2; shift 2 ;;
    -s) split=$2; shift 2 ;;
    *) echo "usage: bench/tp_netem.sh [-m MODEL.gguf] [-R \"2 4\"] [-P \"none dc slow\"] [-p 64] [-n 16]" >&2; exit 2 ;;
    esac
done
[ -x "$sov" ] || { echo "tp_netem.sh: $sov not built" >&2; exit 1; }
if ! "$sov" bench --help 2>&1 | grep -q -- '--tp'; then
    echo "tp_netem.sh: this sov ($sov) has no --tp: tensor parallelism (issue 16) is not in this build; nothing to measure" >&2
    exit 1
fi
[ -x "$bench_dir/bench_allreduce" ] || { echo "tp_netem.sh: $bench_dir/bench_allreduce not built (MPI)" >&2; exit 1; }
export SOV_BENCH_DIR=$bench_dir
if [ -z "$model" ]; then
    model=$here/../build/bench-models/tp-llama-1024x8-q8_0.gguf
    mkdir -p "$(dirname "$model")"
    [ -f "$model" ] || "$sov" gen-model -o "$model" --type Q8_0 --dim 1024 --layers 8 --heads 16 --kv-heads 4 \
        --ffn 2816 --vocab 4096 >/dev/null 2>&1
fi
meta() { "$sov" inspect "$model" | awk -v k="$1" '$1 ~ "\\." k "$" { print $3; exit }'; }
n_layer=$(meta block_count)
n_embd=$(meta embedding_length)
[ -n "$n_layer" ] && [ -n "$n_embd" ] || { echo "tp_netem.sh: cannot read block_count/embedding_length of $model" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# tokens/s of pp and tg from sov bench --json lines on stdin, the mean over processes: "pp tg"
rates() { /usr/bin/python3 -c '
import json, sys
r = {}
for line in sys.stdin:
    line = line.strip()
    if line.startswith("{"):
        j = json.loads(line)
        r.setdefault(j["test"][:2], []).append(j["tokens_per_s"])
mean = lambda v: sum(v) / len(v) if v else 0
print(mean(r.get("pp", [])), mean(r.get("tg", [])))'; }

bench_args=(bench -m "$model" -p "$pp" -n "$tg" -t 1 -r 3 --json --no-bandwidth)
read -r pp1 tg1 < <("$sov" "${bench_args[@]}" 2>/dev/null | rates)
echo "model $(basename "$model"): n_layer $n_layer, n_embd $n_embd; one rank alone, 1 thread: pp$pp $pp1 tok/s, tg $tg1 tok/s"
printf '%-8s %2s %-4s %12s %12s %7s   %s\n' profile R test measured predicted ratio "alpha_us beta_gbit one-rank_tok/s"
for profile in $profiles; do
    for r in $ranks; do
        "$here/netns.sh" -n "$r" -r -p "$profile" -- "$bench_dir/bench_allreduce" --ops pingpong \
            --n-embd 64,1024,16384 --tokens 1,16 --budget-ms 100 >"$work/pp.tsv" 2>/dev/null
        fit=$(/usr/bin/python3 "$here/netfit.py" --json "$work/pp.tsv")
        # the single-rank compute under the same sharing of this box's cores: R independent
        # one-rank sov bench processes at once, launched as the ranks are
        "$here/netns.sh" -n "$r" -p none -- "$sov" "${bench_args[@]}" >"$work/one.json" 2>/dev/null ||
            { echo "tp_netem.sh: $r concurrent one-rank sov bench runs failed" >&2; exit 1; }
        read -r pp1 tg1 < <(rates <"$work/one.json")
        "$here/netns.sh" -n "$r" -p "$profile" -- "$sov" "${bench_args[@]}" "--$split" "$r" >"$work/tp.json" 2>"$work/tp.err" ||
            { echo "tp_netem.sh: sov bench --$split $r through $profile failed: $(grep -v '^netns.sh' "$work/tp.err" | head -3)" >&2; exit 1; }
        read -r ppR tgR < <(rates <"$work/tp.json")
        /usr/bin/python3 - "$fit" "$profile" "$r" "$n_layer" "$n_embd" "$pp" "$pp1" "$tg1" "$ppR" "$tgR" "$split" <<'EOF'
import json, sys
fit = json.loads(sys.argv[1])[0]
profile, R, L, E, P = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
pp1, tg1, ppR, tgR = map(float, sys.argv[7:11])
split = sys.argv[11]
a, ib = fit["alpha_us"] * 1e-6, 8e-9 / fit["beta_gbit"]
k = lambda m: 1 if m <= 65536 - 64 else 3
def allreduce(m):  # sov's tp_allreduce (src/tp/tp.c)
    if m <= 65536:
        return k(m) * a + (R - 1) * m * ib
    c = m / R
    return 2 * (k(c) * a + (R - 1) * c * ib)
def step(T, rate1):
    compute = T / rate1 / R
    comm = 2 * L * allreduce(T * E * 4) + 2 * (a + (R - 1) * (64 + 4 * T) * ib)
    return T / (compute + comm)
def p2p(m):
    return k(m) * a + m * ib
def pp_step(T, rate1):  # --pp (src/tp/pp.c): micro-batches through R stages
    mb = min(max(-(-T // (2 * R)), 16), T)  # pp_micro_batch (src/tp/pp.c)
    M = -(-T // mb)
    t_stage = mb / rate1 / R
    hop = p2p(mb * E * 4)
    return T / ((R - 1) * (t_stage + hop) + M * max(t_stage, hop) + p2p(E * 4))
if split == "pp":
    step = pp_step
for test, T, rate1, meas in (("pp", P, pp1, ppR), ("tg", 1, tg1, tgR)):
    pred = step(T, rate1)
    print("%-8s %2d %-4s %12.1f %12.1f %7.2f   %.0f %.2f %.1f" % (profile, R, test, meas, pred,
          meas / pred if pred else 0, fit["alpha_us"], fit["beta_gbit"], rate1))
EOF
    done
done
