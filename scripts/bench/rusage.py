"""Runs a command and writes what it used as JSON to OUT: its exit code, wall seconds,
user and system CPU seconds and peak resident memory (KB), from the kernel's own account
of the child (wait4), so that nothing is missed between samples at its end.

    python3 rusage.py OUT COMMAND [ARG...]
"""

import json
import os
import subprocess
import sys
import time

out, command = sys.argv[1], sys.argv[2:]
started = time.monotonic()
child = subprocess.Popen(command)
_, status, usage = os.wait4(child.pid, 0)
with open(out, "w", encoding="utf-8") as file:
    json.dump(
        {
            "code": os.waitstatus_to_exitcode(status),
            "wall": time.monotonic() - started,
            "user": usage.ru_utime,
            "sys": usage.ru_stime,
            "peak_kb": usage.ru_maxrss,
        },
        file,
    )
