"""`pearl policy validate`: check a gate policy file offline, listing every error with its line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from contracts.policy import PolicyDocument
from domain.policy import PolicyInvalid, parse_policy


def read_policy_file(name: str) -> PolicyDocument | None:
    """The policy in a file (`-`: stdin), or None after printing why it is not one."""
    try:
        text = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    except OSError as exc:
        print(f"pearl: cannot read {name}: {exc.strerror or exc}", file=sys.stderr)
        return None
    try:
        return parse_policy(text, source=name)
    except PolicyInvalid as exc:
        for error in exc.errors:
            where = name if error.line is None else f"{name}:{error.line}:{error.column}"
            what = f"{error.location}: {error.message}" if error.location else error.message
            print(f"{where}: {what}", file=sys.stderr)
        return None


def cmd_policy_validate(args: argparse.Namespace) -> int:
    """`OK: N rules` (exit 0), or one `FILE:LINE:COL: location: message` per error (exit 2)."""
    doc = read_policy_file(str(args.file))
    if doc is None:
        return 2
    count = len(doc.rules)
    print(f"OK: {count} rule{'' if count == 1 else 's'}")
    return 0
