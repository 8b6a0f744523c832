"""``safeview serve`` and ``safeview schema``."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes; each loads the models once.")
    ] = 1,
) -> None:
    """Run the HTTP service (moderation API, safeguarding, review page).

    POST /v1/moderations (OpenAI-compatible, images), POST /v1/safeguard, POST
    /v1/safeguard/video (a clip, held in memory only), GET /healthz, /readyz, the review page at /
    and the API docs at /docs.

    Limits come from the environment (the table in safeview.service.app lists all with their
    defaults): SAFEVIEW_API_KEY (require Authorization: Bearer KEY), SAFEVIEW_MAX_BODY_BYTES,
    SAFEVIEW_BODY_TIMEOUT_S, SAFEVIEW_MAX_INFLIGHT_BYTES, SAFEVIEW_MAX_PIXELS, SAFEVIEW_MAX_INPUTS,
    SAFEVIEW_MAX_PARTS, SAFEVIEW_TIMEOUT_S, SAFEVIEW_MAX_CONCURRENCY, SAFEVIEW_MAX_QUEUE,
    SAFEVIEW_ATTRIBUTIONS, SAFEVIEW_RATIONALES, SAFEVIEW_INSTRUCTBLIP_MODEL, SAFEVIEW_DEVICE,
    SAFEVIEW_GUARD (one default guard; unset: the policy), SAFEVIEW_POLICY (default, or a policy
    JSON file, checked at start and offered by its file stem), SAFEVIEW_PRELOAD (guards and
    policies loaded at start; `policy`: the server's policy, the default), SAFEVIEW_GUARD_FILES
    (comma-separated checkpoints from `safeview train`, offered as guards named by their file
    stem); video: SAFEVIEW_MAX_VIDEO_BYTES (0: no video route), SAFEVIEW_MAX_VIDEO_SECONDS,
    SAFEVIEW_MAX_VIDEO_FRAMES, SAFEVIEW_MAX_VIDEO_PIXELS, SAFEVIEW_VIDEO_TIMEOUT_S; connection
    limits:
    SAFEVIEW_HEADER_TIMEOUT_S, SAFEVIEW_KEEP_ALIVE_S, SAFEVIEW_MAX_HEAD_BYTES,
    SAFEVIEW_MAX_CONNECTIONS. The service never downloads a model (HF_HUB_OFFLINE=1).
    """
    import os

    import uvicorn

    from safeview.service.server import uvicorn_options

    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ["SAFEVIEW_WORKERS"] = str(workers)  # each worker takes its share of the cores
    uvicorn.run(
        "safeview.service.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        **uvicorn_options(),
    )


def schema() -> None:
    """Print the JSON Schema of the report."""
    from safeview.report import JSON_SCHEMA

    typer.echo(json.dumps(JSON_SCHEMA, indent=2))
