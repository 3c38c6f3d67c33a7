"""The interactive API reference at /docs, from the Swagger UI files that the
`fastapi-offline` package ships (Swagger UI 5, which reads OpenAPI 3.1): nothing is loaded
from a CDN onto the dashboard's origin, and the one inline script carries the page's CSP
nonce. (Only the package's files are used: its own docs page has an inline script without
a nonce, which the policy would block.)"""

from __future__ import annotations

import json
from importlib.resources import files

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs/assets"

router = APIRouter(include_in_schema=False)


@router.get("/docs", response_class=HTMLResponse)
async def swagger_ui(request: Request) -> HTMLResponse:
    nonce = request.state.csp_nonce
    title = json.dumps(request.app.title)
    return HTMLResponse(
        f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{request.app.title} API</title>
<link rel="stylesheet" href="{ASSETS}/swagger-ui.css">
</head>
<body>
<div id="docs"></div>
<script src="{ASSETS}/swagger-ui-bundle.js"></script>
<script nonce="{nonce}">
SwaggerUIBundle({{ url: "/openapi.json", dom_id: "#docs", deepLinking: true }});
document.title = {title} + " API";
</script>
</body>
</html>"""
    )


def mount_docs(app: FastAPI) -> None:
    assets = files("fastapi_offline") / "static"
    app.mount(ASSETS, StaticFiles(directory=str(assets)), name="docs-assets")
    app.include_router(router)
