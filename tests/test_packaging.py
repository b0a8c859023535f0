"""What travels with the package: its licence as SPDX metadata, and the notices of the code it ports."""

from __future__ import annotations

from importlib.metadata import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_licence_is_spdx_metadata_and_its_files_are_shipped():
    meta = metadata("smart-tuner")
    assert meta["License-Expression"] == "BSD-3-Clause"
    assert set(meta.get_all("License-File")) == {"LICENSE", "THIRD_PARTY_NOTICES.md"}
    assert "BSD 3-Clause License" in (ROOT / "LICENSE").read_text()


def test_the_notices_of_the_ported_projects_travel_with_the_code():
    notices = (ROOT / "THIRD_PARTY_NOTICES.md").read_text()
    for owner in ("Copyright (c) 2018, NVIDIA Corporation", "Copyright (c) 2017 Keith Ito", "GPL-3.0"):
        assert owner in notices, owner
