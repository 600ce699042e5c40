"""Coverage-guided fuzzing (atheris/libFuzzer) of every scanner-report parser.

    python tests/fuzz/fuzz_parsers.py -max_total_time=60 [corpus_dir ...]

The first byte of each input picks the parser (0: auto-detect, else a forced format), the rest
is the report. The seeds of tests/fuzz/oracle.py (the real samples, shrunk, and one report per
format) go to the first corpus directory when it is empty (none given: a temporary one). A
crash is any exception but ReportError, an unsafe text in a finding, or the two parse paths
disagreeing; libFuzzer saves the input (see -artifact_prefix) and exits non-zero.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import atheris

with atheris.instrument_imports(include=["domain"]):
    from tests.fuzz.oracle import run_one, seeds


def main() -> None:
    """Seed the (first, or a temporary) corpus directory when it is empty, then fuzz."""
    args = list(sys.argv)
    with tempfile.TemporaryDirectory(prefix="pearl-fuzz-") as scratch:
        dirs = [arg for arg in args[1:] if not arg.startswith("-")]
        if not dirs:
            args.append(scratch)
            dirs = [scratch]
        corpus = Path(dirs[0])
        if corpus.is_dir() and not any(corpus.iterdir()):
            for name, data in seeds():
                (corpus / name).write_bytes(data)
        atheris.Setup(args, run_one)
        atheris.Fuzz()


if __name__ == "__main__":
    main()
