"""Feeds each Fanline service of a compose file, as `docker-compose config` resolved it, to that
service's own configuration check (`BINARY --check-config`, no connections), with exactly the
environment and command compose would give it. A service missing a required setting fails here, not
on the operator's first `up`.

Usage: docker-compose -f FILE config | python3 check-compose-services.py BIN_DIR [--expect-failure]
"""
import os
import shlex
import subprocess
import sys

import yaml

FANLINE_BINARIES = {"ingest", "reader", "fanout"}


def commands(service):
    """The Fanline commands a service runs: its command list, or each part of an `sh -c` chain."""
    command = service.get("command") or []
    if isinstance(command, str):
        command = shlex.split(command)
    if command[:2] == ["sh", "-c"]:
        return [shlex.split(part) for part in command[2].split("&&")]
    return [command]


def environment(service):
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def check(services, bin_dir):
    failures, checked = [], 0
    for name, service in services.items():
        if service.get("image") != "fanline:latest":
            continue
        for argv in commands(service):
            if not argv or argv[0] not in FANLINE_BINARIES:
                failures.append(f"{name}: {argv!r} is not a Fanline binary")
                continue
            # RUST_BACKTRACE off: the first lines of the error chain are the reason.
            env = {"PATH": os.environ.get("PATH", ""), **environment(service), "RUST_BACKTRACE": "0"}
            run = subprocess.run(
                [os.path.join(bin_dir, argv[0]), *argv[1:], "--check-config"],
                env=env, capture_output=True, text=True)
            checked += 1
            if run.returncode != 0:
                lines = [l.strip() for l in run.stderr.splitlines() if l.strip()]
                # anyhow prints "Error: context", "Caused by:", then the causes: keep the first cause.
                reason = lines[lines.index("Caused by:") + 1] if "Caused by:" in lines else " ".join(lines[:2])
                failures.append(f"{name} ({' '.join(argv)}): {reason}")
    return checked, failures


def main():
    bin_dir = sys.argv[1]
    expect_failure = "--expect-failure" in sys.argv[2:]
    services = yaml.safe_load(sys.stdin)["services"]
    checked, failures = check(services, bin_dir)
    if checked < 5:
        sys.exit(f"compose: only {checked} Fanline commands found; expected setup, fanout, lag-exporter, ingest, reader")
    if expect_failure:
        if not failures:
            sys.exit("compose self-test: a service without a required setting passed its check")
        print(f"compose self-test: caught as expected: {failures[0]}")
        return
    if failures:
        sys.exit("compose services cannot start:\n  " + "\n  ".join(failures))
    print(f"compose: {checked} Fanline commands pass their own configuration check")


if __name__ == "__main__":
    main()
