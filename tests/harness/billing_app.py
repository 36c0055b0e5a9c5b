"""A small billing API (FastAPI) for the OpenAPI-tool tests: bearer and API-key security, a body, errors."""

import time
from typing import Annotated

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field


class InvoiceIn(BaseModel):
    customer: str
    amount: float = Field(gt=0)


class Invoice(InvoiceIn):
    id: str
    status: str = "open"


def make_app(token: str, api_key: str) -> FastAPI:
    app = FastAPI(title="Billing", version="1.0")
    app.state.invoices = {"INV-1": Invoice(id="INV-1", customer="ACME", amount=120.0)}
    app.state.seen = []  # (method, path, authorization) of every authenticated request
    bearer = HTTPBearer()
    key_header = APIKeyHeader(name="X-Api-Key")

    def authed(creds: Annotated[HTTPAuthorizationCredentials, Depends(bearer)]) -> str:
        if creds.credentials != token:
            raise HTTPException(401, "bad token")
        return creds.credentials

    def keyed(key: Annotated[str, Depends(key_header)]) -> str:
        if key != api_key:
            raise HTTPException(401, "bad key")
        return key

    @app.get("/invoices/{invoice_id}", operation_id="get_invoice", summary="Get one invoice")
    def get_invoice(invoice_id: str, auth: Annotated[str, Depends(authed)]) -> Invoice:
        if invoice_id not in app.state.invoices:
            raise HTTPException(404, f"no invoice {invoice_id}")
        return app.state.invoices[invoice_id]

    @app.get("/invoices", operation_id="list_invoices", summary="List invoices")
    def list_invoices(auth: Annotated[str, Depends(authed)],
                      status: Annotated[str | None, Query(description="open or void")] = None) -> list[Invoice]:
        return [i for i in app.state.invoices.values() if status is None or i.status == status]

    @app.post("/invoices", operation_id="create_invoice", summary="Create an invoice", status_code=201)
    def create_invoice(body: InvoiceIn, auth: Annotated[str, Depends(authed)],
                       x_request_id: Annotated[str | None, Header()] = None) -> Invoice:
        invoice = Invoice(id=f"INV-{len(app.state.invoices) + 1}", **body.model_dump())
        app.state.invoices[invoice.id] = invoice
        return invoice

    @app.post("/invoices/{invoice_id}/void", operation_id="void_invoice", summary="Void an invoice")
    def void_invoice(invoice_id: str, auth: Annotated[str, Depends(authed)]) -> Invoice:
        invoice = app.state.invoices.get(invoice_id)
        if invoice is None:
            raise HTTPException(404, f"no invoice {invoice_id}")
        invoice.status = "void"
        return invoice

    @app.get("/whoami", operation_id="whoami", summary="Echo the caller's authorization (a careless API)")
    def whoami(request: Request, auth: Annotated[str, Depends(authed)]) -> dict:
        return {"authorization": request.headers["authorization"]}

    @app.get("/reports/daily", operation_id="daily_report", summary="The daily report (API key)")
    def daily_report(auth: Annotated[str, Depends(keyed)]) -> dict:
        return {"invoices": len(app.state.invoices)}

    @app.get("/slow", operation_id="slow", summary="Answers after two seconds")
    def slow() -> dict:
        time.sleep(2)
        return {"ok": True}

    @app.get("/boom", operation_id="boom", summary="Always fails")
    def boom() -> dict:
        raise RuntimeError("kaboom")

    return app
