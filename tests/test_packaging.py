"""pyproject.toml in the form current setuptools takes without deprecation warnings (PEP 639)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_license_is_an_spdx_expression_and_setuptools_is_new_enough_for_it() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert data["project"]["license"] == "GPL-2.0-only"  # a string; the {text = ...} table is deprecated
    assert not any(c.startswith("License ::") for c in data["project"].get("classifiers", []))
    (req,) = [r for r in data["build-system"]["requires"] if r.startswith("setuptools")]
    m = re.fullmatch(r"setuptools>=(\d+)", req)
    assert m and int(m.group(1)) >= 77, req  # setuptools 77 is the first to take the string form
