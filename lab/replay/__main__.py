"""CLI: python -m lab.replay up|preview|destroy|outputs [options].

Owns argument parsing, the header/summary output and the exit status (0 ok, 1 a step or the
program failed, 2 the run could not start: bad config, secure values, unreadable state).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from lab.replay import api, report
from lab.replay.engine import default_parallel
from lab.replay.model import ReplayError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.replay", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "preview", "destroy", "outputs"])
    parser.add_argument("--stack", default="lab")
    parser.add_argument("--state", help="state file (default: <project-dir>/.lab/state/<stack>.json)")
    parser.add_argument("--project-dir", default=".")
    parser.add_argument("--show-secrets", action="store_true", help="print secret stack outputs")
    parser.add_argument(
        "--parallel",
        type=int,
        default=default_parallel(),
        help=f"steps run at once (default as pulumi up: PULUMI_PARALLEL or 4 x CPUs = {default_parallel()})",
    )
    parser.add_argument("--json", action="store_true", help="outputs: print as JSON")
    parser.add_argument("--continue-on-error", action="store_true", help="only skip dependents of a failed step")
    parser.add_argument("-v", "--verbose", action="store_true", help="also list unchanged resources")
    parser.add_argument("--diff", action="store_true", help="show each changed plain input as a diff (stdin manifests too)")
    args = parser.parse_args(argv)
    # paramiko logs every refused dial (a host still booting) at ERROR; the step error says it all.
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)

    project_dir = Path(args.project_dir).resolve()
    state_path = Path(args.state).resolve() if args.state else api.default_state_path(project_dir, args.stack)
    printer = report.StepPrinter(verbose=args.verbose, diff=args.diff)
    try:
        if args.command == "outputs":
            return _outputs(project_dir, args.stack, state_path, args.json, args.show_secrets)
        title = {"up": "Updating", "preview": "Previewing update", "destroy": "Destroying"}[args.command]
        print(f"{title} ({args.stack}), state {state_path}", flush=True)
        if args.command == "destroy":
            evaluation = api.destroy(
                project_dir,
                args.stack,
                state_path,
                parallel=args.parallel,
                show_secrets=args.show_secrets,
                on_step=printer,
            )
        else:
            evaluation = api.run(
                project_dir,
                args.stack,
                preview=args.command == "preview",
                state=state_path,
                save_to=state_path,
                parallel=args.parallel,
                show_secrets=args.show_secrets,
                continue_on_error=args.continue_on_error,
                on_step=printer,
            )
    except ReplayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.summary(evaluation, args.show_secrets))
    return 0 if evaluation.ok else 1


def _outputs(project_dir: Path, stack: str, state_path: Path, as_json: bool, show_secrets: bool) -> int:
    current = api.outputs(project_dir, stack, state_path)
    if as_json:
        shown = {
            k: (v if show_secrets or k not in current.secret_outputs else "[secret]")
            for k, v in current.outputs.items()
        }
        print(json.dumps(shown, indent=2, sort_keys=True))
    else:
        print(report.outputs_block(current.outputs, current.secret_outputs, show_secrets) or "No outputs.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
