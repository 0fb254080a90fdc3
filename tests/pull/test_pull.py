"""test_pull.py - `sov pull` against a loopback hub of the test's own (hublib.py) that serves
the public hub's URL layout and headers, and `sov models` on what it pulled.

The reference for every pulled file is the bytes the hub holds and hashlib's SHA-256 of
them; the checks are that the right file is picked (llama.cpp's -hf rule), that a dropped
connection is resumed with a Range request from exactly the bytes already written, that a
wrong checksum is refused and nothing reaches the models folder, and that errors are one
clear line with exit 1 (2 for usage)."""
import hashlib
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "server"))
from hublib import Hub  # noqa: E402
from serverlib import SOV_BIN, TMP, check, finish, run_tests, synthetic_model  # noqa: E402

ROOT = os.path.join(os.path.abspath(TMP), "pull-%d" % os.getpid())
hub = Hub()
REPO = "acme/tiny-GGUF"
Q4 = os.urandom(700_000)
Q8 = os.urandom(900_000)
MODEL = open(synthetic_model("pull-llama.gguf", "--dim", "64", "--layers", "1", "--vocab", "512",
                             "--ffn", "128", "--type", "Q8_0"), "rb").read()
hub.repos[REPO] = {
    "tiny-Q8_0.gguf": Q8,
    "mmproj-tiny-Q4_K_M.gguf": b"projector",
    "split/tiny-Q4_K_M-00002-of-00002.gguf": b"part two",
    "tiny-Q4_K_M.gguf": Q4,
    "README.md": b"# tiny",
    "sub/real-llama-F32.gguf": MODEL,
}


def fresh(name):
    d = os.path.join(ROOT, name)
    shutil.rmtree(d, ignore_errors=True)
    return d


def pull(*args, env=None):
    e = dict(os.environ)
    e.pop("HF_ENDPOINT", None)
    e.pop("HF_TOKEN", None)
    e.update(env or {})
    if not any(a.startswith("--endpoint") for a in args) and "HF_ENDPOINT" not in (env or {}):
        args = args + ("--endpoint", hub.url)
    return subprocess.run([SOV_BIN, "pull"] + list(args), capture_output=True, text=True, timeout=60, env=e)


def reset():
    hub.log.clear()
    hub.drop_after, hub.drops_left, hub.ignore_range = None, 0, False
    hub.wrong_sha, hub.no_lfs, hub.no_headers, hub.tree_body = set(), False, False, None


def only_model_files(d):
    return sorted(f for f in os.listdir(d) if not f.startswith(".")) if os.path.isdir(d) else []


def test_shorthand_picks_the_tagged_model():
    reset()
    d = fresh("tag")
    r = pull(REPO + ":q4_k_m", "-o", d)
    check(r.returncode == 0, "pull ORG/REPO:q4_k_m exits 0: " + r.stderr)
    path = os.path.join(d, "tiny-Q4_K_M.gguf")
    check(r.stdout.strip() == path, "prints the model's path: %r" % r.stdout)
    check(os.path.exists(path) and open(path, "rb").read() == Q4, "the Q4_K_M bytes (not mmproj, not split part 2)")
    check(hashlib.sha256(Q4).hexdigest() in r.stderr, "reports the verified sha256")
    check(only_model_files(d) == ["tiny-Q4_K_M.gguf"], "only the model in the folder: %s" % os.listdir(d))
    check(not os.path.exists(os.path.join(d, ".partial")), "no .partial folder left behind")
    check("/s" in r.stderr and "ETA" in r.stderr, "progress with rate and ETA on stderr: " + r.stderr[-300:])
    again = pull(REPO + ":Q4_K_M", "-o", d)
    check(again.returncode == 0 and "already present" in again.stderr, "a second pull finds it present")
    check(hub.ranges() == [None], "the second pull downloads nothing: %s" % hub.ranges())


def test_default_order_and_explicit_path():
    reset()
    d = fresh("default")
    r = pull(REPO, "-o", d)
    check(r.returncode == 0 and open(os.path.join(d, "tiny-Q4_K_M.gguf"), "rb").read() == Q4,
          "ORG/REPO takes Q4_K_M first: " + r.stderr)
    r = pull(REPO + ":Q8_0", "-o", d)
    check(r.returncode == 0 and open(os.path.join(d, "tiny-Q8_0.gguf"), "rb").read() == Q8, "ORG/REPO:Q8_0")
    r = pull("hf://%s/sub/real-llama-F32.gguf" % REPO, "-o", d)
    check(r.returncode == 0 and open(os.path.join(d, "real-llama-F32.gguf"), "rb").read() == MODEL,
          "hf://ORG/REPO/sub/FILE.gguf lands as DIR/FILE.gguf: " + r.stderr)


def test_dropped_connection_resumes_in_the_same_run():
    reset()
    d = fresh("drop")
    hub.drop_after, hub.drops_left = 250_000, 2
    r = pull(REPO + ":Q8_0", "-o", d, "--retries", "3")
    check(r.returncode == 0, "a twice-dropped transfer completes: " + r.stderr)
    check(open(os.path.join(d, "tiny-Q8_0.gguf"), "rb").read() == Q8, "the resumed file equals the hub's bytes")
    check(hub.ranges() == [None, "bytes=250000-", "bytes=500000-"], "Range from the bytes written: %s" % hub.ranges())
    check(r.stderr.count("resuming") == 2, "says it resumes: " + r.stderr)


def test_interrupted_run_is_resumed_by_the_next():
    reset()
    d = fresh("rerun")
    hub.drop_after, hub.drops_left = 300_000, 1
    r = pull(REPO + ":Q8_0", "-o", d, "--retries", "0")
    check(r.returncode == 1, "a dropped transfer without retries fails")
    check("resume" in r.stderr and len(r.stderr.strip().splitlines()[-1]) < 300, "one clear line: " + r.stderr)
    check(only_model_files(d) == [], "nothing half-written in the models folder: %s" % only_model_files(d))
    part = os.path.join(d, ".partial", "tiny-Q8_0.gguf")
    check(os.path.exists(part) and os.path.getsize(part) == 300_000, "the partial file is kept for the next run")
    r = pull(REPO + ":Q8_0", "-o", d, "--retries", "0")
    check(r.returncode == 0 and open(os.path.join(d, "tiny-Q8_0.gguf"), "rb").read() == Q8,
          "the next run completes it: " + r.stderr)
    check(hub.ranges() == [None, "bytes=300000-"], "and asks only for the rest: %s" % hub.ranges())


def test_server_ignoring_range_restarts_cleanly():
    reset()
    d = fresh("norange")
    hub.drop_after, hub.drops_left, hub.ignore_range = 100_000, 1, True
    r = pull(REPO + ":Q4_K_M", "-o", d)
    check(r.returncode == 0 and open(os.path.join(d, "tiny-Q4_K_M.gguf"), "rb").read() == Q4,
          "a 200 answer to a Range request rewrites from the start: " + r.stderr)


def test_wrong_checksum_is_rejected_and_deleted():
    reset()
    d = fresh("badsum")
    hub.wrong_sha = {"tiny-Q4_K_M.gguf"}
    r = pull(REPO + ":Q4_K_M", "-o", d)
    check(r.returncode == 1 and "checksum mismatch" in r.stderr, "mismatch is an error: " + r.stderr)
    check("deleted" in r.stderr, "says the download was deleted")
    check(only_model_files(d) == [], "no model moved into place: %s" % only_model_files(d))
    check(not os.path.exists(os.path.join(d, ".partial", "tiny-Q4_K_M.gguf")), "the partial file is deleted")


def test_checksum_from_headers_when_the_tree_has_none():
    reset()
    d = fresh("headers")
    hub.no_lfs = True
    r = pull(REPO + ":Q4_K_M", "-o", d)
    check(r.returncode == 0 and open(os.path.join(d, "tiny-Q4_K_M.gguf"), "rb").read() == Q4,
          "X-Linked-Etag gives the hash: " + r.stderr)
    check(any(m == "HEAD" for (m, p, rg, a) in hub.log), "a HEAD asked for the headers")
    hub.no_headers = True
    d = fresh("noheaders")
    r = pull(REPO + ":Q8_0", "-o", d)
    check(r.returncode == 1 and "--sha256" in r.stderr, "no stated hash is refused, naming --sha256: " + r.stderr)
    check(only_model_files(d) == [], "nothing written")
    r = pull(REPO + ":Q8_0", "-o", d, "--sha256", hashlib.sha256(Q8).hexdigest().upper())
    check(r.returncode == 0, "--sha256 supplies it: " + r.stderr)
    d = fresh("badgiven")
    r = pull(REPO + ":Q8_0", "-o", d, "--sha256", hashlib.sha256(Q4).hexdigest())
    check(r.returncode == 1 and "checksum mismatch" in r.stderr and only_model_files(d) == [],
          "a wrong --sha256 is a mismatch: " + r.stderr)


def test_not_found_and_bad_input():
    reset()
    d = fresh("errors")
    r = pull("acme/nothing:Q4_K_M", "-o", d)
    check(r.returncode == 1 and "no such repository" in r.stderr, "unknown repo: " + r.stderr)
    r = pull("hf://%s/missing.gguf" % REPO, "-o", d)
    check(r.returncode == 1 and "no such file" in r.stderr, "unknown file: " + r.stderr)
    r = pull(REPO + ":IQ1_S", "-o", d)
    check(r.returncode == 1 and "no GGUF model tagged IQ1_S" in r.stderr, "unknown tag: " + r.stderr)
    for bad in ["hf://acme/tiny/../../etc/passwd.gguf", "acme", "acme/tiny:Q4 K", "ftp://x/y", "acme/t/README.md"]:
        r = pull(bad, "-o", d)
        check(r.returncode == 2 and r.stderr.count("\n") == 1, "%s is a usage error: %s" % (bad, r.stderr))
    hub.tree_body = b'{"not": "a list"'
    r = pull(REPO, "-o", d)
    check(r.returncode == 1 and "not JSON" in r.stderr, "malformed tree: " + r.stderr)
    hub.tree_body = json.dumps([{"type": "file", "path": "../../evil-Q4_K_M.gguf", "lfs": {"oid": "0" * 64}}]).encode()
    r = pull(REPO, "-o", d)
    check(r.returncode == 1 and "no GGUF model" in r.stderr, "a path with .. is never followed: " + r.stderr)
    check(not os.path.exists(os.path.join(ROOT, "evil-Q4_K_M.gguf")), "nothing outside the folder")
    r = pull(REPO, "-o", d, "--endpoint", "http://127.0.0.1:1")
    check(r.returncode == 1 and "onnect" in r.stderr, "no hub: " + r.stderr)
    check(only_model_files(d) == [], "no model after all these")


def test_a_different_file_in_place_is_never_replaced():
    reset()
    d = fresh("occupied")
    os.makedirs(d)
    path = os.path.join(d, "tiny-Q8_0.gguf")
    open(path, "wb").write(b"the operator's own file")
    r = pull(REPO + ":Q8_0", "-o", d)
    check(r.returncode == 1 and "exists with other contents" in r.stderr, "refused: " + r.stderr)
    check(open(path, "rb").read() == b"the operator's own file", "the file is untouched")
    check(hub.ranges() == [], "nothing downloaded: %s" % hub.ranges())


def test_endpoint_and_token_from_the_environment():
    reset()
    d = fresh("env")
    r = pull(REPO + ":Q8_0", "-o", d, env={"HF_ENDPOINT": hub.url + "/", "HF_TOKEN": "hf_secret"})
    check(r.returncode == 0, "HF_ENDPOINT is the hub: " + r.stderr)
    check(all(a == "Bearer hf_secret" for (m, p, rg, a) in hub.log if not p.startswith("/cdn")),
          "HF_TOKEN is sent to the hub: %s" % hub.log)


def test_models_lists_what_was_pulled():
    reset()
    d = fresh("list")
    check(pull("hf://%s/sub/real-llama-F32.gguf" % REPO, "-o", d).returncode == 0, "pulled the real GGUF")
    shutil.copy(os.path.join(d, "real-llama-F32.gguf"), os.path.join(d, "copy.gguf"))
    os.makedirs(os.path.join(d, ".partial"), exist_ok=True)
    open(os.path.join(d, ".partial", "half.gguf"), "wb").write(b"GGUF")
    open(os.path.join(d, "broken.gguf"), "wb").write(b"not a model")
    keys = os.path.join(d, "..", "list-keys")
    shutil.rmtree(keys, ignore_errors=True)
    subprocess.run([SOV_BIN, "model", "keygen", "--out", keys], check=True, capture_output=True)
    subprocess.run([SOV_BIN, "model", "sign", "--key", os.path.join(keys, "sov-model-signing.pem"),
                    os.path.join(d, "copy.gguf")], check=True, capture_output=True)
    r = subprocess.run([SOV_BIN, "models", d, "--hash", "--json", "--trusted-keys", keys], capture_output=True,
                       text=True, timeout=30)
    check(r.returncode == 0, "sov models exits 0: " + r.stderr)
    rows = {m["name"]: m for m in json.loads(r.stdout)}
    check(sorted(rows) == ["broken.gguf", "copy.gguf", "real-llama-F32.gguf"], "lists the models only: %s" % rows)
    m = rows.get("real-llama-F32.gguf", {})
    check(m.get("arch") == "llama" and m.get("bytes") == len(MODEL), "arch and size: %s" % m)
    check(m.get("type") == "Q8_0", "file type from general.file_type: %s" % m)
    check(m.get("sha256") == hashlib.sha256(MODEL).hexdigest(), "sha256 with --hash")
    check(m.get("signature") == "unsigned", "unsigned: %s" % m)
    check(rows.get("copy.gguf", {}).get("signature", "").startswith("good"), "signed copy is good: %s" % rows)
    check("error" in rows.get("broken.gguf", {}), "a broken file is named, not a crash")
    with open(os.path.join(d, "copy.gguf"), "r+b") as f:  # alter one byte after signing
        f.seek(len(MODEL) - 1)
        f.write(bytes([MODEL[-1] ^ 1]))
    r = subprocess.run([SOV_BIN, "models", d, "--trusted-keys", keys], capture_output=True, text=True, timeout=30)
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("copy.gguf")]
    check(line and "altered" in line[0], "an altered model shows it: %s" % line)
    r = subprocess.run([SOV_BIN, "models", os.path.join(d, "nope")], capture_output=True, text=True)
    check(r.returncode == 1 and "cannot read" in r.stderr, "a missing folder is one error line")


run_tests([
    test_shorthand_picks_the_tagged_model,
    test_default_order_and_explicit_path,
    test_dropped_connection_resumes_in_the_same_run,
    test_interrupted_run_is_resumed_by_the_next,
    test_server_ignoring_range_restarts_cleanly,
    test_wrong_checksum_is_rejected_and_deleted,
    test_checksum_from_headers_when_the_tree_has_none,
    test_not_found_and_bad_input,
    test_a_different_file_in_place_is_never_replaced,
    test_endpoint_and_token_from_the_environment,
    test_models_lists_what_was_pulled,
])
hub.close()
shutil.rmtree(ROOT, ignore_errors=True)
finish()
