"""The SAM template validates, transforms as intended and builds within limits."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]

# Lambda's cap on a function's code plus all its layers, unzipped.
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024
FUNCTIONS = ("ApiFunction", "ScoreFunction", "IndexFunction", "SearchTriggerFunction", "PackFunction", "DuplicatesFunction")
ELF_X86_64 = 62  # e_machine value for AMD64


def tree_size(root: Path) -> int:
    """Total bytes of regular files under `root` (what Lambda unpacks)."""
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def elf_machine(path: Path) -> int:
    """Return the ELF e_machine field of a shared object."""
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF", f"{path} is not an ELF file"
    return int.from_bytes(header[18:20], "little")


def load_yaml(path: Path) -> dict[str, Any]:
    from samcli.yamlhelper import yaml_parse

    return yaml_parse(path.read_text())


def function_layers(template: dict[str, Any], function: str) -> list[str]:
    """Logical ids of the layers a function gets, from Globals or its own Properties."""
    props = template["Resources"][function]["Properties"]
    layers = props.get("Layers", template.get("Globals", {}).get("Function", {}).get("Layers", []))
    return [layer["Ref"] for layer in layers]


def test_template_passes_sam_validate_lint(project_copy: Path, sam_env: dict[str, str], run_cmd) -> None:
    proc = run_cmd(["sam", "validate", "--lint"], env=sam_env, cwd=project_copy)
    assert "is a valid SAM Template" in proc.stdout + proc.stderr


# --- transform: what CloudFormation will create for each parameter value ----


def translate(require_api_key: str) -> dict[str, Any]:
    """Expand language extensions and run the SAM transform, as CloudFormation would."""
    from samcli.lib.cfn_language_extensions import expand_language_extensions
    from samtranslator.translator.transform import transform

    class NoManagedPolicies:
        # Only named managed policies need IAM look-ups; the template has none.
        def load(self) -> dict[str, str]:
            return {}

    template = copy.deepcopy(load_yaml(REPO_ROOT / "template.yaml"))
    for resource in template["Resources"].values():
        props = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if key in props:  # what `sam package` substitutes for local paths
                props[key] = "s3://artifacts/code.zip"
    params = {
        "RequireApiKey": require_api_key,
        "AWS::Region": "us-east-1",
        "AWS::AccountId": "123456789012",
        "AWS::StackName": "pictrace",
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
    }
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    expanded = expand_language_extensions(template, params, enabled=True).expanded_template
    return transform(expanded, params, NoManagedPolicies())["Resources"]


def api_security(resources: dict[str, Any]) -> dict[tuple[str, str], Any]:
    body = resources["PicTraceApi"]["Properties"]["Body"]
    return {
        (path, method): operation.get("security")
        for path, operations in body["paths"].items()
        for method, operation in operations.items()
        if method != "options"
    }


def role_statements(resources: dict[str, Any], function: str) -> list[dict[str, Any]]:
    role = resources[f"{function}Role"]["Properties"]
    return [s for policy in role.get("Policies", []) for s in policy["PolicyDocument"]["Statement"]]


def actions_of(statements: list[dict[str, Any]]) -> set[str]:
    found: set[str] = set()
    for statement in statements:
        action = statement["Action"]
        found.update([action] if isinstance(action, str) else action)
    return found


def test_api_key_required_only_when_asked_and_never_on_page_or_health() -> None:
    keyed = api_security(translate("true"))
    assert keyed[("/{proxy+}", "x-amazon-apigateway-any-method")] == [{"api_key": []}]
    assert not keyed[("/", "get")]
    assert not keyed[("/health", "get")]

    open_api = api_security(translate("false"))
    assert set(open_api) == set(keyed)
    assert not any(open_api.values())


def test_usage_plan_and_key_exist_only_with_require_api_key() -> None:
    def plan_types(resources: dict[str, Any]) -> set[str]:
        return {r["Type"] for r in resources.values() if r["Type"].startswith("AWS::ApiGateway::")}

    with_key = plan_types(translate("true"))
    without_key = plan_types(translate("false"))
    usage = {"AWS::ApiGateway::UsagePlan", "AWS::ApiGateway::ApiKey", "AWS::ApiGateway::UsagePlanKey"}
    assert usage <= with_key
    assert not usage & without_key


def test_api_passes_image_and_upload_bodies_through_as_binary() -> None:
    body = translate("false")["PicTraceApi"]["Properties"]["Body"]
    assert set(body["x-amazon-apigateway-binary-media-types"]) == {
        "image/*", "multipart/form-data", "application/octet-stream"
    }


def test_functions_share_runtime_settings_and_environment() -> None:
    resources = translate("false")
    for name in FUNCTIONS:
        props = resources[name]["Properties"]
        assert props["Runtime"] == "python3.13"
        assert props["Architectures"] == ["x86_64"]
        assert props["MemorySize"] == 1769
        assert props["TracingConfig"] == {"Mode": "Active"}
        assert len(props["Layers"]) == 3
        env = props["Environment"]["Variables"]
        assert env["POWERTOOLS_SERVICE_NAME"] == "pictrace"
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == "PicTrace"
        assert "BUCKET_NAME" in env and "LOG_LEVEL" in env
        assert props["Timeout"] <= (29 if name == "ApiFunction" else 900)
    for name in ("ApiFunction", "SearchTriggerFunction"):
        assert resources[name]["Properties"]["Environment"]["Variables"]["SCORE_FUNCTION_NAME"] == {
            "Ref": "ScoreFunction"
        }


def test_only_api_and_search_trigger_may_invoke_score() -> None:
    resources = translate("false")
    for name in FUNCTIONS:
        statements = role_statements(resources, name)
        invokes = [s for s in statements if "lambda:InvokeFunction" in actions_of([s])]
        if name in ("ApiFunction", "SearchTriggerFunction"):
            assert invokes, f"{name} cannot invoke ScoreFunction"
            resources_text = repr([s["Resource"] for s in invokes])
            assert "ScoreFunction" in resources_text
        elif name == "DuplicatesFunction":  # a scan that runs out of time goes on in a new invocation of itself
            assert repr([s["Resource"] for s in invokes]).count("-duplicates") == len(invokes) == 1
        else:
            assert not invokes, f"{name} should not invoke other functions"


def test_score_function_cannot_write_to_the_bucket() -> None:
    actions = actions_of(role_statements(translate("false"), "ScoreFunction"))
    assert "s3:GetObject" in actions
    assert not {a for a in actions if a.startswith("s3:Put") or a.startswith("s3:Delete")}


def test_bucket_events_route_by_prefix_without_self_triggering() -> None:
    bucket = translate("false")["CatalogBucket"]["Properties"]
    configs = bucket["NotificationConfiguration"]["LambdaConfigurations"]
    routes = {
        (c["Function"]["Fn::GetAtt"][0], c["Event"], c["Filter"]["S3Key"]["Rules"][0]["Value"])
        for c in configs
    }
    assert routes == {
        ("IndexFunction", "s3:ObjectCreated:*", "catalog/"),
        ("IndexFunction", "s3:ObjectRemoved:*", "catalog/"),
        ("SearchTriggerFunction", "s3:ObjectCreated:*", "incoming/"),
    }


def test_pack_function_runs_every_minute_and_the_duplicates_scan_daily() -> None:
    resources = translate("false")
    rules = {
        r["Properties"]["Targets"][0]["Arn"]["Fn::GetAtt"][0]: r["Properties"]["ScheduleExpression"]
        for r in resources.values()
        if r["Type"] == "AWS::Events::Rule"
    }
    assert rules == {"PackFunction": "rate(1 minute)", "DuplicatesFunction": "rate(1 day)"}


# --- the build itself --------------------------------------------------------


def test_each_function_with_its_layers_fits_lambda_limit(project_build: Path) -> None:
    built = load_yaml(project_build / "template.yaml")
    for name in FUNCTIONS:
        layers = function_layers(built, name)
        assert set(layers) == {"OpenCvLayer", "PicTraceLayer", "ModelLayer"}
        total = tree_size(project_build / name) + sum(tree_size(project_build / l) for l in layers)
        assert total < LAMBDA_UNZIPPED_LIMIT, f"{name}: {total / 2**20:.1f} MiB unzipped"


def test_opencv_layer_holds_cp313_x86_64_binaries(project_build: Path) -> None:
    site = project_build / "OpenCvLayer" / "python"
    cv2_ext = list((site / "cv2").glob("cv2*.so"))
    assert cv2_ext, "cv2 extension module missing"
    numpy_ext = list(site.glob("numpy/_core/_multiarray_umath.cpython-313-x86_64-linux-gnu.so"))
    assert numpy_ext, "numpy has no CPython 3.13 extension"
    aiohttp_ext = list(site.glob("aiohttp/*.cpython-313-x86_64-linux-gnu.so"))
    assert aiohttp_ext, "aiohttp has no CPython 3.13 extension"
    for ext in (cv2_ext[0], numpy_ext[0], aiohttp_ext[0]):
        assert elf_machine(ext) == ELF_X86_64, ext
    for package in ("aws_lambda_powertools", "aws_xray_sdk", "yarl", "multidict"):
        assert (site / package / "__init__.py").is_file(), package


def test_opencv_layer_leaves_out_runtime_packages_and_dead_weight(project_build: Path) -> None:
    site = project_build / "OpenCvLayer" / "python"
    for provided in ("boto3", "botocore", "s3transfer", "urllib3", "dateutil", "bin"):
        assert not (site / provided).exists(), provided
    assert not list(site.rglob("__pycache__"))
    assert not [p for p in site.rglob("tests") if p.is_dir()]


def test_pictrace_layer_ships_the_package_unchanged(project_build: Path, project_copy: Path) -> None:
    shipped = project_build / "PicTraceLayer" / "python" / "pictrace"
    source = project_copy / "pictrace"
    source_files = {p.relative_to(source) for p in source.rglob("*.py")}
    assert source_files, "no sources found"
    assert {p.relative_to(shipped) for p in shipped.rglob("*.py")} == source_files
    for rel in source_files:
        assert (shipped / rel).read_bytes() == (source / rel).read_bytes(), rel
    assert not list(shipped.rglob("__pycache__"))


def test_pictrace_imports_from_the_built_layer_alone(project_build: Path) -> None:
    """The layer copy is complete: importing it needs nothing from the work tree.

    The host's own numpy/cv2 stand in for the layer's cp313 builds, which this
    interpreter cannot load; the Lambda image test imports those for real.
    """
    layer = project_build / "PicTraceLayer" / "python"
    code = (
        f"import sys; sys.path.insert(0, {str(layer)!r}); "
        "import pictrace, pictrace.errors; print(pictrace.__file__)"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=layer, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()).is_relative_to(layer)


def test_function_artifacts_are_the_handlers(project_build: Path, project_copy: Path) -> None:
    sources = {
        "ApiFunction": "api", "ScoreFunction": "score", "IndexFunction": "index",
        "SearchTriggerFunction": "search_trigger", "PackFunction": "pack", "DuplicatesFunction": "duplicates",
    }
    for name, directory in sources.items():
        built = project_build / name / "app.py"
        assert built.read_bytes() == (project_copy / "functions" / directory / "app.py").read_bytes()
