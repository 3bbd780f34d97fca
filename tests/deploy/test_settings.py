"""The settings object: secrets refused in production, development defaults, README table."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from deploy import settings
from deploy.settings import DEV_FEED_HASH_KEY, DEV_LOG_HASH_KEY, Settings

README = Path(__file__).resolve().parents[2] / "README.md"
STRONG = "3f9c1e7a5b2d4f6e8a0c2e4f6a8b0d2f"  # 32 chars, not a development value


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("CALLSCREEN_"):
            monkeypatch.delenv(name)


def test_production_is_the_default_and_refuses_missing_secrets() -> None:
    with pytest.raises(ValidationError, match="CALLSCREEN_LOG_HASH_KEY is required in production"):
        Settings()


@pytest.mark.parametrize("bad", [DEV_LOG_HASH_KEY, DEV_FEED_HASH_KEY, "short", "changethis" * 4, "dev-only-" + "x" * 40])
@pytest.mark.parametrize("field", ["log_hash_key", "feed_hash_key"])
def test_production_refuses_development_or_weak_secrets(monkeypatch: pytest.MonkeyPatch, field: str, bad: str) -> None:
    monkeypatch.setenv("CALLSCREEN_LOG_HASH_KEY", STRONG)
    monkeypatch.setenv("CALLSCREEN_FEED_HASH_KEY", STRONG[::-1])
    monkeypatch.setenv(f"CALLSCREEN_{field.upper()}", bad)
    with pytest.raises(ValidationError, match=f"CALLSCREEN_{field.upper()}"):
        Settings()


def test_production_with_real_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLSCREEN_LOG_HASH_KEY", STRONG)
    monkeypatch.setenv("CALLSCREEN_FEED_HASH_KEY", STRONG[::-1])
    s = Settings()
    assert s.env == "production"
    assert s.log_hash_key is not None and s.log_hash_key.get_secret_value() == STRONG
    assert STRONG not in repr(s) and STRONG not in str(s.model_dump())


def test_development_mode_has_usable_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLSCREEN_ENV", "development")
    s = Settings()
    assert s.log_hash_key is not None and s.log_hash_key.get_secret_value() == DEV_LOG_HASH_KEY
    assert s.feed_hash_key is not None and s.feed_hash_key.get_secret_value() == DEV_FEED_HASH_KEY
    assert s.redis_url is None and s.kafka_bootstrap is None
    assert s.topic_cdr == "cdr" and s.topic_cdr_dlq == "cdr.dlq"
    assert s.models_dir == s.state_dir / "models"


def test_load_defaults_to_development_only_when_env_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings.load(default_env="development").env == "development"
    monkeypatch.setenv("CALLSCREEN_ENV", "production")
    with pytest.raises(ValidationError):
        settings.load(default_env="development")


def test_settings_are_frozen_and_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLSCREEN_ENV", "development")
    s = Settings()
    with pytest.raises(ValidationError):
        s.api_port = 1  # type: ignore[misc]
    monkeypatch.setenv("CALLSCREEN_API_PORT", "70000")
    with pytest.raises(ValidationError, match="api_port"):
        Settings()


def test_child_environment_reproduces_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLSCREEN_ENV", "development")
    parent = Settings()
    env = settings.child_environment(parent, redis_url="redis://127.0.0.1:1/0", api_port="1234")
    for name, value in env.items():
        if name.startswith("CALLSCREEN_"):
            monkeypatch.setenv(name, value)
    child = Settings()
    assert child.redis_url == "redis://127.0.0.1:1/0" and child.api_port == 1234
    assert child.log_hash_key == parent.log_hash_key


def test_every_field_is_documented() -> None:
    for name, info in Settings.model_fields.items():
        assert info.description and len(info.description) > 10, name


def test_readme_configuration_table_lists_every_field() -> None:
    readme = README.read_text(encoding="utf-8")
    assert settings.readme_with_table(readme) == readme, (
        "the README's configuration table is out of date; run `python -m deploy.settings --readme`"
    )
    for name in Settings.model_fields:
        assert f"`CALLSCREEN_{name.upper()}`" in readme
