#!/usr/bin/python3
"""netfit.py - the link's latency alpha and bandwidth beta from bench_allreduce's ping-pong,
and the collectives it timed against what the model (docs/SCALE-OUT.md) predicts from them.

    netfit.py [--stat min|median] [--json] RESULTS.tsv...

Each RESULTS.tsv is bench_allreduce's output (one profile and one rank count per file; the
files of one profile may be given together). The point-to-point model of one message of m
bytes over MPI's TCP transport is

    p(m) = k(m) alpha + m / beta,   k = 1 up to the eager limit (64 KB with MPI's header),
                                    k = 3 above it (rendezvous: request, clear-to-send, data)

fitted to half the ping-pong round trips by least squares on the relative error. The
collectives as sov's tensor parallelism issues them (linear schedules of MPI's
non-blocking collectives, libnbc, for R <= 4) are then predicted, for R ranks and a vector
of m bytes:

    gathersum   k(m) alpha + (R-1) m / beta            every rank sends m to R-1 others
    rsag        2 [k(m/R) alpha + (R-1) (m/R) / beta]  alltoallv of chunks, allgatherv
    bcast       k(m) alpha + (R-1) m / beta + alpha    linear broadcast, one-int return
    allreduce   2 (R-1) [k(m/R) alpha + (m/R) / beta]  ring (reference only: MPI chooses)

Printed: alpha and beta per file, then one line per measurement with measured, predicted and
their ratio, then the largest deviation of the checked operations (all but allreduce).
--json prints {"alpha_us", "beta_gbit", "max_dev", "rows"} per file instead.
"""
import json
import sys

EAGER = 65536 - 64  # btl_tcp_eager_limit includes ob1's match header


def k(m):
    return 1 if m <= EAGER else 3


def read(path):
    rows = []
    with open(path) as f:
        head = None
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if parts[0] == "op":
                head = parts
                continue
            if head is None or len(parts) != len(head):
                continue
            r = dict(zip(head, parts))
            for key in ("ranks", "n_embd", "tokens", "bytes", "reps"):
                r[key] = int(r[key])
            for key in ("median_us", "min_us"):
                r[key] = float(r[key])
            rows.append(r)
    return rows


def fit(rows, stat):
    """alpha (s), 1/beta (s per byte) minimising the relative error of the one-way times."""
    pts = [(k(r["bytes"]), r["bytes"], r[stat] * 1e-6 / 2) for r in rows if r["op"] == "pingpong"]
    if len(pts) < 2:
        raise SystemExit("netfit.py: need ping-pong results of at least two sizes")
    # weighted least squares t ~ a*x + b*y with weights 1/t^2: 2x2 normal equations
    sxx = sum(x * x / t / t for x, y, t in pts)
    sxy = sum(x * y / t / t for x, y, t in pts)
    syy = sum(y * y / t / t for x, y, t in pts)
    sxt = sum(x / t for x, y, t in pts)
    syt = sum(y / t for x, y, t in pts)
    det = sxx * syy - sxy * sxy
    if det <= 0:
        raise SystemExit("netfit.py: ping-pong sizes too alike to separate latency and bandwidth")
    alpha = (sxt * syy - syt * sxy) / det
    inv_beta = (syt * sxx - sxt * sxy) / det
    return max(alpha, 0.0), max(inv_beta, 1e-13)


def predict(op, R, m, alpha, inv_beta):
    if op == "pingpong":
        return 2 * (k(m) * alpha + m * inv_beta)
    if op == "gathersum":
        return k(m) * alpha + (R - 1) * m * inv_beta
    if op == "rsag":
        c = m / R
        return 2 * (k(c) * alpha + (R - 1) * c * inv_beta)
    if op == "bcast":
        return k(m) * alpha + (R - 1) * m * inv_beta + alpha
    if op == "allreduce":
        c = m / R
        return 2 * (R - 1) * (k(c) * alpha + c * inv_beta)
    return None


def report(path, rows, stat):
    alpha, inv_beta = fit(rows, stat)
    out = []
    worst = 0.0
    for r in rows:
        p = predict(r["op"], r["ranks"], r["bytes"], alpha, inv_beta)
        if p is None:
            continue
        meas = r[stat] * 1e-6
        ratio = meas / p
        checked = r["op"] != "allreduce"
        if checked:
            worst = max(worst, abs(ratio - 1))
        out.append(dict(op=r["op"], ranks=r["ranks"], n_embd=r["n_embd"], tokens=r["tokens"],
                        bytes=r["bytes"], measured_us=meas * 1e6, predicted_us=p * 1e6,
                        ratio=ratio, checked=checked))
    return dict(file=path, alpha_us=alpha * 1e6, beta_gbit=8e-9 / inv_beta, max_dev=worst, rows=out)


def main(argv):
    stat, as_json, paths = "min_us", False, []
    i = 0
    while i < len(argv):
        if argv[i] == "--stat" and i + 1 < len(argv):
            stat = {"min": "min_us", "median": "median_us"}.get(argv[i + 1])
            if stat is None:
                raise SystemExit("netfit.py: --stat is min or median")
            i += 2
        elif argv[i] == "--json":
            as_json, i = True, i + 1
        else:
            paths.append(argv[i])
            i += 1
    if not paths:
        raise SystemExit(__doc__.split("\n\n")[1])
    reports = []
    for path in paths:
        rows = read(path)
        if not rows:
            raise SystemExit("netfit.py: %s holds no bench_allreduce results" % path)
        reports.append(report(path, rows, stat))
    if as_json:
        print(json.dumps(reports, indent=1))
        return
    for rep in reports:
        print("%s: alpha %.1f us, beta %.3f Gbit/s (fitted on the ping-pong, %s)" %
              (rep["file"], rep["alpha_us"], rep["beta_gbit"], stat[:-3]))
        print("  %-9s %2s %6s %4s %9s %12s %12s %6s" %
              ("op", "R", "n_embd", "T", "bytes", "measured_us", "predicted_us", "ratio"))
        for r in rep["rows"]:
            print("  %-9s %2d %6d %4d %9d %12.1f %12.1f %6.2f%s" %
                  (r["op"], r["ranks"], r["n_embd"], r["tokens"], r["bytes"], r["measured_us"],
                   r["predicted_us"], r["ratio"], "" if r["checked"] else "  (reference)"))
        print("  largest deviation of the checked operations: %.0f%%" % (100 * rep["max_dev"]))


if __name__ == "__main__":
    main(sys.argv[1:])
