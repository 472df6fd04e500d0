"""pyproject.toml builds without the build backend's deprecation warnings.

setuptools warns (and will refuse from 2027) when ``project.license`` is a TOML table;
a plain SPDX string is the form it wants, and it needs setuptools 77 or newer to read
it. (Checked by hand with ``pip wheel -v --no-deps .``: no BuildBackendWarning.)
"""

from __future__ import annotations

import re
import tomllib

from tests.helpers import ROOT


def test_license_is_a_plain_spdx_string_and_setuptools_can_read_it() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert data["project"]["license"] == "MIT"
    assert not any(c.startswith("License ::") for c in data["project"].get("classifiers", []))
    (setuptools,) = [r for r in data["build-system"]["requires"] if r.startswith("setuptools")]
    m = re.fullmatch(r"setuptools>=(\d+)", setuptools)
    assert m is not None and int(m.group(1)) >= 77, setuptools
