#!/usr/bin/python3
"""scaleout.py - the scale-out cost model of docs/SCALE-OUT.md: tokens/s of a 70B-class dense
model and a DeepSeek-V3 / A.X K1-class MoE on N machines, with tensor (TP), pipeline (PP)
and expert (EP) parallelism, for a datacentre link and a slow one.

    scaleout.py [--bw GBS] [--mem GB] [--flops TFLOPS] [--bits B] [--markdown]

Machine (defaults): --bw 300 GB/s of memory bandwidth read by the matmuls, --mem 384 GB,
--flops 2 TFLOP/s of matmul throughput (prompt processing), weights at --bits 4.85 bits per
parameter (Q4_K_M). Links: dc (25 Gbit/s, alpha 25 us) and slow (1 Gbit/s, alpha 1 ms),
alpha being the one-way latency of one MPI message (docs/SCALE-OUT.md: measured here).

Times, for a step of T tokens (T = 1: a decode step of one stream; T = 512: a prompt):
  compute      max(bytes of weights read / bw, 2 x active params x T / flops), divided
               over the machines that share the step
  p2p(m)       k(m) alpha + m / beta, k = 1 up to MPI's 64 KB eager limit, 3 above
  TP           every layer: 2 all-reduces of T x n_embd x 4 bytes, as sov does them
               (src/tp/tp.c): all-gather + sum up to 64 KB, alpha + (N-1) m / beta; above,
               reduce-scatter + all-gather, 2 [k(m/N) alpha + (N-1)/N m / beta]; plus one
               broadcast of the step, alpha
  PP           N stages of n_layer / N layers; one stream's token passes every stage in
               turn (compute is not divided) and N - 1 links plus the way back, N p2p(n_embd x 4);
               a prompt is cut into M = 4N micro-batches that keep the stages busy:
               (M + N - 1) x max(stage compute, p2p(micro-batch activations))
  EP           routed experts spread over N machines, attention / dense layers / shared
               expert on every machine; per MoE layer a dispatch and a combine all-to-all of
               each token's n_embd x 4 bytes to the d machines holding its top-8 experts
               (d = N (1 - (1 - 1/N)^8), the expected number of distinct machines), the
               experts' weights read in parallel on those machines
"""
import sys

# ---- model shapes (params counted from the published configurations) ----
LLAMA3_70B = dict(
    name="Llama-3-70B (dense)", n_layer=80, n_embd=8192, vocab=128256,
    layer_params=2 * 8192 * 8192 + 2 * 8192 * 1024 + 3 * 8192 * 28672,  # q,o + k,v (8 KV heads) + FFN
    moe=None)
# DeepSeek-V3: 61 layers, the first 3 dense (FFN 18432), 58 MoE (256 routed experts of FFN
# 2048, top-8, 1 shared expert), MLA attention (q LoRA 1536, kv LoRA 512, 128 heads)
_E = 7168
_MLA = _E * 1536 + 1536 * 128 * 192 + _E * 576 + 512 * 128 * 256 + 128 * 128 * _E
_EXPERT = 3 * _E * 2048
DEEPSEEK_V3 = dict(
    name="DeepSeek-V3 shape (MoE, 671B)", n_layer=61, n_embd=_E, vocab=129280,
    attn=_MLA, dense_layers=3, dense_ffn=3 * _E * 18432,
    moe=dict(experts=256, top_k=8, shared=1, expert=_EXPERT))


def model_sizes(m, total_scale=1.0):
    """Total and active parameters, split into (always-read, routed-total, routed-active)."""
    emb = 2 * m["vocab"] * m["n_embd"]
    if m["moe"] is None:
        dense = m["n_layer"] * m["layer_params"]
        return dict(total=dense + emb, always=dense + m["vocab"] * m["n_embd"], routed_total=0,
                    routed_active=0, moe_layers=0)
    moe = m["moe"]
    moe_layers = m["n_layer"] - m["dense_layers"]
    always = (m["n_layer"] * m["attn"] + m["dense_layers"] * m["dense_ffn"] +
              moe_layers * moe["shared"] * moe["expert"] + m["vocab"] * m["n_embd"])
    routed_total = moe_layers * moe["experts"] * moe["expert"] * total_scale
    routed_active = moe_layers * moe["top_k"] * moe["expert"] * total_scale  # larger or smaller experts
    return dict(total=always + m["vocab"] * m["n_embd"] + routed_total, always=always,
                routed_total=routed_total, routed_active=routed_active, moe_layers=moe_layers)


class Link:
    def __init__(self, name, alpha, gbit):
        self.name, self.alpha, self.beta = name, alpha, gbit * 1e9 / 8

    def p2p(self, m):
        return (1 if m <= 65536 - 64 else 3) * self.alpha + m / self.beta

    def allreduce(self, m, n):  # sov's tp_allreduce
        if n == 1:
            return 0.0
        if m <= 65536:
            return (1 if m <= 65536 - 64 else 3) * self.alpha + (n - 1) * m / self.beta
        c = m / n
        return 2 * ((1 if c <= 65536 - 64 else 3) * self.alpha + (n - 1) * c / self.beta)


class Machine:
    def __init__(self, bw_gbs, mem_gb, tflops, bits):
        self.bw, self.mem, self.flops, self.bpp = bw_gbs * 1e9, mem_gb * 1e9, tflops * 1e12, bits / 8

    def compute(self, params_read, params_active, T):
        return max(params_read * self.bpp / self.bw, 2 * params_active * T / self.flops)


def read_params(m, s, T):
    """Parameters read in one step of T tokens: every expert some token routes to."""
    if not s["routed_total"]:
        return s["always"]
    k, e = m["moe"]["top_k"], m["moe"]["experts"]
    return s["always"] + s["routed_total"] * (1 - (1 - k / e) ** T)


def tp(m, s, mach, link, N, T, streams=1):
    active = s["always"] + s["routed_active"]
    T = T * streams
    t = mach.compute(read_params(m, s, T), active, T) / N
    n_ar = 2 * m["n_layer"]
    t += n_ar * link.allreduce(T * m["n_embd"] * 4, N) + (link.alpha if N > 1 else 0)
    fits = s["total"] * mach.bpp / N <= mach.mem
    return T / t, fits


def pp(m, s, mach, link, N, T, streams=1):
    active = s["always"] + s["routed_active"]
    act = m["n_embd"] * 4
    if streams > 1:  # N micro-batches of streams/N in flight: every stage always busy
        b = streams / N if N > 1 else streams
        stage = mach.compute(read_params(m, s, b), active, b) / N
        hop = link.p2p(act * b) if N > 1 else 0
        t = N * max(stage, hop) if N > 1 else stage
        return streams / t, s["total"] * mach.bpp / N <= mach.mem
    if T == 1:  # one stream: the stages work in turn
        t = mach.compute(active, active, 1) + (N * link.p2p(act) if N > 1 else 0)
    else:
        M = 4 * N if N > 1 else 1
        stage = mach.compute(active, active, T / M) / N
        hop = link.p2p(act * T / M) if N > 1 else 0
        t = (M + N - 1) * max(stage, hop) + (link.alpha if N > 1 else 0)
    fits = s["total"] * mach.bpp / N <= mach.mem
    return T / t, fits


def ep(m, s, mach, link, N, T, streams=1):
    if not s["routed_total"]:
        return None, False
    k = m["moe"]["top_k"]
    d = N * (1 - (1 - 1 / N) ** k)  # distinct machines holding a token's experts
    mem = (s["always"] + m["vocab"] * m["n_embd"] + s["routed_total"] / N) * mach.bpp
    if streams > 1:  # attention data-parallel (streams/N per machine), experts where they live
        b = streams / N
        t_always = mach.compute(s["always"], s["always"], b)
        per_layer_active = s["routed_active"] / s["moe_layers"]
        touched = read_params(m, s, streams) - s["always"]
        t_routed = mach.compute(touched / s["moe_layers"] / N, per_layer_active * streams / N, 1)
        a2a = 0 if N == 1 else link.p2p(b * d * (N - 1) / N * m["n_embd"] * 4)
        t = t_always + s["moe_layers"] * (t_routed + 2 * a2a)
        return streams / t, mem <= mach.mem
    t_always = mach.compute(s["always"], s["always"], T)  # every machine: its own tokens
    # routed experts: each MoE layer's top-k work of T tokens spread over the machines
    per_layer_active = s["routed_active"] / s["moe_layers"]
    if T == 1:
        t_routed = mach.compute(per_layer_active / d, per_layer_active / d, 1)
    else:  # T tokens hit (nearly) every expert: each machine reads its share of the experts
        expert_bytes = s["routed_total"] / s["moe_layers"] / N
        t_routed = max(expert_bytes * mach.bpp / mach.bw, 2 * per_layer_active * T / N / mach.flops)
    remote = d * (N - 1) / N
    a2a = 0 if N == 1 else link.p2p(T * remote * m["n_embd"] * 4)  # one uplink carries all
    t = t_always + s["moe_layers"] * (t_routed + 2 * a2a)
    return T / t, mem <= mach.mem


def bytes_per_token_layer(m, N):
    """Bytes each rank sends per token and layer (f32 activations)."""
    e4 = m["n_embd"] * 4
    tp_b = 2 * e4 * 2 * (N - 1) / N  # two all-reduces, ring-optimal volume
    pp_b = e4 * (N - 1) / m["n_layer"]  # N-1 stage boundaries, spread over the layers
    ep_b = None
    if m["moe"]:
        k = m["moe"]["top_k"]
        d = N * (1 - (1 - 1 / N) ** k)
        ep_b = 2 * d * (N - 1) / N * e4  # dispatch + combine to the remote expert machines
    return tp_b, pp_b, ep_b


def table(m, mach, links, Ns, scale=1.0, markdown=True):
    s = model_sizes(m, scale)
    out = []
    title = m["name"] if scale == 1.0 else "A.X K1 class (MoE, %.0fB: the same layout, routed experts scaled)" % (
        s["total"] / 1e9)
    out.append("### %s: %.0fB parameters, %.1fB active per token, %.0f GB at %.2f bits" % (
        title, s["total"] / 1e9, (s["always"] + s["routed_active"]) / 1e9, s["total"] * mach.bpp / 1e9,
        mach.bpp * 8))
    out.append("")
    moe = bool(s["routed_total"])
    for link in links:
        out.append("%s link (%.0f Gbit/s, alpha %.0f us): tokens/s (decode = one stream; prompt = 512 "
                   "tokens; serve = 64 streams decoding together, all their tokens); * = does not fit in %.0f GB "
                   "per machine" % (
                       link.name, link.beta * 8 / 1e9, link.alpha * 1e6, mach.mem / 1e9))
        out.append("")
        head = "| N | TP decode | PP decode | " + ("EP decode | " if moe else "") + \
            "TP prompt | PP prompt | " + ("EP prompt | " if moe else "") + \
            "TP serve | PP serve | " + ("EP serve | " if moe else "") + "best decode | best prompt | best serve |"
        out.append(head)
        out.append("|" + "---|" * (head.count("|") - 1))
        for N in Ns:
            cells, best = [], {}
            for kind, T, streams in (("decode", 1, 1), ("prompt", 512, 1), ("serve", 1, 64)):
                for name, f in (("TP", tp), ("PP", pp)) + ((("EP", ep),) if moe else ()):
                    r, fits = f(m, s, mach, link, N, T, streams)
                    cells.append("%.1f%s" % (r, "" if fits else "*"))
                    if fits and r > best.get(kind, ("", 0))[1]:
                        best[kind] = (name, r)
            names = [("one machine" if kind in best else "-") if N == 1 else best.get(kind, ("-", 0))[0]
                     for kind in ("decode", "prompt", "serve")]
            out.append("| %d | %s | %s |" % (N, " | ".join(cells), " | ".join(names)))
        out.append("")
    out.append("Bytes each rank sends per token per layer (f32 activations):")
    out.append("")
    out.append("| N | TP (2 all-reduces) | PP (boundaries / layers) |" + (" EP (dispatch + combine) |" if moe else ""))
    out.append("|---|---|---|" + ("---|" if moe else ""))
    for N in Ns[1:]:
        tp_b, pp_b, ep_b = bytes_per_token_layer(m, N)
        out.append("| %d | %.0f | %.0f |%s" % (N, tp_b, pp_b, " %.0f |" % ep_b if moe else ""))
    out.append("")
    return "\n".join(out)


def main(argv):
    opts = dict(bw=300.0, mem=384.0, flops=2.0, bits=4.85)
    i = 0
    while i < len(argv):
        key = argv[i].lstrip("-")
        if key in opts and i + 1 < len(argv):
            opts[key] = float(argv[i + 1])
            i += 2
        elif key == "markdown":
            i += 1
        else:
            raise SystemExit(__doc__.split("\n\n")[1])
    mach = Machine(opts["bw"], opts["mem"], opts["flops"], opts["bits"])
    links = [Link("dc", 25e-6, 25), Link("slow", 1e-3, 1)]
    Ns = [1, 2, 4, 8, 16]
    print("Machine: %.0f GB/s memory bandwidth, %.0f GB, %.1f TFLOP/s; weights at %.2f bits per parameter.\n" % (
        opts["bw"], opts["mem"], opts["flops"], opts["bits"]))
    print(table(LLAMA3_70B, mach, links, Ns))
    print(table(DEEPSEEK_V3, mach, links, Ns))
    s = model_sizes(DEEPSEEK_V3)
    scale = (519e9 - (s["total"] - s["routed_total"])) / s["routed_total"]
    print(table(DEEPSEEK_V3, mach, links, Ns, scale))


if __name__ == "__main__":
    main(sys.argv[1:])
