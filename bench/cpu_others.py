#!/usr/bin/env python3
"""CPU used by processes that are not part of the benchmark, to flag runs on a busy machine.

usage: cpu_others.py snapshot ROOT_PID FILE   record utime+stime of every other process
       cpu_others.py delta ROOT_PID FILE      print the clock ticks they used since then

"Not part of the benchmark": neither ROOT_PID (bench.sh) nor any of its descendants, not a
kernel thread, and not niced (nice > 0: a background job such as a fuzzer gets only the CPU
time nobody else wants, so it barely competes). Processes that start after the snapshot count
with all their ticks; processes that end before the delta are missed (a lower bound).
"""
import os
import sys


def processes():
    """pid -> (ppid, ticks, ignored) for every readable process; ignored: kernel thread or niced."""
    result = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        ppid, flags, nice = int(fields[1]), int(fields[6]), int(fields[16])
        ticks = int(fields[11]) + int(fields[12])
        kernel = bool(flags & 0x00200000) or ppid == 2 or int(entry) == 2   # PF_KTHREAD
        result[int(entry)] = (ppid, ticks, kernel or nice > 0)
    return result


def others(root):
    procs = processes()
    ours = {root}
    changed = True
    while changed:
        changed = False
        for pid, (ppid, _, _) in procs.items():
            if ppid in ours and pid not in ours:
                ours.add(pid)
                changed = True
    return {pid: ticks for pid, (_, ticks, ignored) in procs.items() if pid not in ours and not ignored}


command, root, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if command == "snapshot":
    with open(path, "w") as f:
        for pid, ticks in others(root).items():
            f.write(f"{pid} {ticks}\n")
else:
    before = {}
    with open(path) as f:
        for line in f:
            pid, ticks = line.split()
            before[int(pid)] = int(ticks)
    print(sum(max(0, ticks - before.get(pid, 0)) for pid, ticks in others(root).items()))
