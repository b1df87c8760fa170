"""An empty FastAPI endpoint: the most any FastAPI scoring service could answer here.

``POST /v1/score`` reads the body and answers a constant, so ``serve_bench`` loads it with
the very bytes ``srl serve`` gets; ``GET /ping`` answers readiness. Served by uvicorn like
both servers compared, it shows the cost of the HTTP stack and the client alone.
"""

from fastapi import FastAPI, Request
from starlette.responses import Response

ANSWER = b'{"probability":0.5}'

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.post("/v1/score")
async def score(request: Request) -> Response:
    """Read the body, answer a constant."""
    await request.body()
    return Response(ANSWER, media_type="application/json")


@app.get("/ping")
async def ping() -> Response:
    """Ready as soon as it serves."""
    return Response(b"ok")
