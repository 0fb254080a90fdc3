"""test_k8s.py - deploy/k8s, validated offline (kubectl --dry-run needs an API server and
kubeconform is not in Debian): every manifest is parsed with PyYAML and checked against the
parts of the API that matter here, written out below:

- each object has the apiVersion its kind has in Kubernetes 1.25+ and a name; the
  kustomization lists files that exist;
- the Deployment's selector matches its pod labels, the Service and NetworkPolicies select
  those pods, the Service's targetPort names a container port;
- probes: liveness (and startup) on GET /health, readiness on GET /ready, on that port;
- the pod passes Pod Security "restricted" (the rules of the Pod Security Standards:
  runAsNonRoot, no privilege escalation, capabilities drop ALL (add at most
  NET_BIND_SERVICE), seccomp RuntimeDefault/Localhost, no host namespaces, ports or paths,
  only the allowed volume types, no privileged, runAsUser not 0), plus a read-only root
  file system, and its namespace enforces restricted;
- the model volume is mounted read-only; no service-account token;
- NetworkPolicy sov-deny-egress selects the pods, has Egress in policyTypes and no egress
  rule: all egress denied;
- Prometheus scrape annotations name the container port and /metrics;
- the container's args are options `sov serve --help` documents.
Each check also runs on a broken copy and must fail."""
import copy
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "server"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from deploylib import DEPLOY, unknown_serve_options  # noqa: E402
from serverlib import check, finish, run_tests  # noqa: E402

try:
    import yaml
except ImportError:
    print("SKIP: python3-yaml is not installed", file=sys.stderr)
    sys.exit(77)

K8S = os.path.join(DEPLOY, "k8s")
API = {"Namespace": "v1", "Service": "v1", "PersistentVolumeClaim": "v1", "Secret": "v1", "ConfigMap": "v1",
       "Deployment": "apps/v1", "NetworkPolicy": "networking.k8s.io/v1",
       "Kustomization": "kustomize.config.k8s.io/v1beta1"}
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret", "name"}


def load():
    objs = {}
    for f in sorted(os.listdir(K8S)):
        if f.endswith(".yaml"):
            for d in yaml.safe_load_all(open(os.path.join(K8S, f))):
                if d:
                    objs[(d.get("kind"), d.get("metadata", {}).get("name"))] = d
    return objs


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def problems(objs):
    out = []
    for (kind, name), o in objs.items():
        if kind not in API:
            out.append("unknown kind %s" % kind)
        elif o.get("apiVersion") != API[kind]:
            out.append("%s %s: apiVersion %s, not %s" % (kind, name, o.get("apiVersion"), API[kind]))
        if kind != "Kustomization" and not name:
            out.append("%s without a name" % kind)
    kust = [o for (k, _), o in objs.items() if k == "Kustomization"]
    for k in kust:
        for r in k.get("resources", []):
            if not os.path.exists(os.path.join(K8S, r)):
                out.append("kustomization lists a missing file %s" % r)
    deps = [o for (k, _), o in objs.items() if k == "Deployment"]
    if len(deps) != 1:
        return out + ["expected one Deployment"]
    dep = deps[0]
    spec = dep["spec"]
    pod = spec["template"]
    labels = pod["metadata"].get("labels", {})
    if not selects(spec["selector"].get("matchLabels"), labels):
        out.append("the Deployment's selector does not match its pod labels")
    ps = pod["spec"]
    cs = ps.get("containers", [])
    if len(cs) != 1:
        return out + ["expected one container"]
    c = cs[0]
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    port_of = lambda p: ports.get(p, p)  # noqa: E731
    # probes
    for probe, path in (("livenessProbe", "/health"), ("readinessProbe", "/ready"), ("startupProbe", "/health")):
        g = c.get(probe, {}).get("httpGet")
        if not g or g.get("path") != path or port_of(g.get("port")) not in ports.values():
            out.append("%s is not GET %s on the container port" % (probe, path))
    # Pod Security "restricted"
    psc, csc = ps.get("securityContext", {}), c.get("securityContext", {})
    eff = lambda k: csc.get(k, psc.get(k))  # noqa: E731
    if eff("runAsNonRoot") is not True:
        out.append("runAsNonRoot is not true")
    if eff("runAsUser") == 0:
        out.append("runAsUser 0")
    if csc.get("allowPrivilegeEscalation") is not False:
        out.append("allowPrivilegeEscalation is not false")
    if csc.get("privileged"):
        out.append("privileged")
    caps = csc.get("capabilities", {})
    if "ALL" not in caps.get("drop", []) or set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
        out.append("capabilities do not drop ALL (or add more than NET_BIND_SERVICE)")
    sp = (csc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
    if sp not in ("RuntimeDefault", "Localhost"):
        out.append("seccompProfile is %s" % sp)
    for k in ("hostNetwork", "hostPID", "hostIPC"):
        if ps.get(k):
            out.append(k)
    if any(p.get("hostPort") for p in c.get("ports", [])):
        out.append("hostPort")
    for v in ps.get("volumes", []):
        if set(v) - RESTRICTED_VOLUMES:
            out.append("volume %s of a type restricted forbids: %s" % (v.get("name"), set(v) - RESTRICTED_VOLUMES))
    if csc.get("readOnlyRootFilesystem") is not True:
        out.append("the root file system is writable")
    if ps.get("automountServiceAccountToken") is not False:
        out.append("a service-account token is mounted")
    ns = objs.get(("Namespace", dep["metadata"].get("namespace")))
    if not ns or ns["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce") != "restricted":
        out.append("the namespace does not enforce Pod Security restricted")
    # the model read-only
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    if not mounts.get("/models", {}).get("readOnly"):
        out.append("/models is not mounted read-only")
    # args
    args = c.get("args", [])
    if not args or args[0] != "serve" or unknown_serve_options(args[1:]):
        out.append("args are not a sov serve with documented options: %s" % unknown_serve_options(args[1:]))
    if "--host" not in args or args[args.index("--host") + 1] != "0.0.0.0":
        out.append("sov serve does not listen on the pod's address")
    elif "--port" not in args or int(args[args.index("--port") + 1]) not in ports.values():
        out.append("sov serve's --port is not the container port")
    # Service
    svcs = [o for (k, _), o in objs.items() if k == "Service"]
    if not svcs or not selects(svcs[0]["spec"].get("selector"), labels):
        out.append("no Service selecting the pods")
    else:
        for p in svcs[0]["spec"]["ports"]:
            if port_of(p.get("targetPort")) not in ports.values():
                out.append("the Service's targetPort %s is no container port" % p.get("targetPort"))
    # NetworkPolicy: all egress denied
    np = objs.get(("NetworkPolicy", "sov-deny-egress"))
    if not np:
        out.append("no NetworkPolicy sov-deny-egress")
    else:
        s = np["spec"]
        if not selects(s.get("podSelector", {}).get("matchLabels"), labels):
            out.append("the NetworkPolicy does not select the pods")
        if "Egress" not in s.get("policyTypes", []) or s.get("egress"):
            out.append("the NetworkPolicy does not deny all egress")
    # Prometheus
    ann = pod["metadata"].get("annotations", {})
    if ann.get("prometheus.io/scrape") != "true" or ann.get("prometheus.io/path") != "/metrics" or \
            int(ann.get("prometheus.io/port", -1)) not in ports.values():
        out.append("Prometheus scrape annotations missing or not on the container port")
    return out


def test_manifests_pass():
    objs = load()
    check(len(objs) >= 6, "the manifests: %s" % sorted(objs))
    p = problems(objs)
    check(not p, "manifest problems: %s" % p)


def mutate(objs, fn):
    o = copy.deepcopy(objs)
    fn(o)
    return o


def dep(o):
    return o[("Deployment", "sov")]["spec"]["template"]


def ctr(o):
    return dep(o)["spec"]["containers"][0]


def test_checks_catch_broken_manifests():
    objs = load()
    broken = {
        "privilege escalation": lambda o: ctr(o)["securityContext"].update(allowPrivilegeEscalation=True),
        "root": lambda o: (ctr(o)["securityContext"].pop("runAsNonRoot"),
                           dep(o)["spec"]["securityContext"].pop("runAsNonRoot")),
        "capability added": lambda o: ctr(o)["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]),
        "hostPath volume": lambda o: dep(o)["spec"]["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
        "hostNetwork": lambda o: dep(o)["spec"].update(hostNetwork=True),
        "unconfined seccomp": lambda o: (ctr(o)["securityContext"].pop("seccompProfile"),
                                         dep(o)["spec"]["securityContext"].pop("seccompProfile")),
        "writable root": lambda o: ctr(o)["securityContext"].update(readOnlyRootFilesystem=False),
        "egress allowed": lambda o: o[("NetworkPolicy", "sov-deny-egress")]["spec"].update(egress=[{}]),
        "no Egress type": lambda o: o[("NetworkPolicy", "sov-deny-egress")]["spec"].update(policyTypes=["Ingress"]),
        "readiness on /health": lambda o: ctr(o)["readinessProbe"]["httpGet"].update(path="/health"),
        "liveness on another port": lambda o: ctr(o)["livenessProbe"]["httpGet"].update(port=9999),
        "model writable": lambda o: ctr(o)["volumeMounts"][0].update(readOnly=False),
        "Service selects nothing": lambda o: o[("Service", "sov")]["spec"].update(selector={"app": "x"}),
        "no Prometheus": lambda o: dep(o)["metadata"]["annotations"].pop("prometheus.io/scrape"),
        "unknown sov option": lambda o: ctr(o)["args"].append("--no-such-option"),
        "namespace not restricted": lambda o: o[("Namespace", "sov")]["metadata"]["labels"].update(
            {"pod-security.kubernetes.io/enforce": "baseline"}),
        "old apiVersion": lambda o: o[("Deployment", "sov")].update(apiVersion="extensions/v1beta1"),
    }
    for what, fn in broken.items():
        check(problems(mutate(objs, fn)), "the check catches: %s" % what)


run_tests([test_manifests_pass, test_checks_catch_broken_manifests])
finish()
