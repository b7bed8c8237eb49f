"""Mirroring a release's files (the organizers' rider lists) on the host with rsync: every file
the first time, only what changed after, and nothing the source no longer has."""

from __future__ import annotations

from pathlib import PurePosixPath

from deploy.remote.hosts import Host, HostError

RIDER_LISTS = "rider_lists"  # organizers' rider list files (app/rider_lists.py), per release


def mirror(host: Host, source: PurePosixPath, destination: PurePosixPath) -> dict[str, int]:
    """rsync source/ to destination/ on the host; returns rsync's figures (files, sent, total).
    The source is only read."""
    argv = [
        "rsync",
        "-a",
        "--omit-dir-times",
        "--delete",
        "--stats",
        "--exclude=.*",  # a list being written (app/rider_lists.py writes a dot-file, renames)
        f"{source}/",
        f"{destination}/",
    ]
    answer = host.run(argv, check=False)
    # 24: a file vanished between rsync's listing and its copy, as a list being replaced does.
    if answer.returncode not in (0, 24):
        raise HostError(f"rsync of {source} failed: {answer.stderr.strip()}")
    return rsync_stats(answer.stdout)


def rsync_stats(output: str) -> dict[str, int]:
    """Files and bytes transferred, from `rsync --stats`."""
    labels = {
        "Number of regular files transferred": "files",
        "Number of files transferred": "files",  # rsync before 3.1
        "Total file size": "total",
        "Total transferred file size": "sent",
    }
    stats = {"files": 0, "total": 0, "sent": 0}
    for line in output.splitlines():
        label, _, value = line.partition(":")
        if label.strip() in labels and value.split():
            stats[labels[label.strip()]] = int(value.split()[0].replace(",", ""))
    return stats
