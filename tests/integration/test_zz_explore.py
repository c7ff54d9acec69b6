import io, sys, json
import structlog
import api.app as api_app
from ledger.logs import configure_logging

def test_explore(api, monkeypatch):
    buf = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buf)
    configure_logging(json=True)
    admin = api("admin"); clerk = api("clerk")
    r = admin.post("/v1/fund-years", json={"year": 2024, "currency": "CNY"}, headers={"X-Request-Id": "req-1"})
    print(r.status_code, r.headers)
    def boom(*a, **k):
        raise RuntimeError("kaboom")
    monkeypatch.setattr(admin.app.state.ledger, "open_fund_year", boom)
    r = admin.post("/v1/fund-years", json={"year": 2025, "currency": "CNY"})
    print(r.status_code, r.headers, r.text)
    r = clerk.post("/v1/talents", json={"talent_id": "T", "name": "张三丰", "category": "a", "employer": "e", "arrived_on": "2024-01-01", "service_commitment_until": "2026-01-01"})
    print(r.status_code)
    r = admin.post("/v1/fund-years", json={"year": "x"}, headers={"X-Request-Id": "bad id with spaces"})
    print(r.status_code, r.headers)
    monkeypatch.undo()
    structlog.reset_defaults()
    print(buf.getvalue())
    print(vars(api_app.log))
