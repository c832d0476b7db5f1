"""GET /openapi.json and /docs: the API described from its routes, errors in PicTrace's shape."""

import json
import os
import subprocess
import sys
from pathlib import Path

from pictrace import __version__

REPO = Path(__file__).resolve().parents[2]


def test_openapi_describes_every_route_with_its_parameters_and_errors(api):
    reply = api.get("/openapi.json")
    assert reply.status == 200 and reply.headers["content-type"].startswith("application/json")
    spec = reply.body
    assert spec["openapi"].startswith("3.") and spec["info"]["version"] == __version__
    operations = {(m.upper(), p) for p, ms in spec["paths"].items() for m in ms}
    assert operations >= {
        ("POST", "/search"), ("POST", "/images"), ("GET", "/images"), ("GET", "/images/{image_id}"),
        ("DELETE", "/images/{image_id}"), ("GET", "/images/{image_id}/similar"),
        ("GET", "/images/{image_id}/matches"), ("POST", "/compare"), ("POST", "/uploads"), ("GET", "/health"),
        ("GET", "/duplicates"), ("POST", "/duplicates"), ("PATCH", "/images/{image_id}"),
    }  # fmt: skip
    dupes = spec["paths"]["/duplicates"]["get"]
    assert {p["name"] for p in dupes["parameters"]} == {"min_score", "limit", "cursor"}
    search = spec["paths"]["/search"]["post"]
    assert {p["name"] for p in search["parameters"]} == {"k", "ranking", "mode", "min_score", "filter"}
    assert set(search["requestBody"]["content"]) == {"image/*", "multipart/form-data", "application/json"}
    similar = spec["paths"]["/images/{image_id}/similar"]["get"]
    assert {p["name"] for p in similar["parameters"]} == {"image_id", "k", "ranking", "mode", "min_score", "filter"}
    assert {p["name"] for p in spec["paths"]["/images"]["get"]["parameters"]} == {"limit", "cursor", "filter"}
    assert spec["paths"]["/images/{image_id}"]["patch"]["requestBody"]["content"]["application/json"]["schema"]["required"] == ["meta"]
    assert set(spec["paths"]["/compare"]["post"]["requestBody"]["content"]) == {"multipart/form-data", "application/json"}
    error = {"$ref": "#/components/schemas/Error"}
    assert search["responses"]["400"]["content"]["application/json"]["schema"] == error
    assert spec["components"]["schemas"]["Error"]["required"] == ["error", "message"]
    assert "HTTPValidationError" not in json.dumps(spec)


def test_docs_is_a_self_contained_page_with_the_same_document(api):
    page = api.get("/docs")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    html = page.body["_text"]
    assert "SwaggerUIBundle" in html and "<script src=" not in html  # no CDN
    assert api.get("/docs?format=json").body == api.get("/openapi.json").body


def test_a_bad_parameter_is_still_pictraces_error_shape(api):
    reply = api.post("/search?min_score=lots", b"x", "image/jpeg")
    assert reply.status == 400 and set(reply.body) == {"error", "message"}


HIDE_PYDANTIC = """
import importlib.machinery, json, sys
find = importlib.machinery.PathFinder.find_spec
def hidden(name, path=None, target=None):
    return None if name.split(".")[0] == "pydantic" else find(name, path, target)
importlib.machinery.PathFinder.find_spec = staticmethod(hidden)
from pictrace.http.app import app
def get(path):
    event = {"httpMethod": "GET", "path": path, "resource": "/{proxy+}", "headers": {},
             "requestContext": {"stage": "v1"}, "body": None, "isBase64Encoded": False}
    return app.resolve(event, None)
print(json.dumps([get(p)["statusCode"] for p in ("/docs", "/openapi.json", "/health")] + ["pydantic" in sys.modules]))
"""


def test_without_pydantic_the_api_runs_and_only_its_description_is_a_503():
    # The Lambda layer need not ship pydantic, which Powertools needs for the description only.
    env = {**os.environ, "PYTHONPATH": str(REPO), "BUCKET_NAME": "docs-test"}
    done = subprocess.run([sys.executable, "-c", HIDE_PYDANTIC], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == [503, 503, 200, False]
