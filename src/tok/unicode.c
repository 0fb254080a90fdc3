/* unicode.c - GPT-2's byte <-> character mapping.
 *
 * Byte-level BPE vocabularies store token texts as strings of 256 "visible" characters:
 * the bytes '!'..'~', 0xA1..0xAC and 0xAE..0xFF stand for themselves (as code points),
 * and the remaining 68 bytes (controls, space, 0x7F..0xA0, 0xAD) are numbered in byte
 * order from U+0100 upwards. So ' ' is 'Ġ' (U+0120) and '\n' is 'Ċ' (U+010A). */
#include "tok/unicode.h"

static int byte_is_printable(unsigned b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
}

uint32_t tok_byte_to_cpt(uint8_t b) {
    if (byte_is_printable(b)) return b;
    uint32_t n = 0; /* number of non-printable bytes below b */
    for (unsigned k = 0; k < b; k++) n += !byte_is_printable(k);
    return 0x100 + n;
}

int tok_cpt_to_byte(uint32_t cp) {
    if (cp < 0x100) return byte_is_printable(cp) ? (int)cp : -1;
    if (cp >= 0x100 + 68) return -1;
    uint32_t n = cp - 0x100;
    for (unsigned b = 0; b < 256; b++)
        if (!byte_is_printable(b) && n-- == 0) return (int)b;
    return -1;
}
