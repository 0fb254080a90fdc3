"""make_corpus.py - writes tests/sign/corpus/: signature files (.sig) for the parser's tests
and the fuzz target's seeds. good-*.sig must parse, bad-*.sig must be refused as malformed.
The good base is a real signature: key RFC 8032 test 1, stories260K.gguf (see test_sign.c).
Run it again after changing the list; the files are committed."""
import json
import os

DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
SIG = "iWlt8VKa0geqA/dGfSl33QuMTnZy6iBBb2fo50/ocI/Mx4UtBoFEn3bHTtzU5JPpVthsChNyLbzsUJr0wN1ACQ=="
GOOD = {
    "format": "sov-model-signature-v1",
    "name": "stories260K.gguf",
    "size": 1185376,
    "sha256": "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d",
    "key_id": "21fe31dfa154a261",
    "signature": SIG,
}


def with_(**kw):
    d = dict(GOOD)
    for k, v in kw.items():
        if v is None:
            d.pop(k)
        else:
            d[k] = v
    return json.dumps(d, indent=2).encode() + b"\n"


def raw_name(name_bytes):
    """A record whose name is raw bytes (json.dumps would escape them)."""
    return with_(name="@@NAME@@").replace(b"@@NAME@@", name_bytes)


CASES = {
    "good-real.sig": with_(),
    "good-compact.sig": json.dumps(GOOD, separators=(",", ":")).encode(),
    "good-reordered.sig": json.dumps(dict(reversed(list(GOOD.items())))).encode(),
    "good-name-utf8.sig": with_(name="모델-한국어.gguf"),
    "good-size-zero.sig": with_(size=0),
    "bad-empty.sig": b"",
    "bad-not-json.sig": b"format: sov-model-signature-v1\n",
    "bad-array.sig": b"[]",
    "bad-null.sig": b"null",
    "bad-string.sig": b'"sov-model-signature-v1"',
    "bad-truncated.sig": with_()[:100],
    "bad-trailing-garbage.sig": with_() + b"x",
    "bad-two-objects.sig": with_() + with_(),
    "bad-missing-format.sig": with_(format=None),
    "bad-missing-name.sig": with_(name=None),
    "bad-missing-size.sig": with_(size=None),
    "bad-missing-sha256.sig": with_(sha256=None),
    "bad-missing-key-id.sig": with_(key_id=None),
    "bad-missing-signature.sig": with_(signature=None),
    "bad-unknown-field.sig": with_(comment="trusted"),
    "bad-duplicate-key.sig": with_()[:-3] + b',\n  "size": 1\n}\n',
    "bad-format-v2.sig": with_(format="sov-model-signature-v2"),
    "bad-format-number.sig": with_(format=1),
    "bad-name-empty.sig": with_(name=""),
    "bad-name-slash.sig": with_(name="models/stories260K.gguf"),
    "bad-name-dot.sig": with_(name="."),
    "bad-name-dotdot.sig": with_(name=".."),
    "bad-name-newline.sig": with_(name="a.gguf\nsize 1"),
    "bad-name-control.sig": with_(name="a\x01.gguf"),
    "bad-name-del.sig": with_(name="a\x7f.gguf"),
    "bad-name-nul.sig": with_(name="a\x00.gguf"),
    "bad-name-too-long.sig": with_(name="a" * 251 + ".gguf"),
    "bad-name-latin1.sig": raw_name(b"mod\xe8le.gguf"),
    "bad-name-object.sig": with_(name={"a": 1}),
    "bad-size-negative.sig": with_(size=-1),
    "bad-size-real.sig": with_(size=1185376.0),
    "bad-size-string.sig": with_(size="1185376"),
    "bad-size-huge.sig": with_(size=2 ** 64),
    "bad-size-bool.sig": with_(size=True),
    "bad-sha256-upper.sig": with_(sha256=GOOD["sha256"].upper()),
    "bad-sha256-short.sig": with_(sha256=GOOD["sha256"][:63]),
    "bad-sha256-long.sig": with_(sha256=GOOD["sha256"] + "0"),
    "bad-sha256-nonhex.sig": with_(sha256="g" + GOOD["sha256"][1:]),
    "bad-key-id-short.sig": with_(key_id="21fe31dfa154a26"),
    "bad-key-id-upper.sig": with_(key_id="21FE31DFA154A261"),
    "bad-key-id-number.sig": with_(key_id=21),
    "bad-signature-63-bytes.sig": with_(signature=SIG[:84]),
    "bad-signature-66-bytes.sig": with_(signature=SIG[:86] + "AA"),
    "bad-signature-too-long.sig": with_(signature=SIG + SIG[:40]),
    "bad-signature-no-padding.sig": with_(signature=SIG[:-2]),
    "bad-signature-noncanonical.sig": with_(signature=SIG[:85] + "R=="),
    "bad-signature-newline.sig": with_(signature=SIG[:40] + "\n" + SIG[40:]),
    "bad-signature-urlsafe.sig": with_(signature=SIG.replace("/", "_")),
    "bad-signature-hex.sig": with_(signature="00" * 64),
    "bad-signature-empty.sig": with_(signature=""),
    "bad-deep-nesting.sig": b"[" * 5000 + b"]" * 5000,
}


def main():
    os.makedirs(DIR, exist_ok=True)
    for f in os.listdir(DIR):
        os.remove(os.path.join(DIR, f))
    for name, data in CASES.items():
        with open(os.path.join(DIR, name), "wb") as f:
            f.write(data)
    print("wrote %d files to %s" % (len(CASES), DIR))


if __name__ == "__main__":
    main()
