"""``personsearch serve``: the search web page over a gallery index (:mod:`personsearch.serve.app`)."""

from __future__ import annotations

import argparse
import sys

from personsearch.argtypes import finite_float, probability
from personsearch.commandline import add_checkpoint_option, add_command, add_device_option, add_index_option

DESCRIPTION = """Serve a local web page over a gallery index (personsearch index build): upload a query image
or pick an indexed one, click a detected person or draw a box, and browse the ranked hits. JSON API documented
at /docs. Binds to 127.0.0.1 by default (this machine only)."""


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, got {text!r}")
    return value


def _megabytes(text: str) -> float:
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of MiB, got {text!r}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    summary = "a web page to search a gallery index from a browser"
    p = add_command(subparsers, "serve", run_serve, help=summary, description=DESCRIPTION)
    add_index_option(p)
    add_checkpoint_option(
        p, "trained model (default: the one the index was built with; the same model)", metavar="C", as_path=False
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 exposes the index's "
        "pictures to the network)",
    )
    p.add_argument("--port", type=_port, default=8000, help="port (default 8000; 0: any free port)")
    add_device_option(p)
    p.add_argument(
        "--det-thresh", type=probability, help="lowest detection score on query images (default: the index's)"
    )
    p.add_argument(
        "--max-upload-mb", type=_megabytes, default=20.0, metavar="MB", help="largest upload in MiB (default 20)"
    )


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from personsearch.serve.app import create_app
    from personsearch.serve.hosts import allowed_hosts, url_host

    hosts = allowed_hosts(args.host)
    app = create_app(
        args.index,
        args.checkpoint,
        args.device,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        det_thresh=args.det_thresh,
        allowed_hosts=hosts,
    )
    if hosts is None:
        print(
            f"personsearch serve: warning: listening on {args.host}: anyone who can reach this address can "
            "search the index and see its pictures",
            file=sys.stderr,
        )
    print(
        f"personsearch serve: index {args.index} on http://{url_host(args.host)}:{args.port}/ (API: /docs); "
        "Ctrl-C stops"
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0
