"""OpenAPI tools against a real FastAPI app on uvicorn, built from that app's own /openapi.json."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import httpx
import pytest
import yaml

from corral.errors import ConfigError
from corral.harness.config import AgentConfigError, OpenApiSource, load_agent
from corral.harness.loop import run
from corral.harness.runtime import Harness
from corral.harness.tools.credentials import Vault
from corral.harness.tools.openapi import OpenApiCallError, OpenApiClient, operations
from tests.harness.billing_app import make_app
from tests.harness.servers import serve

TOKEN = "tok-7f3a9c2e51d84b06"
API_KEY = "key-2b8e0d7a4c91"


@pytest.fixture(scope="module")
def billing():
    app = make_app(TOKEN, API_KEY)
    with serve(app) as url:
        yield app, url


@pytest.fixture
def spec(billing, tmp_path) -> Path:
    _, url = billing
    path = tmp_path / "billing.json"
    path.write_text(httpx.get(f"{url}/openapi.json").text)
    return path


def agent(tmp_path: Path, url: str, script: list, *, tool: dict | None = None, rules: str = "",
          credentials: dict | None = None) -> Path:
    (tmp_path / "script.yaml").write_text(yaml.safe_dump(script))
    (tmp_path / "policy.rules").write_text(rules)
    entry = tool or {"openapi": {"spec": "billing.json", "base_url": url, "credential": "billing"}}
    doc = {"name": "billing-desk", "model": {"provider": "scripted", "script": "script.yaml"},
           "tools": [entry], "phases": False,
           "credentials": credentials if credentials is not None else {"billing": {"env": "BILLING_TOKEN"}},
           "governance": {"rules": "policy.rules", "budget": {"session": 5.0}},
           "store": f"sqlite:///{tmp_path / 'corral.db'}", "workspace": str(tmp_path / "ws")}
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def call(name: str, **args) -> dict:
    return {"name": name, "args": args}


def test_each_operation_is_a_tool_with_the_specs_schema_and_an_effect_by_method(spec, billing, tmp_path,
                                                                                 monkeypatch):
    _, url = billing
    monkeypatch.setenv("BILLING_TOKEN", TOKEN)
    harness = Harness(load_agent(agent(tmp_path, url, [{"text": "hi"}])), principal="alice")
    try:
        api = {n: t for n, t in harness.tools.items() if n.startswith("api.")}
        assert set(api) == {"api.get_invoice", "api.list_invoices", "api.create_invoice", "api.void_invoice",
                            "api.whoami", "api.daily_report", "api.slow", "api.boom"}
        effects = {n: harness.governor.tools[n].effect for n in api}
        assert effects["api.get_invoice"] == effects["api.list_invoices"] == "read"
        assert effects["api.create_invoice"] == effects["api.void_invoice"] == "irreversible"
        get = api["api.get_invoice"].parameters
        assert get["required"] == ["invoice_id"] and get["properties"]["invoice_id"]["type"] == "string"
        assert get["additionalProperties"] is False
        listing = api["api.list_invoices"].parameters
        assert "status" in listing["properties"] and "required" not in listing
        assert listing["properties"]["status"]["description"] == "open or void"
        create = api["api.create_invoice"].parameters
        body = create["properties"]["body"]  # the $ref to InvoiceIn is inlined: the model sees the schema
        assert "$ref" not in json.dumps(body)
        assert body["required"] == ["customer", "amount"] and body["properties"]["amount"]["exclusiveMinimum"] == 0
        assert create["required"] == ["body"] and "x-request-id" in create["properties"]
        assert "Get one invoice" in api["api.get_invoice"].description
    finally:
        harness.close()


def test_calls_reach_the_app_with_the_credential_and_errors_come_back_as_results(spec, billing, tmp_path,
                                                                                  monkeypatch):
    app, url = billing
    monkeypatch.setenv("BILLING_TOKEN", TOKEN)
    script = [
        {"tool_calls": [call("api.get_invoice", invoice_id="INV-1"),
                        call("api.list_invoices", status="open"),
                        call("api.create_invoice", body={"customer": "Initech", "amount": 40.5}),
                        call("api.get_invoice", invoice_id="NOPE"),
                        call("api.create_invoice", body={"customer": "X", "amount": -1}),
                        call("api.boom"),
                        call("api.get_invoice", invoice="INV-1")]},
        {"text": "done"},
    ]
    harness = Harness(load_agent(agent(tmp_path, url, script)), principal="alice")
    try:
        result = run(harness, "go")
    finally:
        harness.close()
    assert result.stop_reason == "end_turn"
    record = harness.governor.store.get_session(result.session)["harness"]
    results = [json.loads(m["content"]) for m in record["transcript"] if m["role"] == "tool"]
    assert results[0] == {"id": "INV-1", "customer": "ACME", "amount": 120.0, "status": "open"}
    assert [i["id"] for i in results[1]] == ["INV-1"]
    created = results[2]
    assert created["customer"] == "Initech" and app.state.invoices[created["id"]].amount == 40.5
    assert "HTTP 404" in results[3]["error"] and "no invoice NOPE" in results[3]["error"]
    assert "HTTP 422" in results[4]["error"] and "greater than 0" in results[4]["error"]
    assert "HTTP 500" in results[5]["error"]
    assert "unknown argument 'invoice'" in results[6]["error"]  # refused before any request
    traces = [t for t in result.traces if t["kind"] == "call"]
    assert [t["outcome"]["status"] for t in traces] == ["ok", "ok", "ok", "error", "error", "error"]


def test_rules_govern_the_api_tools_like_any_other(spec, billing, tmp_path, monkeypatch):
    app, url = billing
    monkeypatch.setenv("BILLING_TOKEN", TOKEN)
    before = dict(app.state.invoices)
    script = [{"tool_calls": [call("api.void_invoice", invoice_id="INV-1")]}, {"text": "ok"}]
    harness = Harness(load_agent(agent(tmp_path, url, script, rules='BLOCK api.void_* BECAUSE "voids go through '
                                                                    'finance"\n')), principal="alice")
    try:
        result = run(harness, "void it")
    finally:
        harness.close()
    [blocked] = [t for t in result.traces if t["kind"] == "call"]
    assert blocked["decision"] == "blocked" and "finance" in blocked["reason"]
    assert app.state.invoices == before and app.state.invoices["INV-1"].status == "open"


def test_effects_override_and_operation_globs(spec, billing, tmp_path, monkeypatch):
    _, url = billing
    monkeypatch.setenv("BILLING_TOKEN", TOKEN)
    entry = {"openapi": {"spec": "billing.json", "base_url": url, "credential": "billing",
                         "operations": ["*invoice*"]}, "effects": {"api.void_invoice": "read"}}
    harness = Harness(load_agent(agent(tmp_path, url, [{"text": "x"}], tool=entry)), principal="alice")
    try:
        names = sorted(n for n in harness.tools if n.startswith("api."))
        assert names == ["api.create_invoice", "api.get_invoice", "api.list_invoices", "api.void_invoice"]
        assert harness.governor.tools["api.void_invoice"].effect == "read"
    finally:
        harness.close()


def test_an_api_key_goes_in_its_header(spec, billing, monkeypatch):
    _, url = billing
    monkeypatch.setenv("REPORTS_KEY", API_KEY)
    vault = Vault({"reports": {"env": "REPORTS_KEY"}})
    _, [op] = operations(OpenApiSource(spec=str(spec), operations=["daily_report"]), spec.parent)
    assert (op.security.kind, op.security.name) == ("header", "X-Api-Key")
    client = OpenApiClient(url, vault=vault, credential="reports")
    assert client.request(op, {}) == {"invoices": len(billing[0].state.invoices)}
    with pytest.raises(OpenApiCallError, match="HTTP 401") as caught:
        OpenApiClient(url).request(op, {})
    assert caught.value.status == 401


def test_an_unreachable_api_and_a_slow_one_are_results_not_crashes(spec, billing):
    _, ops = operations(OpenApiSource(spec=str(spec), operations=["get_invoice", "slow"]), spec.parent)
    by_id = {o.operation_id: o for o in ops}
    with pytest.raises(OpenApiCallError, match=r"GET /invoices/A: the request failed: ConnectError"):
        OpenApiClient("http://127.0.0.1:9").request(by_id["get_invoice"], {"invoice_id": "A"})
    with pytest.raises(OpenApiCallError, match=r"GET /slow: no answer within 0.3s"):
        OpenApiClient(billing[1], timeout=0.3).request(by_id["slow"], {})


BAD_SPECS = [
    ("not json {", "is not valid JSON"),
    ('{"swagger": "2.0", "paths": {}}', "is not an OpenAPI 3 document (swagger: 2.0)"),
    ('{"openapi": "3.1.0", "paths": {}}', "declares no paths"),
    ('{"openapi": "3.1.0", "paths": {"/a": {"get": {"operationId": "a", "responses": {}, "parameters": '
     '[{"$ref": "#/components/parameters/missing"}]}}}}', "points to nothing"),
    ('{"openapi": "3.1.0", "paths": {"/a/{id}": {"get": {"operationId": "a", "responses": {}}}}}',
     "path parameter {id} is not declared"),
]


@pytest.mark.parametrize(("text", "message"), BAD_SPECS)
def test_a_bad_openapi_file_is_a_located_error_at_validate(tmp_path, text, message, monkeypatch):
    monkeypatch.setenv("BILLING_TOKEN", TOKEN)
    (tmp_path / "billing.json").write_text(text)
    with pytest.raises(AgentConfigError) as caught:
        load_agent(agent(tmp_path, "http://127.0.0.1:9", [{"text": "x"}]))
    [(where, what)] = caught.value.problems
    assert where == "tools[0].openapi" and message in what


def test_globs_that_select_nothing_unknown_overrides_and_credentials_are_located_errors(spec, billing, tmp_path,
                                                                                       monkeypatch):
    _, url = billing
    monkeypatch.setenv("BILLING_TOKEN", TOKEN)
    cases = [
        ({"openapi": {"spec": "billing.json", "base_url": url, "operations": ["refund_*"]}},
         "select(s) nothing", "get_invoice"),
        ({"openapi": {"spec": "billing.json", "base_url": url}, "effects": {"api.nope": "read"}},
         "effects names api.nope", "api.get_invoice"),
        ({"openapi": {"spec": "billing.json", "base_url": url, "credential": "stripe"}},
         "unknown credential 'stripe'", "billing"),
        ({"openapi": {"spec": "billing.json"}}, "give `base_url:`", "servers"),
        ({"openapi": {"spec": "missing.json", "base_url": url}}, "cannot read the OpenAPI file", "missing.json"),
    ]
    for entry, message, detail in cases:
        with pytest.raises(AgentConfigError) as caught:
            load_agent(agent(tmp_path, url, [{"text": "x"}], tool=entry))
        [(where, what)] = caught.value.problems
        assert where == "tools[0].openapi", (entry, where)
        assert message in what and (detail in what or detail == "servers"), what


def test_a_reversible_operation_needs_a_compensation(spec, billing, tmp_path, monkeypatch):
    _, url = billing
    monkeypatch.setenv("BILLING_TOKEN", TOKEN)
    entry = {"openapi": {"spec": "billing.json", "base_url": url}, "effects": {"create_invoice": "reversible"}}
    with pytest.raises(AgentConfigError, match="reversible but no compensation"):
        load_agent(agent(tmp_path, url, [{"text": "x"}], tool=entry))
    with pytest.raises(ConfigError, match="tools\\[0\\]"):
        Harness(load_agent(agent(tmp_path, url, [{"text": "x"}], tool=entry), check=False))


def test_the_cli_validates_an_openapi_agent(spec, billing, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from corral.cli import main

    _, url = billing
    monkeypatch.setenv("BILLING_TOKEN", TOKEN)
    path = agent(tmp_path, url, [{"text": "x"}])
    out = CliRunner().invoke(main, ["validate", str(path), "--json"])
    assert out.exit_code == 0 and json.loads(out.output)["valid"] is True
    monkeypatch.delenv("BILLING_TOKEN")
    out = CliRunner().invoke(main, ["validate", str(path), "--json"])
    problems = {p["path"]: p["message"] for p in json.loads(out.output)["problems"]}
    assert out.exit_code == 1
    assert problems["credentials.billing"] == "credential 'billing': the environment variable BILLING_TOKEN is not set"
    assert textwrap.shorten(problems["tools[0].openapi"], 60).startswith("openapi.credential")


def test_an_openapi_entry_labels_its_operations_all_or_one_by_one(spec, billing, tmp_path, monkeypatch):
    _, url = billing
    monkeypatch.setenv("BILLING_TOKEN", TOKEN)
    entry = {"openapi": {"spec": "billing.json", "base_url": url, "credential": "billing"},
             "labels": {"api.get_invoice": ["pii"], "whoami": ["secret"]}, "tags": ["billing"], "untrusted": True}
    harness = Harness(load_agent(agent(tmp_path, url, [{"text": "hi"}], tool=entry)), principal="alice")
    try:
        tools = harness.governor.tools
        assert tools["api.get_invoice"].labels == frozenset({"pii", "untrusted"})
        assert tools["api.whoami"].labels == frozenset({"secret", "untrusted"})
        assert tools["api.list_invoices"].labels == frozenset({"untrusted"})
        assert all(tools[name].tags == frozenset({"billing"}) for name in tools if name.startswith("api."))
    finally:
        harness.close()
    entry["labels"] = {"api.get_invoce": ["pii"]}
    with pytest.raises(ConfigError, match=r"labels names api\.get_invoce, which the selected operations do not"):
        Harness(load_agent(agent(tmp_path, url, [{"text": "hi"}], tool=entry)), principal="alice")
