"""Point `sam local invoke` containers at the AWS stand-in container.

`sam local invoke --env-vars FILE` only overrides variables that the template
already declares for the function; any other name in FILE is dropped without
a word. The endpoint variables (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL_LAMBDA)
and the credentials must not go into the deployed template, so this writes a
copy of the *built* template that declares them, empty, in Globals, and the
matching env-vars file that fills them in.

Declaring the AWS_* credential names matters too: without it SAM passes the
host session's credentials (or "defaultkey") into the container; with it the
dummy values below win.

    python tests/e2e/aws_standin/local_env.py --build-dir .aws-sam/build \\
        --standin pictrace-aws --bucket pictrace-catalog

writes .aws-sam/build/template.local.json and .aws-sam/build/env.local.json.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from typing import Any

S3_PORT = 5000
LAMBDA_PORT = 9001
SCORE_FUNCTION = "ScoreFunction"
REGION = "us-east-1"
TEMPLATE_NAME = "template.local.json"
ENV_NAME = "env.local.json"


def standin_variables(standin: str, bucket: str) -> dict[str, str]:
    """Environment of every function when it runs against the stand-in container `standin`."""
    return {
        "AWS_ENDPOINT_URL_S3": f"http://{standin}:{S3_PORT}",
        "AWS_ENDPOINT_URL_LAMBDA": f"http://{standin}:{LAMBDA_PORT}",
        "BUCKET_NAME": bucket,
        "SCORE_FUNCTION_NAME": SCORE_FUNCTION,
        # Dummy credentials: moto accepts any, and no real account is ever signed for.
        "AWS_ACCESS_KEY_ID": "standin",
        "AWS_SECRET_ACCESS_KEY": "standin",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        # No X-Ray daemon here, and no instance metadata service to ask for credentials.
        "POWERTOOLS_TRACE_DISABLED": "true",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def declare_variables(template: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """Return a copy of `template` whose Globals declare `names` (empty) for every function.

    Names a function or Globals already declares keep their template value
    (and so stay overridable), e.g. BUCKET_NAME and SCORE_FUNCTION_NAME.
    """
    out = copy.deepcopy(template)
    function = out.setdefault("Globals", {}).setdefault("Function", {})
    variables = function.setdefault("Environment", {}).setdefault("Variables", {})
    for name in names:
        variables.setdefault(name, "")
    return out


def write_local_files(build_dir: Path, standin: str, bucket: str) -> tuple[Path, Path]:
    """Write the declaring template and the env-vars file into `build_dir`; return both paths.

    The template goes next to the built one because its CodeUri/ContentUri
    paths are relative to that folder.
    """
    from samcli.yamlhelper import yaml_parse

    variables = standin_variables(standin, bucket)
    built = yaml_parse((build_dir / "template.yaml").read_text())
    template_path = build_dir / TEMPLATE_NAME
    template_path.write_text(json.dumps(declare_variables(built, sorted(variables)), indent=1))
    env_path = build_dir / ENV_NAME
    # "Parameters" applies to every function in the template.
    env_path.write_text(json.dumps({"Parameters": variables}, indent=1))
    return template_path, env_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", type=Path, default=Path(".aws-sam/build"))
    parser.add_argument("--standin", required=True, help="name of the stand-in container on the Docker network")
    parser.add_argument("--bucket", default="pictrace-catalog")
    args = parser.parse_args()
    for path in write_local_files(args.build_dir, args.standin, args.bucket):
        print(path)


if __name__ == "__main__":
    main()
