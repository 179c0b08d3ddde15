"""Shared parts of the kind and minikube stand-ins (tests only).

A stand-in behaves like the real CLI at its process boundary: it records its argv (one JSON list
per line in $SPROUT_STANDIN_LOG), keeps the clusters it "created" in $SPROUT_STANDIN_STATE, and
hands back a kubeconfig for the real test control plane ($SPROUT_STANDIN_KUBECONFIG), so that
sprout's sync runs for real. $SPROUT_STANDIN_FAIL="<words>" makes the invocation whose argv
starts with those words fail once, to simulate a run killed midway.
"""
import json, os, re, sys


def record():
    with open(os.environ["SPROUT_STANDIN_LOG"], "a") as log:
        log.write(json.dumps([os.path.basename(sys.argv[0])] + sys.argv[1:]) + "\n")


def fail_once_if_asked():
    words = os.environ.get("SPROUT_STANDIN_FAIL", "").split()
    marker = os.path.join(state_dir(), "failed-once")
    if words and sys.argv[1:1 + len(words)] == words and not os.path.exists(marker):
        open(marker, "w").close()
        sys.exit(f"{os.path.basename(sys.argv[0])}: simulated failure")


def state_dir():
    path = os.environ["SPROUT_STANDIN_STATE"]
    os.makedirs(path, exist_ok=True)
    return path


def flag(name, default=None):
    args = sys.argv[1:]
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return default


def clusters(prefix):
    return sorted(f[len(prefix):] for f in os.listdir(state_dir()) if f.startswith(prefix))


def kubeconfig_for(context):
    """The test control plane's kubeconfig, its context renamed as the real tool names it."""
    with open(os.environ["SPROUT_STANDIN_KUBECONFIG"]) as f:
        text = f.read()
    return text.replace("name: envtest\n  context", f"name: {context}\n  context").replace(
        "current-context: envtest", f"current-context: {context}")


def require(pattern, value, what):
    if not value or not re.fullmatch(pattern, value):
        sys.exit(f"ERROR: invalid {what}: {value!r}")
