"""What a worker does with its sockets, read from /proc (Linux): whether it accepts on the listening socket now,
and how many client connections it holds.

A granian worker inherits the listening socket when it is forked, but registers it with its event loop (an epoll
set, /proc/PID/fdinfo) only once its app started and it serves; a draining worker removes it (drain.py). That
tells the supervisor when a new worker is ready and when an old one no longer takes connections; its count of
connections tells when the old one can be stopped.
"""

from __future__ import annotations

import os
import re

_WATCHED = re.compile(r"^tfd:\s+\d+\s+events:\s+\S+\s+data:\s+\S+\s+pos:\S+\s+ino:([0-9a-f]+)", re.MULTILINE)


def polls(pid: int, inode: int) -> bool:
    """Whether process `pid` has the file with this inode (a socket's `st_ino`) in one of its epoll sets."""
    try:
        descriptors = os.listdir(f"/proc/{pid}/fd")
    except OSError:  # gone
        return False
    for descriptor in descriptors:
        try:
            if os.readlink(f"/proc/{pid}/fd/{descriptor}") != "anon_inode:[eventpoll]":
                continue
            with open(f"/proc/{pid}/fdinfo/{descriptor}", encoding="ascii") as info:
                watched = _WATCHED.findall(info.read())
        except OSError:  # closed meanwhile
            continue
        if any(int(found, 16) == inode for found in watched):
            return True
    return False


_LISTEN = "0A"


def connections(pid: int, port: int) -> int:
    """How many TCP connections on local `port` process `pid` holds open (its listening socket aside)."""
    try:
        inodes = set()
        for descriptor in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{descriptor}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
        tables = []
        for table in ("tcp", "tcp6"):
            try:
                with open(f"/proc/{pid}/net/{table}", encoding="ascii") as lines:
                    tables.extend(lines.read().splitlines()[1:])
            except FileNotFoundError:  # no IPv6
                pass
    except OSError:  # gone
        return 0
    count = 0
    for line in tables:
        fields = line.split()
        if len(fields) > 9 and fields[9] in inodes and fields[3] != _LISTEN:
            count += int(fields[1].rsplit(":", 1)[1], 16) == port
    return count
