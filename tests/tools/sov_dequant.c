/* sov_dequant - test tool: writes one tensor of a GGUF file dequantized by sov's
 * reference dequantizer, as float32 in file element order.
 *
 *   sov_dequant MODEL TENSOR OUT */
#include <stdio.h>
#include <stdlib.h>

#include "gguf/gguf.h"
#include "quant/quant.h"

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: sov_dequant MODEL TENSOR OUT\n");
        return 2;
    }
    gguf_file *f;
    if (gguf_open(argv[1], &f)) {
        fprintf(stderr, "sov_dequant: %s\n", sov_last_error());
        return 1;
    }
    const gguf_tensor *t = gguf_find_tensor(f, argv[2]);
    if (!t || !sov_type_info(t->type) || !sov_type_info(t->type)->supported) {
        fprintf(stderr, "sov_dequant: no supported tensor '%s'\n", argv[2]);
        gguf_close(f);
        return 1;
    }
    float *out = malloc(t->n_elements * sizeof *out);
    const int64_t row = t->ne[0];
    const size_t rb = sov_row_size((sov_type)t->type, row);
    for (uint64_t r = 0; r < t->n_elements / (uint64_t)row; r++)
        sov_dequantize_row((sov_type)t->type, (const char *)t->data + r * rb, out + r * (uint64_t)row, row);
    FILE *o = fopen(argv[3], "wb");
    const int rc = !o || fwrite(out, sizeof *out, t->n_elements, o) != t->n_elements;
    if (o) fclose(o);
    free(out);
    gguf_close(f);
    return rc;
}
