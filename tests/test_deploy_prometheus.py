"""deploy/: the Prometheus alert rules and their promtool unit tests, the example scrape config,
and the Grafana dashboard. promtool comes with Debian's prometheus package (.ci/run installs it);
without it these tests fail rather than skip, so CI cannot pass them unrun."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PROM = ROOT / "deploy" / "prometheus"
RULES = PROM / "alerts.yml"
RULE_TESTS = PROM / "alerts.test.yml"
CONFIG = PROM / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "livecode.json"
DS_REF = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}

# Every series the service exposes at /metrics (README, "Health and metrics"); a histogram is its
# _bucket, _sum and _count series.
DOCUMENTED = {
    "livecode_pool_room",
    "livecode_pool_capacity",
    "livecode_pool_groups",
    "livecode_pool_exhaustion_seconds",
    "livecode_pool_next_expiry_seconds",
    "livecode_pool_active",
    "livecode_pool_exhausted",
    "livecode_pool_scans_total",
    "livecode_scans_total",
    "livecode_scan_duration_seconds_bucket",
    "livecode_scan_duration_seconds_sum",
    "livecode_scan_duration_seconds_count",
    "livecode_redis_errors_total",
    "livecode_webhook_dead_letters",
    "livecode_webhook_deliveries_total",
}
# Series Prometheus makes itself for every target.
PROMETHEUS_OWN = {"up"}
SEVERITIES = {"warning", "critical"}


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail(
            "promtool is not on PATH. It comes with Debian's prometheus package: "
            "apt-get install -y --no-install-recommends prometheus (.ci/run installs it).",
            pytrace=False,
        )
    return subprocess.run(
        [exe, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def load_rules(path: Path = RULES) -> list[dict[str, Any]]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


# --- metric names in PromQL ---------------------------------------------------------------------

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
# An identifier not glued to a number (1e300, 5m) and not a function call (rate(...)).
_IDENT = re.compile(r"(?<![\w:.$])([A-Za-z_:][\w:]*)\b(?!\s*\()")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "group_left", "group_right", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (label matchers, ranges, label lists and
    strings taken out first, so their label names and values are not counted)."""
    for pattern in (_STRINGS, _MATCHERS, _RANGES, _LABEL_LISTS):
        expr = pattern.sub(" ", expr)
    return {m for m in _IDENT.findall(expr) if m.lower() not in _KEYWORDS}


def test_metric_names_finds_selectors_only() -> None:
    expr = (
        'sum without (instance, pod, outcome) (rate(livecode_scans_total{outcome="error"}[5m]))\n'
        "/ on (job) group_left sum by (job, le) (rate(livecode_scan_duration_seconds_bucket"
        '{pool=~"$pool"}[$__rate_interval])) > 1e300 and up offset 1h\n'
        "unless clamp_max(livecode_pool_room, 604800) > bool Inf"
    )
    assert metric_names(expr) == {
        "livecode_scans_total",
        "livecode_scan_duration_seconds_bucket",
        "up",
        "livecode_pool_room",
    }


# --- the alert rules ----------------------------------------------------------------------------


def test_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(load_rules())} rules found" in result.stdout


def test_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_example_scrape_config_is_valid() -> None:
    result = promtool("check", "config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    assert config["rule_files"] == ["alerts.yml"]
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "livecode"]
    assert job["metrics_path"] == "/metrics"
    assert job["scrape_interval"] == "15s"


def test_every_alert_is_labelled_explained_and_tested_both_ways() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["tests"]
    cases = [case for group in tests for case in group.get("alert_rule_test", [])]
    rules = load_rules()
    assert rules
    for rule in rules:
        name = rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert rule.get("for"), f"{name} has no for:"
        annotations = rule["annotations"]
        assert annotations["summary"].strip() and annotations["description"].strip(), name
        if any(m.startswith("livecode_pool_") for m in metric_names(rule["expr"])):
            assert "$labels.pool" in annotations["summary"], name
            assert "$labels.pool" in annotations["description"], name
        mine = [case for case in cases if case["alertname"] == name]
        assert any(case.get("exp_alerts") for case in mine), f"no test where {name} fires"
        assert any(not case.get("exp_alerts") for case in mine), f"no test where {name} must not"


def test_rules_use_only_documented_metrics() -> None:
    used = set().union(*(metric_names(rule["expr"]) for rule in load_rules()))
    assert used - DOCUMENTED - PROMETHEUS_OWN == set()
    assert {"livecode_pool_room", "livecode_scans_total", "up"} <= used


# Each mutation of alerts.yml must make `promtool test rules` fail: a removed rule, a threshold
# moved either way, a guard taken out, a `for:` made shorter or longer. (alert, field, old, new);
# field None with old "remove" removes the rule.
MUTATIONS: list[tuple[str, str | None, str, str]] = [
    ("LivecodePoolLow", None, "remove", ""),
    ("LivecodePoolLow", "expr", "_seconds) < 3600", "_seconds) < 7200"),
    ("LivecodePoolLow", "expr", "_seconds) < 3600", "_seconds) < 3000"),
    ("LivecodePoolLow", "expr", "< 0.1 *", "< 0.2 *"),
    ("LivecodePoolLow", "expr", "< 0.1 *", "< 0.05 *"),
    ("LivecodePoolLow", "expr", "(livecode_pool_room) > 0", "(livecode_pool_room) >= 0"),
    ("LivecodePoolLow", "expr", "(livecode_pool_active) == 1", "(livecode_pool_active) >= 0"),
    (
        "LivecodePoolLow",
        "expr",
        "without (instance, pod) (livecode_pool_room) > 0",
        "without (pod) (livecode_pool_room) > 0",
    ),
    ("LivecodePoolLow", "for", "10m", "5m"),
    ("LivecodePoolLow", "for", "10m", "15m"),
    ("LivecodePoolExhausted", None, "remove", ""),
    (
        "LivecodePoolExhausted",
        "expr",
        "(livecode_pool_capacity) > 0",
        "(livecode_pool_capacity) >= 0",
    ),
    ("LivecodePoolExhausted", "expr", "(livecode_pool_active) == 1", "(livecode_pool_active) >= 0"),
    ("LivecodePoolExhausted", "for", "2m", "1m"),
    ("LivecodePoolExhausted", "for", "2m", "5m"),
    ("LivecodePoolNoOpenGroups", None, "remove", ""),
    ("LivecodePoolNoOpenGroups", "expr", '{state="open"}) > 0', '{state="open"}) > 100'),
    ("LivecodePoolNoOpenGroups", "expr", '{state="full"}) > 0', '{state="full"}) > 100'),
    (
        "LivecodePoolNoOpenGroups",
        "expr",
        "(livecode_pool_active) == 1",
        "(livecode_pool_active) >= 0",
    ),
    ("LivecodePoolNoOpenGroups", "for", "2m", "1m"),
    ("LivecodePoolNoOpenGroups", "for", "2m", "5m"),
    ("LivecodeGroupCodeExpiring", None, "remove", ""),
    ("LivecodeGroupCodeExpiring", "expr", "< 86400", "< 172800"),
    ("LivecodeGroupCodeExpiring", "expr", "< 86400", "< 43200"),
    ("LivecodeGroupCodeExpiring", "for", "5m", "1m"),
    ("LivecodeGroupCodeExpiring", "for", "5m", "10m"),
    ("LivecodeScanErrors", None, "remove", ""),
    ("LivecodeScanErrors", "expr", ") > 0.01", ") > 0.005"),
    ("LivecodeScanErrors", "expr", ") > 0.01", ") > 0.05"),
    ("LivecodeScanErrors", "expr", '{outcome!="bot"}', ""),
    ("LivecodeScanErrors", "expr", "[5m])) > 5", "[5m])) > 2"),
    ("LivecodeScanErrors", "expr", "[2m])) > 0", "[2m])) >= 0"),
    ("LivecodeScanErrors", "for", "5m", "1m"),
    ("LivecodeScanErrors", "for", "5m", "10m"),
    ("LivecodeRedisErrors", None, "remove", ""),
    ("LivecodeRedisErrors", "expr", "> 5", "> 10"),
    ("LivecodeRedisErrors", "expr", "> 5", "> 0"),
    ("LivecodeRedisErrors", "for", "10m", "5m"),
    ("LivecodeRedisErrors", "for", "10m", "30m"),
    ("LivecodeTargetDown", None, "remove", ""),
    ("LivecodeTargetDown", "expr", '{job="livecode"}', ""),
    ("LivecodeTargetDown", "expr", "== 0", "== 1"),
    ("LivecodeTargetDown", "for", "5m", "1m"),
    ("LivecodeTargetDown", "for", "5m", "10m"),
    ("LivecodeWebhookDeadLetters", None, "remove", ""),
    ("LivecodeWebhookDeadLetters", "expr", "> 0", "> 3"),
    ("LivecodeWebhookDeadLetters", "expr", "without (instance, pod)", "without (pod)"),
    ("LivecodeWebhookDeadLetters", "for", "5m", "1m"),
    ("LivecodeWebhookDeadLetters", "for", "5m", "10m"),
    ("LivecodeWebhookFailing", None, "remove", ""),
    ("LivecodeWebhookFailing", "expr", ") > 0.5", ") > 0.8"),
    ("LivecodeWebhookFailing", "expr", ") > 0.5", ") > 0.3"),
    ("LivecodeWebhookFailing", "for", "30m", "15m"),
    ("LivecodeWebhookFailing", "for", "30m", "45m"),
]


def test_every_alert_has_mutations() -> None:
    assert {r["alert"] for r in load_rules()} == {m[0] for m in MUTATIONS}


def run_rule_tests_with(
    tmp_path: Path, alert: str, field: str | None = None, old: str = "", new: str = ""
) -> subprocess.CompletedProcess[str]:
    """`promtool test rules` on a copy of alerts.yml with one rule changed (field None and old
    "": unchanged; field None and old "remove": removed), against the test groups about it."""
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    found = False
    for group in doc["groups"]:
        for rule in list(group["rules"]):
            if rule.get("alert") != alert:
                continue
            found = True
            if field is None and old == "remove":
                group["rules"].remove(rule)
            elif field is not None:
                assert str(rule[field]).count(old) == 1, f"{alert}.{field} no longer has {old!r}"
                rule[field] = str(rule[field]).replace(old, new)
    assert found, alert
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    check = promtool("check", "rules", "alerts.yml", cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    # Only the test groups about this alert: promtool checks nothing else of it there, and each
    # group costs time.
    tests = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))
    tests["tests"] = [
        group
        for group in tests["tests"]
        if any(case["alertname"] == alert for case in group.get("alert_rule_test", []))
    ]
    (tmp_path / "alerts.test.yml").write_text(yaml.safe_dump(tests), encoding="utf-8")
    return promtool("test", "rules", "alerts.test.yml", cwd=tmp_path)


@pytest.mark.parametrize("alert", sorted({m[0] for m in MUTATIONS}))
def test_rule_test_copies_pass_unchanged(tmp_path: Path, alert: str) -> None:
    # The control for the mutations below: the copying and filtering alone breaks nothing.
    result = run_rule_tests_with(tmp_path, alert)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("alert", "field", "old", "new"),
    MUTATIONS,
    ids=[f"{a}-{f or 'removed'}-{n.strip() or 'dropped'}" for a, f, _, n in MUTATIONS],
)
def test_rule_tests_catch_a_changed_rule(
    tmp_path: Path, alert: str, field: str | None, old: str, new: str
) -> None:
    result = run_rule_tests_with(tmp_path, alert, field, old, new)
    assert result.returncode != 0, f"alerts.test.yml still passes with {alert} changed"
    assert "FAILED" in result.stdout + result.stderr


# --- the Grafana dashboard ----------------------------------------------------------------------


def load_dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return doc


def all_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # a collapsed row holds its panels
    return panels


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in all_panels(dashboard) for t in p.get("targets", [])]


def test_dashboard_is_an_importable_grafana_dashboard() -> None:
    dashboard = load_dashboard()
    assert dashboard["title"] and dashboard["uid"] == "livecode"
    assert dashboard["schemaVersion"] >= 39  # Grafana 11 and later
    (ds_input,) = dashboard["__inputs"]
    assert ds_input["name"] == "DS_PROMETHEUS"
    assert (ds_input["type"], ds_input["pluginId"]) == ("datasource", "prometheus")
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    # The same variable name serves a provisioned copy, where no import fills in the input.
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    pool = variables["pool"]
    assert pool["datasource"] == DS_REF
    assert pool["definition"] == "label_values(livecode_pool_room, pool)"
    # What runs is query.query; Grafana's variable editor shows (and rebuilds it from) the rest.
    assert pool["query"]["query"] == "label_values(livecode_pool_room, pool)"
    assert (pool["query"]["qryType"], pool["query"]["metric"], pool["query"]["label"]) == (
        1,  # label values
        "livecode_pool_room",
        "pool",
    )
    assert pool["multi"] and pool["includeAll"]


def test_every_dashboard_panel_has_a_title_and_a_place() -> None:
    panels = all_panels(load_dashboard())
    assert len(panels) >= 10
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    taken: set[tuple[int, int]] = set()
    for panel in panels:
        assert isinstance(panel.get("title"), str) and panel["title"].strip(), panel["id"]
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells
        if panel["type"] != "row":
            assert panel["datasource"] == DS_REF, panel["title"]
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"] == DS_REF, panel["title"]
                assert target["expr"].strip() and target["refId"], panel["title"]


def test_dashboard_has_the_operators_panels() -> None:
    titles = {p["title"] for p in all_panels(load_dashboard())}
    for wanted in (
        "Room left and capacity",
        "Groups by state",
        "Time to exhaustion",
        "Next code expiry",
        "Scans per minute by outcome, per pool",
        "503 rate (share of scans, 5 min)",
        "Scan latency p50 / p99",
        "Redis errors on the scan path",
        "Webhook dead letters",
    ):
        assert wanted in titles


def test_dashboard_uses_only_and_shows_every_documented_metric() -> None:
    dashboard = load_dashboard()
    used = set().union(*(metric_names(e) for e in dashboard_exprs(dashboard)))
    pool_query = next(v for v in dashboard["templating"]["list"] if v["name"] == "pool")
    variable_metric = re.fullmatch(r"label_values\((\w+), *pool\)", pool_query["definition"])
    assert variable_metric
    used.add(variable_metric[1])
    assert used - DOCUMENTED == set()
    assert DOCUMENTED - used == {
        "livecode_scan_duration_seconds_sum",
        "livecode_scan_duration_seconds_count",
    }


def test_dashboard_pool_panels_follow_the_pool_variable() -> None:
    for expr in dashboard_exprs(load_dashboard()):
        if any(m.startswith("livecode_pool_") for m in metric_names(expr)):
            assert 'pool=~"$pool"' in expr, expr


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    # promtool parses each query as a recording rule, with Grafana's variables filled in.
    exprs = dashboard_exprs(load_dashboard())
    rules = [
        {
            "record": f"dashboard:query_{i}",
            "expr": e.replace("$__rate_interval", "1m").replace("$pool", ".*"),
        }
        for i, e in enumerate(exprs)
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8"
    )
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout
