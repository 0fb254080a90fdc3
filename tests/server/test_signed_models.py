"""test_signed_models.py - signed models end to end (docs/SIGNING.md): `sov model keygen /
sign / verify`, and `sov serve --trusted-keys DIR` refusing a model that is unsigned, signed by
an unknown key, altered (one byte flipped in a copy), renamed, or whose signature file is
malformed or forged - one line each naming which, a non-zero exit, and never listening -
while serving a signed model with its SHA-256 and signer in /v1/models. The format is proven
standard by checking sov's signatures with the openssl command line alone (and openssl's
keys and signatures with sov)."""
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serverlib import SOV_BIN, TMP, Server, check, finish, run_tests, shared_model

STORIES = shared_model("stories260K.gguf")
DIR = os.path.join(TMP, "signed-%d" % os.getpid())
KEYS = os.path.join(DIR, "keys")       # the signer's pair, and the trusted folder
OTHER = os.path.join(DIR, "other")     # a key nobody trusts
MODEL = os.path.join(DIR, "stories.gguf")
VERDICTS = ["unsigned", "malformed signature file", "signed by an unknown key", "bad signature",
            "altered after signing", "renamed after signing"]


def sov(*args, timeout=120):
    r = subprocess.run([SOV_BIN] + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def key_id_of_pub(path):
    """The key id by the documented rule, computed here: SHA-256 of the raw 32-byte public
    key (the last 32 bytes of the SPKI DER inside the PEM), first 16 hex digits."""
    pem = open(path).read().strip().splitlines()
    der = base64.b64decode("".join(l for l in pem if not l.startswith("-----")))
    check(len(der) == 44, "an Ed25519 SPKI is 44 bytes (%d)" % len(der))
    return hashlib.sha256(der[-32:]).hexdigest()[:16]


def message(sha, size, name):
    return ("sov-model-signature-v1\nsha256 %s\nsize %d\nname %s\n" % (sha, size, name)).encode()


def copy(src, dst, sig=True):
    shutil.copyfile(src, dst)
    if sig:
        shutil.copyfile(src + ".sig", dst + ".sig")
    return dst


def setup():
    shutil.rmtree(DIR, ignore_errors=True)
    os.makedirs(DIR)
    global KEY_ID, OTHER_ID
    rc, out, err = sov("model", "keygen", "--out", KEYS)
    check(rc == 0, "keygen: %s" % err)
    KEY_ID = out.split()[1]
    rc, out, _ = sov("model", "keygen", "--out", OTHER)
    OTHER_ID = out.split()[1]
    shutil.copyfile(STORIES, MODEL)
    rc, out, err = sov("model", "sign", "--key", os.path.join(KEYS, "sov-model-signing.pem"), MODEL)
    check(rc == 0 and os.path.exists(MODEL + ".sig"), "sign: %s" % err)


def serve_refused(model, *extra, keys=KEYS):
    """Starts `sov serve` expecting a refusal: (exit status, stderr, whether it listened)."""
    ready = os.path.join(DIR, "ready-%d" % time.time_ns())
    args = ["serve", "-m", model, "--port", "0", "--ready-file", ready, "-t", "1"]
    if keys is not None:
        args += ["--trusted-keys", keys]
    try:
        rc, _, err = sov(*(args + list(extra)), timeout=120)
    except subprocess.TimeoutExpired:
        return None, "timed out (the server started?)", True
    return rc, err, os.path.exists(ready)


# ---- sov model ----

def test_keygen_writes_standard_keys_and_never_overwrites():
    secret, pub = os.path.join(KEYS, "sov-model-signing.pem"), os.path.join(KEYS, "sov-model-signing.pub")
    check(os.stat(secret).st_mode & 0o777 == 0o600, "the secret key is mode 0600")
    check(open(secret).read().startswith("-----BEGIN PRIVATE KEY-----"), "PKCS#8 PEM")
    check(open(pub).read().startswith("-----BEGIN PUBLIC KEY-----"), "SPKI PEM")
    check(KEY_ID == key_id_of_pub(pub), "key id %s is SHA-256 of the raw public key (%s)" % (KEY_ID, key_id_of_pub(pub)))
    before = open(secret).read()
    rc, _, err = sov("model", "keygen", "--out", KEYS)
    check(rc == 1 and "never overwrites" in err and len(err.strip().splitlines()) == 1,
          "a second keygen is refused in one line: %r" % err)
    check(open(secret).read() == before, "the key is untouched")
    # openssl reads the secret key
    r = subprocess.run(["openssl", "pkey", "-in", secret, "-noout", "-text"], stdout=subprocess.PIPE)
    check(r.returncode == 0 and b"ED25519 Private-Key" in r.stdout, "openssl pkey reads the secret key")


def test_signature_file_names_the_file():
    sig = json.load(open(MODEL + ".sig"))
    check(set(sig) == {"format", "name", "size", "sha256", "key_id", "signature"}, "fields: %r" % sorted(sig))
    check(sig["format"] == "sov-model-signature-v1", "format")
    check(sig["name"] == "stories.gguf" and sig["size"] == os.path.getsize(MODEL), "name and size")
    check(sig["sha256"] == sha256_file(MODEL), "sha256 equals hashlib's")
    check(sig["key_id"] == KEY_ID, "key id")
    check(len(base64.b64decode(sig["signature"], validate=True)) == 64, "a 64-byte Ed25519 signature")


def test_openssl_verifies_sov_signatures_and_the_reverse():
    sig = json.load(open(MODEL + ".sig"))
    pub = os.path.join(KEYS, "sov-model-signing.pub")
    secret = os.path.join(KEYS, "sov-model-signing.pem")
    msg_path, sig_path = os.path.join(DIR, "msg"), os.path.join(DIR, "sig.bin")
    with open(msg_path, "wb") as f:
        f.write(message(sha256_file(MODEL), os.path.getsize(MODEL), "stories.gguf"))
    with open(sig_path, "wb") as f:
        f.write(base64.b64decode(sig["signature"]))
    r = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", pub, "-rawin", "-in", msg_path,
                        "-sigfile", sig_path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    check(r.returncode == 0 and b"Signature Verified Successfully" in r.stdout,
          "openssl verifies sov's signature: %r" % r.stdout)
    # the check can fail: another size in the message
    with open(msg_path, "wb") as f:
        f.write(message(sha256_file(MODEL), os.path.getsize(MODEL) + 1, "stories.gguf"))
    r = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", pub, "-rawin", "-in", msg_path,
                        "-sigfile", sig_path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    check(r.returncode != 0, "openssl refuses the signature over another size")
    # Ed25519 is deterministic: openssl's signature with the same key is sov's, byte for byte
    with open(msg_path, "wb") as f:
        f.write(message(sha256_file(MODEL), os.path.getsize(MODEL), "stories.gguf"))
    r = subprocess.run(["openssl", "pkeyutl", "-sign", "-inkey", secret, "-rawin", "-in", msg_path],
                       stdout=subprocess.PIPE)
    check(r.returncode == 0 and r.stdout == base64.b64decode(sig["signature"]), "openssl signs the same bytes")
    # a key openssl made signs with sov, and sov verifies it
    okey, opub = os.path.join(DIR, "openssl.pem"), os.path.join(DIR, "openssl.pub")
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", okey], check=True)
    os.chmod(okey, 0o600)
    subprocess.run(["openssl", "pkey", "-in", okey, "-pubout", "-out", opub], check=True)
    osig = os.path.join(DIR, "by-openssl-key.sig")
    rc, out, err = sov("model", "sign", "--key", okey, MODEL, "--out", osig)
    check(rc == 0, "sov signs with an openssl key: %s" % err)
    rc, out, err = sov("model", "verify", "--pub", opub, "--sig", osig, MODEL)
    check(rc == 0 and key_id_of_pub(opub) in out, "and verifies it: %s %s" % (out, err))
    # a secret key others can read is refused
    os.chmod(okey, 0o644)
    rc, _, err = sov("model", "sign", "--key", okey, MODEL, "--out", osig)
    check(rc == 1 and "chmod 600" in err, "a world-readable secret key is refused: %r" % err)


def refusal_cases():
    """(label, model path, verdict it must get) - each a fresh copy in DIR."""
    cases = []
    cases.append(("good", MODEL, None))
    cases.append(("unsigned", copy(MODEL, os.path.join(DIR, "unsigned.gguf"), sig=False), "unsigned"))
    malformed = copy(MODEL, os.path.join(DIR, "malformed.gguf"))
    with open(malformed + ".sig", "w") as f:
        f.write('{"format": "sov-model-signature-v1", "name": "malformed.gguf"')
    cases.append(("malformed", malformed, "malformed signature file"))
    foreign = copy(MODEL, os.path.join(DIR, "foreign.gguf"), sig=False)
    sov("model", "sign", "--key", os.path.join(OTHER, "sov-model-signing.pem"), foreign)
    cases.append(("unknown key", foreign, "signed by an unknown key"))
    forged_dir = os.path.join(DIR, "forged")
    os.makedirs(forged_dir, exist_ok=True)
    forged = copy(MODEL, os.path.join(forged_dir, "stories.gguf"))
    data = bytearray(open(forged, "rb").read())
    data[len(data) // 2] ^= 0x01
    open(forged, "wb").write(data)
    sig = json.load(open(forged + ".sig"))
    sig["sha256"] = hashlib.sha256(data).hexdigest()  # the .sig edited to match: the signature breaks
    json.dump(sig, open(forged + ".sig", "w"))
    cases.append(("bad signature", forged, "bad signature"))
    altered_dir = os.path.join(DIR, "altered")
    os.makedirs(altered_dir, exist_ok=True)
    altered = copy(MODEL, os.path.join(altered_dir, "stories.gguf"))
    with open(altered, "r+b") as f:
        f.seek(os.path.getsize(altered) // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x01]))
    cases.append(("altered (one byte flipped)", altered, "altered after signing"))
    grown_dir = os.path.join(DIR, "grown")
    os.makedirs(grown_dir, exist_ok=True)
    grown = copy(MODEL, os.path.join(grown_dir, "stories.gguf"))
    with open(grown, "ab") as f:
        f.write(b"\0")
    cases.append(("altered (one byte appended)", grown, "altered after signing"))
    cases.append(("renamed", copy(MODEL, os.path.join(DIR, "renamed.gguf")), "renamed after signing"))
    return cases


def test_verify_exit_codes():
    for label, path, verdict in refusal_cases():
        for how in (["--trusted-keys", KEYS], ["--pub", os.path.join(KEYS, "sov-model-signing.pub")]):
            rc, out, err = sov("model", "verify", *how, path)
            if verdict is None:
                check(rc == 0 and KEY_ID in out and sha256_file(path) in out, "%s: verify exits 0: %s" % (label, err))
            else:
                lines = err.strip().splitlines()
                check(rc == 1 and len(lines) == 1 and lines[0].startswith("sov model verify: " + verdict),
                      "%s: verify exits 1 with one line naming '%s': %r" % (label, verdict, err))
    rc, _, err = sov("model", "verify", MODEL)
    check(rc == 2 and "--pub" in err, "verify without a key is a usage error (2) saying what to give")
    rc, out, _ = sov("model", "--help")
    check(rc == 0 and all(w in out for w in ("keygen", "sign", "verify", "--trusted-keys")), "sov model --help")
    rc, out, _ = sov("serve", "--help")
    check(rc == 0 and "--trusted-keys" in out, "sov serve --help names --trusted-keys")


# ---- sov serve ----

def test_serve_refuses_each_case_in_one_line():
    for label, path, verdict in refusal_cases():
        if verdict is None:
            continue
        t0 = time.time()
        rc, err, listened = serve_refused(path)
        took = time.time() - t0
        refusals = [l for l in err.splitlines() if "model refused" in l]
        check(rc is not None and rc != 0, "%s: non-zero exit (%r)" % (label, rc))
        check(not listened, "%s: never listened" % label)
        check(len(refusals) == 1 and refusals[0].startswith("sov serve: model refused: " + verdict),
              "%s: one line naming '%s': %r" % (label, verdict, err[-600:]))
        check(err.strip().splitlines()[-1] == refusals[0] if refusals else False, "%s: the refusal is the last word" % label)
        # only a changed hash needs the model loaded; everything else is refused before
        loaded = "loading" in err
        check(loaded == (label == "altered (one byte flipped)"),
              "%s: refused %s loading (%.2f s)" % (label, "after" if loaded else "before", took))


def test_serve_key_folder_errors():
    empty = os.path.join(DIR, "empty-keys")
    os.makedirs(empty, exist_ok=True)
    rc, err, listened = serve_refused(MODEL, keys=empty)
    check(rc == 1 and not listened and "holds no *.pub" in err, "an empty trusted folder: %r" % err)
    rc, err, listened = serve_refused(MODEL, keys=os.path.join(DIR, "no-such-folder"))
    check(rc == 1 and not listened and "cannot open the trusted keys folder" in err, "a missing folder: %r" % err)
    bad = os.path.join(DIR, "bad-keys")
    os.makedirs(bad, exist_ok=True)
    shutil.copyfile(os.path.join(KEYS, "sov-model-signing.pub"), os.path.join(bad, "good.pub"))
    open(os.path.join(bad, "typo.pub"), "w").write("not a key\n")
    rc, err, listened = serve_refused(MODEL, keys=bad)
    check(rc == 1 and not listened and "typo.pub" in err, "a bad .pub is named: %r" % err)


def test_serve_signed_model_shows_hash_and_signer():
    both = os.path.join(DIR, "two-keys")  # the signer among other trusted keys
    os.makedirs(both, exist_ok=True)
    shutil.copyfile(os.path.join(OTHER, "sov-model-signing.pub"), os.path.join(both, "other.pub"))
    shutil.copyfile(os.path.join(KEYS, "sov-model-signing.pub"), os.path.join(both, "signer.pub"))
    with Server(MODEL, "--trusted-keys", both) as s:
        st, j = s.json("/v1/models")
        meta = j["data"][0]["meta"] if st == 200 else {}
        check(meta.get("sha256") == sha256_file(MODEL), "meta.sha256 is the file's: %r" % meta.get("sha256"))
        check(meta.get("signed") is True and meta.get("signer") == KEY_ID, "meta.signed, meta.signer: %r" % meta)
        st, _, _ = s.post("/v1/completions", {"prompt": "Once upon a time", "max_tokens": 4})
        check(st == 200, "the signed model serves (%d)" % st)
    check(("model signed by trusted key %s" % KEY_ID) in s.output(), "start-up names the signer")
    with Server(MODEL) as s:  # without --trusted-keys: nothing checked, and it says so
        st, j = s.json("/v1/models")
        meta = j["data"][0]["meta"] if st == 200 else {}
        check(meta.get("signed") is False and meta.get("signer") is None, "unchecked: signed false: %r" % meta)
        check(meta.get("sha256") == sha256_file(MODEL), "the hash is shown all the same")


def test_run_checks_too():
    rc, out, err = sov("run", "-m", MODEL, "--trusted-keys", KEYS, "-n", "4", "--temp", "0", "-t", "1")
    check(rc == 0 and "Once upon a time" in out, "sov run --trusted-keys runs a signed model: %s" % err[-300:])
    unsigned = copy(MODEL, os.path.join(DIR, "run-unsigned.gguf"), sig=False)
    rc, out, err = sov("run", "-m", unsigned, "--trusted-keys", KEYS, "-n", "4")
    check(rc == 1 and "sov run: model refused: unsigned" in err and out == "", "and refuses an unsigned one: %r" % err)


def test_policy_requires_signed_models():
    policy = os.path.join(DIR, "signed-only.toml")
    with open(policy, "w") as f:
        f.write("require_signed_models = true\n")
    rc, err, listened = serve_refused(MODEL, "--policy", policy, keys=None)
    lines = [l for l in err.strip().split("\n") if l]
    check(rc == 1 and not listened and "require_signed_models" in lines[-1] and "--trusted-keys" in lines[-1],
          "a policy requiring signed models without --trusted-keys refuses to start: %r" % lines[-1:])
    unsigned = copy(MODEL, os.path.join(DIR, "policy-unsigned.gguf"), sig=False)
    rc, err, listened = serve_refused(unsigned, "--policy", policy)
    check(rc == 1 and not listened and "unsigned" in err, "and with keys, an unsigned model is refused: %r" % err[-200:])
    with Server(MODEL, "--policy", policy, "--trusted-keys", KEYS) as s:
        st, j = s.json("/v1/models")
        check(st == 200 and j["data"][0]["meta"]["signer"] == KEY_ID, "a signed model serves under the policy")


def test_digest_cache_never_hides_an_edit():
    """The SHA-256 remembered in the state folder spares a restart the hash, but only while
    the file is unchanged: a byte flipped in place with the mtime put back (the ctime moves
    all the same) is hashed again and refused."""
    state = os.path.join(DIR, "state")
    os.makedirs(state, exist_ok=True)
    model = copy(MODEL, os.path.join(DIR, "cached.gguf"))
    sov("model", "sign", "--key", os.path.join(KEYS, "sov-model-signing.pem"), model)
    time.sleep(2.2)  # an entry is written only for a file whose ctime is 2 s old
    for i, want in enumerate(["hashed while loading", "remembered"]):
        with Server(model, "--trusted-keys", KEYS, "--state-dir", state) as s:
            st, j = s.json("/v1/models")
            check(st == 200 and j["data"][0]["meta"]["sha256"] == sha256_file(model), "start %d: the file's hash" % i)
        check(("model SHA-256 %s (%s" % (sha256_file(model), want)) in s.output(),
              "start %d: %s: %r" % (i, want, [l for l in s.output().splitlines() if "SHA-256" in l]))
    check(os.path.exists(os.path.join(state, "model-digests")), "the cache is in the state folder")
    st = os.stat(model)
    with open(model, "r+b") as f:
        f.seek(st.st_size - 1)
        b = f.read(1)
        f.seek(st.st_size - 1)
        f.write(bytes([b[0] ^ 0x5a]))
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns))
    check(os.stat(model).st_mtime_ns == st.st_mtime_ns and os.stat(model).st_size == st.st_size,
          "the edit keeps size and mtime")
    rc, err, listened = serve_refused(model, "--state-dir", state)
    check(rc == 1 and not listened and "altered after signing" in err and "hashed while loading" in err,
          "an edit in place is hashed again and refused: %r" % err[-300:])
    with Server(MODEL, "--trusted-keys", KEYS, "--state-dir", state, "--no-digest-cache") as s:
        pass
    check("no digest cache" in s.output(), "--no-digest-cache hashes: %r" % s.output()[-300:])


if __name__ == "__main__":
    setup()
    run_tests([test_keygen_writes_standard_keys_and_never_overwrites, test_signature_file_names_the_file,
               test_openssl_verifies_sov_signatures_and_the_reverse, test_verify_exit_codes,
               test_serve_refuses_each_case_in_one_line, test_serve_key_folder_errors,
               test_serve_signed_model_shows_hash_and_signer, test_run_checks_too,
               test_policy_requires_signed_models, test_digest_cache_never_hides_an_edit])
    if not __import__("serverlib").failures:
        shutil.rmtree(DIR, ignore_errors=True)
    finish()
