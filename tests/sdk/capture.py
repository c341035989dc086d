"""Regenerate the SDK part of the corpus: ``python -m tests.sdk.capture``.

Runs the phased plan (``tests.sdk.plan``) with each official SDK and writes every metrics
body it sent, byte for byte as it went over the wire, to ``tests/data/corpus/`` as
``<sdk>-<version>-<nn>-phase<A|B|C>.json`` (``nn``: the order the bodies were sent in). The
SDK's earlier files there are replaced; other files are left alone.

By default the SDKs talk (through ``SdkFront``, which serves them the plan's flags) to a real
unleash-server 8.2.0, the e2e stack (PostgreSQL and npm needed, about half a minute): its
answers decide what an SDK resends, so the corpus is what the SDKs send to a real server.
``--receiver`` uses impactagent's receiver instead (seconds, no PostgreSQL; while the receiver
refuses a body the server takes, the SDK's resends end up in the corpus too).

API tokens go in headers only, never in bodies: nothing in the files needs redacting.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path
from typing import Iterator, List, Tuple

from impactagent.devtools.receiver import Receiver
from tests.sdk import node_sdk, plan, python_sdk
from tests.sdk.front import Exchange, SdkFront

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus"
PYTHON_VERSION = "6.9.1"
NODE_VERSION = "6.12.1"


@contextlib.contextmanager
def target(real_server: bool) -> Iterator[Tuple[str, str]]:
    """``(url, token)`` of what answers the SDKs' POSTs, for as long as the block runs."""
    if not real_server:
        with Receiver() as receiver:
            yield receiver.url, plan.TOKEN
        return
    from tests.e2e.stack import UnleashStack  # only now: it needs PostgreSQL and npm
    with UnleashStack() as stack:
        assert stack.server is not None
        yield stack.server.url, stack.server.backend_token


def write(sdk: str, exchanges: List[Exchange], corpus: Path = CORPUS) -> List[Path]:
    """Replace ``sdk``'s files in ``corpus`` with its metrics bodies, in the order sent."""
    corpus.mkdir(parents=True, exist_ok=True)
    for old in corpus.glob(f"{sdk}-*.json"):
        old.unlink()
    paths = []
    for number, exchange in enumerate(exchanges, start=1):
        path = corpus / f"{sdk}-{number:02d}-phase{exchange.phase}.json"
        path.write_bytes(exchange.body)
        paths.append(path)
    return paths


def capture(real_server: bool = True) -> List[Path]:
    """Run both SDKs and write their bodies; returns the files written."""
    written: List[Path] = []
    with target(real_server) as (url, token):
        with SdkFront(url) as front, tempfile.TemporaryDirectory() as cache:
            python_sdk.run(front, "sdk-run-python", Path(cache), token=token)
            written += write(f"{python_sdk.SDK}-{PYTHON_VERSION}", front.metrics_posts())
            statuses = {e.status for e in front.exchanges}
        with SdkFront(url) as front:
            node_sdk.run(front, "sdk-run-node", token=token)
            written += write(f"{node_sdk.SDK}-{NODE_VERSION}", front.metrics_posts())
            statuses |= {e.status for e in front.exchanges}
    print(f"{len(written)} bodies written to {CORPUS}; answers seen: {sorted(statuses)}")
    return written


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sdk.capture",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--receiver", action="store_true",
                        help="answer with impactagent's receiver, not a real unleash-server")
    arguments = parser.parse_args(argv)
    capture(real_server=not arguments.receiver)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
