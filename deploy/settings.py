"""The one settings object per process (environment variables prefixed ``CALLSCREEN_``).

Only this module reads the environment; everything else receives values as arguments.
Secrets have no usable default outside ``CALLSCREEN_ENV=development``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from features.errors import SettingsSecretError

# Development-only secrets: fixed so that the README's examples work as written, and
# refused in production.
DEV_LOG_HASH_KEY = "dev-only-log-hash-key-0123456789abcdef"
DEV_FEED_HASH_KEY = "dev-only-feed-hash-key-0123456789abcdef"
_MIN_SECRET_LEN = 32


class Settings(BaseSettings):
    """Every setting of a callscreen process. The README's configuration table mirrors this."""

    model_config = SettingsConfigDict(env_prefix="CALLSCREEN_", frozen=True, extra="forbid")

    env: Literal["development", "production"] = Field(
        "production",
        description="`development` enables the fixed development secrets; anything serving traffic uses `production`.",
    )
    state_dir: Path = Field(
        Path(".callscreen"),
        description="Folder for PID files, logs, embedded Redis data and generated artefacts.",
    )
    redis_url: str | None = Field(
        None,
        description="Redis URL (redis://host:port/db). Unset: `callscreen up` starts an embedded redis-server.",
    )
    kafka_bootstrap: str | None = Field(
        None,
        description="Kafka bootstrap servers (host:port,...). Unset: `callscreen up` starts the embedded Tansu broker.",
    )
    topic_cdr: str = Field("cdr", description="Topic of incoming `cdr/1` records.")
    topic_subscriber_status: str = Field("subscriber-status", description="Topic of `subscriber/1` updates.")
    topic_decisions: str = Field("decisions", description="Topic the worker writes `decision/1` records to.")
    topic_fraud_feed: str = Field("fraud-feed", description="Topic of `feed/1` number-level events.")
    topic_bank_reports: str = Field("bank-reports", description="Topic of `bank-report/1` records from the bank.")
    topic_cdr_dlq: str = Field("cdr.dlq", description="Dead-letter topic for CDRs that fail validation.")
    api_host: str = Field("127.0.0.1", description="Address the HTTP API (and the worker's health endpoint) binds to.")
    api_port: int = Field(8080, ge=0, le=65535, description="Port of the HTTP API; 0 lets `callscreen up` pick a free one.")
    worker_metrics_port: int = Field(
        9108, ge=0, le=65535, description="Port of the worker's /metrics and /healthz (bound on `api_host`); 0 lets `callscreen up` pick a free one."
    )
    registry_dir: Path | None = Field(
        None, description="Model registry folder. Unset: `<state_dir>/models`."
    )
    deadline_ms: float = Field(
        20.0, gt=0, description="Overall deadline of one screening request; past it the call is allowed, degraded."
    )
    api_keys: str | None = Field(
        None,
        description='JSON list of API keys `[{"name","role","sha256","operator"?,"rate_per_s"?}]` (`callscreen keys new` prints one). Unset in development: the fixed `dev-*` keys of the README.',
    )
    api_shadow: bool = Field(
        False, description="Score the registry's `challenger` alongside the champion in the API; logged and counted, never returned."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Lowest level written to the logs: DEBUG, INFO, WARNING or ERROR.")
    log_stderr: bool = Field(
        True,
        description="Also write the JSON log lines to stderr. `callscreen up` turns it off for its children, which log to files only.",
    )
    log_hash_key: SecretStr | None = Field(
        None, description="HMAC key (>= 32 chars) that pseudonymises numbers in logs. Required in production."
    )
    feed_hash_key: SecretStr | None = Field(
        None,
        description="HMAC key (>= 32 chars) shared with the bank; pseudonymises numbers in the fraud feed. Required in production.",
    )

    @model_validator(mode="after")
    def _secrets(self) -> Settings:
        for name, dev_value in (("log_hash_key", DEV_LOG_HASH_KEY), ("feed_hash_key", DEV_FEED_HASH_KEY)):
            value: SecretStr | None = getattr(self, name)
            if self.env == "development":
                if value is None:
                    object.__setattr__(self, name, SecretStr(dev_value))
                continue
            env_name = f"CALLSCREEN_{name.upper()}"
            if value is None:
                raise SettingsSecretError(
                    f"Setting {env_name} is required in production; set it to a random secret of at least "
                    f"{_MIN_SECRET_LEN} characters, or set CALLSCREEN_ENV=development for local use"
                )
            secret = value.get_secret_value()
            if len(secret) < _MIN_SECRET_LEN or secret.startswith("dev-only") or "changethis" in secret:
                raise SettingsSecretError(
                    f"Setting {env_name} has a development or short value; production needs a random secret "
                    f"of at least {_MIN_SECRET_LEN} characters"
                )
        return self

    @property
    def models_dir(self) -> Path:
        """The model registry folder actually used."""
        return self.registry_dir if self.registry_dir is not None else self.state_dir / "models"


def load(*, default_env: Literal["development", "production"] | None = None) -> Settings:
    """Build the process's settings from the environment.

    ``default_env`` applies only when ``CALLSCREEN_ENV`` is unset (``callscreen up`` passes
    ``"development"``: the local stack is for development).
    """
    if default_env is not None and "CALLSCREEN_ENV" not in os.environ:
        return Settings(env=default_env)
    return Settings()


def env_is_set() -> bool:
    """Whether the user chose ``CALLSCREEN_ENV`` explicitly."""
    return "CALLSCREEN_ENV" in os.environ


def child_environment(settings: Settings, **overrides: str) -> dict[str, str]:
    """The environment for a child process: ours, with every setting written out as CALLSCREEN_*.

    ``overrides`` are field names (``redis_url="..."``). The child then builds exactly the
    settings this process resolved, including the development secrets and chosen ports.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLSCREEN_")}
    values = settings.model_dump()
    values.update(overrides)
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[f"CALLSCREEN_{name.upper()}"] = str(value)
    return env


def settings_table() -> str:
    """The README's configuration table, generated from the fields above (``python -m deploy.settings``)."""
    rows = ["| environment variable | default | meaning |", "|---|---|---|"]
    for name, info in Settings.model_fields.items():
        default = info.default
        shown = "(none)" if default is None else f"`{default}`"
        if name in ("log_hash_key", "feed_hash_key"):
            shown = "(none; development: a fixed dev key)"
        description = (info.description or "").replace("|", "\\|")
        rows.append(f"| `CALLSCREEN_{name.upper()}` | {shown} | {description} |")
    return "\n".join(rows) + "\n"


README_START = "<!-- settings-table:start -->"
README_END = "<!-- settings-table:end -->"


def readme_with_table(readme: str) -> str:
    """``readme`` with the text between the settings-table markers replaced by :func:`settings_table`."""
    head, _, rest = readme.partition(README_START)
    _, _, tail = rest.partition(README_END)
    return f"{head}{README_START}\n{settings_table()}{README_END}{tail}"


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--readme"]:
        readme = Path(__file__).resolve().parent.parent / "README.md"
        readme.write_text(readme_with_table(readme.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        sys.stdout.write(settings_table())
