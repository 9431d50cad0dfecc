"""`helm test` smoke test: readiness of both apps, an OAuth token, an MCP initialize (stdlib only)."""

import base64
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

REGISTRY = os.environ.get("REGISTRY_URL", "")
TOT = os.environ.get("TOT_URL", "")
AUTH_MODE = os.environ.get("AUTH_MODE", "jwt")
CLIENT_ID = os.environ.get("OAUTH_CLIENT_ID", "")
CLIENT_SECRET = os.environ.get("OAUTH_CLIENT_SECRET", "")
SCOPE = os.environ.get("OAUTH_SCOPE", "")
# The registry accepts only tokens minted for its own audience.
REGISTRY_AUDIENCE = os.environ.get("REGISTRY_AUDIENCE", "tool-registry")
failures: list[str] = []


def request(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except OSError as exc:
        return 0, str(exc)


def check(name, ok, detail=""):
    print(("PASS " if ok else "FAIL ") + name + (f": {detail}" if detail and not ok else ""))
    if not ok:
        failures.append(name)


for label, base in (("registry", REGISTRY), ("tree-of-thoughts", TOT)):
    if base:
        status, body = request("GET", base + "/ready")
        check(f"{label} /ready", status == 200, f"HTTP {status} {body[:200]}")

token = ""
if TOT and CLIENT_ID:
    form = {"grant_type": "client_credentials", "audience": REGISTRY_AUDIENCE}
    if SCOPE:
        form["scope"] = SCOPE
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    status, body = request(
        "POST", TOT + "/oauth/token", urllib.parse.urlencode(form).encode(),
        {"Content-Type": "application/x-www-form-urlencoded", "Authorization": f"Basic {basic}"},
    )
    try:
        token = json.loads(body).get("access_token", "") if status == 200 else ""
    except ValueError:
        token = ""
    check("tree-of-thoughts /oauth/token", bool(token), f"HTTP {status} {body[:200]}")
else:
    print("SKIP tree-of-thoughts /oauth/token (tests.oauth.clientId not set)")

if REGISTRY:
    init = {
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "helm-test", "version": "1.0"}},
    }
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    status, body = request("POST", REGISTRY + "/mcp", json.dumps(init).encode(), headers)
    if token or AUTH_MODE == "none":
        payload = body
        if "data:" in body and not body.lstrip().startswith("{"):  # text/event-stream framing
            payload = "\n".join(line[5:].strip() for line in body.splitlines() if line.startswith("data:"))
        try:
            result = json.loads(payload).get("result", {})
        except ValueError:
            result = {}
        check("registry MCP initialize", status == 200 and "protocolVersion" in result, f"HTTP {status} {body[:300]}")
    else:
        check("registry MCP initialize without a token is rejected (401)", status == 401, f"HTTP {status} {body[:300]}")

if failures:
    print(f"{len(failures)} check(s) failed: {', '.join(failures)}")
    sys.exit(1)
print("all checks passed")
