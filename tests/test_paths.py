"""One cache rule for everything decompose writes for you."""

from pathlib import Path

from decompose.models.embedded import models_dir
from decompose.paths import cache_dir
from decompose.tools.cs_store import default_db_path
from decompose.tools.market_data import default_market_data_path


def test_decompose_cache_wins_then_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DECOMPOSE_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_dir() == tmp_path / "home" / ".cache" / "decompose"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "decompose"
    monkeypatch.setenv("DECOMPOSE_CACHE", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"


def test_the_model_the_shop_and_the_market_data_follow_the_rule(monkeypatch, tmp_path):
    monkeypatch.setenv("DECOMPOSE_CACHE", str(tmp_path))
    assert models_dir() == tmp_path / "models"
    assert default_db_path() == tmp_path / "customer_service.sqlite3"
    assert default_market_data_path() == tmp_path / "market_data_demo.csv"
    assert models_dir("~/elsewhere") == Path.home() / "elsewhere"  # an explicit folder still wins
    assert not any(tmp_path.iterdir())  # asking where creates nothing
