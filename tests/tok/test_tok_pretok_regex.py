#!/usr/bin/env python3
"""test_tok_pretok_regex.py - the pre-tokenizers no shared vocabulary exercises, against
their published regular expressions run by an independent engine (Debian's python3-regex).

For each tokenizer.ggml.pre family below, every text of tests/tok/corpus.json (plus a few
cases aimed at the family's rules) is split by sov (tests/tools/tok_split.c) and by the
expressions applied the way llama.cpp applies a list of them: each expression's matches and
the gaps between them become fragments, the next expression splits each fragment again.
The words must be identical.

The expressions are the published ones (Hugging Face tokenizer.json / tiktoken, as quoted in
llama.cpp's src/llama-vocab.cpp). Two deliberate notes: \\d is written [0-9] (llama.cpp's
std::wregex \\d is ASCII), and Kimi K2's [... && [^\\p{Han}]] is written with regex's V1 set
difference."""
import json
import os
import subprocess
import sys

try:
    import regex
except ImportError:  # scripts/deps.sh test installs python3-regex
    print("SKIP: python3-regex is not installed")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.environ.get("SOV_TEST_DATA", os.path.join(HERE, ".."))
TOOL = os.path.join(os.environ.get("SOV_TOOLS_DIR", "build/tests/tools"), "tok_split")

GPT4O = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
         r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
         r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
TEKKEN = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
          r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
          r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
KIMI_U = r"[[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]--\p{Han}]"
KIMI_W = r"[[\p{Ll}\p{Lm}\p{Lo}\p{M}]--\p{Han}]"
KIMI = (r"(?V1)[\p{Han}]+"
        rf"|[^\r\n\p{{L}}\p{{N}}]?{KIMI_U}*{KIMI_W}+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
        rf"|[^\r\n\p{{L}}\p{{N}}]?{KIMI_U}+{KIMI_W}*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
        r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
DEEPSEEK3 = [r"\p{N}{1,3}", r"[一-龥぀-ゟ゠-ヿ]+",
             r"[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+"
             r"| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"]

FAMILIES = {
    "deepseek-v3": DEEPSEEK3,
    "tekken": [TEKKEN],
    "gpt-4o": [GPT4O],
    "llama4": [GPT4O],
    "kimi-k2": [KIMI],
    "bloom": [r" ?[^(\s|.,!?…。，、।۔،)]+"],
    "superbpe": [r"\p{N}+", r"(?=([0-9]{3})+(?![0-9]))"],
}

# the rules these families add: letter case (also outside ASCII), marks, contractions after
# words, digit groups, Han next to kana and hangul, the punctuation tails
EXTRA = [
    "helloWorld HTTPServer XMLHttpRequest iPhone ÉcoleNormale приветМир ΑθήναΠόλη",
    "DŽungla ǅungla Ǆ ǈ ǋ ᾈᾉ titleCase ǲwon",
    "e\u0301cole ne\u0301e \u0301start a\u0300\u0301\u0302b Cafe\u0301Bar",
    "I'M he's SHE'LL they'RE we'Ve it'S x'd O'Neil 'tis",
    "1234567 12345678 1 12 123 1234 ١٢٣٤٥ 12½345 9999999999 abc1234def",
    "漢字とかなと한글が混ざる文章。中文English混合ﾃｷｽﾄ",
    "a//b ///c path/to/ x.\n/y !!\n\n?? /\r\n",
    "word(paren)|pipe. comma, bang! q? …dots。 ，、।۔، done",
    " \t\n  x  \u3000y\u00a0\u2003z \r\n\r\n",
]


def split(text, exprs):
    frags = [text]
    for e in exprs:
        out = []
        for f in frags:
            pos = 0
            for m in e.finditer(f):
                if m.start() > pos:
                    out.append(f[pos:m.start()])
                out.append(m.group(0))
                pos = m.end()
            if pos < len(f):
                out.append(f[pos:])
        frags = [x for x in out if x]
    return frags


def main():
    if not os.path.exists(TOOL):
        print(f"FAIL: {TOOL} not built")
        return 1
    with open(os.path.join(DATA, "tok", "corpus.json"), encoding="utf-8") as fh:
        texts = json.load(fh) + EXTRA
    fails = 0
    total = 0
    for name, pats in FAMILIES.items():
        exprs = [regex.compile(p) for p in pats]
        feed = "".join(t.encode("utf-8").hex() + "\n" for t in texts)
        r = subprocess.run([TOOL, name], input=feed.encode(), capture_output=True, timeout=60)
        if r.returncode != 0:
            print(f"FAIL {name}: tok_split exited {r.returncode}: {r.stderr.decode()[:200]}")
            fails += 1
            continue
        lines = r.stdout.decode().split("\n")
        bad = 0
        for i, t in enumerate(texts):
            got = [bytes.fromhex(h).decode("utf-8") for h in lines[i].split()] if lines[i] else []
            want = split(t, exprs)
            total += 1
            if got != want:
                bad += 1
                if bad <= 3:
                    print(f"FAIL {name}: {t!r}\n  sov  {got}\n  regex {want}")
        if bad:
            fails += 1
        print(f"{name}: {len(texts) - bad}/{len(texts)} texts split identically")
    # an unknown name is refused
    r = subprocess.run([TOOL, "no-such-pre"], input=b"", capture_output=True)
    if r.returncode != 2:
        print("FAIL: tok_split accepted an unknown pre-tokenizer name")
        fails += 1
    print(f"{total} splits compared, {fails} families differ")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
