# SPDX-License-Identifier: GPL-2.0-or-later
"""Drive dynamic QMP monitors with the standalone qemu.qmp package.

Run by qmp-tests (test_qmp_asyncio_client) with a Python that has the
qemu.qmp package from PyPI installed: the asyncio QMPClient that tools
outside QEMU use, not the copy in a QEMU tree.

Usage: qmp_asyncio_client.py PLAN

PLAN is JSON: {"socket", "id", "timeout", "removal", "second": {"socket",
"id", "chardev_add", "add", "remove", "chardev_remove"}}, each request as
{"execute", "arguments"} for the scenario's route.  Through the client of
the first monitor it runs a whole hotplug cycle of a second one (added,
connected with a second QMPClient, negotiated, queried, disconnected,
removed), sees STOP and RESUME, removes its own monitor and disconnects.

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


async def run(request, qmp, timeout):
    """Execute REQUEST ({"execute", "arguments"}) with a deadline."""
    return await asyncio.wait_for(
        qmp.execute(request["execute"], request.get("arguments")), timeout)


async def next_event(listener, name, timeout):
    """The next event called NAME; other events are reported and skipped."""
    while True:
        try:
            event = await asyncio.wait_for(listener.get(), timeout)
        except asyncio.TimeoutError:
            raise StepFailed(f"no {name} event within {timeout}s") from None
        if event["event"] == name:
            return event
        print(f"  other event {event['event']}")


async def connect(name, socket, timeout):
    """A QMPClient called NAME, connected to SOCKET and negotiated, whose
    query-version names QEMU."""
    from qemu.qmp import QMPClient

    qmp = QMPClient(name)
    await asyncio.wait_for(qmp.connect(socket), timeout)
    if getattr(qmp.greeting, "QMP", None) is None:
        raise StepFailed(f"greeting without QMP: {qmp.greeting!r}")
    version = await run({"execute": "query-version"}, qmp, timeout)
    if "qemu" not in version:
        raise StepFailed(f"query-version on {name} returned {version!r}")
    return qmp


async def drive(plan, say):
    timeout = plan["timeout"]
    second = plan["second"]

    say("connect, negotiate and query-version")
    qmp = await connect(plan["id"], plan["socket"], timeout)
    print("connected and negotiated")
    print("query-version")

    say("add a second monitor through this one")
    await run(second["chardev_add"], qmp, timeout)
    await run(second["add"], qmp, timeout)
    print("second monitor added")

    say("connect to the second monitor")
    other = await connect(second["id"], second["socket"], timeout)
    await asyncio.wait_for(other.disconnect(), timeout)
    print("second monitor used and left")

    say("remove the second monitor through this one")
    await run(second["remove"], qmp, timeout)
    await run(second["chardev_remove"], qmp, timeout)
    print("second monitor removed")

    say("stop and cont with their events")
    with qmp.listener(("STOP", "RESUME")) as listener:
        await run({"execute": "stop"}, qmp, timeout)
        await next_event(listener, "STOP", timeout)
        print("STOP")
        await run({"execute": "cont"}, qmp, timeout)
        await next_event(listener, "RESUME", timeout)
        print("RESUME")

    removal = plan["removal"]
    say(f"{removal['execute']} of its own monitor")
    reply = await run(removal, qmp, timeout)
    if reply != {}:
        raise StepFailed(f"reply {reply!r}")
    print(removal["execute"])

    say("disconnect")
    await asyncio.wait_for(qmp.disconnect(), timeout)
    print("closed")


def main():
    plan = json.loads(sys.argv[1])
    step = ["import qemu.qmp"]

    def say(name):
        step[0] = name

    try:
        import qemu.qmp
        print(f"library {qemu.qmp.__file__}")
        asyncio.run(drive(plan, say))
    except Exception as err:  # pylint: disable=broad-except
        message = " ".join(str(err).split()) or "(no message)"
        print(f"FAIL {step[0]}: {type(err).__name__}: {message}", flush=True)
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
