"""reco dashboard: serve the read-only monitoring dashboard (batch/dashboard) over one environment's metric store
and artifacts. The web framework is imported only when the command runs."""

from __future__ import annotations

import logging

from batch.cli import add_command
from batch.config import ENVIRONMENTS, load_environment
from batch.errors import ConfigError

log = logging.getLogger(__name__)


def register(sub) -> None:
    p = add_command(sub, "dashboard")
    p.add_argument("--env", default="local", choices=ENVIRONMENTS, help="environment (default: local)")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 in a pod)"
    )
    p.add_argument("--port", type=int, default=8050, help="port (default 8050)")
    p.add_argument(
        "--base-path", default="", help="serve under this path prefix (behind the shared Ingress: /dashboard)"
    )
    p.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help="serve a cloud environment without IAP verification (only for a port-forward or a laptop)",
    )
    p.set_defaults(func=cmd_dashboard)


def cmd_dashboard(args) -> int:
    import uvicorn

    from batch.dashboard.app import create_app

    if not 0 < args.port < 65536:
        raise ConfigError(f"--port {args.port}: expected 1..65535")
    env = load_environment(args.env)
    if env.runner != "local" and not env.dashboard.iap_audience and not args.allow_unauthenticated:
        raise ConfigError(
            f"environments.{env.name}.dashboard.iap_audience is not set (DASHBOARD_IAP_AUDIENCE): the dashboard "
            "would serve cloud data without verifying IAP",
            hint="set it to /projects/NUMBER/global/backendServices/ID, or pass --allow-unauthenticated",
        )
    app = create_app(env, base_path=args.base_path, warm=True)
    where = f"http://{args.host}:{args.port}{'/' + args.base_path.strip('/') if args.base_path.strip('/') else ''}/"
    print(f"reco dashboard ({env.name}) on {where}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0
