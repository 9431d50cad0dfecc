"""The API docs page runs no third-party script that is not pinned and integrity-checked."""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from litestar import get
from litestar.testing import AsyncTestClient

from platform_common.http import SCALAR_JS_INTEGRITY, SCALAR_JS_URL, create_app, openapi_config


@get("/thing")
async def thing() -> dict[str, str]:
    return {}


async def test_every_external_resource_of_the_docs_page_is_pinned_with_integrity() -> None:
    # Before: Scalar @latest, a stylesheet and an icon from a branch, none with integrity.
    app = create_app(route_handlers=[thing], openapi_config=openapi_config("T", "1", "d"))
    async with AsyncTestClient(app) as http:
        page = (await http.get("/schema")).text
    external = re.findall(r"""(?:src|href)=["'](https?://[^"']+)""", page)
    assert external == [SCALAR_JS_URL]
    assert "@latest" not in page and "@main" not in page
    script = re.search(r"<script src=[^>]+>", page)
    assert script is not None and f'integrity="{SCALAR_JS_INTEGRITY}"' in script.group(0)
    assert 'crossorigin="anonymous"' in script.group(0)
    assert (await http.get("/schema/swagger")).status_code == 404  # no second, unpinned UI


@pytest.mark.skipif(shutil.which("npm") is None, reason="needs npm to fetch the published package")
def test_the_integrity_is_that_of_the_published_file(tmp_path: Path) -> None:
    # The digest must match the file the URL names, as published on npm (jsDelivr serves it unchanged).
    package, version, inner = re.fullmatch(r".*/npm/(@[^@]+)@([^/]+)/(.+)", SCALAR_JS_URL).groups()  # type: ignore[union-attr]
    subprocess.run(["npm", "pack", f"{package}@{version}"], cwd=tmp_path, check=True, capture_output=True, timeout=120)
    with tarfile.open(next(tmp_path.glob("*.tgz"))) as archive:
        member = archive.extractfile(f"package/{inner}")
        assert member is not None
        digest = hashlib.sha384(member.read()).digest()
    assert "sha384-" + base64.b64encode(digest).decode() == SCALAR_JS_INTEGRITY
