/* unicode.h - the Unicode facts the tokenizers need: code point category flags (from the
 * generated unicode_table.c), UTF-8 decoding that treats malformed input as llama.cpp
 * does, and GPT-2's byte <-> printable-character mapping. */
#ifndef SOV_TOK_UNICODE_H
#define SOV_TOK_UNICODE_H

#include <stddef.h>
#include <stdint.h>

/* Category flags of a code point (one byte). */
enum {
    TOK_CF_LETTER = 1,   /* \p{L} */
    TOK_CF_NUMBER = 2,   /* \p{N} */
    TOK_CF_PUNCT = 4,    /* \p{P} */
    TOK_CF_SYMBOL = 8,   /* \p{S} */
    TOK_CF_MARK = 16,    /* \p{M} */
    TOK_CF_UNDEF = 32,   /* unassigned (Cn) or past U+10FFFF */
    TOK_CF_CONTROL = 64, /* Cc, Cf, Co, Cs */
    TOK_CF_SPACE = 128,  /* White_Space property (\s of the pre-tokenizer regexes) */
};

extern const uint8_t tok_ucd_stage1[4352];
extern const uint8_t tok_ucd_stage2[][256];

/* Flags of a code point; never 0 (TOK_CF_UNDEF past U+10FFFF). */
static inline uint8_t tok_cpt_flags(uint32_t cp) {
    if (cp >= 0x110000) return TOK_CF_UNDEF;
    return tok_ucd_stage2[tok_ucd_stage1[cp >> 8]][cp & 0xFF];
}

/* Finer facts (tok_ucd_x tables): letter case for the pre-tokenizers that tell
 * [\p{Lu}\p{Lt}...] from [\p{Ll}...] (Tekken, GPT-4o, Kimi K2), and the Han script. */
enum {
    TOK_CX_UPPER = 1, /* Lu or Lt */
    TOK_CX_LOWER = 2, /* Ll */
    TOK_CX_HAN = 4,   /* Script=Han */
};

extern const uint8_t tok_ucd_x_stage1[4352];
extern const uint8_t tok_ucd_x_stage2[][256];

static inline uint8_t tok_cpt_xflags(uint32_t cp) {
    if (cp >= 0x110000) return 0;
    return tok_ucd_x_stage2[tok_ucd_x_stage1[cp >> 8]][cp & 0xFF];
}

#define TOK_REPLACEMENT_CHAR 0xFFFDu

/* Decodes the code point at s[*pos] (n bytes in all) and advances *pos. Malformed input
 * is handled as llama.cpp's decoder does: a byte that does not start a complete sequence
 * (stray continuation byte, truncated sequence, 0xF8..0xFF) becomes U+FFFD and only that
 * byte is consumed; the lead byte's length is trusted otherwise, so overlong forms decode
 * to their value and surrogates pass through. Values past U+10FFFF also become U+FFFD.
 * *bad is set when a replacement was made. */
static inline uint32_t tok_utf8_next(const uint8_t *s, size_t n, size_t *pos, int *bad) {
    size_t i = *pos;
    uint8_t c = s[i];
    if (c < 0x80) {
        *pos = i + 1;
        return c;
    }
    uint32_t cp;
    size_t len;
    if ((c & 0xE0) == 0xC0) {
        len = 2;
        cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3;
        cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4;
        cp = c & 0x07;
    } else {
        goto bad_byte; /* continuation byte or 0xF8.. */
    }
    if (n - i < len) goto bad_byte;
    for (size_t k = 1; k < len; k++) {
        if ((s[i + k] & 0xC0) != 0x80) goto bad_byte;
        cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if (cp >= 0x110000) goto bad_byte;
    *pos = i + len;
    return cp;
bad_byte:
    *pos = i + 1;
    *bad = 1;
    return TOK_REPLACEMENT_CHAR;
}

/* Writes the UTF-8 form of cp (< 0x110000) to out (room for 4) and returns its length. */
static inline size_t tok_utf8_put(uint32_t cp, uint8_t *out) {
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xC0 | (cp >> 6));
        out[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | (cp >> 12));
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | (cp >> 18));
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of the UTF-8 sequence a lead byte announces, as SentencePiece splits text into
 * characters: 1 for ASCII and stray continuation bytes, else 2..4 from the high bits. */
static inline size_t tok_utf8_len(uint8_t c) {
    static const uint8_t len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return len[c >> 4];
}

/* GPT-2's byte-level alphabet: byte b is written as the code point tok_byte_to_cpt(b)
 * (printable bytes as themselves, the others shifted to U+0100..U+0143), so that every
 * byte string is a string of visible characters. */
uint32_t tok_byte_to_cpt(uint8_t b);
/* The byte a code point stands for, or -1 when it is not one of the 256. */
int tok_cpt_to_byte(uint32_t cp);

#endif
