"""``python -m stripe_double --port 12111 --webhook http://127.0.0.1:8000/hook=whsec_…``"""

from __future__ import annotations

import argparse
import sys

from stripe_double.server import DEFAULT_PORT, create_app, normalize_webhooks
from stripe_double.state import Config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stripe_double", description="Serve the Stripe test double."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument(
        "--webhook",
        action="append",
        default=[],
        metavar="URL=whsec_...",
        help="a webhook endpoint and its signing secret (repeatable; secret made if omitted)",
    )
    parser.add_argument("--api-key", help="accept only this sk_test_ key (default: any)")
    parser.add_argument("--base-url", help="public URL of the double, for hosted page links")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per POST")
    parser.add_argument("--webhook-mode", choices=("auto", "manual"), default="auto")
    parser.add_argument(
        "--retry-delays",
        default="0.5,1,2,4,8",
        help="seconds between webhook retries, comma-separated",
    )
    args = parser.parse_args(argv)
    config = Config(
        latency=args.latency,
        webhook_mode=args.webhook_mode,
        webhook_retry_delays=[float(x) for x in args.retry_delays.split(",") if x.strip()],
        api_key=args.api_key,
        base_url=args.base_url,
    )
    app = create_app(normalize_webhooks(args.webhook), config)
    print(f"Stripe test double on http://{args.host}:{args.port}", flush=True)
    for endpoint in app.dispatcher.endpoints.values():
        print(f"webhook {endpoint.url} secret {endpoint.secret}", flush=True)

    import uvicorn

    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        loop="asyncio",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
