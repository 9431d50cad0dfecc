"""Print the configuration tables of the README from the apps' settings Structs.

The Structs are the single source of truth (they also generate ``--help``); run this after adding
a setting and paste its output into README.md. tests/test_docs.py fails when the README lags.
"""

from __future__ import annotations

import typing

import msgspec

from platform_common.settings import BaseSettings
from tool_registry.config import RegistrySettings
from tree_of_thoughts.config import TotSettings


def rows(cls: type[BaseSettings], skip: frozenset[str] = frozenset()) -> list[str]:
    hints = typing.get_type_hints(cls, include_extras=True)
    lines = []
    for field in msgspec.structs.fields(cls):
        if field.name in skip:
            continue
        meta = next((m for m in getattr(hints[field.name], "__metadata__", ()) if isinstance(m, msgspec.Meta)), None)
        default = field.default if field.default is not msgspec.NODEFAULT else field.default_factory()
        shown = ",".join(default) if isinstance(default, list) else default
        lines.append(f"| `{field.name.upper()}` | `{shown}` | {meta.description if meta else ''} |")
    return lines


def main() -> None:
    header = ["| Variable | Default | Meaning |", "|---|---|---|"]
    common = frozenset(BaseSettings.__struct_fields__)
    print("#### Both apps\n")
    print("\n".join(header + rows(BaseSettings)))
    print("\n#### Tool Registry only (`tool-registry serve`)\n")
    # Shared settings appear again where an app changes their default.
    print("\n".join(header + rows(RegistrySettings, common - {"port", "max_request_bytes", "auth_audience"})))
    print("\n#### Tree-of-Thoughts only (`tot serve`)\n")
    print("\n".join(header + rows(TotSettings, common - {"port", "auth_audience"})))


if __name__ == "__main__":
    main()
