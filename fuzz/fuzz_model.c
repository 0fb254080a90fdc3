/* fuzz_model.c - libFuzzer target for the model loader behind the GGUF parser: any byte
 * string must load as a model or fail with an error, never crash or read outside the file.
 * It covers the metadata and tensor checks of every architecture (model.c, encoder.c):
 * hyperparameters, mixture-of-experts keys and 3-D expert tensors (shared experts, expert
 * groups, deepseek2's latent-attention sizes and YaRN keys), sliding-window patterns,
 * fused-tensor shapes, LongRoPE factors, every tensor's presence, shape and type, and the
 * vocabulary. The bytes go to an in-memory file because sov_model_load takes a path.
 *
 * Seeds: small models of each architecture, e.g.
 *   sov gen-model --arch ARCH --dim 64 --layers 2 --vocab 300 -o corpus/ARCH.gguf
 *     (ARCH: llama, qwen2, qwen3, qwen3moe, qwen2moe, gemma3, phi3, exaone4, bert, nomic-bert,
 *      nomic-bert-moe)
 *   sov gen-model --arch deepseek2 --dim 64 --layers 2 --heads 2 --ffn 64 --q-lora 32 --kv-lora 32 \
 *       --qk-nope 32 --v-head 32 --rope-dims 16 --vocab 300 -o corpus/deepseek2.gguf
 *   (the same with --post-norm --mtp 1 --experts 4 --experts-used 2 --expert-ffn 32: A.X K1's
 *    post-MoE norm and an MTP block, -o corpus/deepseek2-mtp.gguf)
 *   sov gen-model --experts 4 --experts-used 2 --dim 32 --layers 1 --heads 2 --kv-heads 1 \
 *       --ffn 32 --vocab 300 -o corpus/mixtral.gguf */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/status.h"
#include "sov.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* the loader maps a path: give it one backed by memory */
    const int fd = memfd_create("fuzz_model", 0);
    if (fd < 0) return 0;
    size_t done = 0;
    while (done < size) {
        const ssize_t w = write(fd, data + done, size - done);
        if (w <= 0) break;
        done += (size_t)w;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    sov_model *m = NULL;
    if (done == size && sov_model_load(path, NULL, &m) == SOV_OK) sov_model_free(m);
    else sov_clear_error();
    close(fd);
    return 0;
}
