"""`python -m tokentrail.testing serve [--host 127.0.0.1] [--port 8900] [--latency S] [--frame-delay S]`"""

from __future__ import annotations

import argparse
import signal
import sys

from . import FakeProvider


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tokentrail.testing", description="A fake OpenAI/Anthropic provider on loopback.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the fake provider over HTTP until interrupted")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8900)
    serve.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    serve.add_argument("--frame-delay", type=float, default=0.0, help="seconds between stream chunks")
    args = parser.parse_args(argv)
    fake = FakeProvider(latency=args.latency, frame_delay=args.frame_delay)
    with fake.serve(args.host, args.port) as url:
        print(f"fake provider on {url}  (OpenAI: base_url={url}/v1, Anthropic: base_url={url})", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            signal.pause()
        except (KeyboardInterrupt, SystemExit):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
