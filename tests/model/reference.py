"""An independent reference implementation of GGUF models in Python + NumPy.

It shares no code with sov: its own GGUF reader, its own dequantizers (vectorised, and
bit-exact in float32 with the block formats' definitions, so they equal sov's
src/quant/dequant.c value for value), and a plain forward pass of the llama / mistral /
qwen2 architectures computed in float64. Tests compare sov's logits with these.

    m = Model(path); m.logits([1, 2, 3], kv_f16=True, act_q8=False)
                                                         -> float64 [n_tokens, n_vocab]
    dequantize_tensor(path, name)                        -> float32, file element order

CLI:
    reference.py logits MODEL --tokens 1,2,3 [--kv-f16] --out FILE   (float32 LE rows)
    reference.py dequant MODEL NAME --out FILE
    reference.py generate MODEL --tokens 1,2,3 -n N                  (greedy ids)
"""
import argparse
import math
import struct
import sys

import numpy as np

# ---- GGUF reading -------------------------------------------------------------------

_SCALARS = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "<u1", 10: "<u8",
            11: "<i8", 12: "<f8"}
STRING, ARRAY = 8, 9

# type id -> (name, values per block, bytes per block)
TYPES = {0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20), 6: ("Q5_0", 32, 22),
         7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176),
         14: ("Q6_K", 256, 210), 30: ("BF16", 1, 2)}


class GGUF:
    """The metadata and tensor table of a GGUF v2/v3 file; tensor data via memmap."""

    def __init__(self, path):
        self.path = path
        self.data = np.memmap(path, dtype=np.uint8, mode="r")
        self.pos = 0
        if bytes(self.data[:4]) != b"GGUF":
            raise ValueError("%s: not a GGUF file" % path)
        self.pos = 4
        version = self._u32()
        if version not in (2, 3):
            raise ValueError("%s: GGUF version %d" % (path, version))
        n_tensors, n_kv = self._u64(), self._u64()
        self.kv = {}
        for _ in range(n_kv):
            key = self._str()
            self.kv[key] = self._value(self._u32())
        self.tensors = {}
        for _ in range(n_tensors):
            name = self._str()
            n_dims = self._u32()
            ne = [self._u64() for _ in range(n_dims)]
            typ = self._u32()
            off = self._u64()
            self.tensors[name] = (ne, typ, off)
        align = int(self.kv.get("general.alignment", 32))
        self.data_start = (self.pos + align - 1) // align * align

    def _take(self, n):
        b = bytes(self.data[self.pos:self.pos + n])
        if len(b) != n:
            raise ValueError("truncated file")
        self.pos += n
        return b

    def _u32(self):
        return struct.unpack("<I", self._take(4))[0]

    def _u64(self):
        return struct.unpack("<Q", self._take(8))[0]

    def _str(self):
        return self._take(self._u64()).decode("utf-8", errors="surrogateescape")

    def _value(self, t):
        if t in _SCALARS:
            v = np.frombuffer(self._take(np.dtype(_SCALARS[t]).itemsize), dtype=_SCALARS[t])[0]
            return bool(v) if t == 7 else v.item()
        if t == STRING:
            return self._str()
        if t == ARRAY:
            it, n = self._u32(), self._u64()
            if it in _SCALARS:
                dt = np.dtype(_SCALARS[it])
                return np.frombuffer(self._take(dt.itemsize * n), dtype=dt).copy()
            return [self._value(it) for _ in range(n)]
        raise ValueError("unknown value type %d" % t)

    def raw(self, name):
        ne, typ, off = self.tensors[name]
        if typ not in TYPES:
            raise ValueError("tensor %s has type id %d, which the reference does not know" % (name, typ))
        _, bs, ts = TYPES[typ]
        n = int(np.prod(ne))
        start = self.data_start + off
        return ne, typ, self.data[start:start + n // bs * ts]


# ---- dequantization (float32, the formats' definitions operation for operation) ------

def _f16(b):
    return b.view(np.float16).astype(np.float32)


def _blocks(raw, ts):
    return np.asarray(raw).reshape(-1, ts)


def _deq_q4_0(raw):
    b = _blocks(raw, 18)
    d = _f16(b[:, 0:2].copy()).reshape(-1, 1)
    qs = b[:, 2:18]
    lo = (qs & 0x0F).astype(np.int32) - 8
    hi = (qs >> 4).astype(np.int32) - 8
    return (np.concatenate([lo, hi], axis=1).astype(np.float32) * d).reshape(-1)


def _deq_q4_1(raw):
    b = _blocks(raw, 20)
    d = _f16(b[:, 0:2].copy()).reshape(-1, 1)
    m = _f16(b[:, 2:4].copy()).reshape(-1, 1)
    qs = b[:, 4:20]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32)
    return (q * d + m).reshape(-1)


def _qh_bits(qh_bytes):
    qh = qh_bytes.copy().view("<u4").reshape(-1, 1)
    j = np.arange(32, dtype=np.uint32).reshape(1, -1)
    return ((qh >> j) & 1).astype(np.int32)  # bit j of qh belongs to value j


def _deq_q5_0(raw):
    b = _blocks(raw, 22)
    d = _f16(b[:, 0:2].copy()).reshape(-1, 1)
    bits = _qh_bits(b[:, 2:6])
    qs = b[:, 6:22]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int32) | (bits << 4)
    return ((q - 16).astype(np.float32) * d).reshape(-1)


def _deq_q5_1(raw):
    b = _blocks(raw, 24)
    d = _f16(b[:, 0:2].copy()).reshape(-1, 1)
    m = _f16(b[:, 2:4].copy()).reshape(-1, 1)
    bits = _qh_bits(b[:, 4:8])
    qs = b[:, 8:24]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int32) | (bits << 4)
    return (q.astype(np.float32) * d + m).reshape(-1)


def _deq_q8_0(raw):
    b = _blocks(raw, 34)
    d = _f16(b[:, 0:2].copy()).reshape(-1, 1)
    q = b[:, 2:34].copy().view(np.int8).astype(np.float32)
    return (q * d).reshape(-1)


def _k_scales(sc):
    """6-bit scales and mins of the 8 sub-blocks from the 12 packed bytes: [nb, 8] each."""
    sc = sc.astype(np.int32)
    s = np.empty((sc.shape[0], 8), np.int32)
    m = np.empty((sc.shape[0], 8), np.int32)
    s[:, :4] = sc[:, 0:4] & 63
    m[:, :4] = sc[:, 4:8] & 63
    s[:, 4:] = (sc[:, 8:12] & 0x0F) | ((sc[:, 0:4] >> 6) << 4)
    m[:, 4:] = (sc[:, 8:12] >> 4) | ((sc[:, 4:8] >> 6) << 4)
    return s, m


def _deq_q4_K(raw):
    b = _blocks(raw, 144)
    d = _f16(b[:, 0:2].copy()).reshape(-1, 1)
    dmin = _f16(b[:, 2:4].copy()).reshape(-1, 1)
    s, m = _k_scales(b[:, 4:16])
    d_sub = d * s.astype(np.float32)         # [nb, 8]  (d * sc) in float32
    m_sub = dmin * m.astype(np.float32)
    qs = b[:, 16:144].reshape(-1, 4, 32)     # 4 groups of 32 bytes = 64 values each
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=2).reshape(-1, 8, 32).astype(np.float32)
    return (d_sub[:, :, None] * q - m_sub[:, :, None]).reshape(-1)


def _deq_q5_K(raw):
    b = _blocks(raw, 176)
    d = _f16(b[:, 0:2].copy()).reshape(-1, 1)
    dmin = _f16(b[:, 2:4].copy()).reshape(-1, 1)
    s, m = _k_scales(b[:, 4:16])
    d_sub = d * s.astype(np.float32)
    m_sub = dmin * m.astype(np.float32)
    qh = b[:, 16:48].astype(np.int32)        # [nb, 32]
    qs = b[:, 48:176].reshape(-1, 4, 32).astype(np.int32)
    out = np.empty((b.shape[0], 8, 32), np.float32)
    for g in range(4):
        lo = (qs[:, g] & 0x0F) + np.where(qh & (1 << (2 * g)), 16, 0)
        hi = (qs[:, g] >> 4) + np.where(qh & (1 << (2 * g + 1)), 16, 0)
        out[:, 2 * g] = lo.astype(np.float32)
        out[:, 2 * g + 1] = hi.astype(np.float32)
    return (d_sub[:, :, None] * out - m_sub[:, :, None]).reshape(-1)


def _deq_q6_K(raw):
    b = _blocks(raw, 210)
    ql = b[:, 0:128].astype(np.int32)
    qh = b[:, 128:192].astype(np.int32)
    sc = b[:, 192:208].copy().view(np.int8).astype(np.float32)
    d = _f16(b[:, 208:210].copy()).reshape(-1, 1)
    out = np.empty((b.shape[0], 256), np.float32)
    for half in range(2):
        l = ql[:, 64 * half:64 * half + 64]
        h = qh[:, 32 * half:32 * half + 32]
        q1 = ((l[:, 0:32] & 0xF) | (((h >> 0) & 3) << 4)) - 32
        q2 = ((l[:, 32:64] & 0xF) | (((h >> 2) & 3) << 4)) - 32
        q3 = ((l[:, 0:32] >> 4) | (((h >> 4) & 3) << 4)) - 32
        q4 = ((l[:, 32:64] >> 4) | (((h >> 6) & 3) << 4)) - 32
        for k, q in enumerate((q1, q2, q3, q4)):
            # value l of this quarter belongs to sub-block 8*half + 2*k + l // 16
            s = np.repeat(sc[:, 8 * half + 2 * k:8 * half + 2 * k + 2], 16, axis=1)
            out[:, 128 * half + 32 * k:128 * half + 32 * k + 32] = (d * s) * q.astype(np.float32)
    return out.reshape(-1)


def dequantize(typ, raw):
    if typ == 0:
        return np.asarray(raw).copy().view("<f4")
    if typ == 1:
        return np.asarray(raw).copy().view("<f2").astype(np.float32)
    if typ == 30:
        u = np.asarray(raw).copy().view("<u2").astype(np.uint32) << 16
        return u.view(np.float32)
    fn = {2: _deq_q4_0, 3: _deq_q4_1, 6: _deq_q5_0, 7: _deq_q5_1, 8: _deq_q8_0, 12: _deq_q4_K, 13: _deq_q5_K,
          14: _deq_q6_K}.get(typ)
    if fn is None:
        raise ValueError("type id %d is not supported by the reference" % typ)
    return fn(raw)


def dequantize_tensor(path, name):
    g = path if isinstance(path, GGUF) else GGUF(path)
    ne, typ, raw = g.raw(name)
    return dequantize(typ, raw)


# ---- the model -----------------------------------------------------------------------

class Model:
    def __init__(self, path):
        g = self.g = GGUF(path)
        arch = self.arch = g.kv["general.architecture"]
        if arch not in ("llama", "mistral", "qwen2"):
            raise ValueError("architecture %s" % arch)
        kv = lambda k, d=None: g.kv.get("%s.%s" % (arch, k), d)
        self.n_embd = int(kv("embedding_length"))
        self.n_layer = int(kv("block_count"))
        self.n_head = int(kv("attention.head_count"))
        self.n_head_kv = int(kv("attention.head_count_kv", self.n_head))
        self.head_dim = int(kv("attention.key_length", self.n_embd // self.n_head))
        self.n_rot = int(kv("rope.dimension_count", self.head_dim))
        self.eps = float(kv("attention.layer_norm_rms_epsilon", 1e-6 if arch == "qwen2" else 1e-5))
        self.base = float(kv("rope.freq_base", 10000.0))
        self.neox = arch == "qwen2"
        stype = kv("rope.scaling.type", "none")
        factor = float(kv("rope.scaling.factor", 1.0))
        self.freq_scale = 1.0 / factor if stype in ("linear", "yarn") and factor not in (0.0, 1.0) else 1.0
        self.yarn = stype == "yarn" and self.freq_scale != 1.0
        self.n_ctx_orig = int(kv("rope.scaling.original_context_length", kv("context_length", 2048)))
        self.cache = {}
        emb_ne = g.tensors["token_embd.weight"][0]
        self.n_vocab = int(emb_ne[1])
        self.freq_factors = self._vec("rope_freqs.weight") if "rope_freqs.weight" in g.tensors else None

    def _mat(self, name):
        """Rows x cols float64 matrix (GGUF ne = [cols, rows])."""
        if name not in self.cache:
            ne, typ, raw = self.g.raw(name)
            self.cache[name] = dequantize(typ, raw).astype(np.float64).reshape(int(ne[1]), int(ne[0]))
        return self.cache[name]

    def _vec(self, name):
        ne, typ, raw = self.g.raw(name)
        return dequantize(typ, raw).astype(np.float64)

    def _has(self, name):
        return name in self.g.tensors

    def _mv(self, name, x):
        """W @ x. With act_q8 set and a quantized W, x is first rounded the way llama.cpp-style
        engines quantize activations: blocks of 32 (256 for the k-quants) as int8 with scale
        max|x| / 127, rounded half to even."""
        typ = self.g.tensors[name][1]
        if self.act_q8 and typ not in (0, 1, 30):
            bs = 256 if typ in (12, 13, 14) else 32
            xb = x.astype(np.float32).reshape(-1, bs)
            d = np.abs(xb).max(axis=1, keepdims=True) / np.float32(127.0)
            inv = np.where(d != 0, np.float32(1.0) / np.where(d != 0, d, 1), 0).astype(np.float32)
            x = (np.rint(xb * inv) * d).astype(np.float64).reshape(-1)
        return self._mat(name) @ x

    def rope_angles(self, pos):
        """cos, sin [n_rot/2] for one position (ggml's rope with yarn / linear / freq factors)."""
        half = self.n_rot // 2
        j = np.arange(half, dtype=np.float64)
        theta_extrap = pos * self.base ** (-2.0 * j / self.n_rot)
        if self.freq_factors is not None:
            theta_extrap = theta_extrap / self.freq_factors[:half]
        theta_interp = self.freq_scale * theta_extrap
        mscale = 1.0
        if self.yarn:
            def corr_dim(n_rot_beta):
                return self.n_rot * math.log(self.n_ctx_orig / (n_rot_beta * 2 * math.pi)) / (2 * math.log(self.base))
            low = max(0.0, math.floor(corr_dim(32.0)))
            high = min(self.n_rot - 1.0, math.ceil(corr_dim(1.0)))
            y = (j - low) / max(0.001, high - low)
            ramp = 1.0 - np.clip(y, 0.0, 1.0)  # ext_factor 1
            theta = theta_interp * (1 - ramp) + theta_extrap * ramp
            mscale = 1.0 + 0.1 * math.log(1.0 / self.freq_scale)
        else:
            theta = theta_interp
        return np.cos(theta) * mscale, np.sin(theta) * mscale

    def rope(self, x, pos):
        """x: [n_heads, head_dim] rotated in place for position pos."""
        c, s = self.rope_angles(pos)
        half = self.n_rot // 2
        if self.neox:
            i0, i1 = np.arange(half), np.arange(half) + half
        else:
            i0, i1 = 2 * np.arange(half), 2 * np.arange(half) + 1
        a, b = x[:, i0].copy(), x[:, i1].copy()
        x[:, i0] = a * c - b * s
        x[:, i1] = a * s + b * c
        return x

    def rmsnorm(self, x, w):
        return x / np.sqrt(np.mean(x * x) + self.eps) * w

    def logits(self, tokens, kv_f16=True, act_q8=False):
        self.act_q8 = act_q8
        E, H, Hkv, D = self.n_embd, self.n_head, self.n_head_kv, self.head_dim
        rep = H // Hkv
        emb = self._mat("token_embd.weight")
        out_name = "output.weight" if self._has("output.weight") else "token_embd.weight"
        K = [[] for _ in range(self.n_layer)]
        V = [[] for _ in range(self.n_layer)]
        result = np.zeros((len(tokens), self.n_vocab))
        for t, tok in enumerate(tokens):
            x = emb[tok].copy()
            for il in range(self.n_layer):
                p = "blk.%d." % il
                xb = self.rmsnorm(x, self._vec(p + "attn_norm.weight"))
                q = self._mv(p + "attn_q.weight", xb)
                k = self._mv(p + "attn_k.weight", xb)
                v = self._mv(p + "attn_v.weight", xb)
                if self._has(p + "attn_q.bias"):
                    q += self._vec(p + "attn_q.bias")
                    k += self._vec(p + "attn_k.bias")
                    v += self._vec(p + "attn_v.bias")
                q = self.rope(q.reshape(H, D), t)
                k = self.rope(k.reshape(Hkv, D), t)
                v = v.reshape(Hkv, D)
                if kv_f16:
                    k = k.astype(np.float16).astype(np.float64)
                    v = v.astype(np.float16).astype(np.float64)
                K[il].append(k)
                V[il].append(v)
                keys = np.stack(K[il])    # [t+1, Hkv, D]
                vals = np.stack(V[il])
                att = np.empty((H, D))
                for h in range(H):
                    g = h // rep
                    sc = keys[:, g, :] @ q[h] / math.sqrt(D)
                    sc = np.exp(sc - sc.max())
                    sc /= sc.sum()
                    att[h] = sc @ vals[:, g, :]
                x = x + self._mv(p + "attn_output.weight", att.reshape(-1))
                xb = self.rmsnorm(x, self._vec(p + "ffn_norm.weight"))
                gate = self._mv(p + "ffn_gate.weight", xb)
                up = self._mv(p + "ffn_up.weight", xb)
                x = x + self._mv(p + "ffn_down.weight", gate / (1.0 + np.exp(-gate)) * up)
            result[t] = self._mv(out_name, self.rmsnorm(x, self._vec("output_norm.weight")))
        return result


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("logits")
    a.add_argument("model")
    a.add_argument("--tokens", required=True)
    a.add_argument("--kv-f16", action="store_true")
    a.add_argument("--out", required=True)
    b = sub.add_parser("dequant")
    b.add_argument("model")
    b.add_argument("name")
    b.add_argument("--out", required=True)
    c = sub.add_parser("generate")
    c.add_argument("model")
    c.add_argument("--tokens", required=True)
    c.add_argument("-n", type=int, default=16)
    args = ap.parse_args(argv)
    if args.cmd == "logits":
        m = Model(args.model)
        toks = [int(t) for t in args.tokens.split(",")]
        m.logits(toks, kv_f16=args.kv_f16).astype("<f4").tofile(args.out)
    elif args.cmd == "dequant":
        dequantize_tensor(args.model, args.name).astype("<f4").tofile(args.out)
    else:
        m = Model(args.model)
        toks = [int(t) for t in args.tokens.split(",")]
        out = []
        for _ in range(args.n):
            nxt = int(np.argmax(m.logits(toks)[-1]))
            out.append(nxt)
            toks.append(nxt)
        print(" ".join(map(str, out)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
