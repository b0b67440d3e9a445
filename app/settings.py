"""Settings from the environment (prefix `LIVECODE_`) or keyword arguments in tests."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.urls import UrlPolicy


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LIVECODE_", extra="ignore")

    redis_url: str | None = Field(
        default=None, description="unset: `serve` runs its own redis-server in data_dir"
    )
    data_dir: Path = Path("livecode-data")
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = Field(default=1, ge=1, le=64)
    public_url: str | None = Field(default=None, description="base URL printed on posters")

    deadline_ms: int = Field(default=250, ge=10, le=10_000, description="Redis budget per scan")
    retry_after_s: int = Field(default=2, ge=1)
    scan_rate_limit_per_min: int = Field(
        default=0, ge=0, description="new allocations per client IP per pool per minute; 0: off"
    )
    api_body_limit_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_request_head_bytes: int = Field(
        default=64 * 1024, ge=8 * 1024,
        description="request line and headers; larger heads get 431 before they are read whole",
    )
    redis_max_inflight: int = Field(default=10_000, ge=1)
    scan_function: bool = Field(
        default=True,
        description="on Redis 7+, load the scan script as a function library and FCALL it "
                    "(off: EVALSHA, e.g. for an ACL user without FUNCTION LOAD)",
    )
    redis_cluster: bool = Field(default=False, description="the URL names a Redis Cluster node")
    redis_sentinels: str = Field(default="", description="host:port,host:port of sentinels")
    redis_sentinel_master: str = "livecode"
    redis_wait_replicas: int = Field(
        default=0, ge=0, description="acknowledge a scan only once this many replicas have it"
    )
    redis_wait_ms: int = Field(default=50, ge=1, description="WAIT timeout in WAIT mode")
    redis_admin_connections: int = Field(default=64, ge=1, description="admin API pool size")
    admin_timeout_ms: int = Field(
        default=3000, ge=100, le=120_000,
        description="bound on an admin API or console request's own work (not the time its "
        "client takes to send or read): past it the request answers 503",
    )

    cookie_name: str = "lc_vid"
    cookie_max_age_s: int = 400 * 24 * 3600
    cookie_secure: bool | None = Field(
        default=None, description="default: on when public_url is https"
    )

    console_idle_timeout_s: int = Field(
        default=8 * 3600, ge=60, description="a console session ends after this long unused"
    )
    console_session_max_s: int = Field(
        default=3 * 24 * 3600, ge=300, description="and at the latest this long after sign-in"
    )
    console_signin_failures: int = Field(
        default=10, ge=1, description="failed console sign-ins per client per window"
    )
    console_signin_window_s: int = Field(default=15 * 60, ge=10)

    timezone: str = Field(default="UTC", description="a new pool's timezone (IANA name): the "
                          "days its statistics count in")
    language: str = Field(default="zh-CN", description="a new pool's language for chat alerts: "
                          "zh-CN or en")
    stats_retention_days: int = Field(default=35, ge=1, le=3660,
                                      description="hourly and daily statistics are kept this long")
    metrics_cache_s: float = Field(default=10.0, ge=0, description="the per-pool metrics are "
                                   "read from Redis at most this often")
    metrics_timeout_s: float = Field(default=8.0, gt=0, le=120, description="bound on a scrape "
                                     "of /metrics (Prometheus' own default is 10 s); the "
                                     "per-pool metrics get all but a second of it")
    scheduler: bool = Field(default=True, description="run the scheduler and the event "
                            "dispatcher (one process of the deployment does, by a lease)")
    scheduler_interval_s: float = Field(default=60.0, gt=0, description="how often time-based "
                                        "events (code expiry, forecast) are checked")

    allow_http_targets: bool = False
    allowed_target_hosts: list[str] = Field(default_factory=list)
    forwarded_allow_ips: str = "127.0.0.1"
    log_level: str = "info"

    # webhooks (app/webhooks): how alerts reach operators' chats and endpoints
    webhook_deliver: bool = Field(default=True, description="run the deliverer in this process")
    webhook_allow_private: bool = Field(
        default=False, description="allow webhook targets on loopback/private addresses, and http"
    )
    webhook_connect_timeout_s: float = Field(default=5.0, gt=0, le=60)
    webhook_timeout_s: float = Field(default=15.0, gt=0, le=120, description="per attempt, total")
    webhook_retry_base_s: float = Field(default=5.0, gt=0, description="first retry delay")
    webhook_retry_max_delay_s: float = Field(default=3600.0, gt=0)
    webhook_max_age_s: float = Field(
        default=24 * 3600.0, gt=0, description="retry this long, then dead-letter"
    )
    webhook_lease_s: float = Field(
        default=60.0, gt=0, description="a claimed delivery's lease; > webhook_timeout_s"
    )

    @model_validator(mode="after")
    def _lease_outlives_attempt(self) -> Settings:
        if self.webhook_lease_s <= self.webhook_timeout_s:
            raise ValueError("webhook_lease_s must be longer than webhook_timeout_s")
        return self

    @property
    def deadline_s(self) -> float:
        return self.deadline_ms / 1000

    @property
    def admin_timeout_s(self) -> float:
        return self.admin_timeout_ms / 1000

    @property
    def secure_cookie(self) -> bool:
        if self.cookie_secure is not None:
            return self.cookie_secure
        return bool(self.public_url and self.public_url.startswith("https://"))

    @property
    def url_policy(self) -> UrlPolicy:
        return UrlPolicy(
            allow_http=self.allow_http_targets,
            allowed_hosts=frozenset(self.allowed_target_hosts),
        )
