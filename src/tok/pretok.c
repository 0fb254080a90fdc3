/* pretok.c - byte-level BPE pre-tokenizers: split a text's code points into words.
 *
 * Each tokenizer.ggml.pre family is defined upstream by one or more regular expressions
 * applied in sequence: the first splits the text into fragments (its matches and the
 * gaps between them), the next splits each fragment further, and so on. Here each
 * expression is a hand-written scanner over code points and their category flags
 * (unicode.h); the behaviour follows llama.cpp's, including its quirks:
 *   - its hand-coded GPT-2 / Llama 3 / Qwen2 splitters (no backtracking: "\s+(?!\S)"
 *     leaves the last white space for the next word, a lone space before a letter run
 *     joins it, ...), where "out of the fragment" reads as flags 0;
 *   - for the expressions it runs through std::regex (DeepSeek's, the digit passes),
 *     \s is ASCII " \t\n\v\f\r" plus the non-ASCII White_Space code points (which it
 *     rewrites to '\v' first, so they also stop matching literal character classes).
 *
 * A pass reads fragment ends from one tok_ends list and writes the refined ends to the
 * other; the caller gets the final list. Positions are code point indices. */
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "tok/tok_impl.h"
#include "tok/unicode.h"

static bool ends_push(tok_ends *e, uint32_t end) {
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 256;
        uint32_t *v = realloc(e->v, cap * sizeof *v);
        if (!v) return false;
        e->v = v;
        e->cap = cap;
    }
    e->v[e->n++] = end;
    return true;
}

/* A splitter covers [s, e) completely, emitting word ends. */
typedef struct split_ctx {
    const uint32_t *cp;
    const uint8_t *fl;
    size_t s, e;
    size_t prev;  /* end of the last word emitted */
    tok_ends *out;
    bool ok;
} split_ctx;

static inline uint8_t F(const split_ctx *c, size_t pos) { return pos < c->e ? c->fl[pos] : 0; }
static inline uint32_t C(const split_ctx *c, size_t pos) { return pos < c->e ? c->cp[pos] : 0xFFFFFFFFu; }

static inline void emit(split_ctx *c, size_t end) {
    if (end > c->prev) {
        c->ok &= ends_push(c->out, (uint32_t)end);
        c->prev = end;
    }
}

#define LNW (TOK_CF_LETTER | TOK_CF_NUMBER | TOK_CF_SPACE)

/* 's 't 're 've 'm 'll 'd at pos (which holds '\''); returns the length or 0. With
 * fold, the letters match either case (llama3/qwen2's (?i:...)). */
static size_t contraction(const split_ctx *c, size_t pos, bool fold) {
    if (pos + 1 >= c->e) return 0;
    uint32_t a = c->cp[pos + 1];
    if (fold && a >= 'A' && a <= 'Z') a += 32;
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (pos + 2 >= c->e) return 0;
    uint32_t b = c->cp[pos + 2];
    if (fold && b >= 'A' && b <= 'Z') b += 32;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

/* Trailing white space handling shared by the splitters: "\s+(?!\S)" then "\s+"; with
 * newline_runs also "\s*[\r\n]+" first. Returns the new position. */
static size_t split_space(split_ctx *c, size_t pos, bool newline_runs) {
    size_t n = 0, last_nl = 0;
    while (F(c, pos + n) & TOK_CF_SPACE) {
        uint32_t ch = c->cp[pos + n];
        if (newline_runs && (ch == '\r' || ch == '\n')) last_nl = pos + n + 1;
        n++;
    }
    if (last_nl) return last_nl;
    if (n > 1 && pos + n < c->e) return pos + n - 1;
    if (n > 0) return pos + n;
    return pos + 1; /* no rule matched: one code point alone */
}

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static void split_gpt2(split_ctx *c) {
    size_t pos = c->s;
    while (pos < c->e) {
        uint32_t ch = c->cp[pos];
        uint8_t f = c->fl[pos];
        if (ch == '\'') {
            size_t k = contraction(c, pos, false);
            if (k) {
                emit(c, pos += k);
                continue;
            }
        }
        uint8_t f2 = ch == ' ' ? F(c, pos + 1) : f;
        if (f2 & TOK_CF_LETTER) {
            pos += ch == ' ';
            while (F(c, pos) & TOK_CF_LETTER) pos++;
            emit(c, pos);
            continue;
        }
        if (f2 & TOK_CF_NUMBER) {
            pos += ch == ' ';
            while (F(c, pos) & TOK_CF_NUMBER) pos++;
            emit(c, pos);
            continue;
        }
        if (!(f2 & LNW) && f2) {
            pos += ch == ' ';
            for (uint8_t g = F(c, pos); !(g & LNW) && g; g = F(c, pos)) pos++;
            emit(c, pos);
            continue;
        }
        emit(c, pos = split_space(c, pos, false));
    }
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
 * \s*[\r\n]+|\s+(?!\S)|\s+   -- with max_digits 1 it is Qwen2's (\p{N} alone); with
 * letters = TOK_CF_LETTER | TOK_CF_MARK Qwen3.5's ([\p{L}\p{M}]+ for words, and marks
 * out of the punctuation run) */
static void split_llama3(split_ctx *c, size_t max_digits, uint8_t letters) {
    const uint8_t lnw = letters | TOK_CF_NUMBER | TOK_CF_SPACE;
    size_t pos = c->s;
    while (pos < c->e) {
        uint32_t ch = c->cp[pos];
        uint8_t f = c->fl[pos];
        if (ch == '\'') {
            size_t k = contraction(c, pos, true);
            if (k) {
                emit(c, pos += k);
                continue;
            }
        }
        if (!(ch == '\r' || ch == '\n' || (f & TOK_CF_NUMBER))) {
            if ((f & letters) || (F(c, pos + 1) & letters)) {
                pos++;
                while (F(c, pos) & letters) pos++;
                emit(c, pos);
                continue;
            }
        }
        if (f & TOK_CF_NUMBER) {
            size_t run = 0;
            while (F(c, pos) & TOK_CF_NUMBER) {
                pos++;
                if (++run == max_digits) {
                    emit(c, pos);
                    run = 0;
                }
            }
            emit(c, pos);
            continue;
        }
        uint8_t f2 = ch == ' ' ? F(c, pos + 1) : f;
        if (!(f2 & lnw) && f) {
            pos += ch == ' ';
            for (uint8_t g = F(c, pos); !(g & lnw) && g; g = F(c, pos)) pos++;
            while (C(c, pos) == '\r' || C(c, pos) == '\n') pos++;
            emit(c, pos);
            continue;
        }
        emit(c, pos = split_space(c, pos, true));
    }
}

/* ---- the letter-case family (Tekken, GPT-4o / Llama 4, Kimi K2) ----
 *
 * The published expression (o200k's; Tekken's lacks the contractions and takes \p{N} one
 * at a time and Kimi K2's puts [\p{Han}]+ first and keeps Han out of the word classes):
 *   [^\r\n\p{L}\p{N}]?U*W+C?|[^\r\n\p{L}\p{N}]?U+W*C?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|
 *   \s*[\r\n]+|\s+(?!\S)|\s+
 * with U = [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}], W = [\p{Ll}\p{Lm}\p{Lo}\p{M}] and C the optional
 * contraction (?i:'s|'t|'re|'ve|'m|'ll|'d). A backtracking engine tries the alternatives
 * in order, the optional prefix first with and then without; U*W+ gives back U's one at
 * a time until a W follows. This scanner does the same without backtracking. (llama.cpp
 * runs an ASCII-only adaptation of it, which differs on non-ASCII case and marks; sov
 * follows the published expression: see docs/TOKENIZERS.md.) */

typedef struct cased_opts {
    bool contractions; /* C? after a word */
    bool han;          /* Kimi K2: [\p{Han}]+ first, Han out of U and W */
    bool slash_tail;   /* [\r\n/]* after a punctuation run (else [\r\n]*) */
    size_t max_digits;
} cased_opts;

static inline bool is_han(const split_ctx *c, size_t pos) {
    return pos < c->e && (tok_cpt_xflags(c->cp[pos]) & TOK_CX_HAN);
}

/* U (upper) and W (lower) membership of the code point at pos */
static inline bool cased_u(const split_ctx *c, size_t pos, bool han) {
    uint8_t f = F(c, pos);
    if (!(f & (TOK_CF_LETTER | TOK_CF_MARK))) return false;
    uint8_t x = tok_cpt_xflags(c->cp[pos]);
    if (han && (x & TOK_CX_HAN)) return false;
    return (f & TOK_CF_MARK) || !(x & TOK_CX_LOWER);
}
static inline bool cased_w(const split_ctx *c, size_t pos, bool han) {
    uint8_t f = F(c, pos);
    if (!(f & (TOK_CF_LETTER | TOK_CF_MARK))) return false;
    uint8_t x = tok_cpt_xflags(c->cp[pos]);
    if (han && (x & TOK_CX_HAN)) return false;
    return (f & TOK_CF_MARK) || !(x & TOK_CX_UPPER);
}

/* U*W+ (need_w) or U+W* from q: the end, or 0 when it does not match */
static size_t cased_word(const split_ctx *c, size_t q, bool need_w, bool han) {
    size_t a = 0;
    while (cased_u(c, q + a, han)) a++;
    if (!need_w) {
        if (!a) return 0;
        size_t e = q + a;
        while (cased_w(c, e, han)) e++;
        return e;
    }
    for (size_t k = a + 1; k-- > 0;) {
        if (cased_w(c, q + k, han)) {
            size_t e = q + k;
            while (cased_w(c, e, han)) e++;
            return e;
        }
    }
    return 0;
}

static void split_cased(split_ctx *c, const cased_opts *o) {
    size_t pos = c->s;
    while (pos < c->e) {
        const uint32_t ch = c->cp[pos];
        const uint8_t f = c->fl[pos];
        if (o->han && is_han(c, pos)) {
            while (is_han(c, pos)) pos++;
            emit(c, pos);
            continue;
        }
        /* the two word alternatives, each with the prefix first */
        const bool prefix = !(ch == '\r' || ch == '\n') && !(f & (TOK_CF_LETTER | TOK_CF_NUMBER));
        size_t end = 0;
        for (int alt = 0; alt < 2 && !end; alt++) {
            if (prefix) end = cased_word(c, pos + 1, alt == 0, o->han);
            if (!end) end = cased_word(c, pos, alt == 0, o->han);
        }
        if (end) {
            if (o->contractions && C(c, end) == '\'') end += contraction(c, end, true);
            emit(c, pos = end);
            continue;
        }
        if (f & TOK_CF_NUMBER) {
            size_t n = 0;
            while (n < o->max_digits && (F(c, pos) & TOK_CF_NUMBER)) {
                pos++;
                n++;
            }
            emit(c, pos);
            continue;
        }
        uint8_t f2 = ch == ' ' ? F(c, pos + 1) : f;
        if (!(f2 & LNW) && f2) {
            pos += ch == ' ';
            for (uint8_t g = F(c, pos); !(g & LNW) && g; g = F(c, pos)) pos++;
            for (uint32_t t = C(c, pos); t == '\r' || t == '\n' || (o->slash_tail && t == '/'); t = C(c, pos)) pos++;
            emit(c, pos);
            continue;
        }
        emit(c, pos = split_space(c, pos, true));
    }
}

static const cased_opts opts_tekken = {.contractions = false, .han = false, .slash_tail = true, .max_digits = 1};
static const cased_opts opts_gpt4o = {.contractions = true, .han = false, .slash_tail = true, .max_digits = 3};
static const cased_opts opts_kimi = {.contractions = true, .han = true, .slash_tail = false, .max_digits = 3};

/* DeepSeek V3's last expression:
 *   [!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+|
 *   ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * A code point no alternative matches (a lone digit, a control character) is left for
 * the gap, which becomes a word of its own. */
static inline bool ascii_alpha(uint32_t ch) { return (ch | 32) >= 'a' && (ch | 32) <= 'z'; }

static void split_deepseek3(split_ctx *c) {
    const uint8_t PS = TOK_CF_PUNCT | TOK_CF_SYMBOL, LM = TOK_CF_LETTER | TOK_CF_MARK;
    size_t pos = c->s;
    while (pos < c->e) {
        const uint32_t ch = c->cp[pos];
        const uint8_t f = c->fl[pos];
        size_t end = 0;
        if (ch < 0x80 && (f & PS) && ascii_alpha(C(c, pos + 1))) {
            end = pos + 1;
            while (ascii_alpha(C(c, end))) end++;
        } else if (!(ch == '\r' || ch == '\n') && !(f & (TOK_CF_LETTER | PS)) && (F(c, pos + 1) & LM)) {
            end = pos + 1;
            while (F(c, end) & LM) end++;
        } else if (f & LM) {
            end = pos;
            while (F(c, end) & LM) end++;
        } else if ((ch == ' ' && (F(c, pos + 1) & PS)) || (f & PS)) {
            end = pos + (ch == ' ');
            while (F(c, end) & PS) end++;
            while (C(c, end) == '\r' || C(c, end) == '\n') end++;
        } else if (f & TOK_CF_SPACE) {
            end = split_space(c, pos, true);
        }
        if (!end) { /* no match here: part of a gap */
            pos++;
            continue;
        }
        emit(c, pos);
        emit(c, pos = end);
    }
}

/* ---- matchers: find-all passes of one expression; gaps become fragments too ---- */

typedef struct range32 {
    uint32_t lo, hi;
} range32;

/* r sorted by lo, not overlapping except where noted (ds_cjk is small and unsorted: a
 * linear scan) */
static bool in_ranges(const range32 *r, size_t n, uint32_t cp) {
    if (n <= 8) {
        for (size_t i = 0; i < n; i++)
            if (cp >= r[i].lo && cp <= r[i].hi) return true;
        return false;
    }
    size_t lo = 0, hi = n; /* first range with r.hi >= cp */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (r[mid].hi < cp) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && cp >= r[lo].lo;
}

/* DeepSeek LLM's letter class: [A-Za-zµÀ-ÖØ-öø-ƺ...𞤀-𞥃] */
static const range32 ds_letters[] = {
    {0x41, 0x5A}, {0x61, 0x7A}, {0xB5, 0xB5}, {0xC0, 0xD6}, {0xD8, 0xF6}, {0xF8, 0x1BA},
    {0x1BC, 0x1BF}, {0x1C4, 0x293}, {0x295, 0x2AF}, {0x370, 0x373}, {0x376, 0x377},
    {0x37B, 0x37D}, {0x37F, 0x37F}, {0x386, 0x386}, {0x388, 0x38A}, {0x38C, 0x38C},
    {0x38E, 0x3A1}, {0x3A3, 0x3F5}, {0x3F7, 0x481}, {0x48A, 0x52F}, {0x531, 0x556},
    {0x10A0, 0x10C5}, {0x13A0, 0x13F5}, {0x13F8, 0x13FD}, {0x1C90, 0x1CBA}, {0x1CBD, 0x1CBF},
    {0x1D00, 0x1D2B}, {0x1D6B, 0x1D77}, {0x1D79, 0x1D9A}, {0x1E00, 0x1F15}, {0x1F18, 0x1F1D},
    {0x1F20, 0x1F45}, {0x1F48, 0x1F4D}, {0x1F50, 0x1F57}, {0x1F59, 0x1F59}, {0x1F5B, 0x1F5B},
    {0x1F5D, 0x1F5D}, {0x1F5F, 0x1F7D}, {0x1F80, 0x1FB4}, {0x1FB6, 0x1FBC}, {0x1FBE, 0x1FBE},
    {0x1FC2, 0x1FC4}, {0x1FC6, 0x1FCC}, {0x1FD0, 0x1FD3}, {0x1FD6, 0x1FDB}, {0x1FE0, 0x1FEC},
    {0x1FF2, 0x1FF4}, {0x1FF6, 0x1FFC}, {0x2102, 0x2102}, {0x2107, 0x2107}, {0x210A, 0x2113},
    {0x2115, 0x2115}, {0x2119, 0x211D}, {0x2124, 0x2124}, {0x2126, 0x2126}, {0x2128, 0x2128},
    {0x212A, 0x212D}, {0x212F, 0x2134}, {0x2139, 0x2139}, {0x213C, 0x213F}, {0x2145, 0x2149},
    {0x214E, 0x214E}, {0x2183, 0x2184}, {0x2C00, 0x2C7B}, {0x2C7E, 0x2CE4}, {0x2CEB, 0x2CEE},
    {0x2CF2, 0x2CF3}, {0xA640, 0xA66D}, {0xA680, 0xA69B}, {0xA722, 0xA76F}, {0xA771, 0xA787},
    {0xA78B, 0xA78E}, {0xAB70, 0xABBF}, {0xFB00, 0xFB06}, {0xFB13, 0xFB17}, {0xFF21, 0xFF3A},
    {0xFF41, 0xFF5A}, {0x10400, 0x1044F}, {0x104B0, 0x104D3}, {0x104D8, 0x104FB},
    {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2}, {0x118A0, 0x118DF}, {0x1E900, 0x1E943},
};
/* DeepSeek LLM's punctuation class: [!-/:-~！-／：-～‘-‟　-。] */
static const range32 ds_punct[] = {
    {0x21, 0x2F}, {0x3A, 0x7E}, {0xFF01, 0xFF0F}, {0xFF1A, 0xFF5E}, {0x2018, 0x201F}, {0x3000, 0x3002},
};
/* DeepSeek LLM's CJK class: [一-龥ࠀ-一가-퟿] */
static const range32 ds_cjk[] = {{0x4E00, 0x9FA5}, {0x800, 0x4E00}, {0xAC00, 0xD7FF}};

/* \s as llama.cpp's std::regex path sees it */
static inline bool re_space(uint32_t cp, uint8_t f) {
    return cp < 0x80 ? (cp == ' ' || (cp >= '\t' && cp <= '\r')) : (f & TOK_CF_SPACE) != 0;
}

/* a literal character class of the std::regex path: non-ASCII white space never matches
 * (it was rewritten to '\v') */
static inline bool re_class(const range32 *r, size_t n, uint32_t cp, uint8_t f) {
    if (cp >= 0x80 && (f & TOK_CF_SPACE)) return false;
    return in_ranges(r, n, cp);
}

typedef enum matcher {
    M_NEWLINE,     /* [\r\n] */
    M_DS_LETTERS,  /* \s?[letters]+ */
    M_DS_PUNCT,    /* \s?[punct]+ */
    M_TRAIL_SPACE, /* \s+$ */
    M_DS_CJK,      /* [cjk]+ */
    M_NUMBERS,     /* \p{N}+ */
    M_NUMBER,      /* \p{N} */
    M_DEF_PUNCT,   /* [\p{P}\$\+<=>\^~\|]+ */
    M_DIGITS3,     /* [0-9][0-9][0-9] */
    M_SP_LETTERS,  /* \s?\p{L}+ */
    M_SP_PUNCT,    /* \s?\p{P}+ */
    M_FALCON_PUNCT, /* [\p{P}\$\+<=>\^~\|`]+ */
    M_NUMBER3,     /* \p{N}{1,3} */
    M_DS3_CJK,     /* [一-龥぀-ゟ゠-ヿ]+ */
    M_BLOOM,       /*  ?[^(\s|.,!?…。，、।۔،)]+ */
} matcher;

/* DeepSeek V3's CJK class: [一-龥぀-ゟ゠-ヿ] */
static const range32 ds3_cjk[] = {{0x3040, 0x309F}, {0x30A0, 0x30FF}, {0x4E00, 0x9FA5}};

/* BLOOM's word class: anything but white space and ( | ) . , ! ? … 。 ， 、 । ۔ ، */
static inline bool bloom_char(uint32_t cp, uint8_t f) {
    if (re_space(cp, f)) return false;
    switch (cp) {
    case '(': case '|': case ')': case '.': case ',': case '!': case '?':
    case 0x2026: case 0x3002: case 0xFF0C: case 0x3001: case 0x0964: case 0x06D4: case 0x060C: return false;
    default: return true;
    }
}

static inline bool is_number(uint32_t cp, uint8_t f) {
    (void)cp;
    return (f & TOK_CF_NUMBER) != 0;
}

static inline bool def_punct(uint32_t cp, uint8_t f) {
    if (cp < 0x80) return cp != '`' && (f & (TOK_CF_PUNCT | TOK_CF_SYMBOL));
    return (f & TOK_CF_PUNCT) && !(f & TOK_CF_SPACE);
}

static inline bool class_at(matcher m, uint32_t cp, uint8_t f) {
    switch (m) {
    case M_DS_LETTERS: return re_class(ds_letters, SOV_ARRAY_LEN(ds_letters), cp, f);
    case M_DS_PUNCT: return re_class(ds_punct, SOV_ARRAY_LEN(ds_punct), cp, f);
    case M_DS_CJK: return re_class(ds_cjk, SOV_ARRAY_LEN(ds_cjk), cp, f);
    case M_NUMBERS:
    case M_NUMBER: return is_number(cp, f);
    case M_DEF_PUNCT: return def_punct(cp, f);
    case M_DIGITS3: return cp >= '0' && cp <= '9';
    case M_SP_LETTERS: return (f & TOK_CF_LETTER) != 0;
    case M_SP_PUNCT: return (f & TOK_CF_PUNCT) && !(f & TOK_CF_SPACE);
    case M_FALCON_PUNCT: return cp < 0x80 ? (f & (TOK_CF_PUNCT | TOK_CF_SYMBOL)) != 0 : (f & TOK_CF_PUNCT) && !(f & TOK_CF_SPACE);
    case M_NUMBER3: return is_number(cp, f);
    case M_DS3_CJK: return re_class(ds3_cjk, SOV_ARRAY_LEN(ds3_cjk), cp, f);
    case M_BLOOM: return bloom_char(cp, f);
    default: return false;
    }
}

/* Finds the leftmost match in [p, e) of m; false when none. */
static bool find_match(const split_ctx *c, matcher m, size_t p, size_t *ms, size_t *me) {
    const size_t e = c->e;
    switch (m) {
    case M_NEWLINE:
        for (; p < e; p++)
            if (c->cp[p] == '\r' || c->cp[p] == '\n') {
                *ms = p;
                *me = p + 1;
                return true;
            }
        return false;
    case M_DS_LETTERS:
    case M_DS_PUNCT:
    case M_SP_LETTERS:
    case M_SP_PUNCT:
    case M_BLOOM:
        for (; p < e; p++) {
            size_t q = p;
            const bool lead = m == M_BLOOM ? c->cp[p] == ' ' : re_space(c->cp[p], c->fl[p]);
            if (lead && p + 1 < e && class_at(m, c->cp[p + 1], c->fl[p + 1]))
                q = p + 1;
            else if (!class_at(m, c->cp[p], c->fl[p]))
                continue;
            while (q < e && class_at(m, c->cp[q], c->fl[q])) q++;
            *ms = p;
            *me = q;
            return true;
        }
        return false;
    case M_TRAIL_SPACE: {
        size_t q = e;
        while (q > p && re_space(c->cp[q - 1], c->fl[q - 1])) q--;
        if (q == e) return false;
        *ms = q;
        *me = e;
        return true;
    }
    case M_NUMBER:
    case M_NUMBER3:
        for (; p < e; p++)
            if (is_number(c->cp[p], c->fl[p])) {
                size_t q = p + 1;
                while (m == M_NUMBER3 && q < e && q < p + 3 && is_number(c->cp[q], c->fl[q])) q++;
                *ms = p;
                *me = q;
                return true;
            }
        return false;
    case M_DIGITS3:
        for (; p + 3 <= e; p++) {
            if (class_at(m, c->cp[p], 0) && class_at(m, c->cp[p + 1], 0) && class_at(m, c->cp[p + 2], 0)) {
                *ms = p;
                *me = p + 3;
                return true;
            }
        }
        return false;
    default: /* runs of one class */
        for (; p < e; p++)
            if (class_at(m, c->cp[p], c->fl[p])) {
                size_t q = p + 1;
                while (q < e && class_at(m, c->cp[q], c->fl[q])) q++;
                *ms = p;
                *me = q;
                return true;
            }
        return false;
    }
}

static void split_match(split_ctx *c, matcher m) {
    size_t p = c->s, ms, me;
    while (p < c->e && find_match(c, m, p, &ms, &me)) {
        emit(c, ms);
        emit(c, me);
        p = me;
    }
    emit(c, c->e);
}

/* (?=(\d{3})+(?!\d)): zero-width matches before every group of three digits counted
 * from the end of an ASCII digit run; the text splits at each (\d is ASCII, as in
 * llama.cpp's std::wregex) */
static void split_digit_groups(split_ctx *c) {
    size_t p = c->s;
    while (p < c->e) {
        if (!(c->cp[p] >= '0' && c->cp[p] <= '9')) {
            p++;
            continue;
        }
        size_t b = p;
        while (b < c->e && c->cp[b] >= '0' && c->cp[b] <= '9') b++;
        for (size_t q = p; q + 3 <= b; q++)
            if ((b - q) % 3 == 0) emit(c, q);
        p = b;
    }
    emit(c, c->e);
}

/* [^\n]+|[\n]+ */
static void split_newlines(split_ctx *c) {
    size_t p = c->s;
    while (p < c->e) {
        const bool nl = c->cp[p] == '\n';
        while (p < c->e && (c->cp[p] == '\n') == nl) p++;
        emit(c, p);
    }
}

/* ---- the families ---- */

typedef enum step_kind {
    S_GPT2, S_LLAMA3, S_QWEN2, S_QWEN35, S_MATCH, S_CASED, S_DEEPSEEK3, S_DIGIT_GROUPS, S_NEWLINES
} step_kind;
typedef struct step {
    step_kind kind;
    matcher m;
    const cased_opts *cased;
} step;

static const step steps_gpt2[] = {{S_GPT2, 0, NULL}};
static const step steps_llama3[] = {{S_LLAMA3, 0, NULL}};
static const step steps_qwen2[] = {{S_QWEN2, 0, NULL}};
static const step steps_smollm[] = {{S_MATCH, M_NUMBER, NULL}, {S_GPT2, 0, NULL}};
static const step steps_default[] = {
    {S_MATCH, M_DEF_PUNCT, NULL}, {S_GPT2, 0, NULL}, {S_MATCH, M_NUMBERS, NULL}, {S_MATCH, M_DIGITS3, NULL}};
static const step steps_deepseek[] = {
    {S_MATCH, M_NEWLINE, NULL}, {S_MATCH, M_DS_LETTERS, NULL}, {S_MATCH, M_DS_PUNCT, NULL},
    {S_MATCH, M_TRAIL_SPACE, NULL}, {S_MATCH, M_DS_CJK, NULL}, {S_MATCH, M_NUMBERS, NULL}};
static const step steps_qwen35[] = {{S_QWEN35, 0, NULL}};
static const step steps_deepseek_coder[] = {
    {S_MATCH, M_NEWLINE, NULL}, {S_MATCH, M_SP_LETTERS, NULL}, {S_MATCH, M_SP_PUNCT, NULL}, {S_MATCH, M_DS_CJK, NULL}, {S_MATCH, M_NUMBER, NULL}};
static const step steps_deepseek3[] = {{S_MATCH, M_NUMBER3, NULL}, {S_MATCH, M_DS3_CJK, NULL}, {S_DEEPSEEK3, 0, NULL}};
static const step steps_falcon[] = {{S_MATCH, M_FALCON_PUNCT, NULL}, {S_GPT2, 0, NULL}, {S_MATCH, M_DIGITS3, NULL}};
static const step steps_tekken[] = {{S_CASED, 0, &opts_tekken}};
static const step steps_gpt4o[] = {{S_CASED, 0, &opts_gpt4o}};
static const step steps_kimi[] = {{S_CASED, 0, &opts_kimi}};
static const step steps_bloom[] = {{S_MATCH, M_BLOOM, NULL}};
static const step steps_superbpe[] = {{S_MATCH, M_NUMBERS, NULL}, {S_DIGIT_GROUPS, 0, NULL}};
static const step steps_newlines[] = {{S_NEWLINES, 0, NULL}};

static void run_step(split_ctx *c, const step *st) {
    switch (st->kind) {
    case S_GPT2: split_gpt2(c); break;
    case S_LLAMA3: split_llama3(c, 3, TOK_CF_LETTER); break;
    case S_QWEN2: split_llama3(c, 1, TOK_CF_LETTER); break;
    case S_QWEN35: split_llama3(c, 1, TOK_CF_LETTER | TOK_CF_MARK); break;
    case S_MATCH: split_match(c, st->m); break;
    case S_CASED: split_cased(c, st->cased); break;
    case S_DEEPSEEK3: split_deepseek3(c); break;
    case S_DIGIT_GROUPS: split_digit_groups(c); break;
    case S_NEWLINES: split_newlines(c); break;
    }
}

#define STEPS(a) steps = a, n_steps = SOV_ARRAY_LEN(a)

bool tok_pretokenize(tok_pre pre, const tok_cpts *cp, tok_ends *ends, tok_ends *tmp) {
    const step *steps;
    size_t n_steps;
    switch (pre) {
    case TOK_PRE_LLAMA3: STEPS(steps_llama3); break;
    case TOK_PRE_QWEN2: STEPS(steps_qwen2); break;
    case TOK_PRE_SMOLLM: STEPS(steps_smollm); break;
    case TOK_PRE_DEFAULT: STEPS(steps_default); break;
    case TOK_PRE_DEEPSEEK: STEPS(steps_deepseek); break;
    case TOK_PRE_QWEN35: STEPS(steps_qwen35); break;
    case TOK_PRE_DEEPSEEK_CODER: STEPS(steps_deepseek_coder); break;
    case TOK_PRE_DEEPSEEK3: STEPS(steps_deepseek3); break;
    case TOK_PRE_FALCON: STEPS(steps_falcon); break;
    case TOK_PRE_TEKKEN: STEPS(steps_tekken); break;
    case TOK_PRE_GPT4O: STEPS(steps_gpt4o); break;
    case TOK_PRE_KIMI_K2: STEPS(steps_kimi); break;
    case TOK_PRE_BLOOM: STEPS(steps_bloom); break;
    case TOK_PRE_SUPERBPE: STEPS(steps_superbpe); break;
    case TOK_PRE_NEWLINES: STEPS(steps_newlines); break;
    default: STEPS(steps_gpt2); break;
    }
    ends->n = 0;
    if (cp->n == 0) return true;
    /* the list before a step is in *in; the step writes *out; they swap each step, and
       the first step reads the single fragment [0, n) */
    tok_ends *in = (n_steps % 2) ? tmp : ends, *out = (n_steps % 2) ? ends : tmp;
    in->n = 0;
    if (!ends_push(in, (uint32_t)cp->n)) return false;
    for (size_t k = 0; k < n_steps; k++) {
        out->n = 0;
        split_ctx c = {.cp = cp->cp, .fl = cp->fl, .out = out, .ok = true};
        size_t s = 0;
        for (size_t i = 0; i < in->n; i++) {
            c.s = c.prev = s;
            c.e = in->v[i];
            run_step(&c, &steps[k]);
            emit(&c, c.e); /* a splitter always ends at e; a safety net only */
            s = c.e;
        }
        if (!c.ok) return false;
        tok_ends *t = in;
        in = out;
        out = t;
    }
    return true; /* after an odd/even number of swaps the result is in *ends */
}
