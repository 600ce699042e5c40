"""`pearl vex export`: fetch a project's VEX document from a running PeaRL's API."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from services.cli.client import checked, client
from services.settings import Settings


def cmd_vex_export(args: argparse.Namespace) -> int:
    """Write the document as the API built it (plus a final newline) to stdout or `--output`."""
    overrides: dict[str, Any] = {"home": args.home} if getattr(args, "home", None) else {}
    settings = Settings(**overrides)
    params = {"format": args.format}
    if args.author:
        params["author"] = args.author
    with client(settings.home) as http:
        response = http.get(f"/v1/projects/{args.project}/vex", params=params)
    checked(response)
    if args.output in (None, "-"):
        sys.stdout.buffer.write(response.content + b"\n")
        sys.stdout.flush()
    else:
        Path(args.output).write_bytes(response.content + b"\n")
    return 0
