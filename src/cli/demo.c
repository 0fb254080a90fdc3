/* demo.c - the built-in demo model: a small llama with random weights, generated on first
 * use into the user's cache folder so that `sov run` works on a fresh machine without any
 * download. Its output is gibberish by design; it exists to show the machinery. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "model/synth.h"
#include "quant/quant.h"

#define DEMO_FILE "sov-demo-v2.gguf"

static int mkdir_p(const char *dir) {
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    return mkdir(tmp, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

int cli_demo_model_path(char *buf, size_t cap) {
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char dir[900];
    if (xdg && *xdg) snprintf(dir, sizeof dir, "%s/sov", xdg);
    else if (home && *home) snprintf(dir, sizeof dir, "%s/.cache/sov", home);
    else snprintf(dir, sizeof dir, "/tmp/sov-cache");
    snprintf(buf, cap, "%s/%s", dir, DEMO_FILE);
    struct stat st;
    if (stat(buf, &st) == 0) return 0;
    if (mkdir_p(dir) != 0) return cli_error("run", "cannot create the cache folder %s: %s", dir, strerror(errno));
    fprintf(stderr, "sov: generating the built-in demo model (random weights) at %s\n", buf);
    sov_synth_params p = sov_synth_default_params();
    p.name = "sov demo (random weights)";
    p.n_embd = 256;
    p.n_layer = 4;
    p.n_head = 8;
    p.n_head_kv = 4;
    p.n_ff = 768;
    p.n_vocab = 1024;
    p.type = p.embd_type = p.output_type = SOV_TYPE_Q8_0;
    p.seed = 20261124;
    sov_status s = sov_synth_write(&p, buf, NULL, NULL);
    if (s) return cli_status_error("run", s);
    return 0;
}
