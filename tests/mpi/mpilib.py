"""mpilib.py - helpers for the tensor-parallel tests: the mpirun command line every test uses
(loopback TCP only, oversubscribed on a small machine, allowed as root as CI runs) and the
models they split. Not a test itself (no test_ prefix)."""
import os
import shutil
import subprocess
import sys
import threading
import time

SOV = os.environ.get("SOV_BIN", "build/sov")
TOOLS = os.environ.get("SOV_TOOLS_DIR", "build/tests/tools")
TMP = os.environ.get("SOV_TEST_TMP", "/tmp")
SHARED = os.environ.get("SOV_SHARED_MODELS", "../shared/models")
os.makedirs(TMP, exist_ok=True)

# CI runs as root: OpenMPI refuses that unless both are set
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")
# the sanitizer build: OpenMPI's libraries keep allocations until exit (lsan.supp names only
# them); the ranks inherit this environment from mpirun
_supp = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lsan.supp")
ENV["ASAN_OPTIONS"] = ":".join(x for x in [os.environ.get("ASAN_OPTIONS", ""), "fast_unwind_on_malloc=0"] if x)
ENV["LSAN_OPTIONS"] = ":".join(x for x in [os.environ.get("LSAN_OPTIONS", ""), "suppressions=" + _supp] if x)


def mpirun_path():
    """mpirun, or the test FAILS: a build with MPI must be testable (scripts/deps.sh installs it)."""
    p = shutil.which("mpirun")
    if not p:
        print("FAIL: mpirun is missing: install openmpi-bin (scripts/deps.sh test)", file=sys.stderr)
        sys.exit(1)
    return p


def mpirun(n, tcp=False):
    """The mpirun prefix for n ranks on this machine. Out-of-band and TCP traffic stay on the
    loopback interface; tcp=True also forbids shared memory (btl tcp,self), as ranks on
    different machines would talk."""
    cmd = [mpirun_path(), "--oversubscribe", "-np", str(n), "--mca", "oob_tcp_if_include", "lo",
           "--mca", "btl_tcp_if_include", "lo"]
    if tcp:
        cmd += ["--mca", "btl", "tcp,self"]
    return cmd


# The sanitizer build (SOV_SANITIZE, `make test-san`) runs every rank 5-10x slower: there
# the greedy tests split each model over the smallest rank count of a case only (the same
# code paths; the release build runs them all).
SANITIZED = os.environ.get("SOV_TEST_SANITIZED") == "1"


def rank_set(ranks):
    """The rank counts a case runs with: all of them, or the smallest under the sanitizers."""
    return tuple(ranks) if not SANITIZED else (min(ranks),)


def shared_model(name):
    p = os.path.join(SHARED, name)
    if os.path.exists(p):
        return p
    if os.environ.get("SOV_REQUIRE_SHARED") == "1":
        print("FAIL: required shared model %s is missing" % p, file=sys.stderr)
        sys.exit(1)
    return None


def synthetic_model(name, *args):
    """A model written by `sov gen-model` (cached in the test folder)."""
    path = os.path.join(TMP, name)
    if not os.path.exists(path):
        subprocess.run([SOV, "gen-model", "-o", path + ".part"] + list(args), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.rename(path + ".part", path)
    return path


def vocab_source():
    """A tokenizer to give synthetic models, so `sov run` prints text."""
    return shared_model("stories260K.gguf")


def rank_pid(tag, rank, timeout=30):
    """The pid of the sov process of the given rank in the job tagged SOV_TEST_TAG=tag."""
    t_end = time.time() + timeout
    while time.time() < t_end:
        for p in os.listdir("/proc"):
            if not p.isdigit():
                continue
            try:
                env = open("/proc/%s/environ" % p, "rb").read().split(b"\0")
                comm = open("/proc/%s/comm" % p).read().strip()
            except OSError:
                continue
            if comm == "sov" and b"SOV_TEST_TAG=" + tag.encode() in env and \
                    b"OMPI_COMM_WORLD_RANK=%d" % rank in env:
                return int(p)
        time.sleep(0.05)
    return None


def split_server(model, split, n, env=None):
    """`mpirun -np n sov serve ... --<split> n` (TCP between the ranks), started and ready:
    a serverlib.Server (its raw HTTP helpers) for the job."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "server"))
    import serverlib

    return serverlib.Server(model, "--parallel", "4", "--" + split, str(n), threads=1,
                            launcher=mpirun(n, tcp=True), env=dict(ENV, **(env or {})), tag=split + "-serve")


SERVE_PROMPTS = [
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the sunshine with her dog.",
    "One day, a big bear came to the forest.",
    "Tom had a red ball. He liked to throw it high in the sky and catch it with his hands.",
]


def serve_answers(srv, check, max_tokens=32):
    """Greedy completions from srv: the first prompt alone, all three at once (one batch),
    then the first again (the prefix cache); check(cond, what) records failures."""
    def complete(prompt):
        st, body = srv.json("/v1/completions", {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0})
        check(st == 200, "status %s: %s" % (st, body))
        return body["choices"][0]["text"] if st == 200 else None

    out = {"alone": complete(SERVE_PROMPTS[0])}
    res = [None] * len(SERVE_PROMPTS)

    def one(i):
        res[i] = complete(SERVE_PROMPTS[i])
    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(SERVE_PROMPTS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out["together"] = res
    out["cached"] = complete(SERVE_PROMPTS[0])
    return out
