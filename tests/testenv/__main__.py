"""Run the test bed by hand.

    python -m tests.testenv up --dir DIR [--capi v1beta1|v1beta2] [--simulate-rollouts]
                               [--workload-clusters] [--seed FILE]
    python -m tests.testenv down --dir DIR
    python -m tests.testenv prepare

`up` starts everything in the background and returns; DIR/kubeconfig and DIR/cloudstack.env say how
to reach it. `down` stops it and leaves nothing running. `prepare` downloads the pinned upstream modules
and builds every program the suite runs (cached outside the repository), so that the suite's per-test
timeouts never include a cold build.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.testenv import bed, crds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.testenv", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("up", help="start the test bed in the background")
    start.add_argument("--dir", required=True, type=Path)
    start.add_argument("--capi", choices=crds.PROFILES, default="v1beta2")
    start.add_argument("--simulate-rollouts", action="store_true")
    start.add_argument(
        "--workload-clusters",
        action="store_true",
        help="start a workload control plane (apiserver, controller-manager, scheduler, KWOK) per Cluster",
    )
    start.add_argument("--seconds-per-machine", type=float, default=2.0)
    start.add_argument("--seed", type=Path, default=bed.DEFAULT_SEED, help="CloudStack double seed (YAML)")
    stop = sub.add_parser("down", help="stop a test bed and everything it started")
    stop.add_argument("--dir", required=True, type=Path)
    sub.add_parser("prepare", help="download the pinned upstream modules and build the suite's programs")
    args = parser.parse_args(argv)

    if args.command == "prepare":
        return prepare()
    if args.command == "down":
        stopped = bed.down(args.dir)
        print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")
        return 0
    try:
        tb = bed.up(
            args.dir,
            args.capi,
            simulate_rollouts=args.simulate_rollouts,
            workload_clusters=args.workload_clusters,
            seconds_per_machine=args.seconds_per_machine,
            seed=args.seed,
        )
    except bed.TestBedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"kube-apiserver  {tb.endpoint}  (CAPI {tb.capi})")
    print(f"kubeconfig      {tb.kubeconfig}")
    print(f"cloudstack      {tb.cloudstack['CLOUDSTACK_ENDPOINT']}  (env: {tb.dir / 'cloudstack.env'})")
    print(f"kubectl         {tb.kubectl}")
    print(f"stop with       python -m tests.testenv down --dir {args.dir}")
    return 0


def prepare() -> int:
    """Fetch and build everything the suite needs, a line per step; a failing step names itself."""
    from tests.csgo import build as csgo
    from tests.krewtools import PackagingError, ensure_krew, ensure_plugin_archive
    from tests.testenv import gobuild, upstream

    fetches = [
        (f"upstream CAPI and CAPC modules ({p})", functools.partial(upstream.releases, p))
        for p in upstream.profiles()
    ]
    steps: list[tuple[str, Callable[[], Any]]] = [
        *fetches,
        ("kube-apiserver, etcd and kubectl", gobuild.ensure_binaries),
        ("workload control plane and KWOK", gobuild.ensure_workload_binaries),
        ("cloudstack-go resolver", csgo.ensure_binary),
        ("krew", ensure_krew),
        ("plugin archive", ensure_plugin_archive),
    ]
    failures = (gobuild.BuildError, upstream.UpstreamError, csgo.CsgoBuildError, PackagingError)
    for what, step in steps:
        started = time.monotonic()
        try:
            step()
        except failures as exc:
            print(f"error: preparing the test bed: {what}: {exc}", file=sys.stderr)
            return 1
        print(f"ready  {what}  ({time.monotonic() - started:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
