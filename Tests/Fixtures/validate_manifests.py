"""Validates the Kubernetes examples: core kinds strictly against Kubernetes' own schema
(kubernetes-validate), KServe kinds against the fields model-agent relies on.

    validate_manifests.py DIR [--kubernetes-version 1.37.0]

Prints one line per finding and exits 1 if there is any; 0 and a summary otherwise.
Run with .venvs/image/bin/python (scripts/setup-env makes it).
"""

import argparse
import json
import os
import pathlib
import re
import signal
import stat
import sys

import kubernetes_validate
import yaml

MODEL_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
# Kubernetes object names (DNS-1123 subdomain); TrainedModel names must also pass MODEL_NAME.
OBJECT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# URIs other initializers serve; a pattern claiming one would route it to `model-agent pull`.
FOREIGN_URIS = ("hdfs://a/b", "hf://org/model", "https://acct.blob.core.windows.net/c/m",
                "https://acct.file.core.windows.net/s/m")
# The fields of the KServe kinds the examples use, per object path: a misspelt key would be
# dropped by the API server (these CRDs prune unknown fields) and its setting silently lost.
KSERVE_FIELDS = {
    ("InferenceService", ""): {"apiVersion", "kind", "metadata", "spec"},
    ("InferenceService", "spec"): {"predictor"},
    ("InferenceService", "spec.predictor"): {"serviceAccountName", "model", "minReplicas", "maxReplicas"},
    ("InferenceService", "spec.predictor.model"): {"modelFormat", "protocolVersion", "runtime", "resources", "args",
                                                   "env", "storageUri"},
    ("InferenceService", "spec.predictor.model.modelFormat"): {"name", "version"},
    ("InferenceService", "spec.predictor.model.resources"): {"requests", "limits"},
    ("TrainedModel", ""): {"apiVersion", "kind", "metadata", "spec"},
    ("TrainedModel", "spec"): {"inferenceService", "model"},
    ("TrainedModel", "spec.model"): {"storageUri", "framework", "memory"},
    ("ClusterStorageContainer", ""): {"apiVersion", "kind", "metadata", "spec"},
    ("ClusterStorageContainer", "spec"): {"container", "supportedUriFormats", "workloadType"},
    ("ClusterStorageContainer", "spec.container"): {"name", "image", "command", "args", "env", "resources",
                                                    "securityContext", "imagePullPolicy"},
}
# What model-agent downloads (README, "Storage"); anything else fails its model.
AGENT_SCHEMES = ("s3://", "gs://", "http://", "https://")
QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|m)?$")
SUFFIX = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


# Examples are small text files; anything else is refused before it is read.
MAX_FILE_BYTES = 1 << 20


class Timeout(Exception):
    pass


def search_with_deadline(pattern, text, seconds=2):
    """re.search with a deadline: Python's backtracking can take forever on a pattern
    that KServe's Go RE2 evaluates in linear time."""
    def expire(signum, frame):
        raise Timeout()
    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        return pattern.search(text)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def uses_aliases(text):
    """Anchors and aliases: no example needs them, and an alias bomb would blow up here."""
    try:
        return any(isinstance(token, (yaml.AnchorToken, yaml.AliasToken)) for token in yaml.scan(text))
    except yaml.YAMLError:
        return False  # reported when the file is loaded


def quantity(value):
    """A Kubernetes quantity in bytes (or cores), or None when it is not one."""
    match = QUANTITY.match(str(value))
    return float(match.group(1)) * SUFFIX[match.group(2)] if match else None


def dig(doc, *path):
    for key in path:
        if not isinstance(doc, dict) or key not in doc:
            return None
        doc = doc[key]
    return doc


class Findings:
    def __init__(self):
        self.lines = []

    def __call__(self, where, message):
        self.lines.append(f"{where}: {message}")


def check_fields(doc, kind, where, problem):
    for (fields_kind, path), allowed in KSERVE_FIELDS.items():
        if fields_kind != kind:
            continue
        node = dig(doc, *path.split(".")) if path else doc
        if node is None:
            continue
        if not isinstance(node, dict):
            problem(where, f"{path or 'the object'} must be a mapping")
            continue
        for key in sorted(set(node) - allowed):
            problem(where, f"unknown field {(path + '.' if path else '') + str(key)!r} (misspelt?)")
    if kind == "ClusterStorageContainer":
        for entry in dig(doc, "spec", "supportedUriFormats") or []:
            if not isinstance(entry, dict) or set(entry) - {"prefix", "regex"} or len(entry) != 1:
                problem(where, f"supportedUriFormats entry {entry!r}: one of prefix or regex")


def check_inference_service(doc, where, problem):
    model = dig(doc, "spec", "predictor", "model") or {}
    if dig(model, "storageUri") is not None:
        problem(where, "a multi-model InferenceService names no storageUri (its models are TrainedModels)")
    if not dig(model, "modelFormat", "name"):
        problem(where, "spec.predictor.model.modelFormat.name is required")
    if dig(model, "protocolVersion") != "v2":
        problem(where, "protocolVersion must be v2: the agent loads through the V2 repository API")
    runtime = dig(model, "runtime")
    if runtime not in ("kserve-mlserver", "kserve-tritonserver"):
        problem(where, f"runtime {runtime!r}: the examples target kserve-mlserver or kserve-tritonserver")
    if runtime == "kserve-tritonserver" and "--model-control-mode=explicit" not in (dig(model, "args") or []):
        problem(where, "Triton needs --model-control-mode=explicit, or it refuses the agent's load calls")
    limit = quantity(dig(model, "resources", "limits", "memory"))
    if limit is None:
        problem(where, "resources.limits.memory must be a quantity: KServe admits TrainedModels against it")
    return limit


def check_trained_model(doc, where, problem):
    name = dig(doc, "metadata", "name") or ""
    if not MODEL_NAME.match(name) or name.startswith(".") or len(name.encode()) > 200:
        problem(where, f"model name {name!r} would be refused by the agent (README, models.json)")
    uri = dig(doc, "spec", "model", "storageUri") or ""
    if not uri.startswith(AGENT_SCHEMES):
        problem(where, f"storageUri {uri!r} uses a scheme the agent does not serve")
    if not dig(doc, "spec", "model", "framework"):
        problem(where, "spec.model.framework is required")
    memory = quantity(dig(doc, "spec", "model", "memory"))
    if memory is None:
        problem(where, "spec.model.memory must be a quantity")
    if not dig(doc, "spec", "inferenceService"):
        problem(where, "spec.inferenceService is required")
    return memory


def check_storage_container(doc, where, problem):
    container = dig(doc, "spec", "container") or {}
    if container.get("name") != "storage-initializer":
        problem(where, "KServe only recognises a container named storage-initializer")
    if container.get("command") != ["model-agent", "pull"]:
        problem(where, "command must be [model-agent, pull]: KServe adds <uri> <dest> as its arguments")
    if container.get("args"):
        problem(where, "no args: KServe's <uri> <dest> must directly follow `pull`")
    formats = dig(doc, "spec", "supportedUriFormats") or []
    if not formats:
        problem(where, "supportedUriFormats is empty")
    for entry in formats:
        if not isinstance(entry, dict):
            continue  # reported by check_fields
        prefix = entry.get("prefix")
        if prefix is not None:
            prefix = str(prefix)
            if not prefix.startswith(AGENT_SCHEMES):
                problem(where, f"supportedUriFormats prefix {prefix!r} is not served by model-agent pull")
            for uri in FOREIGN_URIS:
                if uri.startswith(prefix):
                    problem(where, f"supportedUriFormats prefix {prefix!r} claims {uri}, which pull does not serve")
        regex = entry.get("regex")
        if regex is not None:
            try:
                pattern = re.compile(regex)
            except re.error as error:
                problem(where, f"supportedUriFormats regex {regex!r}: {error}")
                continue
            # KServe matches with Go's regexp.MatchString: unanchored, like re.search.
            for uri in FOREIGN_URIS:
                try:
                    claimed = search_with_deadline(pattern, uri)
                except Timeout:
                    problem(where, f"supportedUriFormats regex {regex!r} takes too long to match")
                    break
                if claimed:
                    problem(where, f"supportedUriFormats regex {regex!r} claims {uri}, which pull does not serve")


def check_agent_config(doc, where, problem):
    raw = dig(doc, "data", "agent")
    try:
        agent = json.loads(raw if isinstance(raw, str) else "")
    except ValueError as error:
        problem(where, f"data.agent is not JSON: {error}")
        return
    if not isinstance(agent, dict):
        problem(where, "data.agent must be a JSON object")
        return
    if not agent.get("image"):
        problem(where, "data.agent.image is required")
    for key in ("memoryRequest", "memoryLimit", "cpuRequest", "cpuLimit"):
        if quantity(agent.get(key, "")) is None:
            problem(where, f"data.agent.{key} must be a quantity")
    if quantity(agent.get("memoryRequest", "")) and quantity(agent.get("memoryLimit", "")):
        if quantity(agent["memoryRequest"]) > quantity(agent["memoryLimit"]):
            problem(where, "data.agent.memoryRequest exceeds memoryLimit")


def check_patch(path, problem):
    """A merge patch of KServe's inferenceservice-config: `data.agent` only."""
    try:
        patch = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        problem(path, f"not YAML: {error}")
        return
    if not isinstance(patch, dict) or set(patch) != {"data"} or not isinstance(patch["data"], dict) \
            or set(patch["data"]) != {"agent"}:
        problem(path, "a patch of inferenceservice-config holds `data.agent` only (a whole ConfigMap "
                      "would replace KServe's other keys)")
        return
    check_agent_config(patch, str(path), problem)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("directory")
    parser.add_argument("--kubernetes-version", default="1.37.0")
    arguments = parser.parse_args()

    problem = Findings()
    services, accounts, used_accounts, trained = {}, set(), [], []
    core = kserve = 0
    files = sorted(pathlib.Path(arguments.directory).rglob("*.yaml"))
    if not files:
        problem(arguments.directory, "no manifests found")
    for path in files:
        try:
            info = os.stat(path)
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_FILE_BYTES:
                problem(path, f"not a regular file of at most {MAX_FILE_BYTES} bytes")
                continue
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as error:
            problem(path, f"unreadable: {error}")
            continue
        if uses_aliases(text):
            problem(path, "YAML anchors and aliases are not used in the examples")
            continue
        if not text.lstrip().startswith("#"):
            problem(path, "each example starts with a comment saying what it is for")
        if path.parent.name == "patches":
            try:
                check_patch(path, problem)
            except Exception as error:  # a hostile file is a finding, never a crash
                problem(path, f"cannot check: {type(error).__name__}: {str(error)[:200]}")
            continue
        try:
            docs = [doc for doc in yaml.safe_load_all(text) if doc is not None]
        except (yaml.YAMLError, RecursionError) as error:
            problem(path, f"not YAML: {type(error).__name__}")
            continue
        for index, doc in enumerate(docs):
            try:
                counts = check_document(path, index, doc, arguments.kubernetes_version, problem, services,
                                        accounts, used_accounts, trained)
            except Exception as error:  # a hostile document is a finding, never a crash
                problem(f"{path}#{index}", f"cannot check: {type(error).__name__}: {str(error)[:200]}")
                continue
            core += counts[0]
            kserve += counts[1]

    finish(problem, services, accounts, used_accounts, trained)
    for line in problem.lines:
        print(line)
    if problem.lines:
        return 1
    print(f"validate_manifests: {len(files)} files, {core} core objects valid for Kubernetes "
          f"{arguments.kubernetes_version} (strict), {kserve} KServe objects checked")
    return 0


def check_document(path, index, doc, version, problem, services, accounts, used_accounts, trained):
    """Checks one object; returns how many core and KServe objects it counted as."""
    if not isinstance(doc, dict):
        problem(f"{path}#{index}", "a document must be a Kubernetes object (a mapping)")
        return 0, 0
    kind, api = dig(doc, "kind"), dig(doc, "apiVersion") or ""
    name = dig(doc, "metadata", "name")
    if not isinstance(kind, str) or not isinstance(api, str) or not api or not isinstance(name, str):
        problem(f"{path}#{index}", "apiVersion, kind and metadata.name are required strings")
        return 0, 0
    where = f"{path}#{index} {kind[:60]}/{name[:80]}"
    if not OBJECT_NAME.match(name) or len(name) > 253:
        problem(where, f"metadata.name {name[:80]!r} is not a valid Kubernetes name (DNS-1123)")
    if api.startswith("serving.kserve.io/"):
        check_fields(doc, kind, where, problem)
        if (kind, api) == ("InferenceService", "serving.kserve.io/v1beta1"):
            services[name] = check_inference_service(doc, where, problem)
            account = dig(doc, "spec", "predictor", "serviceAccountName")
            if account is not None:
                used_accounts.append((where, str(account)))
        elif (kind, api) == ("TrainedModel", "serving.kserve.io/v1alpha1"):
            service = dig(doc, "spec", "inferenceService")
            trained.append((where, str(service), check_trained_model(doc, where, problem)))
        elif (kind, api) == ("ClusterStorageContainer", "serving.kserve.io/v1alpha1"):
            check_storage_container(doc, where, problem)
        else:
            problem(where, f"unknown KServe kind {kind} {api}")
        return 0, 1
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        path_text = ".".join(str(part) for part in error.path)
        problem(where, f"Kubernetes {version}: {path_text}: {error.message}")
    except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as error:
        problem(where, f"no Kubernetes schema: {error}")
    if kind == "ServiceAccount":
        accounts.add(name)
    if kind == "ConfigMap" and name == "inferenceservice-config":
        problem(where, "a whole inferenceservice-config would replace KServe's; ship a patch in patches/")
    return 1, 0


def finish(problem, services, accounts, used_accounts, trained):
    """Cross-references: ServiceAccounts and InferenceServices named, memory within limits."""
    for where, account in used_accounts:
        if account not in accounts:
            problem(where, f"serviceAccountName {account!r} is defined by no example")
    memory_used = {}
    for where, service, memory in trained:
        if service not in services:
            problem(where, f"inferenceService {service!r} is defined by no example")
            continue
        memory_used[service] = memory_used.get(service, 0) + (memory or 0)
        limit = services[service]
        if limit is not None and memory_used[service] > limit:
            problem(where, f"the TrainedModels of {service} need more memory than its limit: KServe refuses this one")


if __name__ == "__main__":
    sys.exit(main())
