# SPDX-License-Identifier: GPL-2.0-or-later
"""Drive one dynamic QMP monitor with QEMU's own client library.

Run by qmp-tests (test_qemu_python_client) with the QEMU tree's python/
directory on PYTHONPATH.  Does what a user of qemu.qmp does: connect and
negotiate, run a command, see events, remove its own monitor, close.

Usage: qemu_qmp_client.py SOCKET MONITOR_ID TIMEOUT_SECONDS REMOVAL

REMOVAL is the request, as JSON, that removes the monitor on this route
(monitor-remove, or object-del of a monitor-qmp object).

Prints a line per finished step.  On failure the last line is
"FAIL <step>: <exception type>: <message>" and the exit status is 1; the
traceback goes to stderr.
"""

import asyncio
import json
import sys
import traceback


class StepFailed(Exception):
    pass


def wait_event(qmp, name, timeout):
    """The next event called NAME; other events are reported and skipped."""
    while True:
        try:
            event = qmp.pull_event(wait=timeout)
        except asyncio.TimeoutError:
            raise StepFailed(f"no {name} event within {timeout}s") from None
        if event.get("event") == name:
            return event
        print(f"  other event {event.get('event')}")


def main():
    sock, mon_id, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
    removal = json.loads(sys.argv[4])
    step = "import qemu.qmp"
    try:
        import qemu.qmp
        from qemu.qmp.legacy import QEMUMonitorProtocol
        print(f"library {qemu.qmp.__file__}")

        step = "connect and negotiate"
        qmp = QEMUMonitorProtocol(sock, nickname=mon_id)
        qmp.settimeout(timeout)
        greeting = qmp.connect(negotiate=True)
        if not greeting or "QMP" not in greeting:
            raise StepFailed(f"greeting without QMP: {greeting!r}")
        print("connected and negotiated")

        step = "query-version"
        version = qmp.cmd("query-version")
        if "qemu" not in version:
            raise StepFailed(f"query-version returned {version!r}")
        print("query-version")

        step = "stop and the STOP event"
        qmp.cmd("stop")
        wait_event(qmp, "STOP", timeout)
        print("STOP")

        step = "cont and the RESUME event"
        qmp.cmd("cont")
        wait_event(qmp, "RESUME", timeout)
        print("RESUME")

        step = f"{removal['execute']} of its own monitor"
        reply = qmp.cmd_obj(removal)
        if "return" not in reply:
            raise StepFailed(f"reply {reply!r}")
        print(removal["execute"])

        step = "close"
        qmp.close()
        print("closed")
    except Exception as err:  # pylint: disable=broad-except
        message = " ".join(str(err).split()) or "(no message)"
        print(f"FAIL {step}: {type(err).__name__}: {message}", flush=True)
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
