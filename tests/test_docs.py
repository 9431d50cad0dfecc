"""The README documents every setting the apps read, so operators never meet an undocumented knob."""

from __future__ import annotations

import pytest

from platform_common.settings import BaseSettings
from tests.conftest import REPO_ROOT
from tool_registry.config import RegistrySettings
from tree_of_thoughts.config import TotSettings


@pytest.mark.parametrize("settings", [BaseSettings, RegistrySettings, TotSettings])
def test_readme_lists_every_environment_variable(settings: type[BaseSettings]) -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    missing = [name.upper() for name in settings.__struct_fields__ if f"`{name.upper()}`" not in readme]
    assert not missing, f"add to README.md (scripts/settings_table.py prints the rows): {missing}"
