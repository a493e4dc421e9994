"""Run the double in the foreground: python -m tests.csdouble --dir DIR [--seed FILE] ...

When it listens it writes DIR/cloudstack.pid, then DIR/cloudstack.env (mode 0600, written atomically,
rewritten when the keys change) with CLOUDSTACK_ENDPOINT, CLOUDSTACK_KEY and CLOUDSTACK_SECRET.
The upload server (the secondary-storage VM's part) is HTTPS only; DIR/ssvm-ca.crt holds the CA that
signed its certificate. SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType

from .seed import load_seed
from .server import CloudStackDouble

ENV_FILE = "cloudstack.env"
PID_FILE = "cloudstack.pid"


def write_private(path: Path, content: str) -> None:
    """Atomically replace `path` with `content`, readable by the owner only."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def env_text(double: CloudStackDouble) -> str:
    return (
        f"CLOUDSTACK_ENDPOINT={double.endpoint}\nCLOUDSTACK_KEY={double.api_key}\n"
        f"CLOUDSTACK_SECRET={double.secret_key}\n"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.csdouble", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dir", required=True, type=Path, help="state directory (env file, pid file, uploads)"
    )
    parser.add_argument("--seed", type=Path, help="seed YAML file (examples/cloudstack-seed.yaml)")
    parser.add_argument(
        "--allow-loopback-urls",
        action="store_true",
        help="let registerTemplate accept 127.0.0.1/localhost URLs",
    )
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (default: any free port)")
    parser.add_argument("--poll-steps", type=int, help="listTemplates polls per template download")
    parser.add_argument("--job-polls", type=int, help="pending answers per async job")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    state_dir: Path = args.dir
    state_dir.mkdir(parents=True, exist_ok=True)
    seed = load_seed(args.seed) if args.seed else None
    env_path = state_dir / ENV_FILE

    def publish(double: CloudStackDouble) -> None:
        write_private(env_path, env_text(double))

    double = CloudStackDouble(
        seed,
        allow_loopback_urls=args.allow_loopback_urls,
        poll_steps=args.poll_steps,
        job_polls=args.job_polls,
        port=args.port,
        data_dir=state_dir,
        on_credentials_change=publish,
    )
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    pid_path = state_dir / PID_FILE
    with double:
        pid_path.write_text(f"{os.getpid()}\n", encoding="utf-8")
        publish(double)
        print(f"CloudStack double listening on {double.endpoint}", flush=True)
        stopping.wait()
    pid_path.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
