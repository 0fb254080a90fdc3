#!/usr/bin/env python3
"""make_corpus.py - writes tests/tok/corpus.json, the texts the tokenizer tests compare
against llama.cpp (see record_expected.mjs). Hand-written cases for each script and
pre-tokenizer rule, then deterministic random strings drawn from a mixed alphabet.

    /usr/bin/python3 tests/tok/make_corpus.py > tests/tok/corpus.json
"""
import json
import random

CASES = [
    "",
    " ",
    "  ",
    "\t",
    "\n",
    "Hello world",
    " Hello world",
    "Hello World! How are you today?",
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure you've seen it; they'll say it's fine, we'd agree, he's OK.",
    "I'M SURE YOU'VE SEEN IT; THEY'LL SAY IT'S FINE, WE'D AGREE.",
    "don't 's 't 're 've 'm 'll 'd 'x ' '' '''",
    "Mixed CASE: 'Re 'rE 'LL 'Ll",
    "안녕하세요, 세계! 오늘 날씨가 정말 좋네요.",
    "대한민국의 수도는 서울입니다. 한국어 형태소 분석은 어렵습니다.",
    "你好，世界！今天天气很好。我们一起去公园散步吧。",
    "中文和English混合的句子，还有数字123和符号！",
    "日本語のテキスト：こんにちは、世界。カタカナとひらがな。",
    "Привет, мир! Как дела? Ёжик в тумане.",
    "Γειά σου Κόσμε! Καλημέρα.",
    "مرحبا بالعالم! العدد ٣٤٥ والعدد 678",
    "שלום עולם",
    "नमस्ते दुनिया! हिन्दी पाठ।",
    "สวัสดีชาวโลก",
    "Ünïcödé àccénts: café, naïve, résumé, Ångström, Straße, œuvre, ĳ",
    "e\u0301 combining: a\u0300\u0301\u0302 q\u0323\u0307",
    "emoji: 😀😃😄 👍🏽 👨‍👩‍👧‍👦 🇰🇷🇺🇸 ❤️ ✨🔥",
    "🦙 llama 🦙🦙🦙",
    "1234567890",
    "3.14159265358979323846264338327950288419716939937510",
    "phone: 010-1234-5678, year 2024, 1,000,000 and 12.5% of 99999999999999",
    "0 00 000 0000 00000 000000 0000000",
    "digits١٢٣ and ①②③ and Ⅻ and ½",
    "    four spaces",
    "trailing spaces    ",
    "tabs\there\t\tand\t\t\tmore",
    "new\nlines\n\nand\n\n\nmore\n",
    "windows\r\nline\r\nendings\r\n",
    "mixed \t \n \r\n  \t\t  \n\n  x",
    "   \n   \n   ",
    "a\u00a0b\u3000c\u2003d\u2009e\u202ff\u205fg\u1680h\u0085i\u2028j\u2029k",
    "\u3000\u3000indented with ideographic spaces",
    "control\u0001chars\u001f\u007f\u001c\u001d\u001e",
    "zero\u200bwidth\u200cjoiners\u200d\ufeffbom",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "#include <stdio.h>\nint main(void) {\n\tprintf(\"hello, %s\\n\", argv[0]);\n\treturn 0;\n}\n",
    "for (int i = 0; i < 10; ++i) { x[i] = y[i] * 2; } // comment",
    "const f = (a, b) => a ?? b; let s = `template ${x}`;",
    "if x != y && z >= 3 || !w { return; } $var @attr #tag ^caret ~tilde |pipe `tick`",
    "<html><body><div class=\"x\">Text &amp; more</div></body></html>",
    "SELECT * FROM users WHERE id = 42 AND name LIKE '%bob%';",
    "https://example.com/path?query=1&b=2#frag user@example.org",
    "!!!???...,,,;;;:::---___===+++***///\\\\\\",
    "((([[[{{{}}}]]])))",
    "“quotes” ‘single’ «guillemets» „low“ — en–dash … ellipsis",
    "fullwidth：ＡＢＣ ａｂｃ １２３！？（）",
    "「括弧」『二重』【角】〈山〉《二重山》、。",
    "Mixed 한국어 and English 그리고 中文 and русский",
    "snake_case camelCase PascalCase kebab-case SCREAMING_CASE",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "ab" * 60,
    "Supercalifragilisticexpialidocious antidisestablishmentarianism",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>",
    "<s>[INST] Hello [/INST] Hi </s>",
    "<s> <s>  <s>\n</s>x</s> ",
    "<|endoftext|>text<|endoftext|> <|endoftext|>\n",
    "<|user|>\nWhat is 2+2?<|end|>\n<|assistant|>\n4<|end|>",
    "<unk> <pad> <|im_end|><|im_end|> <|im_end|x",
    "<｜begin▁of▁sentence｜>User: hi<｜end▁of▁sentence｜>",
    "▁ already escaped ▁▁ spaces ▁",
    "Ġ Ċ ĉ byte-level chars",
    "\ufffd replacement char",
    "x" + "\U0001F600" * 10 + "y",
    "𝕳𝖊𝖑𝖑𝖔 𝓦𝓸𝓻𝓵𝓭 𐐀𐐁 𞤀",
    "µs ºC ª",
    "Tab\tSeparated\tValues\n1\t2\t3\n",
    "  leading and trailing  ",
    " 's leading apostrophe",
    "a\n\n\n\n\n\n\n\n\nb",
    "a                                                  b",
    "end with newline\n",
    "?",
    "a",
    "'",
    "1",
    # Korean jamo: compatibility jamo, conjoining (decomposed) jamo, mixed with syllables
    "ㅎㅏㄴㄱㅡㄹ ㅋㅋㅋ ㅠㅠ ㄱㄴㄷㄹ ㅏㅑㅓㅕ",
    "\u1112\u1161\u11ab\u1100\u1173\u11af \u1100\u1161 \u1109\u1165\u110b\u116e\u11af",
    "한글 \u1112\u1161\u11ab 한\u11ab ㅎㅏㄴ 힣 가\u302e",
    # digit runs of every length, and digits against letters
    "1 12 123 1234 12345 123456 1234567 12345678 123456789 1234567890123",
    "abc123def4567ghi89 v1.2.3 0x1F 3rd 2nd 1st 10km",
    # white space runs
    "a  b   c    d     e\t\tf\n\n\ng \n \n h",
    "  \t\n  \r\n\r\n   end",
    # normaliser cases (compatibility forms, ligatures, half-width kana)
    "\ufb01nance \ufb02ow \u338f \u2460\u2461 \u216b \uff76\uff80\uff76\uff85 \u2126 \u212b \u00bd",
    "Caf\u00e9 vs Cafe\u0301, \uac00 vs \u1100\u1161, \u2024\u2025\u2026",
    # code with slashes and contractions after capitals (tekken / gpt-4o rules)
    "path/to/file.txt C:\\Users\\me //comment /* block */ a//b",
    "HELLO'S World's JSONParser HTTPServer iPhone McDonald's",
    # Gemma 4's one token with a space inside (">▁</"): runs must not be cut there
    "<b> </b> x> </y <i>  </i> a> b </c",
]


def random_cases(n, seed):
    rng = random.Random(seed)
    pools = [
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "0123456789",
        " ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000",
        "'sS'tT'reRE've'mM'll'dD",
        ".,;:!?-_()[]{}<>/\\|@#$%^&*+=~`\"",
        "가나다라마바사아자차카타파하한국어",
        "的一是不了人我在有他这中大来上国个到说",
        "ひらがなカタカナ",
        "абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
        "αβγδεζηθικλμνξοπρστυφχψω",
        "éèêëàâäôöûüçñßø",
        "😀🎉👍🏽❤️🇰🇷",
        "١٢٣٤٥①②½",
        "“”‘’—…",
        "！？（）：ＡＢａｂ１２",
        "\u0301\u0308",
        "<|im_end|>", "<s>", "</s>", "<|endoftext|>", "<|eot_id|>", "<|end|>",
    ]
    out = []
    for _ in range(n):
        k = rng.randint(1, 40)
        parts = []
        for _ in range(k):
            pool = rng.choice(pools)
            if len(pool) > 6 and not pool.startswith("<"):
                parts.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 6))))
            else:
                parts.append(pool)
        out.append("".join(parts))
    return out


def main():
    print(json.dumps(CASES + random_cases(400, 1234), ensure_ascii=True, indent=0))


if __name__ == "__main__":
    main()
