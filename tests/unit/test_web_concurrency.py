"""WEB_CONCURRENCY: how many uvicorn worker processes the launcher starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import ConfigError, load_settings


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"LEDGERLINE_VAR_DIR": str(tmp_path), "SECRET_KEY": "x" * 40, **extra}


def test_one_worker_unless_configured(tmp_path: Path) -> None:
    assert load_settings(_env(tmp_path)).web_concurrency == 1
    assert load_settings(_env(tmp_path, WEB_CONCURRENCY="4")).web_concurrency == 4


@pytest.mark.parametrize(
    ("raw", "message"),
    [("0", "must be positive"), ("two", "whole number"), ("65", "at most 64")],
)
def test_bad_web_concurrency_is_a_clear_error(tmp_path: Path, raw: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(_env(tmp_path, WEB_CONCURRENCY=raw))
