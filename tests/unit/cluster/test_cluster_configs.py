"""cluster/configs: every file parses, has the fields its tool needs, names the one project image,
takes its versions from pyproject.toml, and holds no secret. No network, no cluster, no Ray import."""
from __future__ import annotations

import importlib.util
import json
import py_compile
import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
CONFIGS = ROOT / "cluster" / "configs"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def lower_bound(dist: str) -> str:
    """The `>=` bound of a dependency in pyproject.toml (the version the project pins and tests)."""
    for req in PYPROJECT["project"]["dependencies"]:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*>=\s*([0-9][0-9A-Za-z.+-]*)", req.strip())
        if m and m.group(1).lower() == dist:
            return m.group(3)
    raise AssertionError(f"no '{dist}>=' bound in pyproject.toml")


VERSION = PYPROJECT["project"]["version"]
IMAGE = f"ghcr.io/conductor-ml/conductor:{VERSION}"  # the one image every config names
SECRET_VARS = {"WANDB_API_KEY", "RAY_AUTH_TOKEN", "PREFECT_API_AUTH_STRING", "PREFECT_SERVER_API_AUTH_STRING",
               "PREFECT_API_KEY", "CONDUCTOR_OPTUNA_STORAGE"}
SECRET_NAME = "conductor-secrets"

YAML_FILES = sorted(CONFIGS.glob("*.yaml"))
JSON_FILES = sorted(CONFIGS.glob("*.json"))
CONFIG_FILES = YAML_FILES + JSON_FILES + [CONFIGS / "Dockerfile", CONFIGS / "dask_slurm.py"]


def load(name: str):
    path = CONFIGS / name
    return json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())


def walk(obj):
    """Every dict inside obj (depth first)."""
    if isinstance(obj, dict):
        yield obj
        for v in obj.values():
            yield from walk(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from walk(v)


def containers(pod_spec: dict) -> list[dict]:
    return pod_spec.get("containers", []) + pod_spec.get("initContainers", [])


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


# ---------------------------------------------------------------- every file is there and parses

def test_expected_files_exist():
    names = {p.name for p in CONFIGS.iterdir()}
    for name in ("Dockerfile", "ray-cluster.yaml", "kuberay-raycluster.yaml", "dask-kubernetes.yaml",
                 "dask-slurm.yaml", "dask_slurm.py", "prefect-k8s-job-template.json", "README.md"):
        assert name in names, name


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.name)
def test_yaml_parses(path):
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs and all(isinstance(d, dict) for d in docs)


@pytest.mark.parametrize("path", JSON_FILES, ids=lambda p: p.name)
def test_json_parses(path):
    assert isinstance(json.loads(path.read_text()), dict)


def test_configs_ship_as_package_data():
    assert "configs/*" in PYPROJECT["tool"]["setuptools"]["package-data"]["cluster"]


# ---------------------------------------------------------------- one image, versions from pyproject

def test_every_config_names_the_same_image():
    found = {
        "ray-cluster.yaml": [load("ray-cluster.yaml")["docker"]["image"]],
        "prefect-k8s-job-template.json": [load("prefect-k8s-job-template.json")["variables"]["properties"]["image"]["default"]],
    }
    for name in ("kuberay-raycluster.yaml", "dask-kubernetes.yaml"):
        found[name] = [d["image"] for d in walk(load(name)) if "image" in d and isinstance(d["image"], str)]
    for name, images in found.items():
        assert images and set(images) == {IMAGE}, (name, images)
    # ray up may override per node type: it must not
    for node in load("ray-cluster.yaml")["available_node_types"].values():
        assert "worker_image" not in node.get("docker", {})
    # and every mention in any file is this image (a GPU build may add a suffix to the tag)
    for path in CONFIG_FILES + [CONFIGS / "README.md"]:
        for tag in re.findall(r"ghcr\.io/conductor-ml/conductor:([\w.-]+)", path.read_text()):
            assert tag == VERSION or tag.startswith(VERSION + "-"), (path.name, tag)
    assert IMAGE in (CONFIGS / "Dockerfile").read_text()


def test_dockerfile_installs_pinned_torch_first_then_the_project():
    text = (CONFIGS / "Dockerfile").read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    py = PYPROJECT["project"]["requires-python"].removeprefix(">=")
    assert lines[0] == f"FROM python:{py}-slim" or lines[0].startswith(f"FROM python:{py}-slim ")
    torch_pin = f"torch=={lower_bound('torch')}"
    assert f'ARG TORCH="{torch_pin}"' in lines
    assert any(ln.startswith("ARG TORCH_INDEX=") and "download.pytorch.org/whl/cpu" in ln for ln in lines)
    torch_at = next(i for i, ln in enumerate(lines) if "pip install" in ln and '"${TORCH_INDEX}"' in ln)
    assert '"${TORCH}"' in lines[torch_at]
    project_at = next(i for i, ln in enumerate(lines) if re.search(r"pip install \.(\s|$)", ln))
    assert torch_at < project_at
    # ray, prefect & co. come from pyproject.toml through `pip install .`, never pinned twice
    for dist in ("ray", "prefect", "dask", "optuna", "wandb"):
        assert not re.search(rf"\b{dist}(\[[^\]]*\])?==", text), dist
    users = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert any(ln.startswith("WORKDIR ") for ln in lines)
    assert not any(ln.startswith("ENTRYPOINT") for ln in lines)  # KubeRay, ray up and Prefect set the command


# ---------------------------------------------------------------- ray up

def test_ray_up_config():
    cfg = load("ray-cluster.yaml")
    for key in ("cluster_name", "max_workers", "provider", "head_node_type", "available_node_types"):
        assert key in cfg, key
    assert cfg["docker"]["image"] == IMAGE
    assert cfg["provider"]["type"] == "aws"
    types = cfg["available_node_types"]
    assert cfg["head_node_type"] in types and len(types) >= 2
    for node in types.values():
        assert "resources" in node and "node_config" in node
    head = " ".join(cfg["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "0.0.0.0" not in head
    assert "--object-store-memory=" in head
    assert "--object-store-memory=" in " ".join(cfg["worker_start_ray_commands"])
    opts = " ".join(cfg["docker"]["run_options"])
    assert "RAY_AUTH_MODE=token" in opts
    token_path = re.search(r"RAY_AUTH_TOKEN_PATH=(\S+)", opts).group(1)
    assert token_path in cfg["file_mounts"]  # the token file reaches every node
    assert "CONDUCTOR_HOME=" in opts


def test_ray_up_config_matches_rays_schema():
    jsonschema = pytest.importorskip("jsonschema")
    spec = importlib.util.find_spec("ray")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("ray is not installed")
    schema_path = Path(list(spec.submodule_search_locations)[0]) / "autoscaler" / "ray-schema.json"
    if not schema_path.is_file():
        pytest.skip("this ray has no autoscaler schema")
    jsonschema.validate(load("ray-cluster.yaml"), json.loads(schema_path.read_text()))


# ---------------------------------------------------------------- KubeRay

def test_kuberay_raycluster():
    rc = load("kuberay-raycluster.yaml")
    assert rc["apiVersion"] == "ray.io/v1" and rc["kind"] == "RayCluster"
    spec = rc["spec"]
    assert spec["rayVersion"] == lower_bound("ray")
    head, workers = spec["headGroupSpec"], spec["workerGroupSpecs"]
    assert workers and all(w["groupName"] and w["maxReplicas"] >= w["minReplicas"] for w in workers)
    assert head["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    groups = [head, *workers]
    for group in groups:
        params = group["rayStartParams"]
        assert all(isinstance(v, str) for v in params.values()), params  # KubeRay wants map[string]string
        assert "object-store-memory" in params
        for c in containers(group["template"]["spec"]):
            assert c["image"] == IMAGE
            assert {"cpu", "memory"} <= set(c["resources"]["limits"])
            assert {"cpu", "memory"} <= set(c["resources"]["requests"])
    token_envs = [env_of(c) for g in groups for c in containers(g["template"]["spec"])]
    if spec.get("enableInTreeAutoscaling"):
        token_envs.append(env_of(spec["autoscalerOptions"]))
    for env in token_envs:
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        ref = env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == SECRET_NAME and not ref.get("optional", False)


# ---------------------------------------------------------------- Dask

def test_dask_kubernetes_cluster():
    dc = load("dask-kubernetes.yaml")
    assert dc["apiVersion"] == "kubernetes.dask.org/v1" and dc["kind"] == "DaskCluster"
    worker, scheduler = dc["spec"]["worker"], dc["spec"]["scheduler"]
    assert worker["replicas"] >= 1
    (w,) = worker["spec"]["containers"]
    (s,) = scheduler["spec"]["containers"]
    assert w["image"] == s["image"] == IMAGE
    # distributed 2026 ships only the `dask` CLI (no dask-worker / dask-scheduler scripts)
    assert w["args"][:2] == ["dask", "worker"] and s["args"][:2] == ["dask", "scheduler"]
    assert "$(DASK_WORKER_NAME)" in w["args"]
    assert {p["containerPort"] for p in s["ports"]} == {8786, 8787}
    assert scheduler["service"]["type"] == "ClusterIP"
    assert {p["port"] for p in scheduler["service"]["ports"]} == {8786, 8787}
    assert scheduler["service"]["selector"]["dask.org/cluster-name"] == dc["metadata"]["name"]
    env = env_of(w)
    assert env["PREFECT_API_URL"]["value"].endswith("/api")
    assert env["CONDUCTOR_HOME"]["value"].startswith("/mnt/conductor/")


def test_dask_slurm_jobqueue_config():
    cfg = load("dask-slurm.yaml")
    slurm = cfg["jobqueue"]["slurm"]
    assert isinstance(slurm["cores"], int) and slurm["cores"] > 0
    assert isinstance(slurm["memory"], str) and re.fullmatch(r"\d+(\.\d+)?\s*[KMGT]i?B", slurm["memory"])
    assert slurm["cores"] % slurm.get("processes", 1) == 0
    assert re.fullmatch(r"\d+:\d\d:\d\d", slurm["walltime"])
    prologue = slurm["job-script-prologue"]
    assert any("activate" in line for line in prologue)
    # keys dask-jobqueue >= 0.8 renamed: the old ones are ignored or warned about
    assert not {"env-extra", "extra", "job-extra", "project"} & set(slurm)
    assert slurm["scheduler-options"]["dashboard_address"].startswith("127.0.0.1:")


def test_dask_slurm_script_compiles_and_imports_without_jobqueue(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.dont_write_bytecode", True)  # no __pycache__ inside the package data
    path = CONFIGS / "dask_slurm.py"
    py_compile.compile(str(path), cfile=str(tmp_path / "dask_slurm.pyc"), doraise=True)
    spec = importlib.util.spec_from_file_location("dask_slurm", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # dask_jobqueue is imported inside main(), not here
    assert mod.DEFAULT_CONFIG == CONFIGS / "dask-slurm.yaml"
    assert mod.load_config(mod.DEFAULT_CONFIG)["jobqueue"]["slurm"]["cores"] > 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("jobqueue: {pbs: {}}\n")
    with pytest.raises(SystemExit):
        mod.load_config(bad)
    if importlib.util.find_spec("dask_jobqueue") is None:
        assert mod.main(["--dry-run"]) == 2


# ---------------------------------------------------------------- Prefect work pool

def test_prefect_kubernetes_base_job_template():
    t = load("prefect-k8s-job-template.json")
    assert set(t) == {"job_configuration", "variables"}
    jc, variables = t["job_configuration"], t["variables"]
    props = variables["properties"]
    assert variables["type"] == "object"
    # every placeholder the job configuration uses is a declared variable
    used = set(re.findall(r"\{\{\s*([\w.]+)\s*\}\}", json.dumps(jc)))
    assert used and used <= set(props), used - set(props)
    manifest = jc["job_manifest"]
    assert manifest["apiVersion"] == "batch/v1" and manifest["kind"] == "Job"
    pod = manifest["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["name"] == "prefect-job" and c["image"] == "{{ image }}" and c["args"] == "{{ command }}"
    assert props["image"]["default"] == IMAGE
    env = props["env"]["default"]
    for var in ("CONDUCTOR_RAY_ADDRESS", "CONDUCTOR_DASK_ADDRESS", "PREFECT_API_URL", "CONDUCTOR_HOME"):
        assert env.get(var), var
    assert env["RAY_AUTH_MODE"] == "token"
    # the worker copies its own settings (secrets included) into the Job; null drops that copy
    assert env["PREFECT_API_AUTH_STRING"] is None
    refs = {name: e["valueFrom"]["secretKeyRef"] for name, e in env_of(c).items()}
    assert {"RAY_AUTH_TOKEN", "WANDB_API_KEY", "PREFECT_API_AUTH_STRING", "CONDUCTOR_OPTUNA_STORAGE"} <= set(refs)
    assert {r["name"] for r in refs.values()} == {SECRET_NAME}
    # a name in the env variable would shadow (and drop) the secretKeyRef entry of the same name
    assert not {k for k, v in env.items() if v is not None} & set(refs)


def test_addresses_match_the_services_the_configs_create():
    env = load("prefect-k8s-job-template.json")["variables"]["properties"]["env"]["default"]
    ns = load("prefect-k8s-job-template.json")["variables"]["properties"]["namespace"]["default"]
    ray_name = load("kuberay-raycluster.yaml")["metadata"]["name"]
    dask_name = load("dask-kubernetes.yaml")["metadata"]["name"]
    assert env["CONDUCTOR_RAY_ADDRESS"] == f"{ray_name}-head-svc.{ns}.svc.cluster.local:6379"
    assert env["CONDUCTOR_DASK_ADDRESS"] == f"tls://{dask_name}-scheduler.{ns}.svc.cluster.local:8786"  # mutual TLS
    dask_env = env_of(load("dask-kubernetes.yaml")["spec"]["worker"]["spec"]["containers"][0])
    assert dask_env["PREFECT_API_URL"]["value"] == env["PREFECT_API_URL"]


def test_kubernetes_configs_share_storage_and_secret():
    docs = [load("kuberay-raycluster.yaml"), load("dask-kubernetes.yaml"), load("prefect-k8s-job-template.json")]
    readme = (CONFIGS / "README.md").read_text()
    for doc in docs:
        claims = {d["persistentVolumeClaim"]["claimName"] for d in walk(doc) if "persistentVolumeClaim" in d}
        mounts = {d["mountPath"] for d in walk(doc) if "mountPath" in d}
        assert claims == {"conductor-home"} and mounts == {"/mnt/conductor"}
        for ref in (d["secretKeyRef"] for d in walk(doc) if "secretKeyRef" in d):
            assert ref["name"] == SECRET_NAME
            assert f"--from-literal={ref['key']}=" in readme, ref["key"]  # the README creates every key


# ---------------------------------------------------------------- no secrets, ports documented

def test_no_config_contains_a_secret_value():
    hexrun = re.compile(r"\b[0-9a-fA-F]{32,}\b")  # Ray tokens (64 hex) and W&B keys (40 hex)
    for path in CONFIG_FILES + [CONFIGS / "README.md"]:
        text = path.read_text()
        assert not hexrun.search(text), path.name
        if path.name == "README.md":
            continue
        assert not re.search(r"://[^/\s:@\"']+:[^@\s/\"']+@", text), f"{path.name}: credentials in a URL"
        for var in SECRET_VARS:  # VAR=value / VAR: value, outside comments and secret references
            for line in text.splitlines():
                code = line.split("#", 1)[0]
                m = re.search(rf"\b{var}\b[\"']?\s*[=:]\s*([^\s,}}]+)", code)
                assert not m or m.group(1) in ("null", "None", "$" + var, "${" + var + "}"), (path.name, line)
    for path in YAML_FILES + JSON_FILES:
        for doc in yaml.safe_load_all(path.read_text()) if path.suffix == ".yaml" else [load(path.name)]:
            for d in walk(doc):
                if isinstance(d.get("name"), str) and d["name"] in SECRET_VARS:  # k8s env: secretKeyRef only
                    assert "value" not in d and "secretKeyRef" in d.get("valueFrom", {}), (path.name, d)
            if path.name == "prefect-k8s-job-template.json":
                env = doc["variables"]["properties"]["env"]["default"]
                assert all(env.get(v) is None for v in SECRET_VARS)
    dockerfile = (CONFIGS / "Dockerfile").read_text()
    for var in SECRET_VARS:
        assert not re.search(rf"^\s*(ENV|ARG)\b.*\b{var}\b", dockerfile, re.M), var


def test_readme_documents_ports_token_and_prefect_auth():
    readme = (CONFIGS / "README.md").read_text()
    for port in ("6379", "10001", "8265", "8786", "8787", "4200"):
        assert f"| {port} |" in readme, port
    assert "127.0.0.1" in readme
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "~/.ray/auth_token",
                 "PREFECT_SERVER_API_AUTH_STRING", "PREFECT_API_AUTH_STRING", "CONDUCTOR_HOME"):
        assert name in readme, name


def test_prefect_auth_setting_names_exist_in_installed_prefect():
    """The README's Prefect auth variables are real settings of the installed prefect (read, not imported)."""
    spec = importlib.util.find_spec("prefect")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("prefect is not installed")
    settings = Path(list(spec.submodule_search_locations)[0]) / "settings" / "models"
    server_api = (settings / "server" / "api.py").read_text()
    client_api = (settings / "api.py").read_text()
    # PREFECT_SERVER_API_AUTH_STRING = prefix ("server", "api") + auth_string; PREFECT_API_AUTH_STRING likewise
    assert 'build_settings_config(\n        ("server", "api")\n    )' in server_api or '("server", "api")' in server_api
    assert "auth_string:" in server_api
    assert 'build_settings_config(("api",))' in client_api and "auth_string:" in client_api
