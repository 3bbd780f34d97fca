"""API keys from the settings: minted keys verify; development keys only in development."""

from __future__ import annotations

import json

import pytest

from deploy import api, cli
from deploy.settings import Settings
from service.auth import KeyRing, digest, parse_keys
from service.errors import KeyConfigError


def test_keys_new_prints_a_key_whose_digest_is_the_entry(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["keys", "new", "--role", "switch", "--operator", "kcell"]) == 0
    lines = capsys.readouterr().out.splitlines()
    raw = lines[0].rsplit(" ", 1)[1]
    entry = json.loads(lines[-1])
    assert entry["sha256"] == digest(raw) and entry["operator"] == "kcell"
    (key,) = parse_keys(json.dumps([entry]))
    assert KeyRing([key]).authenticate(raw).role == "switch"


def test_development_keys_only_in_development() -> None:
    assert any(k.name == "dev-admin" for k in api.api_keys(Settings(env="development")))
    prod = {"env": "production", "log_hash_key": "k" * 40, "feed_hash_key": "f" * 40}
    with pytest.raises(api.ApiKeysMissingError):
        api.api_keys(Settings(**prod))
    dev_entry = json.dumps([{"name": "x", "role": "admin", "sha256": digest("dev-admin")}])
    with pytest.raises(api.ApiKeysMissingError):
        api.api_keys(Settings(**prod, api_keys=dev_entry))


@pytest.mark.parametrize(
    "text",
    ['{"name":"a"}', '[{"name":"a","role":"root","sha256":"' + "0" * 64 + '"}]', '[{"name":"a","role":"switch","sha256":"' + "0" * 64 + '"}]'],
)
def test_malformed_key_config_is_refused_with_a_reason(text: str) -> None:
    with pytest.raises(KeyConfigError):
        parse_keys(text)
