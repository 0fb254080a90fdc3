#!/usr/bin/python3
"""reference.py - an independent reference implementation of GGUF models in Python + NumPy.

It shares nothing with sov's C code: its own GGUF reader, its own dequantizers and a plain
forward pass of the llama / mistral / qwen2 / qwen3 / gemma3 / phi3 / exaone4 architectures
and their mixture-of-experts forms (Mixtral: llama with experts; qwen3moe) (class Model; from
the published model definitions: transformers' modeling_gemma3.py, modeling_phi3.py,
modeling_exaone4.py, and the conventions llama.cpp's converter writes into GGUF: Gemma's
(1 + w) norm weights are stored with the 1 added, so every norm here is x / rms * w) and of
the bert / nomic-bert encoders (class Encoder). Tests hold sov (and this file
itself) against it, so it is written to be read: the forward pass is one straight line
from the embedding to the logits, over all positions of a chunk at once (causal mask),
with shapes in the comments.

Precision. Dequantization is float32 and bit-exact with the formats' definitions (the
float operations in the definitions' order, e.g. q6_K is (d * scale) * q, q4_K is
(d*sc)*q - (dmin*m); NumPy never fuses a*b+c), so it equals src/quant/dequant.c value
for value. The forward pass runs in float64: the reference's own rounding (~1e-16
relative) is then negligible next to a float32 engine's (~1e-7), so whatever separates
an engine from this file is the engine's own rounding, and near-ties between two tokens
can be told apart from real disagreements. Weights are cached dequantized as float64
(8 bytes a parameter; above SOV_REF_F64_LIMIT_MB, default 4096, as float32 and widened
in row chunks at each product).

Optional engine effects, off by default:
  kv_f16  keys and values rounded to float16 before attention (sov's default KV cache,
          and llama.cpp's);
  act_q8  activations entering a product with a quantized weight rounded the way sov
          quantizes them (Q8A / Q8K / Q8P: blocks of 32, or 256 for the k-quants,
          d = max|x| / 127 in float32, q = round-half-even(x * (1/d)), value q * d).

Library use:
    g = GGUF(path); g.kv["llama.block_count"]; g.tensors["output.weight"].ne
    dequantize_tensor(path_or_GGUF, name)          -> float32, file element order
    m = Model(path)
    m.logits([1, 2, 3], kv_f16=False)               -> float64 [n_tokens, n_vocab]
    cache = m.new_cache(); m.forward(ids, cache)    -> logits of ids, appended to cache
    m.generate([1, 2, 3], n)                        -> (greedy ids, [top1 - top2 logit gap])

CLI (see --help):
    reference.py logits MODEL --tokens 1,2,3 [--kv-f16] [--act-q8] --out FILE
        float32 little-endian [n_tokens][n_vocab]
    reference.py dequant MODEL TENSOR_NAME --out FILE
        the tensor as float32 little-endian, in file element order
    reference.py generate MODEL --tokens 1,2,3 -n N [--kv-f16] [--margins]
        greedy token ids, one line, space separated
"""
import argparse
import math
import os
import struct
import sys

import numpy as np

# ---- GGUF ----------------------------------------------------------------------------
# File layout (little-endian): "GGUF", u32 version (2 or 3), i64 n_tensors, i64 n_kv;
# n_kv x (string key, i32 value type, value); n_tensors x (string name, u32 n_dims,
# n_dims x i64 ne, i32 ggml type, u64 offset); padding to general.alignment (u32, default
# 32, a power of two); the data section, each tensor at data_start + offset. A string is
# u64 length + bytes (no terminator); an array is i32 element type, u64 count, elements;
# a bool is one byte.

GGUF_MAGIC = b"GGUF"
GGUF_DEFAULT_ALIGNMENT = 32
GGML_MAX_DIMS = 4

# value type id -> (name, little-endian numpy dtype; None for string and array)
VALUE_TYPES = {
    0: ("UINT8", "<u1"), 1: ("INT8", "<i1"), 2: ("UINT16", "<u2"), 3: ("INT16", "<i2"),
    4: ("UINT32", "<u4"), 5: ("INT32", "<i4"), 6: ("FLOAT32", "<f4"), 7: ("BOOL", "<u1"),
    8: ("STRING", None), 9: ("ARRAY", None), 10: ("UINT64", "<u8"), 11: ("INT64", "<i8"),
    12: ("FLOAT64", "<f8"),
}
T_BOOL, T_STRING, T_ARRAY = 7, 8, 9

# ggml type id -> (name, values per block, bytes per block): every type a file may hold,
# so any file parses and an unsupported type is named in the error.
GGML_TYPES = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 36),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292), 16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98), 19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2),
    26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66), 39: ("MXFP4", 32, 17),
    40: ("NVFP4", 64, 36), 41: ("Q1_0", 128, 18), 42: ("Q2_0", 64, 18),
}
TYPE_IDS = {v[0]: k for k, v in GGML_TYPES.items()}
FLOAT_TYPES = {0, 1, 30}                      # F32, F16, BF16: no activation quantization
K_QUANTS = {12, 13, 14}                       # 256-value super-blocks


class GGUFError(ValueError):
    """A file this reader cannot (or must not) read; the message says why."""


def type_name(type_id):
    return GGML_TYPES[type_id][0] if type_id in GGML_TYPES else "unknown(%d)" % type_id


class TensorInfo:
    """One tensor of the table: ne[0] is the contiguous dimension, so a matrix with
    ne = [K, N] is N rows of K values."""

    def __init__(self, name, ne, type_id, offset):
        self.name, self.ne, self.type, self.offset = name, tuple(ne), type_id, offset
        self.type_name, self.block_size, self.type_size = GGML_TYPES[type_id]
        self.n_elements = int(np.prod(self.ne, dtype=np.uint64)) if self.ne else 1
        self.row_bytes = self.ne[0] // self.block_size * self.type_size if self.ne else self.type_size
        self.n_bytes = self.n_elements // self.block_size * self.type_size
        self.data = None                      # uint8 memmap view, set by the reader

    def __repr__(self):
        return "TensorInfo(%r, ne=%r, %s, offset=%d)" % (self.name, list(self.ne), self.type_name, self.offset)


class _Cursor:
    """Bounds-checked little-endian reads from a uint8 buffer."""

    def __init__(self, buf, path):
        self.buf, self.pos, self.path = buf, 0, path

    def take(self, n, what):
        if n < 0 or self.pos + n > len(self.buf):
            raise GGUFError("%s: truncated: %s needs %d bytes at offset %d, the file has %d" %
                            (self.path, what, n, self.pos, len(self.buf)))
        b = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return b

    def unpack(self, fmt, what):
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))[0]

    def string(self, what):
        n = self.unpack("Q", what + " length")
        return self.take(n, what).decode("utf-8", errors="surrogateescape")

    def remaining(self):
        return len(self.buf) - self.pos


class GGUF:
    """A GGUF v2/v3 file: .version, .kv (key -> value; numeric arrays as NumPy arrays,
    bool arrays as bool arrays, string arrays as lists), .kv_types (key -> value type id,
    or (ARRAY, element type id)), .tensors (name -> TensorInfo, in file order),
    .alignment, .data_start. Tensor bytes are memory-mapped, never copied."""

    def __init__(self, path):
        self.path = path
        size = os.path.getsize(path)
        self.buf = np.memmap(path, dtype=np.uint8, mode="r") if size else np.zeros(0, np.uint8)
        c = _Cursor(self.buf, path)
        if c.take(4, "magic") != GGUF_MAGIC:
            raise GGUFError("%s: not a GGUF file (bad magic)" % path)
        self.version = c.unpack("I", "version")
        if self.version not in (2, 3):
            if self.version & 0xFFFF == 0 and self.version != 0:
                raise GGUFError("%s: big-endian GGUF files are not supported" % path)
            raise GGUFError("%s: GGUF version %d is not supported (2 and 3 are)" % (path, self.version))
        n_tensors = c.unpack("q", "tensor count")
        n_kv = c.unpack("q", "key-value count")
        # every entry takes at least 8 bytes, which bounds absurd counts before any loop
        if n_tensors < 0 or n_kv < 0 or n_tensors > c.remaining() // 8 or n_kv > c.remaining() // 8:
            raise GGUFError("%s: implausible counts: %d tensors, %d key-value pairs" % (path, n_tensors, n_kv))
        self.kv, self.kv_types = {}, {}
        for _ in range(n_kv):
            key = c.string("key")
            if key in self.kv:
                raise GGUFError("%s: duplicate key %r" % (path, key))
            t = c.unpack("i", "value type of %r" % key)
            self.kv[key], self.kv_types[key] = self._value(c, t, key)
        self.alignment = GGUF_DEFAULT_ALIGNMENT
        if "general.alignment" in self.kv:
            a = self.kv["general.alignment"]
            if self.kv_types["general.alignment"] != 4 or a == 0 or a & (a - 1):
                raise GGUFError("%s: general.alignment must be a u32 power of two, not %r" % (path, a))
            self.alignment = a
        self.tensors = {}
        for _ in range(n_tensors):
            self._tensor_info(c)
        self.data_start = -(-c.pos // self.alignment) * self.alignment
        for ti in self.tensors.values():
            start = self.data_start + ti.offset
            if ti.offset % self.alignment:
                raise GGUFError("%s: tensor %r: offset %d is not a multiple of the alignment %d" %
                                (path, ti.name, ti.offset, self.alignment))
            if start + ti.n_bytes > size:
                raise GGUFError("%s: tensor %r: data [%d, %d) lies past the end of the file (%d bytes)" %
                                (path, ti.name, start, start + ti.n_bytes, size))
            ti.data = self.buf[start:start + ti.n_bytes]

    def _value(self, c, t, key):
        """(value, type) of one value of type t."""
        if t == T_STRING:
            return c.string("string value of %r" % key), t
        if t == T_ARRAY:
            et = c.unpack("i", "array type of %r" % key)
            n = c.unpack("Q", "array length of %r" % key)
            if et in VALUE_TYPES and VALUE_TYPES[et][1] is not None:
                dt = np.dtype(VALUE_TYPES[et][1])
                if n > c.remaining() // dt.itemsize:
                    raise GGUFError("%s: truncated: array %r of %d values" % (self.path, key, n))
                a = np.frombuffer(c.take(n * dt.itemsize, "array %r" % key), dtype=dt).copy()
                return (a != 0 if et == T_BOOL else a), (T_ARRAY, et)
            if et not in (T_STRING, T_ARRAY):
                raise GGUFError("%s: key %r: unknown array element type %d" % (self.path, key, et))
            if n > c.remaining() // 8:        # a string or an array takes at least 8 bytes
                raise GGUFError("%s: truncated: array %r of %d values" % (self.path, key, n))
            if et == T_STRING:                # fast path (a vocabulary has 250k of them)
                return self._strings(c, n, key), (T_ARRAY, et)
            return [self._value(c, et, key)[0] for _ in range(n)], (T_ARRAY, et)
        if t not in VALUE_TYPES:
            raise GGUFError("%s: key %r: unknown value type %d" % (self.path, key, t))
        dt = np.dtype(VALUE_TYPES[t][1])
        v = np.frombuffer(c.take(dt.itemsize, "value of %r" % key), dtype=dt)[0].item()
        return (v != 0 if t == T_BOOL else v), t

    def _strings(self, c, n, key):
        """n strings (u64 length + bytes each) read straight from the buffer: the same
        checks and values as n c.string() calls, without a copy per field."""
        mv, pos, end, out = memoryview(c.buf), c.pos, len(c.buf), []
        for _ in range(n):
            if end - pos < 8:
                raise GGUFError("%s: truncated: string array %r at offset %d" % (self.path, key, pos))
            ln = int.from_bytes(mv[pos:pos + 8], "little")
            pos += 8
            if ln > end - pos:
                raise GGUFError("%s: truncated: a string of %d bytes in array %r at offset %d" %
                                (self.path, ln, key, pos))
            out.append(str(mv[pos:pos + ln], "utf-8", "surrogateescape"))
            pos += ln
        c.pos = pos
        return out

    def _tensor_info(self, c):
        name = c.string("tensor name")
        if name in self.tensors:
            raise GGUFError("%s: duplicate tensor %r" % (self.path, name))
        n_dims = c.unpack("I", "dimension count of %r" % name)
        if n_dims > GGML_MAX_DIMS:
            raise GGUFError("%s: tensor %r has %d dimensions (at most %d)" % (self.path, name, n_dims, GGML_MAX_DIMS))
        ne = [c.unpack("q", "shape of %r" % name) for _ in range(n_dims)]
        if any(n < 0 for n in ne):
            raise GGUFError("%s: tensor %r has a negative dimension %r" % (self.path, name, ne))
        t = c.unpack("i", "type of %r" % name)
        if t not in GGML_TYPES:
            raise GGUFError("%s: tensor %r has type id %d, which is no ggml type" % (self.path, name, t))
        offset = c.unpack("Q", "offset of %r" % name)
        bs = GGML_TYPES[t][1]
        if ne and ne[0] % bs:
            raise GGUFError("%s: tensor %r: row of %d values is not a multiple of %s's block of %d" %
                            (self.path, name, ne[0], type_name(t), bs))
        if math.prod(ne) > len(self.buf) * bs:
            raise GGUFError("%s: tensor %r: shape %r is larger than the file" % (self.path, name, ne))
        self.tensors[name] = TensorInfo(name, ne, t, offset)

    def tensor(self, name):
        if name not in self.tensors:
            raise KeyError("%s: no tensor %r" % (self.path, name))
        return self.tensors[name]


# ---- dequantization --------------------------------------------------------------------
# Each function takes the raw bytes of whole blocks (uint8 [nb * type_size]) and returns
# float32 [nb * block_size] in file order. Integer work in int32, then float32 products
# in the definitions' order.

def _blocks(raw, type_size):
    return np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1, type_size)


def _half(b, col):
    """The float16 at byte column col of every block, as float32 [nb, 1]."""
    return np.ascontiguousarray(b[:, col:col + 2]).view("<f2").astype(np.float32)


def _nibbles(qs):
    """16 bytes per block -> 32 values: low nibbles are values 0-15, high nibbles 16-31."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int32)


def _fifth_bits(qh_bytes):
    """The 4 qh bytes of q5_0/q5_1 blocks -> [nb, 32]: bit i of the u32 is value i's 5th bit."""
    qh = np.ascontiguousarray(qh_bytes).view("<u4").astype(np.int64)
    return ((qh >> np.arange(32)) & 1).astype(np.int32)


def deq_q4_0(raw):
    b = _blocks(raw, 18)
    d = _half(b, 0)
    return ((_nibbles(b[:, 2:18]) - 8).astype(np.float32) * d).reshape(-1)


def deq_q4_1(raw):
    b = _blocks(raw, 20)
    d, m = _half(b, 0), _half(b, 2)
    return (_nibbles(b[:, 4:20]).astype(np.float32) * d + m).reshape(-1)


def deq_q5_0(raw):
    b = _blocks(raw, 22)
    d = _half(b, 0)
    q = _nibbles(b[:, 6:22]) | (_fifth_bits(b[:, 2:6]) << 4)
    return ((q - 16).astype(np.float32) * d).reshape(-1)


def deq_q5_1(raw):
    b = _blocks(raw, 24)
    d, m = _half(b, 0), _half(b, 2)
    q = _nibbles(b[:, 8:24]) | (_fifth_bits(b[:, 4:8]) << 4)
    return (q.astype(np.float32) * d + m).reshape(-1)


def deq_q8_0(raw):
    b = _blocks(raw, 34)
    d = _half(b, 0)
    return (np.ascontiguousarray(b[:, 2:34]).view(np.int8).astype(np.float32) * d).reshape(-1)


def _k_scale_min(s12):
    """The 12 packed scale bytes of q4_K/q5_K -> 6-bit (scale, min) of sub-blocks 0-7,
    each int32 [nb, 8]. Sub-blocks 0-3: low 6 bits of bytes 0-3 (scales) and 4-7 (mins);
    4-7: low / high nibble of bytes 8-11, with the top 2 bits of bytes 0-3 / 4-7 above."""
    s = s12.astype(np.int32)
    sc = np.concatenate([s[:, 0:4] & 63, (s[:, 8:12] & 0x0F) | ((s[:, 0:4] >> 6) << 4)], axis=1)
    mn = np.concatenate([s[:, 4:8] & 63, (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)], axis=1)
    return sc, mn


def _k_combine(b, q):
    """y = (d * sc) * q - (dmin * m) for q [nb, 8 sub-blocks, 32] of a q4_K/q5_K block."""
    d, dmin = _half(b, 0), _half(b, 2)
    sc, mn = _k_scale_min(b[:, 4:16])
    d_sub = (d * sc.astype(np.float32))[:, :, None]
    m_sub = (dmin * mn.astype(np.float32))[:, :, None]
    return (d_sub * q.astype(np.float32) - m_sub).reshape(-1)


def deq_q4_K(raw):
    # 4 groups of 32 bytes; group g holds sub-block 2g in its low nibbles, 2g+1 in its high
    b = _blocks(raw, 144)
    qs = b[:, 16:144].reshape(-1, 4, 32).astype(np.int32)
    q = np.stack([qs & 0x0F, qs >> 4], axis=2).reshape(-1, 8, 32)
    return _k_combine(b, q)


def deq_q5_K(raw):
    # as q4_K, plus a 5th bit: bit 2g of qh[l] for value l of sub-block 2g, bit 2g+1 for 2g+1
    b = _blocks(raw, 176)
    qh = b[:, 16:48].astype(np.int32)[:, None, :]          # [nb, 1, 32]
    qs = b[:, 48:176].reshape(-1, 4, 32).astype(np.int32)  # [nb, 4, 32]
    g = np.arange(4).reshape(1, 4, 1)
    lo = (qs & 0x0F) + ((qh >> (2 * g)) & 1) * 16
    hi = (qs >> 4) + ((qh >> (2 * g + 1)) & 1) * 16
    q = np.stack([lo, hi], axis=2).reshape(-1, 8, 32)
    return _k_combine(b, q)


def deq_q6_K(raw):
    # Two halves of 128 values; in half h, value 32k + l (k = 0..3, l = 0..31) takes 4 low
    # bits from ql[64h + l] (k = 0, 2: low / high nibble) or ql[64h + 32 + l] (k = 1, 3),
    # 2 high bits from qh[32h + l] >> 2k, and int8 scale scales[8h + 2k + l // 16].
    b = _blocks(raw, 210)
    ql = b[:, 0:128].reshape(-1, 2, 2, 32).astype(np.int32)   # [nb, half, 0-31 | 32-63, l]
    qh = b[:, 128:192].reshape(-1, 2, 1, 32).astype(np.int32)  # [nb, half, 1, l]
    low = np.stack([ql[:, :, 0] & 0x0F, ql[:, :, 1] & 0x0F, ql[:, :, 0] >> 4, ql[:, :, 1] >> 4], axis=2)
    high = (qh >> (2 * np.arange(4).reshape(1, 1, 4, 1))) & 3
    q = (low | (high << 4)) - 32                                # [nb, half, k, l]
    sc = np.ascontiguousarray(b[:, 192:208]).view(np.int8).astype(np.float32).reshape(-1, 2, 4, 2)
    sc = np.repeat(sc, 16, axis=3)                              # [nb, half, k, l]
    d = _half(b, 208).reshape(-1, 1, 1, 1)
    return ((d * sc) * q.astype(np.float32)).reshape(-1)


def deq_f32(raw):
    return np.ascontiguousarray(raw).view("<f4").astype(np.float32)


def deq_f16(raw):
    return np.ascontiguousarray(raw).view("<f2").astype(np.float32)


def deq_bf16(raw):
    return (np.ascontiguousarray(raw).view("<u2").astype(np.uint32) << 16).view(np.float32)


DEQUANTIZERS = {0: deq_f32, 1: deq_f16, 30: deq_bf16, 2: deq_q4_0, 3: deq_q4_1, 6: deq_q5_0, 7: deq_q5_1,
                8: deq_q8_0, 12: deq_q4_K, 13: deq_q5_K, 14: deq_q6_K}


def dequantize(type_id, raw, what="data"):
    """float32 values of raw bytes of type type_id (whole blocks)."""
    fn = DEQUANTIZERS.get(type_id)
    if fn is None:
        raise GGUFError("%s has type %s, which the reference cannot dequantize (it knows %s)" %
                        (what, type_name(type_id), ", ".join(type_name(t) for t in sorted(DEQUANTIZERS))))
    ts = GGML_TYPES[type_id][2]
    if len(raw) % ts:
        raise GGUFError("%s: %d bytes are not whole %s blocks" % (what, len(raw), type_name(type_id)))
    return fn(raw)


def dequantize_tensor(path_or_gguf, name):
    """A whole tensor as float32, flat, in file element order."""
    g = path_or_gguf if isinstance(path_or_gguf, GGUF) else GGUF(path_or_gguf)
    ti = g.tensor(name)
    return dequantize(ti.type, ti.data, "tensor %r" % name)


def quantize_activations_q8(x, block):
    """Rows of x rounded as sov's activation quantizers do (see the module comment):
    float32 math, result widened to float64. x: [n_rows, n] with n % block == 0."""
    xb = np.asarray(x, dtype=np.float32).reshape(x.shape[0], -1, block)
    d = np.abs(xb).max(axis=2, keepdims=True) / np.float32(127.0)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, np.float32(1.0) / d, np.float32(0.0)).astype(np.float32)
    q = np.rint(xb * inv)                                    # round half to even
    return (q * d).astype(np.float64).reshape(x.shape)


# ---- RoPE ----------------------------------------------------------------------------

def yarn_corr_dims(n_rot, n_ctx_orig, base, beta_fast=32.0, beta_slow=1.0):
    """ggml's YaRN correction range [low, high] of rotary pair indices: the dimension whose
    wavelength turns beta times over n_ctx_orig, floored / ceiled, clamped to [0, n_rot-1]."""
    def dim(n_turns):
        return n_rot * math.log(n_ctx_orig / (n_turns * 2 * math.pi)) / (2 * math.log(base))
    return max(0.0, math.floor(dim(beta_fast))), min(n_rot - 1.0, math.ceil(dim(beta_slow)))


def rope_angles(positions, n_rot, base, freq_scale=1.0, ext_factor=0.0, attn_factor=1.0, corr_dims=(0.0, 0.0),
                freq_factors=None):
    """cos, sin [n_positions, n_rot/2] of ggml's rope (rope_yarn): pair j at position p turns
    by theta_extrap = p * base^(-2j/n_rot) / freq_factors[j]; theta_interp = freq_scale *
    theta_extrap; with ext_factor != 0 (YaRN) theta blends the two by the ramp
    1 - clamp((j - low) / max(0.001, high - low), 0, 1) (times ext_factor) and both cos and
    sin are scaled by attn_factor * (1 + 0.1 ln(1 / freq_scale)), else by attn_factor."""
    pos = np.asarray(positions, dtype=np.float64).reshape(-1, 1)
    j = np.arange(n_rot // 2, dtype=np.float64)
    inv_freq = base ** (-2.0 * j / n_rot)
    if freq_factors is not None:
        inv_freq = inv_freq / np.asarray(freq_factors, dtype=np.float64)[:n_rot // 2]
    theta_extrap = pos * inv_freq
    theta_interp = freq_scale * theta_extrap
    mscale = attn_factor
    if ext_factor != 0.0:
        low, high = corr_dims
        ramp = (1.0 - np.clip((j - low) / max(0.001, high - low), 0.0, 1.0)) * ext_factor
        theta = theta_interp * (1 - ramp) + theta_extrap * ramp
        mscale *= 1.0 + 0.1 * math.log(1.0 / freq_scale)
    else:
        theta = theta_interp
    return np.cos(theta) * mscale, np.sin(theta) * mscale


def apply_rope(x, cos, sin, neox):
    """Rotates x [n_positions, n_heads, head_dim] (a new array is returned). Pair j is
    (x[2j], x[2j+1]) in the normal order (llama: HF->GGUF conversion permuted q/k for it)
    or (x[j], x[j + n_rot/2]) in the NeoX order (qwen2, qwen3); dimensions from n_rot on pass."""
    half = cos.shape[1]
    i0 = np.arange(half) if neox else 2 * np.arange(half)
    i1 = i0 + half if neox else i0 + 1
    c, s = cos[:, None, :], sin[:, None, :]
    a, b = x[:, :, i0], x[:, :, i1]
    y = x.copy()
    y[:, :, i0] = a * c - b * s
    y[:, :, i1] = a * s + b * c
    return y


# ---- the model ---------------------------------------------------------------------------

ARCHS = ("llama", "mistral", "qwen2", "qwen3", "qwen3moe", "qwen2moe", "deepseek2", "gemma3", "phi3", "exaone4")


class Cache:
    """Keys and values of the positions seen so far: per layer [n_past, n_head_kv, head_dim]."""

    def __init__(self, n_layer):
        self.k = [None] * n_layer
        self.v = [None] * n_layer
        self.n_past = 0


class Model:
    def __init__(self, path, f64_limit_bytes=None, n_ctx=None):
        g = self.g = GGUF(path) if not isinstance(path, GGUF) else path
        self.arch = g.kv.get("general.architecture")
        if self.arch not in ARCHS:
            raise GGUFError("%s: architecture %r is not supported (%s are)" % (g.path, self.arch, ", ".join(ARCHS)))
        a = self.arch

        def key(k, default=KeyError):
            full = "%s.%s" % (a, k)
            if full in g.kv:
                return g.kv[full]
            if default is KeyError:
                raise GGUFError("%s: missing key %s" % (g.path, full))
            return default

        # hyperparameters, as llama.cpp reads them
        self.n_embd = int(key("embedding_length"))
        self.n_layer = int(key("block_count"))
        # deepseek2 multi-token prediction (DeepSeek-V3, A.X K1; llama.cpp's
        # nextn_predict_layers): the last n_mtp blocks are MTP blocks (see mtp_logits), not
        # part of the forward pass; n_layer counts the others
        self.n_mtp = int(key("nextn_predict_layers", 0)) if a == "deepseek2" else 0
        if not 0 <= self.n_mtp < self.n_layer:
            raise GGUFError("%s: %d MTP blocks of %d" % (g.path, self.n_mtp, self.n_layer))
        self.n_layer -= self.n_mtp
        self.n_head = int(key("attention.head_count"))
        self.n_head_kv = int(key("attention.head_count_kv", self.n_head))
        moe_arch = a in ("qwen3moe", "qwen2moe", "deepseek2")
        self.n_ff = int(key("feed_forward_length", 0 if a in ("qwen3moe", "qwen2moe") else KeyError))
        # mixture of experts (Mixtral: llama with expert_count; Qwen3-MoE, Qwen2-MoE,
        # DeepSeek-V2/V3): the FFN of an MoE layer is n_expert SwiGLU experts of width
        # n_ff_exp and a router (see _moe), plus a shared expert (qwen2moe, deepseek2)
        self.n_expert = int(key("expert_count", KeyError if moe_arch else 0))
        self.n_expert_used = int(key("expert_used_count", 0)) if self.n_expert else 0
        self.n_ff_exp = int(key("expert_feed_forward_length", KeyError if moe_arch else self.n_ff))
        # Qwen2MoeSparseMoeBlock: softmax, no renormalisation (norm_topk_prob false, as
        # llama.cpp hard-codes it); DeepseekV3MoE: renormalised only when the file says so
        # (norm_topk_prob), times routed_scaling_factor
        self.expert_gating = 1 if a == "qwen2moe" else int(key("expert_gating_func", 1))
        self.expert_weights_norm = False if a == "qwen2moe" else bool(
            key("expert_weights_norm", a != "deepseek2"))
        self.expert_weights_scale = float(key("expert_weights_scale", 1.0)) if a == "deepseek2" else 1.0
        if self.expert_weights_scale == 0.0:
            self.expert_weights_scale = 1.0
        self.n_group = int(key("expert_group_count", 1)) if a == "deepseek2" else 1
        self.n_group_used = int(key("expert_group_used_count", self.n_group)) if a == "deepseek2" else 1
        self.n_dense_lead = int(key("leading_dense_block_count", 0)) if a == "deepseek2" else 0
        if a == "qwen2moe":
            self.n_ff_shexp = int(key("expert_shared_feed_forward_length", self.n_ff))
        elif a == "deepseek2":
            self.n_ff_shexp = int(key("expert_shared_count", 0)) * self.n_ff_exp
        else:
            self.n_ff_shexp = 0
        # tests may clear these (deepseek2's exp_probs_b, qwen2moe's shared-expert gate) to
        # show that they matter
        self.apply_bias = True
        self.shexp_gate = True
        # A.X K1 (AXK1DecoderLayer): post_mlp_layernorm, an RMSNorm of the MoE block's
        # output (routed + shared) before the residual add, in the layers that have
        # post_ffw_norm (its MoE layers); tests clear it to show that it matters
        self.apply_post_norm = True
        if self.n_expert and not 1 <= self.n_expert_used <= self.n_expert:
            raise GGUFError("%s: %d experts used of %d" % (g.path, self.n_expert_used, self.n_expert))
        if self.expert_gating not in (1, 2):
            raise GGUFError("%s: expert gating function %d is not supported" % (g.path, self.expert_gating))
        self.head_dim = int(key("attention.key_length", self.n_embd // self.n_head))
        # deepseek2 multi-head latent attention (DeepseekV3Attention; see _mla): the file's
        # key/value lengths are the latent cache row's (kv_lora_rank + rope, kv_lora_rank),
        # the per-head sizes key_length_mla (nope + rope) and value_length_mla
        self.mla = a == "deepseek2"
        if self.mla:
            self.q_lora = int(key("attention.q_lora_rank", 0))
            self.kv_lora = int(key("attention.kv_lora_rank"))
            self.qk_head = int(key("attention.key_length_mla"))
            self.v_head = int(key("attention.value_length_mla"))
        self.head_dim_v = int(key("attention.value_length", self.n_embd // self.n_head))
        self.n_rot = int(key("rope.dimension_count", self.head_dim))
        self.eps = float(key("attention.layer_norm_rms_epsilon"))
        if self.n_head <= 0 or self.n_head_kv <= 0 or self.n_head % self.n_head_kv:
            raise GGUFError("%s: %d heads cannot share %d KV heads" % (g.path, self.n_head, self.n_head_kv))
        if self.n_rot % 2 or self.n_rot > self.head_dim:
            raise GGUFError("%s: rope.dimension_count %d must be even and <= head size %d" %
                            (g.path, self.n_rot, self.head_dim))
        self.neox = a in ("qwen2", "qwen3", "qwen3moe", "qwen2moe", "gemma3", "phi3", "exaone4")
        # qwen3 and qwen3moe (transformers' Qwen3Attention), gemma3, exaone4: each head's q and k vector is
        # RMS-normalised over head_dim with its own weight (attn_q_norm / attn_k_norm), before
        # RoPE. Tests may clear apply_qk_norm to show that skipping the norm is detected.
        self.qk_norm = a in ("qwen3", "qwen3moe", "gemma3", "exaone4")
        self.apply_qk_norm = True
        # Gemma3DecoderLayer / Exaone4DecoderLayer: the attention and MLP outputs are
        # RMS-normalised (post_attention_norm, post_ffw_norm) before the residual add;
        # EXAONE 4 has no norm before them (its "post-LN" layer).
        self.post_norms = a in ("gemma3", "exaone4")
        self.pre_norms = a != "exaone4"
        # Gemma3: the embedding times sqrt(hidden size) (Gemma3TextScaledWordEmbedding), a
        # GELU (tanh approximation, gelu_pytorch_tanh) gated MLP, query scale
        # query_pre_attn_scalar^-1/2: the head size, except the 27B's hidden/heads (as
        # llama.cpp decides it: by the 62 layers)
        self.embd_scale = math.sqrt(self.n_embd) if a == "gemma3" else 1.0
        self.gelu = a == "gemma3"
        # llama's attention.scale (granite-style models); 0 or absent: 1/sqrt(head size)
        scale = float(key("attention.scale", 0.0)) if a == "llama" or a == "mistral" else 0.0
        if a == "gemma3" and self.n_layer == 62:
            scale = 1.0 / math.sqrt(self.n_embd // self.n_head)
        self.kq_scale = scale if scale != 0.0 else 1.0 / math.sqrt(self.qk_head if self.mla else self.head_dim)
        if a == "gemma3" and float(key("final_logit_softcapping", 0.0)) != 0.0:
            raise GGUFError("%s: final_logit_softcapping is not supported" % g.path)
        self._read_rope(key)
        if self.mla and self.freq_scale != 1.0:
            # DeepseekV3YarnRotaryEmbedding: cos/sin times yarn_get_mscale(s, mscale) /
            # yarn_get_mscale(s, mscale_all_dim) (1: the file keeps only mscale_all_dim,
            # equal to mscale in DeepSeek's configs), and the softmax scale times
            # yarn_get_mscale(s, mscale_all_dim)^2, yarn_get_mscale(s, m) = 0.1 m ln s + 1;
            # the file stores 0.1 mscale_all_dim
            if self.rope_scaling != "yarn" or self.yarn_log_mul <= 0.0:
                raise GGUFError("%s: deepseek2 rope scaling needs YaRN with yarn_log_multiplier" % g.path)
            s = 1.0 / self.freq_scale
            self.attn_factor = 1.0 / (1.0 + 0.1 * math.log(s))   # rope_angles' YaRN factor cancelled
            self.kq_scale *= (1.0 + self.yarn_log_mul * math.log(s)) ** 2
        self._read_swa(key)
        # the context the logits are computed for: it chooses LongRoPE's factors (as sov
        # and llama.cpp choose them, by the context size); sov's default context
        self.n_ctx = n_ctx if n_ctx else min(int(key("context_length", 2048)), 4096)

        self.n_vocab = int(g.tensor("token_embd.weight").ne[1])
        self.out_name = "output.weight" if "output.weight" in g.tensors else "token_embd.weight"
        self.freq_factors = self._vector("rope_freqs.weight") if "rope_freqs.weight" in g.tensors else None
        # phi3 LongRoPE (Phi3LongRoPEScaledRotaryEmbedding): the long factors when the
        # context exceeds the original one, else the short ones; cos and sin times
        # rope.scaling.attn_factor (read in _read_rope)
        if a == "phi3" and "rope_factors_long.weight" in g.tensors:
            which = "long" if self.n_ctx > self.n_ctx_orig else "short"
            self.freq_factors = self._vector("rope_factors_%s.weight" % which)
        if self.freq_factors is not None and len(self.freq_factors) < self.n_rot // 2:
            raise GGUFError("%s: rope_freqs.weight has %d values, RoPE needs %d" %
                            (g.path, len(self.freq_factors), self.n_rot // 2))
        self._check_shapes()
        if f64_limit_bytes is None:
            f64_limit_bytes = int(float(os.environ.get("SOV_REF_F64_LIMIT_MB", "4096")) * 2**20)
        n_params = sum(ti.n_elements for ti in g.tensors.values())
        self.weight_dtype = np.float64 if 8 * n_params <= f64_limit_bytes else np.float32
        self._weights = {}

    def _read_rope(self, key):
        """RoPE frequency and scaling parameters (llama.cpp's reading for these archs:
        scaling type default "linear", factor from rope.scaling.factor or the older
        rope.scale_linear, none -> no scaling; YaRN with ext_factor 1, beta_fast 32,
        beta_slow 1 and, after llama.cpp's compensation, attention factor 1 times
        rope.scaling.attn_factor)."""
        self.rope_base = float(key("rope.freq_base", 10000.0))
        stype = key("rope.scaling.type", "linear")
        if stype not in ("none", "linear", "yarn"):
            raise GGUFError("%s: rope scaling type %r is not supported (none, linear, yarn are)" % (self.g.path, stype))
        factor = float(key("rope.scaling.factor", 0.0)) or float(key("rope.scale_linear", 0.0))
        self.rope_scaling = stype
        self.freq_scale = 1.0 / factor if factor != 0.0 and stype != "none" else 1.0
        self.ext_factor = 1.0 if stype == "yarn" else 0.0
        self.yarn_log_mul = float(key("rope.scaling.yarn_log_multiplier", 0.0))
        if self.yarn_log_mul != 0.0 and self.arch != "deepseek2":
            raise GGUFError("%s: rope.scaling.yarn_log_multiplier is not supported" % self.g.path)
        self.attn_factor = float(key("rope.scaling.attn_factor", 1.0))
        self.n_ctx_orig = int(key("rope.scaling.original_context_length", key("context_length", 0)))
        self.corr_dims = (0.0, 0.0)
        if self.ext_factor != 0.0:
            if self.n_ctx_orig <= 0:
                raise GGUFError("%s: YaRN needs the original context length" % self.g.path)
            self.corr_dims = yarn_corr_dims(self.n_rot, self.n_ctx_orig, self.rope_base)

    def _read_swa(self, key):
        """Sliding-window layers (gemma3, exaone4; phi3's window is ignored, as llama.cpp
        ignores it): attention.sliding_window positions; the layers marked by
        attention.sliding_window_pattern, an array of bools or a number n (layer i local
        when i % n < n - 1), default 6 (gemma3) / 4 (exaone4). Local layers of gemma3 use
        RoPE base rope.freq_base_swa (default 10000) without scaling; global layers of a
        hybrid exaone4 (one with local layers: the 32B) use no RoPE at all
        (Exaone4Attention: 'global NoPE'); without local layers (the 1.2B) all use RoPE."""
        a = self.arch
        self.n_swa = int(key("attention.sliding_window", 0)) if a in ("gemma3", "exaone4") else 0
        self.swa = [False] * self.n_layer
        if self.n_swa > 0:
            pat = key("attention.sliding_window_pattern", 6 if a == "gemma3" else 4)
            if isinstance(pat, (list, np.ndarray)):
                if len(pat) != self.n_layer:
                    raise GGUFError("%s: sliding_window_pattern has %d entries for %d layers" %
                                    (self.g.path, len(pat), self.n_layer))
                self.swa = [bool(v) for v in pat]
            else:
                n = int(pat)
                self.swa = [n == 0 or i % n < n - 1 for i in range(self.n_layer)]
        self.rope_base_swa = float(key("rope.freq_base_swa", 10000.0))
        self.use_swa = True   # tests may clear it to show that ignoring the window is detected

    def _layer_rope(self, il, positions):
        """(cos, sin) of layer il's RoPE, or None when the layer has none."""
        if self.arch == "exaone4" and any(self.swa) and not self.swa[il]:  # hybrid models only
            return None
        if self.arch == "gemma3" and self.swa[il]:
            return rope_angles(positions, self.n_rot, self.rope_base_swa, 1.0, 0.0, self.attn_factor)
        return self.rope_cos_sin(positions)

    def _check_shapes(self):
        if self.mla:
            return self._check_shapes_mla()
        E, F = self.n_embd, self.n_ff
        QD, KD, VD = self.n_head * self.head_dim, self.n_head_kv * self.head_dim, self.n_head_kv * self.head_dim_v
        want = {"token_embd.weight": (E, self.n_vocab), "output_norm.weight": (E,)}
        if self.out_name == "output.weight":
            want["output.weight"] = (E, self.n_vocab)
        for i in range(self.n_layer):
            p = "blk.%d." % i
            want.update({p + "attn_output.weight": (QD, E), p + "ffn_down.weight": (F, E)})
            if self.pre_norms:
                want.update({p + "attn_norm.weight": (E,), p + "ffn_norm.weight": (E,)})
            if self.post_norms:
                want.update({p + "post_attention_norm.weight": (E,), p + "post_ffw_norm.weight": (E,)})
            if self.n_expert:
                X, Fx = self.n_expert, self.n_ff_exp
                del want[p + "ffn_down.weight"]
                want.update({p + "ffn_gate_inp.weight": (E, X), p + "ffn_gate_exps.weight": (E, Fx, X),
                             p + "ffn_up_exps.weight": (E, Fx, X), p + "ffn_down_exps.weight": (Fx, E, X)})
                if self.n_ff_shexp:
                    Fs = self.n_ff_shexp
                    want.update({p + "ffn_gate_shexp.weight": (E, Fs), p + "ffn_up_shexp.weight": (E, Fs),
                                 p + "ffn_down_shexp.weight": (Fs, E), p + "ffn_gate_inp_shexp.weight": (E,)})
            elif self.arch == "phi3":                 # fused: gate rows then up rows
                want[p + "ffn_up.weight"] = (E, 2 * F)
            else:
                want.update({p + "ffn_gate.weight": (E, F), p + "ffn_up.weight": (E, F)})
            if self.qk_norm:
                want.update({p + "attn_q_norm.weight": (self.head_dim,), p + "attn_k_norm.weight": (self.head_dim,)})
            if p + "attn_qkv.weight" in self.g.tensors:
                want[p + "attn_qkv.weight"] = (E, QD + KD + VD)
            else:
                want.update({p + "attn_q.weight": (E, QD), p + "attn_k.weight": (E, KD), p + "attn_v.weight": (E, VD)})
        self._check_want(want)

    def _check_shapes_mla(self):
        E, H, R = self.n_embd, self.n_head, self.n_rot
        L, Dq, Dv, Q = self.kv_lora, self.qk_head, self.v_head, self.q_lora
        if self.n_head_kv != 1 or self.head_dim != L + R or Dq <= R:
            raise GGUFError("%s: MLA sizes disagree" % self.g.path)
        want = {"token_embd.weight": (E, self.n_vocab), "output_norm.weight": (E,)}
        if self.out_name == "output.weight":
            want["output.weight"] = (E, self.n_vocab)
        X, Fx, Fs, F = self.n_expert, self.n_ff_exp, self.n_ff_shexp, self.n_ff
        for i in range(self.n_layer + self.n_mtp):
            p = "blk.%d." % i
            if i >= self.n_layer:
                want.update({p + "nextn.eh_proj.weight": (2 * E, E), p + "nextn.enorm.weight": (E,),
                             p + "nextn.hnorm.weight": (E,)})
            if p + "post_ffw_norm.weight" in self.g.tensors:
                want[p + "post_ffw_norm.weight"] = (E,)
            want.update({p + "attn_norm.weight": (E,), p + "ffn_norm.weight": (E,),
                         p + "attn_kv_a_mqa.weight": (E, L + R), p + "attn_kv_a_norm.weight": (L,),
                         p + "attn_k_b.weight": (Dq - R, L, H), p + "attn_v_b.weight": (L, Dv, H),
                         p + "attn_output.weight": (H * Dv, E)})
            if Q:
                want.update({p + "attn_q_a.weight": (E, Q), p + "attn_q_a_norm.weight": (Q,),
                             p + "attn_q_b.weight": (Q, H * Dq)})
            else:
                want[p + "attn_q.weight"] = (E, H * Dq)
            if i < self.n_dense_lead:
                want.update({p + "ffn_gate.weight": (E, F), p + "ffn_up.weight": (E, F), p + "ffn_down.weight": (F, E)})
                continue
            want.update({p + "ffn_gate_inp.weight": (E, X), p + "ffn_gate_exps.weight": (E, Fx, X),
                         p + "ffn_up_exps.weight": (E, Fx, X), p + "ffn_down_exps.weight": (Fx, E, X)})
            if Fs:
                want.update({p + "ffn_gate_shexp.weight": (E, Fs), p + "ffn_up_shexp.weight": (E, Fs),
                             p + "ffn_down_shexp.weight": (Fs, E)})
        self._check_want(want)

    def _check_want(self, want):
        for name, ne in want.items():
            if name not in self.g.tensors:
                raise GGUFError("%s: missing tensor %s" % (self.g.path, name))
            got = self.g.tensors[name].ne
            if tuple(got[:len(ne)]) != ne or any(n != 1 for n in got[len(ne):]):
                raise GGUFError("%s: tensor %s has shape %r, expected %r" % (self.g.path, name, list(got), list(ne)))

    # -- weights --

    def _vector(self, name):
        """A 1-D tensor (norm weight, bias, freq factors) as float64."""
        return dequantize_tensor(self.g, name).astype(np.float64)

    def _opt_vector(self, name):
        return self._vector(name) if name in self.g.tensors else None

    def _matrix(self, name):
        """Dequantized weight [rows = ne[1], cols = ne[0]], cached (see weight_dtype)."""
        w = self._weights.get(name)
        if w is None:
            ti = self.g.tensor(name)
            w = dequantize_tensor(self.g, name).reshape(-1, ti.ne[0]).astype(self.weight_dtype)
            self._weights[name] = w
        return w

    def _rows(self, name, ids):
        """Rows ids of a matrix as float64 [len(ids), ne[0]], dequantizing only those rows."""
        ti = self.g.tensor(name)
        if name in self._weights:
            return self._matrix(name)[ids].astype(np.float64)
        n_rows = ti.n_elements // ti.ne[0]
        bad = [i for i in ids if not 0 <= i < n_rows]
        if bad:
            raise ValueError("token id %d is out of range (vocabulary of %d)" % (bad[0], n_rows))
        rb = ti.row_bytes
        return np.stack([dequantize(ti.type, ti.data[i * rb:(i + 1) * rb], name) for i in ids]).astype(np.float64)

    def _mul(self, name, x, act_q8):
        """x @ W.T for x [n, cols] -> [n, rows] in float64 (y = W @ x for each row x)."""
        ti = self.g.tensor(name)
        if act_q8 and ti.type not in FLOAT_TYPES:
            x = quantize_activations_q8(x, 256 if ti.type in K_QUANTS else 32)
        w = self._matrix(name)
        if w.dtype == np.float64:
            return x @ w.T
        out = np.empty((x.shape[0], w.shape[0]))
        step = 4096
        for r in range(0, w.shape[0], step):
            out[:, r:r + step] = x @ w[r:r + step].astype(np.float64).T
        return out

    def _linear(self, name, x, act_q8, bias=None):
        y = self._mul(name, x, act_q8)
        b = self._opt_vector(bias) if bias else None
        return y if b is None else y + b

    def rmsnorm(self, x, w):
        """x [n, E] normalised per row by its root mean square (+ eps), times w [E]."""
        return x / np.sqrt(np.mean(x * x, axis=1, keepdims=True) + self.eps) * w

    def rope_cos_sin(self, positions):
        return rope_angles(positions, self.n_rot, self.rope_base, self.freq_scale, self.ext_factor,
                           self.attn_factor, self.corr_dims, self.freq_factors)

    # -- the forward pass --

    def new_cache(self):
        return Cache(self.n_layer + self.n_mtp)

    def forward(self, tokens, cache=None, kv_f16=False, act_q8=False):
        """Logits float64 [len(tokens), n_vocab] of tokens at positions cache.n_past...,
        each attending causally to the cache and the earlier tokens of this chunk; their
        keys and values are appended to the cache."""
        xb = self.hidden(tokens, cache, kv_f16, act_q8)
        return self._mul(self.out_name, xb, act_q8)  # [T, V]

    def hidden(self, tokens, cache=None, kv_f16=False, act_q8=False):
        """The last hidden states [len(tokens), E]: the residual stream after the final
        norm, what the LM head multiplies (forward's arguments and cache handling)."""
        cache = self.new_cache() if cache is None else cache
        tokens = [int(t) for t in tokens]
        T, H, Hkv, D, Dv = len(tokens), self.n_head, self.n_head_kv, self.head_dim, self.head_dim_v
        rep = H // Hkv                              # query heads per KV head
        p0 = cache.n_past
        positions = np.arange(p0, p0 + T)
        cos, sin = self.rope_cos_sin(positions)     # [T, n_rot/2]

        x = self._rows("token_embd.weight", tokens) * self.embd_scale  # [T, E] the residual stream
        for il in range(self.n_layer):
            p = "blk.%d." % il
            # attention
            xb = self.rmsnorm(x, self._vector(p + "attn_norm.weight")) if self.pre_norms else x
            if self.mla:                            # multi-head latent attention
                x = x + self._mla(p, il, xb, positions, cos, sin, cache, kv_f16, act_q8)
                xb = self.rmsnorm(x, self._vector(p + "ffn_norm.weight"))
                x = x + self._mla_ffn(p, il, xb, act_q8)
                continue
            q, k, v = self._qkv(p, xb, act_q8)     # [T, H*D], [T, Hkv*D], [T, Hkv*Dv]
            if self.qk_norm and self.apply_qk_norm:  # per head: rows of D values
                q = self.rmsnorm(q.reshape(T * H, D), self._vector(p + "attn_q_norm.weight"))
                k = self.rmsnorm(k.reshape(T * Hkv, D), self._vector(p + "attn_k_norm.weight"))
            rope = (cos, sin) if self.arch not in ("gemma3", "exaone4") else self._layer_rope(il, positions)
            q, k = q.reshape(T, H, D), k.reshape(T, Hkv, D)
            if rope is not None:
                q = apply_rope(q, rope[0], rope[1], self.neox)
                k = apply_rope(k, rope[0], rope[1], self.neox)
            v = v.reshape(T, Hkv, Dv)
            if kv_f16:
                k = k.astype(np.float16).astype(np.float64)
                v = v.astype(np.float16).astype(np.float64)
            K = k if cache.k[il] is None else np.concatenate([cache.k[il], k])  # [S, Hkv, D]
            V = v if cache.v[il] is None else np.concatenate([cache.v[il], v])  # [S, Hkv, Dv]
            cache.k[il], cache.v[il] = K, V
            window = self.n_swa if self.swa[il] and self.use_swa else 0
            att = self._attention(q, K, V, positions, rep, window)             # [T, H*Dv]
            out = self._linear(p + "attn_output.weight", att, act_q8, p + "attn_output.bias")
            if self.post_norms:
                out = self.rmsnorm(out, self._vector(p + "post_attention_norm.weight"))
            x = x + out
            # feed-forward (SwiGLU; GeGLU with the tanh GELU for gemma3)
            xb = self.rmsnorm(x, self._vector(p + "ffn_norm.weight")) if self.pre_norms else x
            if self.n_expert:                       # a mixture of SwiGLU experts
                x = x + self._moe(p, xb, act_q8)
                continue
            if self.arch == "phi3":                 # Phi3MLP: gate_up_proj, chunked gate | up
                gu = self._linear(p + "ffn_up.weight", xb, act_q8)
                gate, up = gu[:, :self.n_ff], gu[:, self.n_ff:]
            else:
                gate = self._linear(p + "ffn_gate.weight", xb, act_q8, p + "ffn_gate.bias")  # [T, F]
                up = self._linear(p + "ffn_up.weight", xb, act_q8, p + "ffn_up.bias")        # [T, F]
            act = gelu_tanh(gate) if self.gelu else silu(gate)
            out = self._linear(p + "ffn_down.weight", act * up, act_q8, p + "ffn_down.bias")
            if self.post_norms:
                out = self.rmsnorm(out, self._vector(p + "post_ffw_norm.weight"))
            x = x + out
        cache.n_past += T
        return self.rmsnorm(x, self._vector("output_norm.weight"))  # [T, E]

    def pooling(self):
        """<arch>.pooling_type as llama.cpp numbers it (1 mean when the file has none)."""
        return int(self.g.kv.get("%s.pooling_type" % self.arch, 1))

    def embedding(self, tokens, pooling=None, kv_f16=False):
        """The input's embedding [E]: its hidden states pooled (1 mean, 2 cls: the first
        token, 3 last: the last token; default: the file's pooling_type), L2-normalised."""
        h = self.hidden(tokens, self.new_cache(), kv_f16=kv_f16)
        pooling = self.pooling() if pooling is None else pooling
        if pooling == 1:
            v = h.mean(axis=0)
        elif pooling == 2:
            v = h[0]
        elif pooling == 3:
            v = h[-1]
        else:
            raise ValueError("pooling %d is not an embedding" % pooling)
        return v / np.linalg.norm(v)

    def route(self, logits, bias=None):
        """Router logits [T, X] -> (experts [T, k], weights [T, k]): gate probabilities by
        softmax over the experts (or sigmoid, gating function 2), the k largest of each
        row best first, ties to the lower index (a stable sort of -p), weights renormalised
        to sum to 1 (transformers' Mixtral; Qwen3-MoE's norm_topk_prob)."""
        if self.expert_gating == 2:
            prob = 1.0 / (1.0 + np.exp(-logits))
        else:
            prob = np.exp(logits - logits.max(axis=1, keepdims=True))
            prob /= prob.sum(axis=1, keepdims=True)
        # deepseek2 (DeepseekV3TopkRouter, as llama.cpp computes it): the selection bias
        # only moves the choice; with expert groups, only the n_group_used groups of
        # largest sum of their two best biased scores compete
        score = prob + bias if bias is not None else prob.copy()
        if self.n_group > 1:
            T, X, G = score.shape[0], score.shape[1], self.n_group
            grouped = score.reshape(T, G, X // G)
            group_score = np.sort(grouped, axis=2)[:, :, -2:].sum(axis=2)               # [T, G]
            kept = np.argsort(-group_score, axis=1, kind="stable")[:, :self.n_group_used]
            drop = np.ones((T, G), dtype=bool)
            drop[np.arange(T)[:, None], kept] = False
            score = np.where(np.repeat(drop, X // G, axis=1), -np.inf, score)
        sel = np.argsort(-score, axis=1, kind="stable")[:, :self.n_expert_used]
        w = np.take_along_axis(prob, sel, axis=1)
        if self.expert_weights_norm:
            w = w / np.maximum(w.sum(axis=1, keepdims=True), 6.103515625e-5)
        return sel, w * self.expert_weights_scale

    def _expert(self, name, e):
        """Expert e's matrix [rows, cols] of a 3-D expert tensor (ne [cols, rows, X])."""
        rows = self.g.tensor(name).ne[1]
        return self._matrix(name)[e * rows:(e + 1) * rows]

    def _moe(self, p, xb, act_q8):
        """The mixture-of-experts FFN of xb [T, E] -> [T, E]: each token through its k
        experts' SwiGLU, weighted by its routing weights."""
        bias = self._opt_vector(p + "exp_probs_b.bias") if self.apply_bias else None
        sel, w = self.route(self._mul(p + "ffn_gate_inp.weight", xb, act_q8), bias)
        out = np.zeros_like(xb)
        if self.n_ff_shexp:                         # the shared expert, every token
            out += self._shared_expert(p, xb, act_q8)
        names = [p + n for n in ("ffn_gate_exps.weight", "ffn_up_exps.weight", "ffn_down_exps.weight")]
        q_in = self.g.tensor(names[0]).type not in FLOAT_TYPES and act_q8
        q_h = self.g.tensor(names[2]).type not in FLOAT_TYPES and act_q8
        blk = lambda t: 256 if self.g.tensor(t).type in K_QUANTS else 32  # noqa: E731
        xq = quantize_activations_q8(xb, blk(names[0])) if q_in else xb
        for t in range(xb.shape[0]):
            for j in range(self.n_expert_used):
                e = int(sel[t, j])
                gate = self._expert(names[0], e).astype(np.float64) @ xq[t]
                up = self._expert(names[1], e).astype(np.float64) @ xq[t]
                h = (silu(gate) * up)[None, :]
                if q_h:
                    h = quantize_activations_q8(h, blk(names[2]))
                out[t] += w[t, j] * (self._expert(names[2], e).astype(np.float64) @ h[0])
        return out

    def _ffn(self, p, xb, act_q8, prefix="ffn_", suffix=""):
        """A SwiGLU FFN: down(silu(gate(xb)) * up(xb))."""
        gate = self._linear(p + prefix + "gate" + suffix + ".weight", xb, act_q8)
        up = self._linear(p + prefix + "up" + suffix + ".weight", xb, act_q8)
        return self._linear(p + prefix + "down" + suffix + ".weight", silu(gate) * up, act_q8)

    def _shared_expert(self, p, xb, act_q8):
        """The shared expert's output [T, E]; Qwen2-MoE scales it by sigmoid(xb . w) per token
        (shared_expert_gate), DeepSeek does not."""
        out = self._ffn(p, xb, act_q8, suffix="_shexp")
        g = self._opt_vector(p + "ffn_gate_inp_shexp.weight")
        if self.arch == "qwen2moe" and self.shexp_gate:
            out = out / (1.0 + np.exp(-(xb @ g)))[:, None]
        return out

    def _mla_ffn(self, p, il, xb, act_q8):
        """deepseek2's FFN block output [T, E]: dense in the leading layers, else the
        experts plus the shared expert; RMS-normalised by post_ffw_norm where the layer has
        one (A.X K1's post_mlp_layernorm)."""
        out = self._moe(p, xb, act_q8) if il >= self.n_dense_lead else self._ffn(p, xb, act_q8)
        if self.apply_post_norm and p + "post_ffw_norm.weight" in self.g.tensors:
            out = self.rmsnorm(out, self._vector(p + "post_ffw_norm.weight"))
        return out

    def mtp_logits(self, hidden, next_tokens, depth=0, act_q8=False):
        """Multi-token prediction module `depth` (DeepSeek-V3 section 2.2, as llama.cpp's
        deepseek2 MTP graph and vLLM's DeepSeekMTP compute it) over one sequence from
        position 0: hidden [T, E] the model's final hidden states (after output_norm) of
        tokens 0..T-1, next_tokens the T tokens 1..T. Per row
          x = eh_proj([rmsnorm(embed(next)) * enorm, rmsnorm(hidden) * hnorm])
          x = the MTP decoder block over x (causal among the T rows, its own attention)
          logits = head(rmsnorm(x) * head_norm)
        with nextn.embed_tokens / shared_head_norm / shared_head_head where the file has
        them, else the model's token_embd / output_norm / output. Returns [T, n_vocab], row
        i the prediction of token i + 2."""
        il = self.n_layer + depth
        p = "blk.%d." % il
        has = lambda n: p + n in self.g.tensors  # noqa: E731
        tokens = [int(t) for t in next_tokens]
        T = len(tokens)
        positions = np.arange(T)
        cos, sin = self.rope_cos_sin(positions)
        e = self._rows(p + "nextn.embed_tokens.weight" if has("nextn.embed_tokens.weight") else "token_embd.weight",
                       tokens)
        e = self.rmsnorm(e, self._vector(p + "nextn.enorm.weight"))
        h = self.rmsnorm(np.asarray(hidden, dtype=np.float64), self._vector(p + "nextn.hnorm.weight"))
        x = self._linear(p + "nextn.eh_proj.weight", np.concatenate([e, h], axis=1), act_q8)
        xb = self.rmsnorm(x, self._vector(p + "attn_norm.weight"))
        x = x + self._mla(p, il, xb, positions, cos, sin, self.new_cache(), False, act_q8)
        xb = self.rmsnorm(x, self._vector(p + "ffn_norm.weight"))
        x = x + self._mla_ffn(p, il, xb, act_q8)
        norm = p + "nextn.shared_head_norm.weight" if has("nextn.shared_head_norm.weight") else "output_norm.weight"
        head = p + "nextn.shared_head_head.weight" if has("nextn.shared_head_head.weight") else self.out_name
        return self._mul(head, self.rmsnorm(x, self._vector(norm)), act_q8)

    def _mla(self, p, il, xb, positions, cos, sin, cache, kv_f16, act_q8):
        """DeepseekV3Attention in its plain (decompressed) form, as transformers writes it:
        q = q_b(rmsnorm(q_a(x))) (or q_proj) split into nope and rope parts; the latent
        [c, k_pe] = kv_a_proj_with_mqa(x), c = rmsnorm(c); per head k = [W_k c, rope(k_pe)],
        v = W_v c from kv_b_proj (the file holds it split: attn_k_b = W_k^T per head,
        attn_v_b = W_v); softmax(q k^T * scale) v; o_proj. The cache keeps the latent rows
        [c, rope(k_pe)] (what sov caches, so the float16 cache rounds the same values) and
        every step decompresses all of them. Returns the block output [T, E]."""
        T, H, R = xb.shape[0], self.n_head, self.n_rot
        L, Dq, Dv = self.kv_lora, self.qk_head, self.v_head
        nope = Dq - R
        if self.q_lora:
            qa = self.rmsnorm(self._linear(p + "attn_q_a.weight", xb, act_q8), self._vector(p + "attn_q_a_norm.weight"))
            q = self._linear(p + "attn_q_b.weight", qa, act_q8)
        else:
            q = self._linear(p + "attn_q.weight", xb, act_q8)
        q = q.reshape(T, H, Dq)
        q_pe = apply_rope(q[:, :, nope:], cos, sin, self.neox)
        kv = self._linear(p + "attn_kv_a_mqa.weight", xb, act_q8)                  # [T, L + R]
        c = self.rmsnorm(kv[:, :L], self._vector(p + "attn_kv_a_norm.weight"))
        k_pe = apply_rope(kv[:, None, L:], cos, sin, self.neox)[:, 0]               # [T, R]
        row = np.concatenate([c, k_pe], axis=1)
        if kv_f16:
            row = row.astype(np.float16).astype(np.float64)
        rows = row if cache.k[il] is None else np.concatenate([cache.k[il], row])  # [S, L + R]
        cache.k[il] = rows
        C, KPE = rows[:, :L], rows[:, L:]
        S = rows.shape[0]
        kb = self._matrix(p + "attn_k_b.weight").astype(np.float64).reshape(H, L, nope)  # W_k^T per head
        vb = self._matrix(p + "attn_v_b.weight").astype(np.float64).reshape(H, Dv, L)
        K = np.concatenate([np.einsum("hln,sl->shn", kb, C), np.repeat(KPE[:, None, :], H, axis=1)], axis=2)
        V = np.einsum("hvl,sl->shv", vb, C)                                       # [S, H, Dv]
        q_nope = q[:, :, :nope]
        # act_q8 (the activation rounding of quantized weights, as the engine does it):
        # sov multiplies the per-head matrices by q_nope and by the latent attention output
        # sum_j p_j c_j, so those are the values rounded; by linearity W_k c_j . Q8(q_nope) =
        # c_j . (W_k^T Q8(q_nope)) and W_v Q8(sum p_j c_j) is the head's output
        kq = act_q8 and self.g.tensor(p + "attn_k_b.weight").type not in FLOAT_TYPES
        vq = act_q8 and self.g.tensor(p + "attn_v_b.weight").type not in FLOAT_TYPES
        blk = lambda n: 256 if self.g.tensor(p + n).type in K_QUANTS else 32  # noqa: E731
        if kq:
            q_nope = quantize_activations_q8(q_nope.reshape(T * H, nope), blk("attn_k_b.weight")).reshape(T, H, nope)
        qf = np.concatenate([q_nope, q_pe], axis=2)                                # [T, H, Dq]
        scores = np.einsum("thd,shd->hts", qf, K) * self.kq_scale
        scores[:, np.arange(S)[None, :] > positions[:, None]] = -np.inf
        scores = np.exp(scores - scores.max(axis=2, keepdims=True))
        scores /= scores.sum(axis=2, keepdims=True)
        if vq:
            lat = quantize_activations_q8(np.einsum("hts,sl->thl", scores, C).reshape(T * H, L),
                                          blk("attn_v_b.weight")).reshape(T, H, L)
            att = np.einsum("hvl,thl->thv", vb, lat).reshape(T, H * Dv)
        else:
            att = np.einsum("hts,shv->thv", scores, V).reshape(T, H * Dv)
        return self._linear(p + "attn_output.weight", att, act_q8)

    def _qkv(self, p, xb, act_q8):
        if p + "attn_qkv.weight" in self.g.tensors:  # fused: rows are q, then k, then v
            qkv = self._linear(p + "attn_qkv.weight", xb, act_q8, p + "attn_qkv.bias")
            QD, KD = self.n_head * self.head_dim, self.n_head_kv * self.head_dim
            q, k, v = qkv[:, :QD], qkv[:, QD:QD + KD], qkv[:, QD + KD:]
            for name, t in (("attn_q", q), ("attn_k", k), ("attn_v", v)):
                b = self._opt_vector(p + name + ".bias")
                if b is not None:
                    t += b
            return q, k, v
        return (self._linear(p + "attn_q.weight", xb, act_q8, p + "attn_q.bias"),
                self._linear(p + "attn_k.weight", xb, act_q8, p + "attn_k.bias"),
                self._linear(p + "attn_v.weight", xb, act_q8, p + "attn_v.bias"))

    def _attention(self, q, K, V, positions, rep, window=0):
        """Grouped-query causal attention. q [T, H, D] at positions; K [S, Hkv, D],
        V [S, Hkv, Dv] for positions 0..S-1; query head h reads KV head h // rep. With a
        window, a query at p sees only keys p-window+1..p (sliding window attention).
        Returns [T, H*Dv]."""
        T, H, D = q.shape
        S, Hkv, Dv = V.shape
        qg = q.reshape(T, Hkv, rep, D).transpose(1, 0, 2, 3).reshape(Hkv, T * rep, D)
        scores = qg @ K.transpose(1, 2, 0) * self.kq_scale             # [Hkv, T*rep, S]
        query_pos = np.repeat(positions, rep)                         # row t*rep + r is position t
        scores[:, np.arange(S)[None, :] > query_pos[:, None]] = -np.inf
        if window > 0:
            scores[:, np.arange(S)[None, :] <= query_pos[:, None] - window] = -np.inf
        scores = np.exp(scores - scores.max(axis=2, keepdims=True))
        scores /= scores.sum(axis=2, keepdims=True)
        out = scores @ V.transpose(1, 0, 2)                           # [Hkv, T*rep, Dv]
        return out.reshape(Hkv, T, rep, Dv).transpose(1, 0, 2, 3).reshape(T, H * Dv)

    def logits(self, tokens, kv_f16=False, act_q8=False):
        """Logits float64 [len(tokens), n_vocab] of a whole sequence from position 0."""
        return self.forward(tokens, self.new_cache(), kv_f16=kv_f16, act_q8=act_q8)

    def generate(self, tokens, n, kv_f16=False, act_q8=False):
        """n greedy tokens after tokens (argmax, the lowest id on an exact tie), and the
        margin of each choice: its logit minus the runner-up's."""
        cache = self.new_cache()
        last = self.forward(tokens, cache, kv_f16, act_q8)[-1]
        out, margins = [], []
        for step in range(n):
            nxt = int(np.argmax(last))
            out.append(nxt)
            margins.append(float(last[nxt] - np.partition(last, -2)[-2]))
            if step + 1 < n:
                last = self.forward([nxt], cache, kv_f16, act_q8)[-1]
        return out, margins


# ---- encoders (BERT family) ---------------------------------------------------------------

ENCODER_ARCHS = ("bert", "nomic-bert", "nomic-bert-moe")

_erf = np.vectorize(math.erf, otypes=[np.float64])


def gelu_erf(x):
    """The exact GELU (BERT's "gelu"): x * (1 + erf(x / sqrt 2)) / 2."""
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


class Encoder:
    """A BERT-family encoder as Hugging Face transformers computes it (BertModel;
    nomic-bert's NomicBertModel), with llama.cpp's GGUF tensor names. Post-norm blocks,
    attention over the whole input in both directions, float64 throughout.

      bert:       x = tok_embd[t] + token_types[0] + position_embd[pos]; LayerNorm;
                  blocks: q/k/v with biases, attention, out proj + bias, add & LayerNorm,
                  GELU(erf) MLP with biases, add & LayerNorm
      nomic-bert: no position table; fused qkv, RoPE (NeoX pairs, rope.freq_base) on q and
                  k; SwiGLU MLP (silu(x Wgate) * x Wup) Wdown, no biases
      nomic-bert-moe (nomic-embed-text-v2-moe): as nomic-bert with biases (qkv, output,
                  MLP) and bert's GELU MLP; and in the layers il % moe_every_n_layers == 1
                  the MLP is a mixture of experts (see _moe)
    Every token is "sentence A" (token type 0), as llama.cpp does. XLM-RoBERTa models
    (BGE-M3, multilingual-E5) are bert files: their converter drops the first
    padding_idx + 1 = 2 rows of the position table, so GGUF positions start at 0."""

    moe_renormalise = False

    def __init__(self, path):
        g = self.g = GGUF(path) if not isinstance(path, GGUF) else path
        a = self.arch = g.kv.get("general.architecture")
        if a not in ENCODER_ARCHS:
            raise GGUFError("%s: %r is not an encoder (%s are)" % (g.path, a, ", ".join(ENCODER_ARCHS)))

        def key(k, default=KeyError):
            full = "%s.%s" % (a, k)
            if full in g.kv:
                return g.kv[full]
            if default is KeyError:
                raise GGUFError("%s: missing key %s" % (g.path, full))
            return default

        self.n_embd = int(key("embedding_length"))
        self.n_layer = int(key("block_count"))
        self.n_head = int(key("attention.head_count"))
        self.n_ff = int(key("feed_forward_length"))
        self.n_ctx = int(key("context_length"))
        self.head_dim = self.n_embd // self.n_head
        self.eps = float(key("attention.layer_norm_epsilon", 1e-12))
        self.rope_base = float(key("rope.freq_base", 10000.0))
        self.rope = a in ("nomic-bert", "nomic-bert-moe")       # else a position table
        self.swiglu = a == "nomic-bert"                         # else GELU(erf) MLPs
        self.moe_every = int(key("moe_every_n_layers", 0)) if a == "nomic-bert-moe" else 0
        if self.moe_every:
            self.n_expert = int(key("expert_count"))
            self.n_expert_used = int(key("expert_used_count"))
        self._pooling = int(key("pooling_type", 1))
        self._w = {}

    def _vec(self, name, optional=False):
        if optional and name not in self.g.tensors:
            return None
        return dequantize_tensor(self.g, name).astype(np.float64)

    def _mat(self, name):
        w = self._w.get(name)
        if w is None:
            ti = self.g.tensor(name)
            w = self._w[name] = dequantize_tensor(self.g, name).reshape(-1, ti.ne[0]).astype(np.float64)
        return w

    def _rows(self, name, rows):
        """rows of a matrix [len(rows), cols], dequantizing only those (a 250k-token
        embedding is not widened whole for a few tokens)"""
        ti = self.g.tensor(name)
        raw = np.asarray(ti.data).reshape(ti.ne[1], -1)[rows]
        return dequantize(ti.type, raw.ravel(), "tensor %r" % name).reshape(len(rows), ti.ne[0]).astype(np.float64)

    def _lin(self, name, x, act_q8, bias=None):
        """x [T, cols] @ W.T (+ bias) -> [T, rows]"""
        if act_q8 and self.g.tensor(name).type not in FLOAT_TYPES:
            x = quantize_activations_q8(x, 256 if self.g.tensor(name).type in K_QUANTS else 32)
        y = x @ self._mat(name).T
        b = self._vec(bias, optional=True) if bias else None
        return y if b is None else y + b

    def layernorm(self, x, w, b):
        """x [T, E] per row: (x - mean) / sqrt(biased variance + eps) * w + b"""
        mu = x.mean(axis=1, keepdims=True)
        var = ((x - mu) ** 2).mean(axis=1, keepdims=True)
        return (x - mu) / np.sqrt(var + self.eps) * w + b

    def hidden(self, tokens, act_q8=False):
        """The last block's output [T, E] for one input (positions 0..T-1)."""
        tokens = [int(t) for t in tokens]
        T, H, D, E = len(tokens), self.n_head, self.head_dim, self.n_embd
        n_vocab = self.g.tensor("token_embd.weight").ne[1]
        if any(not 0 <= t < n_vocab for t in tokens):
            raise ValueError("token id out of range (vocabulary of %d)" % n_vocab)
        x = self._rows("token_embd.weight", tokens)                    # [T, E]
        if "token_types.weight" in self.g.tensors:
            x = x + self._mat("token_types.weight")[0]
        if not self.rope:
            if T > self.n_ctx:
                raise ValueError("%d tokens are more than the %d positions" % (T, self.n_ctx))
            x = x + self._mat("position_embd.weight")[:T]
        x = self.layernorm(x, self._vec("token_embd_norm.weight"), self._vec("token_embd_norm.bias"))
        cos, sin = rope_angles(np.arange(T), D, self.rope_base)
        for il in range(self.n_layer):
            p = "blk.%d." % il
            if p + "attn_qkv.weight" in self.g.tensors:                # rows: q, then k, then v
                qkv = self._lin(p + "attn_qkv.weight", x, act_q8, p + "attn_qkv.bias")
                q, k, v = qkv[:, :E], qkv[:, E:2 * E], qkv[:, 2 * E:]
            else:
                q = self._lin(p + "attn_q.weight", x, act_q8, p + "attn_q.bias")
                k = self._lin(p + "attn_k.weight", x, act_q8, p + "attn_k.bias")
                v = self._lin(p + "attn_v.weight", x, act_q8, p + "attn_v.bias")
            q, k, v = q.reshape(T, H, D), k.reshape(T, H, D), v.reshape(T, H, D)
            if self.rope:
                q, k = apply_rope(q, cos, sin, True), apply_rope(k, cos, sin, True)
            scores = np.einsum("thd,shd->hts", q, k) / math.sqrt(D)     # [H, T, T], no mask
            scores = np.exp(scores - scores.max(axis=2, keepdims=True))
            scores /= scores.sum(axis=2, keepdims=True)
            att = np.einsum("hts,shd->thd", scores, v).reshape(T, E)
            x = self.layernorm(x + self._lin(p + "attn_output.weight", att, act_q8, p + "attn_output.bias"),
                               self._vec(p + "attn_output_norm.weight"), self._vec(p + "attn_output_norm.bias"))
            if self.moe_every and il % self.moe_every == 1:
                x = self.layernorm(x + self._moe(p, x, act_q8),
                                   self._vec(p + "layer_output_norm.weight"), self._vec(p + "layer_output_norm.bias"))
                continue
            if self.swiglu:
                h = silu(self._lin(p + "ffn_gate.weight", x, act_q8)) * self._lin(p + "ffn_up.weight", x, act_q8)
            else:
                h = gelu_erf(self._lin(p + "ffn_up.weight", x, act_q8, p + "ffn_up.bias"))
            x = self.layernorm(x + self._lin(p + "ffn_down.weight", h, act_q8, p + "ffn_down.bias"),
                               self._vec(p + "layer_output_norm.weight"), self._vec(p + "layer_output_norm.bias"))
        return x

    def _moe(self, p, x, act_q8):
        """nomic-bert-moe's expert MLP of x [T, E] -> [T, E], as nomic's NomicExpertMLP and
        llama.cpp's build_moe_ffn (softmax gating, no renormalisation) compute it: the
        router's probabilities softmax(x Wr^T) over the X experts; per token the k most
        probable (ties to the lower index), each expert e an MLP down_e(gelu(up_e(x)))
        without biases (the converter drops the experts' shared bias), weighted by its
        probability as it is (the k weights do not sum to 1; moe_renormalise = True, for
        tests that must tell the two apart, divides them by their sum)."""
        X, k = self.n_expert, self.n_expert_used
        logits = self._lin(p + "ffn_gate_inp.weight", x, act_q8)                  # [T, X]
        prob = np.exp(logits - logits.max(axis=1, keepdims=True))
        prob /= prob.sum(axis=1, keepdims=True)
        up, down = self._mat(p + "ffn_up_exps.weight"), self._mat(p + "ffn_down_exps.weight")
        F, E = up.shape[0] // X, down.shape[0] // X                                # [X*F, E], [X*E, F]
        out = np.zeros_like(x)
        for t in range(x.shape[0]):
            sel = np.argsort(-prob[t], kind="stable")[:k]
            w = prob[t, sel] / (prob[t, sel].sum() if self.moe_renormalise else 1.0)
            for e, we in zip(sel, w):
                xt = x[t:t + 1]
                if act_q8 and self.g.tensor(p + "ffn_up_exps.weight").type not in FLOAT_TYPES:
                    xt = quantize_activations_q8(xt, 256 if self.g.tensor(p + "ffn_up_exps.weight").type in K_QUANTS else 32)
                h = gelu_erf(xt @ up[e * F:(e + 1) * F].T)
                if act_q8 and self.g.tensor(p + "ffn_down_exps.weight").type not in FLOAT_TYPES:
                    h = quantize_activations_q8(h, 256 if self.g.tensor(p + "ffn_down_exps.weight").type in K_QUANTS else 32)
                out[t] += we * (h @ down[e * E:(e + 1) * E].T)[0]
        return out

    def pooling(self):
        return self._pooling

    def embedding(self, tokens, pooling=None, act_q8=False):
        """The input's embedding [E]: pooled (1 mean, 2 cls, 3 last), L2-normalised."""
        h = self.hidden(tokens, act_q8)
        pooling = self.pooling() if pooling is None else pooling
        v = {1: lambda: h.mean(axis=0), 2: lambda: h[0], 3: lambda: h[-1]}[pooling]()
        return v / np.linalg.norm(v)


def gelu_tanh(x):
    """GELU's tanh approximation, x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), in float64
    (1 + tanh z cancels to 0 only for z < -19, where the value is below 1e-16 |x|)."""
    z = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)
    return x * 0.5 * (1.0 + np.tanh(z))


def silu(x):
    """x * sigmoid(x), written with tanh so that no exp overflows."""
    return x * 0.5 * (1.0 + np.tanh(0.5 * x))


# ---- CLI ---------------------------------------------------------------------------------

def _ids(s):
    try:
        ids = [int(t) for t in s.replace(" ", "").split(",") if t != ""]
    except ValueError:
        raise argparse.ArgumentTypeError("token ids are comma-separated integers, not %r" % s)
    if not ids:
        raise argparse.ArgumentTypeError("no token ids")
    return ids


def main(argv=None):
    ap = argparse.ArgumentParser(prog="reference.py", description=__doc__.split("\n\n")[0],
                                 epilog="Library use and the precision rules are in the module docstring.")
    sub = ap.add_subparsers(dest="cmd", metavar="COMMAND")
    sub.required = True
    a = sub.add_parser("logits", help="logits of every position, float32 LE [n_tokens][n_vocab]")
    a.add_argument("model")
    a.add_argument("--tokens", type=_ids, required=True, help="comma-separated token ids")
    a.add_argument("--kv-f16", action="store_true", help="round keys and values to float16")
    a.add_argument("--act-q8", action="store_true", help="quantize activations as sov does")
    a.add_argument("--out", required=True)
    b = sub.add_parser("dequant", help="one tensor as float32 LE in file element order")
    b.add_argument("model")
    b.add_argument("tensor")
    b.add_argument("--out", required=True)
    c = sub.add_parser("generate", help="greedy continuation: token ids on one line")
    c.add_argument("model")
    c.add_argument("--tokens", type=_ids, required=True)
    c.add_argument("-n", type=int, default=16, help="tokens to generate (default 16)")
    c.add_argument("--kv-f16", action="store_true")
    c.add_argument("--margins", action="store_true", help="also print each choice's top1 - top2 logit gap")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "logits":
            Model(args.model).logits(args.tokens, args.kv_f16, args.act_q8).astype("<f4").tofile(args.out)
        elif args.cmd == "dequant":
            dequantize_tensor(args.model, args.tensor).astype("<f4").tofile(args.out)
        else:
            ids, margins = Model(args.model).generate(args.tokens, args.n, kv_f16=args.kv_f16)
            print(" ".join(map(str, ids)))
            if args.margins:
                print(" ".join("%.6f" % m for m in margins))
    except (GGUFError, KeyError, ValueError, OSError) as e:
        print("reference.py: error: %s" % (e.args[0] if e.args else e), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
