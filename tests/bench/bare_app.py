"""The HTTP baseline: a bare FastAPI app answering a small JSON on POST, nothing else.

Served by ``python -m uvicorn tests.bench.bare_app:app`` in a process of its own, the same way
the applications service is, so the submissions benchmark compares like with like.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

app = FastAPI()


@app.post("/v1/applications/submissions", status_code=201)
async def submit(body: dict[str, Any]) -> dict[str, str]:
    """Parse the JSON body, answer a small JSON."""
    return {"status": "submitted", "fields": str(len(body))}


@app.get("/health")
async def health() -> dict[str, str]:
    """Ready as soon as it listens."""
    return {"status": "ok"}
