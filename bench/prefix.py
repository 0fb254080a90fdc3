#!/usr/bin/python3
"""prefix.py - prefix-caching benchmark for an OpenAI-compatible server (loopback only).

Each scenario uses its own shared prefix (~--prefix-tokens tokens of distinct filler text),
so the scenarios do not warm each other's cache:

  cold          one request with a prefix never seen: the baseline time to first token
  seq-idle      request A, then (after A finished) request B with the same prefix and a
                different question: B's TTFT shows the reuse
  seq-busy      request A (long generation); B with the same prefix is sent as soon as A
                produced its first token, while A is still generating
  concurrent    K requests with the same unseen prefix sent at once: their TTFTs against
                the cold baseline (a server that computes the prefix once and shares it
                keeps them all near it)

Usage: bench/prefix.py --url http://127.0.0.1:8080 [--prefix-tokens 960] [--concurrent 4]
                       [--json]
Works against sov serve and llama.cpp's llama-server (whose cache_prompt is on by default)."""
import argparse
import asyncio
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import loadgen  # noqa: E402  (one_request: a streamed completion with TTFT)

WORDS = ("river stone garden window market teacher engine silver morning quiet letter harbor "
         "pencil forest candle winter mountain bridge doctor music island planet summer yellow "
         "kitchen number rabbit orange castle finger basket circle friend camera pocket ladder "
         "thunder butter mirror ocean pillow rocket shadow ticket violin wallet zebra anchor").split()


def prefix_text(seed, n_words):
    """Distinct, deterministic filler: a linear congruential walk over WORDS."""
    x = seed * 7919 + 17
    out = []
    for _ in range(n_words):
        x = (x * 1103515245 + 12345) & 0x7fffffff
        out.append(WORDS[(x >> 8) % len(WORDS)])
    return "Document %d. " % seed + " ".join(out) + ".\n"


class Cfg:
    pass


def make_cfg(args, max_tokens):
    c = Cfg()
    c.host, c.port, c.base = loadgen.parse_url(args.url)
    c.host_header = "[%s]" % c.host if ":" in c.host else c.host
    c.endpoint = "completions"
    c.max_tokens = max_tokens
    c.model = args.model
    return c


async def request(args, prompt, max_tokens):
    res = loadgen.Result(0, 0)
    await loadgen.one_request(make_cfg(args, max_tokens), res, prompt)
    if res.outcome != "ok":
        raise RuntimeError("request failed: %s" % res.error)
    return res


async def scenarios(args):
    n_words = int(args.prefix_tokens * 0.8)  # these words are ~1.2 tokens each
    out = {}
    q = ["\nQuestion: what is the first word?", "\nQuestion: what is the last word?"]

    # warm-up (model pages, threads) with an unrelated short prompt
    await request(args, "Hello there", 2)

    p = prefix_text(1, n_words)
    r = await request(args, p + q[0], 8)
    out["cold_ttft_s"] = r.ttft
    out["prompt_tokens"] = r.prompt_tokens

    p = prefix_text(2, n_words)
    a = await request(args, p + q[0], 8)
    b = await request(args, p + q[1], 8)
    out["seq_idle"] = {"first_ttft_s": a.ttft, "second_ttft_s": b.ttft, "speedup": a.ttft / b.ttft,
                       "second_cached_tokens": b.cached_tokens}

    p = prefix_text(3, n_words)
    first_started = asyncio.Event()
    ra = loadgen.Result(0, 0)

    async def long_a():
        cfg = make_cfg(args, args.busy_tokens)
        task = asyncio.ensure_future(loadgen.one_request(cfg, ra, p + q[0]))
        while ra.ttft is None and not task.done():
            await asyncio.sleep(0.002)
        first_started.set()
        await task

    ta = asyncio.ensure_future(long_a())
    await first_started.wait()
    b = await request(args, p + q[1], 8)
    a_running = not ta.done()
    await ta
    out["seq_busy"] = {"first_ttft_s": ra.ttft, "second_ttft_s": b.ttft, "speedup": ra.ttft / b.ttft,
                       "first_still_running": a_running, "second_cached_tokens": b.cached_tokens}

    p = prefix_text(4, n_words)
    rs = await asyncio.gather(*[request(args, p + "\nQuestion %d: which words repeat?" % i, 8)
                                for i in range(args.concurrent)])
    ttfts = sorted(r.ttft for r in rs)
    out["concurrent"] = {"n": args.concurrent, "ttft_s": ttfts, "max_over_cold": ttfts[-1] / out["cold_ttft_s"],
                         "cached_tokens": [r.cached_tokens for r in rs]}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--prefix-tokens", type=int, default=960, help="approximate shared prefix length")
    ap.add_argument("--concurrent", type=int, default=4, help="requests in the concurrent scenario")
    ap.add_argument("--busy-tokens", type=int, default=64, help="tokens the first request generates in seq-busy")
    ap.add_argument("--model", help='sent as "model"')
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    loadgen.parse_url(args.url)  # refuses non-loopback hosts
    out = asyncio.run(scenarios(args))
    if args.json:
        print(json.dumps(out))
        return
    print("prompt ~%s tokens; cold TTFT %.3f s" % (out["prompt_tokens"], out["cold_ttft_s"]))
    for k in ("seq_idle", "seq_busy"):
        s = out[k]
        print("%-9s first %.3f s -> second %.3f s (%.1fx, %s cached)%s" % (
            k, s["first_ttft_s"], s["second_ttft_s"], s["speedup"], s["second_cached_tokens"],
            "" if k == "seq_idle" else ", first still running: %s" % s["first_still_running"]))
    c = out["concurrent"]
    print("concurrent %d cold: TTFT %s s; slowest %.2fx the single cold TTFT; cached %s" % (
        c["n"], " / ".join("%.3f" % t for t in c["ttft_s"]), c["max_over_cold"], c["cached_tokens"]))


if __name__ == "__main__":
    main()
