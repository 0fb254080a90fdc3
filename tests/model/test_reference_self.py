"""The NumPy reference (reference.py) checked on its own, before it is trusted to judge sov.

1. GGUF reader: files assembled byte by byte here (v3 with general.alignment 64 and a
   value of every type, arrays of numbers / bools / strings / arrays included; v2 with the
   default alignment 32) read back value for value, tensors at the right offsets; broken
   files (bad magic, unknown version, truncation, tensor data past the end) are refused
   with GGUFError.
2. Dequantizers: one block of each type whose fields were chosen by hand, with values
   worked out by hand from the layout (in the comments); then random blocks against a
   per-element scalar transcription of each layout written here, bit for bit.
3. Forward pass: tiny 1-layer F32 models written here (llama with GQA; qwen2 with biases,
   NeoX pairs and YaRN; llama with rope_freqs, linear scaling, partial rotation and a
   head size apart from n_embd / n_head; a tied output; qwen3 with per-head q/k RMSNorm
   before RoPE, NeoX pairs and head size 8 != 8/2) against the transformer written
   out directly below, one position and one head at a time, to 1e-12; float16 keys and
   values; causality (a prefix's logits do not depend on what follows); the CLI.
"""
import math
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import reference  # noqa: E402

TMP = os.environ.get("SOV_TEST_TMP") or tempfile.gettempdir()
os.makedirs(TMP, exist_ok=True)
FAILS = []


def check(cond, what):
    print("%s %s" % ("ok  " if cond else "FAIL", what))
    if not cond:
        FAILS.append(what)


# ---- a GGUF writer (independent of reference.py) --------------------------------------

U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
FMT = {U8: "B", I8: "b", U16: "H", I16: "h", U32: "I", I32: "i", F32: "f", BOOL: "?", U64: "Q", I64: "q",
       F64: "d"}


def enc_value(t, v):
    if t == STRING:
        b = v.encode("utf-8")
        return struct.pack("<Q", len(b)) + b
    if t == ARRAY:
        it, items = v
        return struct.pack("<IQ", it, len(items)) + b"".join(enc_value(it, x) for x in items)
    return struct.pack("<" + FMT[t], v)


def gguf_bytes(kvs, tensors, version=3, alignment=32):
    """kvs: [(key, type, value)] (ARRAY value = (item type, items)); tensors: [(name, ne,
    type id, raw bytes)]. Each tensor's data starts at a multiple of alignment."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for k, t, v in kvs:
        out += enc_value(STRING, k) + struct.pack("<I", t) + enc_value(t, v)
    off, offsets = 0, []
    for _, _, _, raw in tensors:
        offsets.append(off)
        off = (off + len(raw) + alignment - 1) // alignment * alignment
    for (name, ne, typ, _), o in zip(tensors, offsets):
        out += enc_value(STRING, name) + struct.pack("<I", len(ne)) + struct.pack("<%dQ" % len(ne), *ne)
        out += struct.pack("<IQ", typ, o)
    out += b"\0" * (-len(out) % alignment)
    for (_, _, _, raw), o in zip(tensors, offsets):
        out += raw + b"\0" * (-len(raw) % alignment)
    return out


def write(name, data):
    path = os.path.join(TMP, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def f32_bytes(a):
    return np.asarray(a, dtype="<f4").tobytes()


# ---- 1. the reader ---------------------------------------------------------------------

def test_reader():
    kvs = [("general.alignment", U32, 64), ("v.u8", U8, 250), ("v.i8", I8, -7), ("v.u16", U16, 65000),
           ("v.i16", I16, -32000), ("v.u32", U32, 4000000000), ("v.i32", I32, -2000000000),
           ("v.f32", F32, 0.1), ("v.bool", BOOL, True), ("v.str", STRING, "h\u00e9llo \u2603"),
           ("v.u64", U64, 2**63 + 5), ("v.i64", I64, -2**62), ("v.f64", F64, math.pi),
           ("v.empty", STRING, ""),
           ("a.i32", ARRAY, (I32, [1, -2, 3])), ("a.f32", ARRAY, (F32, [0.5, -1.25])),
           ("a.bool", ARRAY, (BOOL, [True, False, True])), ("a.str", ARRAY, (STRING, ["a", "", "\u00fc"])),
           ("a.nested", ARRAY, (ARRAY, [(U8, [1, 2]), (U8, [])])), ("a.empty", ARRAY, (F64, []))]
    w = np.arange(6, dtype=np.float32) - 2.5
    q8 = struct.pack("<e", 0.5) + bytes(range(32))                 # one Q8_0 block
    tensors = [("w", [3, 2], 0, f32_bytes(w)), ("q", [32], 8, q8)]
    g = reference.GGUF(write("ref_reader_v3.gguf", gguf_bytes(kvs, tensors, 3, 64)))
    kv = g.kv
    check(g.version == 3 and g.alignment == 64 and g.data_start % 64 == 0, "v3: version, alignment 64, data start")
    scal = {"v.u8": 250, "v.i8": -7, "v.u16": 65000, "v.i16": -32000, "v.u32": 4000000000,
            "v.i32": -2000000000, "v.bool": True, "v.str": "h\u00e9llo \u2603", "v.u64": 2**63 + 5,
            "v.i64": -2**62, "v.f64": math.pi, "v.empty": ""}
    check(all(kv[k] == v and type(kv[k]) is type(v) for k, v in scal.items()), "v3: every scalar type, exact")
    check(kv["v.f32"] == float(np.float32(0.1)), "v3: f32 value is the float32 nearest 0.1")
    check(list(kv["a.i32"]) == [1, -2, 3] and list(kv["a.f32"]) == [0.5, -1.25], "v3: numeric arrays")
    check(kv["a.bool"].dtype == bool and list(kv["a.bool"]) == [True, False, True], "v3: bool array")
    check(kv["a.str"] == ["a", "", "\u00fc"], "v3: string array")
    check(len(kv["a.nested"]) == 2 and list(kv["a.nested"][0]) == [1, 2] and len(kv["a.nested"][1]) == 0,
          "v3: array of arrays")
    check(len(kv["a.empty"]) == 0, "v3: empty array")
    t = g.tensors
    check(list(t) == ["w", "q"] and tuple(t["w"].ne) == (3, 2) and t["w"].type == 0 and t["q"].offset == 64,
          "v3: tensor table (names, shapes, types, offsets)")
    check(np.array_equal(reference.dequantize_tensor(g, "w"), w), "v3: F32 tensor data")
    check(np.array_equal(reference.dequantize_tensor(g, "q"), np.arange(32, dtype=np.float32) * 0.5),
          "v3: Q8_0 tensor data at offset 64")

    # v2, no general.alignment: data aligned to 32
    g2 = reference.GGUF(write("ref_reader_v2.gguf", gguf_bytes([("x", STRING, "y")], tensors, 2, 32)))
    check(g2.version == 2 and g2.alignment == 32 and g2.data_start % 32 == 0 and g2.tensors["q"].offset == 32 and
          np.array_equal(reference.dequantize_tensor(g2, "w"), w), "v2: default alignment 32, tensors read")

    good = gguf_bytes(kvs, tensors, 3, 64)
    bad = {"bad magic": b"GGUX" + good[4:], "version 1": good[:4] + struct.pack("<I", 1) + good[8:],
           "truncated header": good[:40], "truncated data": good[:-40]}
    for what, data in bad.items():
        try:
            reference.GGUF(write("ref_bad.gguf", data))
            refused = False
        except reference.GGUFError:
            refused = True
        check(refused, "refuses a file with %s" % what)


# ---- 2. dequantizers -------------------------------------------------------------------

def half(x):
    return struct.pack("<e", x)


def deq(type_name, block):
    return reference.dequantize(reference.TYPE_IDS[type_name], np.frombuffer(block, np.uint8))


def test_hand_blocks():
    # Q4_0 {d, qs[16]}: value j = (lo(qs[j]) - 8) * d, value j + 16 = (hi(qs[j]) - 8) * d
    qs = bytearray([0x88] * 16)
    qs[0], qs[1] = 0x9A, 0x0F
    y = deq("Q4_0", half(0.5) + qs)
    check(y[0] == 1.0 and y[16] == 0.5 and y[1] == 3.5 and y[17] == -4.0 and not y[2:16].any(), "Q4_0 hand block")

    # Q4_1 {d, m, qs[16]}: q * d + m
    qs = bytearray(16)
    qs[0] = 0x3C
    y = deq("Q4_1", half(0.25) + half(-1.0) + qs)
    check(y[0] == 2.0 and y[16] == -0.25 and y[5] == -1.0, "Q4_1 hand block")

    # Q5_0 {d, qh u32, qs[16]}: ((nibble | bit j of qh << 4) - 16) * d
    qs = bytearray(16)
    qs[0] = 0x21
    y = deq("Q5_0", half(1.0) + struct.pack("<I", (1 << 0) | (1 << 16) | (1 << 31)) + qs)
    check(y[0] == 1.0 and y[16] == 2.0 and y[15] == -16.0 and y[31] == 0.0, "Q5_0 hand block")

    # Q5_1 {d, m, qh, qs}: (nibble | bit << 4) * d + m
    qs = bytearray(16)
    qs[1] = 0x0F
    y = deq("Q5_1", half(0.5) + half(2.0) + struct.pack("<I", 1 << 1) + qs)
    check(y[1] == 17.5 and y[17] == 2.0 and y[0] == 2.0, "Q5_1 hand block")

    # Q8_0 {d, i8 qs[32]}
    qs = bytearray(32)
    qs[0], qs[31] = 0x80, 0x7F
    y = deq("Q8_0", half(-0.125) + qs)
    check(y[0] == 16.0 and y[31] == -15.875 and y[1] == 0.0, "Q8_0 hand block")

    # Q4_K {d, dmin, scales[12], qs[128]}: sub-block s of 32 values: (d * sc_s) * q - dmin * m_s.
    # sc0 = b0 & 63 = 3, m0 = b4 & 63 = 2; sc1 = b1 & 63 = 1, m1 = b5 & 63 = 4;
    # sc5 = (b9 & 15) | (b1 >> 6) << 4 = 2 | 48 = 50, m5 = (b9 >> 4) | (b5 >> 6) << 4 = 7 | 16 = 23.
    # value 0 = lo(qs[0]) = 5 -> 1.5 * 5 - 0.5 = 7; value 32 = hi(qs[0]) = 3 -> 0.5 * 3 - 1 = 0.5;
    # value 160 = hi(qs[64]) = 10 -> 25 * 10 - 5.75 = 244.25
    sc = bytearray(12)
    sc[0], sc[4], sc[1], sc[5], sc[9] = 3, 2, 0xC1, 0x44, 0x72
    qs = bytearray(128)
    qs[0], qs[64] = 0x35, 0xA0
    y = deq("Q4_K", half(0.5) + half(0.25) + sc + qs)
    check(y[0] == 7.0 and y[32] == 0.5 and y[160] == 244.25 and y[128] == 0.0, "Q4_K hand block")

    # Q5_K {d, dmin, scales[12], qh[32], qs[128]}: fifth bit of value l of sub-block s is bit s
    # of qh[l]. sc0 = 2, m0 = 1: value 0 = 3 | 16 -> 2 * 19 - 0.5 = 37.5, value 1 = 0 -> -0.5.
    # sc7 = (b11 & 15) = 1, m7 = b11 >> 4 = 1: value 224 = hi(qs[96]) = 15, bit 7 of qh[0] -> 31 - 0.5
    # = 30.5, value 225 -> -0.5
    sc = bytearray(12)
    sc[0], sc[4], sc[11] = 2, 1, 0x11
    qh = bytearray(32)
    qh[0] = 0x81
    qs = bytearray(128)
    qs[0], qs[96] = 0x03, 0xF0
    y = deq("Q5_K", half(1.0) + half(0.5) + sc + qh + qs)
    check(y[0] == 37.5 and y[224] == 30.5 and y[1] == -0.5 and y[225] == -0.5, "Q5_K hand block")

    # Q6_K {ql[128], qh[64], i8 scales[16], d}: (d * sc) * (q - 32). Value 0: lo(ql[0]) = 5,
    # qh[0] & 3 = 2 -> 37 - 32 = 5, sc[0] = -3 -> -7.5. Value 200 = half 1, quarter 2, l = 8:
    # hi(ql[72]) = 15, (qh[40] >> 4) & 3 = 3 -> 63 - 32 = 31, sc[12] = 2 -> 31.
    # Value 1: q = 0 - 32, sc[0] -> 48. Value 255: half 1, quarter 3, l = 31: q = -32, sc[15] = 127 -> -2032
    ql, qh, sc = bytearray(128), bytearray(64), bytearray(16)
    ql[0], qh[0], sc[0] = 0x05, 0x02, 0xFD
    ql[72], qh[40], sc[12] = 0xF0, 0x30, 2
    sc[15] = 127
    y = deq("Q6_K", ql + qh + sc + half(0.5))
    check(y[0] == -7.5 and y[200] == 31.0 and y[255] == -2032.0 and y[1] == 48.0, "Q6_K hand block")

    # F16 (subnormal, infinity), BF16
    y = deq("F16", struct.pack("<4H", 0x3C00, 0x0001, 0xFC00, 0x8000))
    check(y[0] == 1.0 and y[1] == 2.0**-24 and y[2] == -np.inf and y[3] == 0 and np.signbit(y[3]), "F16 values")
    y = deq("BF16", struct.pack("<3H", 0x3F80, 0xC000, 0x0001))
    check(y[0] == 1.0 and y[1] == -2.0 and y[2] == np.float32(2.0**-133), "BF16 values")


# Per-element scalar transcriptions of the layouts (float32 in the definitions' order).
f = np.float32


def h(b, o):
    return f(np.frombuffer(bytes(b[o:o + 2]), "<f2")[0])


def scalar_q4_0(b):
    d = h(b, 0)
    return [f(((b[2 + j % 16] >> (4 * (j // 16))) & 15) - 8) * d for j in range(32)]


def scalar_q4_1(b):
    d, m = h(b, 0), h(b, 2)
    return [f((b[4 + j % 16] >> (4 * (j // 16))) & 15) * d + m for j in range(32)]


def scalar_q5(b, with_min):
    o = 4 if with_min else 2
    d = h(b, 0)
    qh = struct.unpack("<I", bytes(b[o:o + 4]))[0]
    out = []
    for j in range(32):
        q = ((b[o + 4 + j % 16] >> (4 * (j // 16))) & 15) | (((qh >> j) & 1) << 4)
        out.append(f(q) * d + h(b, 2) if with_min else f(q - 16) * d)
    return out


def scalar_q8_0(b):
    d = h(b, 0)
    return [f(np.int8(np.uint8(b[2 + j]))) * d for j in range(32)]


def scale_min(sc, s):
    if s < 4:
        return sc[s] & 63, sc[s + 4] & 63
    return (sc[s + 4] & 15) | ((sc[s - 4] >> 6) << 4), (sc[s + 4] >> 4) | ((sc[s] >> 6) << 4)


def scalar_qk(b, five):
    d, dmin = h(b, 0), h(b, 2)
    sc = b[4:16]
    qh, qs = (b[16:48], b[48:176]) if five else (None, b[16:144])
    out = []
    for i in range(256):
        s, l = i // 32, i % 32                      # sub-block s: chunk s // 2, nibble s % 2
        q = (qs[32 * (s // 2) + l] >> (4 * (s % 2))) & 15
        if five:
            q += 16 * ((qh[l] >> s) & 1)
        a, m = scale_min(sc, s)
        out.append(d * f(a) * f(q) - dmin * f(m))
    return out


def scalar_q6_K(b):
    ql, qh, d = b[0:128], b[128:192], h(b, 208)
    sc = np.frombuffer(bytes(b[192:208]), np.int8)
    out = []
    for i in range(256):
        hf, k, l = i // 128, (i % 128) // 32, i % 32
        lo = (ql[64 * hf + 32 * (k % 2) + l] >> (4 * (k // 2))) & 15
        hi = (qh[32 * hf + l] >> (2 * k)) & 3
        out.append(d * f(sc[8 * hf + 2 * k + l // 16]) * f((lo | (hi << 4)) - 32))
    return out


def test_random_blocks():
    rng = np.random.default_rng(5)
    # (type, block bytes, offsets of f16 fields, scalar transcription)
    kinds = [("Q4_0", 18, [0], scalar_q4_0), ("Q4_1", 20, [0, 2], scalar_q4_1),
             ("Q5_0", 22, [0], lambda b: scalar_q5(b, False)), ("Q5_1", 24, [0, 2], lambda b: scalar_q5(b, True)),
             ("Q8_0", 34, [0], scalar_q8_0), ("Q4_K", 144, [0, 2], lambda b: scalar_qk(b, False)),
             ("Q5_K", 176, [0, 2], lambda b: scalar_qk(b, True)), ("Q6_K", 210, [208], scalar_q6_K)]
    for name, size, halves, fn in kinds:
        raw = rng.integers(0, 256, size=(24, size), dtype=np.uint8)
        for o in halves:   # finite halves of every magnitude, subnormals and signs included
            hv = rng.integers(0, 0x7C00, size=24, dtype=np.uint16) | (rng.integers(0, 2, 24, dtype=np.uint16) << 15)
            raw[:, o:o + 2] = hv.astype("<u2").view(np.uint8).reshape(24, 2)
        got = reference.dequantize(reference.TYPE_IDS[name], raw.reshape(-1))
        want = np.array([v for blk in raw for v in fn(blk)], dtype=np.float32)
        check(np.array_equal(got.view(np.uint32), want.view(np.uint32)),
              "%s: 24 random blocks equal the scalar transcription bit for bit" % name)


# ---- 3. forward pass -------------------------------------------------------------------

def make_model(rng, arch, n_embd=8, n_head=2, n_head_kv=1, head_dim=None, n_rot=None, n_ff=12, n_vocab=11,
               biases=False, tied=False, freqs=False, scaling=None, factor=1.0, n_ctx_orig=16, eps=1e-5,
               qk_norm=False):
    """Random F32 weights (float32 values, kept as float64 for the direct pass) and the
    GGUF bytes holding them."""
    D = head_dim or n_embd // n_head
    w = {"token_embd.weight": rng.normal(size=(n_vocab, n_embd)), "output_norm.weight": 1 + 0.2 * rng.normal(size=n_embd),
         "blk.0.attn_norm.weight": 1 + 0.2 * rng.normal(size=n_embd),
         "blk.0.ffn_norm.weight": 1 + 0.2 * rng.normal(size=n_embd),
         "blk.0.attn_q.weight": rng.normal(size=(n_head * D, n_embd)) / 2,
         "blk.0.attn_k.weight": rng.normal(size=(n_head_kv * D, n_embd)) / 2,
         "blk.0.attn_v.weight": rng.normal(size=(n_head_kv * D, n_embd)),
         "blk.0.attn_output.weight": rng.normal(size=(n_embd, n_head * D)) / 2,
         "blk.0.ffn_gate.weight": rng.normal(size=(n_ff, n_embd)) / 2,
         "blk.0.ffn_up.weight": rng.normal(size=(n_ff, n_embd)) / 2,
         "blk.0.ffn_down.weight": rng.normal(size=(n_embd, n_ff)) / 2}
    if not tied:
        w["output.weight"] = rng.normal(size=(n_vocab, n_embd))
    if biases:
        for t, n in (("q", n_head), ("k", n_head_kv), ("v", n_head_kv)):
            w["blk.0.attn_%s.bias" % t] = rng.normal(size=n * D)
    if freqs:
        w["rope_freqs.weight"] = rng.uniform(1, 8, size=(n_rot or D) // 2)
    if qk_norm:
        w["blk.0.attn_q_norm.weight"] = 1 + 0.5 * rng.normal(size=D)
        w["blk.0.attn_k_norm.weight"] = 1 + 0.5 * rng.normal(size=D)
    w = {k: v.astype(np.float32).astype(np.float64) for k, v in w.items()}
    a = arch
    kvs = [("general.architecture", STRING, arch), (a + ".embedding_length", U32, n_embd), (a + ".block_count", U32, 1),
           (a + ".feed_forward_length", U32, n_ff), (a + ".attention.head_count", U32, n_head),
           (a + ".attention.head_count_kv", U32, n_head_kv), (a + ".context_length", U32, 64),
           (a + ".attention.layer_norm_rms_epsilon", F32, eps), (a + ".rope.freq_base", F32, 100.0)]
    if head_dim:
        kvs.append((a + ".attention.key_length", U32, head_dim))
        kvs.append((a + ".attention.value_length", U32, head_dim))
    if n_rot:
        kvs.append((a + ".rope.dimension_count", U32, n_rot))
    if scaling:
        kvs += [(a + ".rope.scaling.type", STRING, scaling), (a + ".rope.scaling.factor", F32, factor),
                (a + ".rope.scaling.original_context_length", U32, n_ctx_orig)]
    tensors = [(k, list(reversed(v.shape)), 0, f32_bytes(v)) for k, v in w.items()]
    cfg = dict(arch=arch, D=D, H=n_head, Hkv=n_head_kv, n_rot=n_rot or D, base=100.0, eps=eps, biases=biases,
               tied=tied, freqs=freqs, scaling=scaling, factor=factor, n_ctx_orig=n_ctx_orig, qk_norm=qk_norm)
    return w, cfg, gguf_bytes(kvs, tensors)


def direct_logits(w, c, tokens, kv_f16=False):
    """The transformer written out position by position, head by head, pair by pair."""
    D, H, Hkv, n_rot = c["D"], c["H"], c["Hkv"], c["n_rot"]

    def norm(x, g):
        return x / math.sqrt(sum(v * v for v in x) / len(x) + c["eps"]) * g

    def angle(pos, j):
        theta = pos * c["base"] ** (-2.0 * j / n_rot)
        if c["freqs"]:
            theta /= w["rope_freqs.weight"][j]
        if c["scaling"] == "linear":
            return theta / c["factor"], 1.0
        if c["scaling"] == "yarn":     # ggml rope_yarn, ext_factor 1
            def corr(beta):
                return n_rot * math.log(c["n_ctx_orig"] / (beta * 2 * math.pi)) / (2 * math.log(c["base"]))
            lo, hi = max(0.0, math.floor(corr(32))), min(n_rot - 1.0, math.ceil(corr(1)))
            ramp = 1 - min(1.0, max(0.0, (j - lo) / max(0.001, hi - lo)))
            return theta / c["factor"] * (1 - ramp) + theta * ramp, 1 + 0.1 * math.log(c["factor"])
        return theta, 1.0

    def rope(vec, pos):
        out = vec.copy()
        for j in range(n_rot // 2):
            i0, i1 = (j, j + n_rot // 2) if c["arch"] in ("qwen2", "qwen3") else (2 * j, 2 * j + 1)
            th, ms = angle(pos, j)
            cs, sn = math.cos(th) * ms, math.sin(th) * ms
            out[i0] = vec[i0] * cs - vec[i1] * sn
            out[i1] = vec[i0] * sn + vec[i1] * cs
        return out

    keys, vals, result = [], [], []
    for pos, tok in enumerate(tokens):
        x = w["token_embd.weight"][tok].copy()
        xb = norm(x, w["blk.0.attn_norm.weight"])
        q, k, v = (w["blk.0.attn_%s.weight" % t] @ xb for t in "qkv")
        if c["biases"]:
            q, k, v = q + w["blk.0.attn_q.bias"], k + w["blk.0.attn_k.bias"], v + w["blk.0.attn_v.bias"]
        if c["qk_norm"]:  # each head's vector on its own, before RoPE
            q = np.concatenate([norm(q[i * D:(i + 1) * D], w["blk.0.attn_q_norm.weight"]) for i in range(H)])
            k = np.concatenate([norm(k[i * D:(i + 1) * D], w["blk.0.attn_k_norm.weight"]) for i in range(Hkv)])
        q = np.concatenate([rope(q[i * D:(i + 1) * D], pos) for i in range(H)])
        k = np.concatenate([rope(k[i * D:(i + 1) * D], pos) for i in range(Hkv)])
        if kv_f16:
            k, v = k.astype(np.float16).astype(np.float64), v.astype(np.float16).astype(np.float64)
        keys.append(k)
        vals.append(v)
        att = np.zeros(H * D)
        for hd in range(H):
            g = hd // (H // Hkv)
            qh = q[hd * D:(hd + 1) * D]
            s = [float(qh @ keys[p][g * D:(g + 1) * D]) / math.sqrt(D) for p in range(pos + 1)]
            e = [math.exp(v_ - max(s)) for v_ in s]
            for p in range(pos + 1):
                att[hd * D:(hd + 1) * D] += e[p] / sum(e) * vals[p][g * D:(g + 1) * D]
        x = x + w["blk.0.attn_output.weight"] @ att
        xb = norm(x, w["blk.0.ffn_norm.weight"])
        gate, up = w["blk.0.ffn_gate.weight"] @ xb, w["blk.0.ffn_up.weight"] @ xb
        x = x + w["blk.0.ffn_down.weight"] @ (gate / (1 + np.exp(-gate)) * up)
        out = w["token_embd.weight"] if c["tied"] else w["output.weight"]
        result.append(out @ norm(x, w["output_norm.weight"]))
    return np.array(result)


def test_forward():
    rng = np.random.default_rng(11)
    tokens = [1, 5, 9, 2, 7, 7, 3]
    cases = [("llama GQA 2:1", dict(arch="llama")),
             ("llama 4 heads, 4 kv heads, tied output", dict(arch="llama", n_head=4, n_head_kv=4, tied=True)),
             ("qwen2 biases, NeoX pairs, YaRN x4", dict(arch="qwen2", biases=True, scaling="yarn", factor=4.0,
                                                        n_embd=16, n_head=2, n_head_kv=1, eps=1e-6)),
             ("mistral head size 4 != 8/4, rope 2 of 4 dims", dict(arch="mistral", n_head=4, n_head_kv=2, head_dim=4,
                                                                  n_rot=2)),
             ("llama rope_freqs, linear x2", dict(arch="llama", freqs=True, scaling="linear", factor=2.0)),
             ("qwen3 per-head q/k norm, NeoX pairs, head size 8 != 8/2",
              dict(arch="qwen3", qk_norm=True, head_dim=8, eps=1e-6))]
    for i, (what, kw) in enumerate(cases):
        w, c, data = make_model(rng, **kw)
        path = write("ref_self_%d.gguf" % i, data)
        m = reference.Model(path)
        for kv_f16 in (False, True):
            got = m.logits(tokens, kv_f16=kv_f16)
            want = direct_logits(w, c, tokens, kv_f16)
            err = float(np.abs(got - want).max() / np.abs(want).max())
            check(got.shape == (len(tokens), m.n_vocab) and err < 1e-12,
                  "%s%s: logits equal the direct formulas (rel err %.1e)" % (what, " f16 KV" if kv_f16 else "", err))
        check(np.array_equal(m.logits(tokens[:3]), m.logits(tokens)[:3]) or
              np.abs(m.logits(tokens[:3]) - m.logits(tokens)[:3]).max() < 1e-13, "%s: causal" % what)

    # the YaRN ramp's ends for n_rot 64, original context 2048, base 10000 (ggml's formula:
    # 64 ln(2048 / (32 * 2 pi)) / (2 ln 10000) = 8.06 -> 8; 64 ln(2048 / (2 pi)) / (2 ln 10000) = 20.1 -> 21)
    check(tuple(reference.yarn_corr_dims(64, 2048, 10000.0)) == (8.0, 21.0), "YaRN correction dims (8, 21)")

    # CLI on the first model
    path = os.path.join(TMP, "ref_self_0.gguf")
    out = os.path.join(TMP, "ref_self_cli.bin")
    cli = [sys.executable, os.path.join(HERE, "reference.py")]
    m = reference.Model(path)
    r = subprocess.run(cli + ["logits", path, "--tokens", "1,5,9", "--kv-f16", "--out", out], capture_output=True)
    got = np.fromfile(out, dtype="<f4") if r.returncode == 0 else np.zeros(0)
    check(np.array_equal(got, m.logits([1, 5, 9], kv_f16=True).astype(np.float32).reshape(-1)), "CLI logits")
    r = subprocess.run(cli + ["dequant", path, "blk.0.attn_q.weight", "--out", out], capture_output=True)
    got = np.fromfile(out, dtype="<f4") if r.returncode == 0 else np.zeros(0)
    check(np.array_equal(got, reference.dequantize_tensor(path, "blk.0.attn_q.weight")), "CLI dequant")
    r = subprocess.run(cli + ["generate", path, "--tokens", "1,5", "-n", "4"], capture_output=True, text=True)
    toks, want = [1, 5], []
    for _ in range(4):
        want.append(int(np.argmax(m.logits(toks)[-1])))
        toks.append(want[-1])
    check(r.returncode == 0 and r.stdout.split()[:4] == [str(t) for t in want], "CLI generate: greedy ids")
    r = subprocess.run(cli + ["logits", os.path.join(TMP, "ref_bad.gguf"), "--tokens", "1", "--out", out],
                       capture_output=True, text=True)
    check(r.returncode != 0 and "Traceback" not in r.stderr, "CLI: a broken file is a one-line error")


def main():
    test_reader()
    test_hand_blocks()
    test_random_blocks()
    test_forward()
    print("FAIL: %d checks" % len(FAILS) if FAILS else "PASS")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
