"""``corral serve``: the HTTP API (FastAPI on uvicorn), identity and leases, for a team sharing one store.

``app`` builds the FastAPI app around a ``service.Service``; ``routes/`` has one module per resource;
``identity`` the principals and tokens; ``leases`` the session leases and the recovery of dead servers;
``queries`` what a principal may read (the console reads through the same functions).
"""
