"""``personsearch serve``: the search web page over a gallery index (:mod:`personsearch.serve.app`)."""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path

from personsearch.argtypes import device as device_name
from personsearch.argtypes import finite_float, probability

LOCAL_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")


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


def is_loopback(host: str) -> bool:
    if host in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="a web page to search a gallery index from a browser",
        description="Serve a local web page over a gallery index (personsearch index build): upload a query "
        "image or pick an indexed one, click a detected person or draw a box, and browse the ranked hits. "
        "JSON API documented at /docs. Binds to 127.0.0.1 by default (this machine only).",
    )
    p.add_argument(
        "--index", required=True, type=Path, metavar="INDEX", help="gallery index (personsearch index build)"
    )
    p.add_argument(
        "--checkpoint", metavar="C", help="trained model (default: the one the index was built with; the same model)"
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 exposes the index's "
        "pictures to the network)",
    )
    p.add_argument("--port", type=_port, default=8000, help="port (default 8000; 0: any free port)")
    p.add_argument("--device", type=device_name, default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument(
        "--det-thresh", type=probability, help="lowest detection score on query images (default: the index's)"
    )
    p.add_argument(
        "--max-upload-mb", type=_megabytes, default=20.0, metavar="MB", help="largest upload in MiB (default 20)"
    )
    p.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from personsearch.serve.app import create_app

    local = is_loopback(args.host)
    app = create_app(
        args.index,
        args.checkpoint,
        args.device,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        det_thresh=args.det_thresh,
        allowed_hosts=[*LOCAL_NAMES, args.host] if local else None,
    )
    if not local:
        print(
            f"personsearch serve: warning: listening on {args.host}: anyone who can reach this address can "
            "search the index and see its pictures",
            file=sys.stderr,
        )
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"personsearch serve: index {args.index} on http://{shown}:{args.port}/ (API: /docs); Ctrl-C stops")
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0
