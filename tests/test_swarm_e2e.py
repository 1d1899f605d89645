"""
End-to-end: the real C{twistd pycm --backend swarm} in a subprocess, in
front of the real two-node swarm (C{.ci/swarm-setup.sh}), driven over real
sockets and with the real C{pycm} client; the C{docker} CLI on the manager
says what Swarm really did.

Needs C{PYCM_SWARM_HOST} (see L{tests.swarmsupport}); skips without it,
fails without it under C{PYCM_REQUIRE_SWARM=1}.  Every wait has a deadline;
every service has a unique name and is removed at the end, whatever
happens; the test that kills the worker's engine brings it back.
"""

from __future__ import annotations

import json
import select
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.swarme2e import (
    Cluster,
    Watcher,
    errorOf,
    running,
    runningTasks,
    swarmDaemon,
    waitUntil,
)

#: A command that says where it runs, then sleeps; Swarm fills in the
#: templates of its environment (C{{{.Node.Hostname}}}, C{{{.Task.ID}}}).
WHERE = (
    "-e 'NODE={{.Node.Hostname}}' -e 'TASK={{.Task.ID}}' --stop-timeout=2"
)
SAY_WHERE = "sh -c 'echo \"hello from $NODE task $TASK\"; exec sleep 1000'"


def jsonOut(result: Any) -> Any:
    """The JSON a C{pycm --json ...} run printed; fails with its stderr on an error."""
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return json.loads(result.stdout)


class SwarmPlacementTests(SynchronousTestCase):
    """Where Swarm places a pycm container's replicas, as pycm and Swarm both tell it."""

    def setUp(self) -> None:
        self.cluster = Cluster(self)
        self.daemon = swarmDaemon(self, self.cluster)
        self.client = self.daemon.connect()

    def test_replicasSpread(self) -> None:
        """
        C{pycm run --replicas=4} replies once all four run, two on each node;
        C{inspect}, C{list} and Swarm agree on the tasks; C{rm} removes the
        service.
        """
        name = self.cluster.serviceName("spread")
        run = jsonOut(self.daemon.pycm(
            "--json", "run", "--replicas=4", "--stop-timeout=2", name,
            self.cluster.image, "sleep", "1000",
        ))
        self.assertEqual(
            (run["state"], run["replicas"]), ("running", {"running": 4, "desired": 4})
        )
        inspected = self.client.ok(f"inspect {name}")
        self.assertTrue(running(inspected, 4), inspected)
        nodes = sorted(t["node"] for t in runningTasks(inspected))
        managers, workers = [self.cluster.managerNode] * 2, [self.cluster.workerNode] * 2
        self.assertEqual(nodes, sorted(managers + workers))
        self.assertEqual(nodes, self.cluster.runningNodes(name))
        swarmIds = {t["id"] for t in self.cluster.tasks(name)}
        for task in runningTasks(inspected):
            self.assertTrue(
                any(full.startswith(task["id"]) for full in swarmIds), (task, swarmIds)
            )
        listed = self.client.ok(f"list --filter name={name}")
        self.assertEqual(
            [(c["name"], c["state"], c["replicas"]) for c in listed],
            [(name, "running", {"running": 4, "desired": 4})],
        )
        table = self.daemon.pycm("list", "--filter", f"name={name}")
        self.assertEqual(table.returncode, 0, table.stderr)
        header, row = table.stdout.decode().splitlines()
        self.assertEqual(header.split()[:3], ["NAME", "STATE", "REPLICAS"])
        self.assertEqual(row.split()[:3], [name, "running", "4/4"])
        removed = self.daemon.pycm("rm", "--force", name)
        self.assertEqual(removed.returncode, 0, removed.stderr)
        self.assertEqual(self.client.err(f"inspect {name}"), "not_found")
        self.assertNotIn(name, self.cluster.docker("service", "ls", "--format", "{{.Name}}"))

    def test_constraintWorker(self) -> None:
        """
        C{--constraint node.role==worker}: every task on the worker, the
        constraint in C{inspect} and in the service's placement.
        """
        name = self.cluster.serviceName("worker")
        run = jsonOut(self.daemon.pycm(
            "--json", "run", "--replicas=3", "--constraint=node.role==worker",
            "--stop-timeout=2", name, self.cluster.image, "sleep", "1000",
        ))
        self.assertEqual(run["replicas"], {"running": 3, "desired": 3})
        inspected = self.client.ok(f"inspect {name}")
        self.assertTrue(running(inspected, 3), inspected)
        self.assertEqual(inspected["constraints"], ["node.role==worker"])
        self.assertEqual(
            [t["node"] for t in runningTasks(inspected)], [self.cluster.workerNode] * 3
        )
        self.assertEqual(self.cluster.runningNodes(name), [self.cluster.workerNode] * 3)
        placement = self.cluster.docker(
            "service", "inspect", "--format",
            "{{json .Spec.TaskTemplate.Placement.Constraints}}", name,
        )
        self.assertEqual(json.loads(placement), ["node.role==worker"])
        self.assertEqual(self.client.ok(f"rm --force {name}"), {"name": name, "removed": True})

    def test_unplaceable(self) -> None:
        """
        A constraint no node meets: C{run} fails saying there is no suitable
        node; the container is C{dead} with that error, its task unplaced;
        C{wait --for=running} times out; C{rm} removes it.
        """
        name = self.cluster.serviceName("nowhere")
        code, message = errorOf(
            self.client,
            f"run --constraint=node.labels.pycm-nowhere==1 {name} {self.cluster.image} sleep 1",
        )
        self.assertEqual(code, "backend")
        self.assertIn("no suitable node", message)
        inspected = self.client.ok(f"inspect {name}")
        self.assertEqual(inspected["state"], "dead")
        self.assertIn("no suitable node", inspected["error"])
        self.assertEqual(
            [(t["node"], t["state"]) for t in inspected["tasks"]], [(None, "pending")]
        )
        code, message = errorOf(self.client, f"wait --for=running --timeout=1 {name}")
        self.assertEqual(code, "backend")
        self.assertIn("timed out", message)
        self.assertEqual(self.client.ok(f"rm {name}"), {"name": name, "removed": True})


class SwarmScaleTests(SynchronousTestCase):
    """C{scale}, C{wait --for=running}: pycm's counts are Swarm's."""

    def setUp(self) -> None:
        self.cluster = Cluster(self)
        self.daemon = swarmDaemon(self, self.cluster)
        self.client = self.daemon.connect()

    def assertAgree(self, name: str, replicas: int) -> dict[str, Any]:
        """C{inspect}, C{list} and Swarm all say C{replicas} tasks run; the inspect."""
        inspected = self.client.ok(f"inspect {name}")
        self.assertTrue(running(inspected, replicas), inspected)
        listed = self.client.ok(f"list --filter name={name}")
        self.assertEqual(listed[0]["replicas"], {"running": replicas, "desired": replicas})
        self.assertEqual(
            sorted(t["node"] for t in runningTasks(inspected)),
            self.cluster.runningNodes(name),
        )
        return inspected

    def test_scaleUpAndDown(self) -> None:
        """
        C{pycm scale} 1 -> 5 -> 2 -> 0: each replies once Swarm has that
        many running; C{inspect}, C{list} and Swarm agree; C{scale} events
        carry the new counts; at 0 the container is C{exited}.
        """
        name = self.cluster.serviceName("scale")
        watcher = Watcher(self.daemon, name)
        self.client.ok(f"run --stop-timeout=2 {name} {self.cluster.image} sleep 1000")
        self.assertAgree(name, 1)
        up = jsonOut(self.daemon.pycm("--json", "scale", name, "5"))
        self.assertEqual((up["state"], up["replicas"]), ("running", {"running": 5, "desired": 5}))
        self.assertAgree(name, 5)
        down = self.daemon.pycm("scale", name, "2")
        self.assertEqual(down.returncode, 0, down.stderr)
        self.assertIn(b"replicas 2/2", down.stdout)
        self.assertAgree(name, 2)
        zero = jsonOut(self.daemon.pycm("--json", "scale", name, "0"))
        self.assertEqual(
            (zero["state"], zero["replicas"]), ("exited", {"running": 0, "desired": 0})
        )
        self.assertEqual(runningTasks(self.client.ok(f"inspect {name}")), [])
        self.assertEqual(self.cluster.runningNodes(name), [])
        scales = watcher.waitFor(
            lambda events: [e["replicas"] for e in events if e["action"] == "scale"] == [5, 2, 0]
            and events,
            "the scale events 5, 2, 0",
        )
        starts = [e for e in scales if e["action"] == "start" and "task" in e]
        self.assertEqual(len({e["task"] for e in starts}), 5, scales)
        self.assertEqual(self.client.err(f"scale {name} -1"), "bad_request")
        self.assertEqual(self.client.err(f"scale {name}x 1"), "not_found")

    def test_stopStartRestart(self) -> None:
        """
        C{stop} scales to 0 (the tasks die, C{exited} -15) and remembers the
        count: C{start} brings all three back, on both nodes; C{restart}
        replaces every task (a rolling restart) and tells C{restart}.
        """
        name = self.cluster.serviceName("stop")
        watcher = Watcher(self.daemon, name)
        self.client.ok(f"run --replicas=3 --stop-timeout=2 {name} {self.cluster.image} sleep 1000")
        first = {t["id"] for t in runningTasks(self.assertAgree(name, 3))}
        stopped = jsonOut(self.daemon.pycm("--json", "stop", name))
        self.assertEqual(
            (stopped["state"], stopped["exit_code"], stopped["replicas"]),
            ("exited", -15, {"running": 0, "desired": 0}),
        )
        self.assertEqual(self.cluster.runningNodes(name), [])
        started = jsonOut(self.daemon.pycm("--json", "start", name))
        self.assertEqual(
            (started["state"], started["replicas"]), ("running", {"running": 3, "desired": 3})
        )
        second = runningTasks(self.assertAgree(name, 3))
        self.assertEqual(
            {t["node"] for t in second}, {self.cluster.managerNode, self.cluster.workerNode}
        )
        self.assertEqual(first & {t["id"] for t in second}, set())
        restarted = jsonOut(self.daemon.pycm("--json", "restart", name))
        self.assertEqual(restarted["replicas"], {"running": 3, "desired": 3})
        third = {t["id"] for t in runningTasks(self.assertAgree(name, 3))}
        self.assertEqual(third & {t["id"] for t in second}, set())
        events = watcher.waitFor(
            lambda events: "restart" in [e["action"] for e in events] and events,
            "the restart event",
        )
        dies = [e for e in events if e["action"] == "die"]
        self.assertEqual(
            sorted(e["task"] for e in dies), sorted(first | {t["id"] for t in second})
        )
        self.assertEqual([e["exit_code"] for e in dies[:3]], [-15] * 3)
        self.assertEqual(
            [e["action"] for e in events if "task" not in e], ["create", "stop", "stop", "restart"]
        )

    def test_waitForRunning(self) -> None:
        """
        C{wait --for=running} replies only once every desired task runs: on a
        created service when it starts, and after a scale made behind pycm's
        back (C{docker service scale}), with pycm's count already right.
        """
        name = self.cluster.serviceName("wait")
        created = self.client.ok(
            f"create --replicas=3 --stop-timeout=2 {name} {self.cluster.image} sleep 1000"
        )
        self.assertEqual(created["state"], "created")
        waiter = self.daemon.connect()
        waiter.send(f"wait --for=running --timeout=60 {name}\n")
        self.client.ok("ping")  # the wait is in the daemon by now, or soon
        ready, _, _ = select.select([waiter.sock], [], [], 0)
        self.assertEqual(ready, [], "wait --for=running replied before the start")
        self.client.ok(f"start {name}")
        kind, reply = waiter.reply()
        self.assertEqual((kind, reply["name"], reply["state"]), ("OK", name, "running"))
        self.assertAgree(name, 3)
        self.cluster.docker("service", "scale", "--detach", f"{name}=5")
        result = self.daemon.pycm("wait", "--for=running", "--timeout=60", name)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(
            self.client.ok(f"inspect {name}")["replicas"], {"running": 5, "desired": 5}
        )


class SwarmFailureTests(SynchronousTestCase):
    """Tasks that fail, and a node whose engine dies."""

    def setUp(self) -> None:
        self.cluster = Cluster(self)
        self.daemon = swarmDaemon(self, self.cluster)
        self.client = self.daemon.connect()

    def test_failingTaskRestartedPerPolicy(self) -> None:
        """
        A task that exits 3 under C{--restart=on-failure:2} runs three times
        (Swarm's count): three C{die} events with exit code 3, each naming
        its task and node, the restarts told as C{start} then C{restart};
        then the container is C{exited} 3 after 2 restarts, and C{inspect}
        lists the three failed tasks with their node and exit code.
        """
        name = self.cluster.serviceName("fail")
        watcher = Watcher(self.daemon, name)
        kind, _ = self.client.request(
            f"run --restart=on-failure:2 {name} {self.cluster.image} sh -c 'sleep 1; exit 3'"
        )
        self.assertEqual(kind, "OK")
        nodes = {self.cluster.managerNode, self.cluster.workerNode}
        dies = watcher.waitFor(
            lambda events: len(d := [e for e in events if e["action"] == "die"]) >= 3 and d,
            "three die events",
        )
        self.assertEqual([e["exit_code"] for e in dies], [3, 3, 3])
        self.assertEqual(len({e["task"] for e in dies}), 3, dies)
        for event in dies:
            self.assertIn(event["node"], nodes)

        def settled() -> Any:
            inspected = self.client.ok(f"inspect {name}")
            return inspected if inspected["state"] in ("exited", "dead") else None

        inspected = waitUntil(settled, "the container to stop running")
        self.assertEqual(
            (inspected["state"], inspected["exit_code"], inspected["restart_count"]),
            ("exited", 3, 2),
        )
        self.assertEqual(inspected["replicas"], {"running": 0, "desired": 1})
        self.assertEqual(
            sorted((t["id"], t["node"], t["state"], t["exit_code"]) for t in inspected["tasks"]),
            sorted((e["task"], e["node"], "failed", 3) for e in dies),
        )
        self.assertEqual(self.cluster.tasks(name), [])
        self.assertEqual(len(self.cluster.allTasks(name)), 3)
        self.assertEqual(
            [e["action"] for e in watcher.events() if e["action"] != "create"],
            ["start", "die", "start", "restart", "die", "start", "restart", "die"],
        )

    def test_workerEngineKilled(self) -> None:
        """
        The worker's dockerd is killed under a service with two tasks on
        each node (C{--restart=always}: Swarm replaces a lost task only
        under a restart condition other than none): pycm tells the worker's
        tasks' C{die} (exit code unknown, the worker's node) once the node
        is down, Swarm starts replacements on the manager and pycm tells
        their C{start}, and C{inspect} shows four running on the manager,
        as Swarm does.  The worker comes back (even if the test fails) and
        the service still runs four.
        """
        manager, worker = self.cluster.managerNode, self.cluster.workerNode
        name = self.cluster.serviceName("nodeloss")
        watcher = Watcher(self.daemon, name)
        self.client.ok(
            f"run --replicas=4 --restart=always --stop-timeout=2 {name} "
            f"{self.cluster.image} sleep 1000"
        )
        before = self.client.ok(f"inspect {name}")
        onWorker = {t["id"] for t in runningTasks(before) if t["node"] == worker}
        self.assertEqual(len(onWorker), 2, before)
        watcher.waitFor(
            lambda events: len([e for e in events if e["action"] == "start"]) == 4,
            "the four start events",
        )
        self.cluster.killWorker()
        dies = watcher.waitFor(
            lambda events: {e["task"] for e in events if e["action"] == "die"} == onWorker
            and [e for e in events if e["action"] == "die"],
            "die events of the worker's tasks",
            90,
        )
        self.assertEqual(
            sorted((e["task"], e["node"], e["exit_code"]) for e in dies),
            sorted((task, worker, None) for task in onWorker),
        )

        def moved() -> Any:
            inspected = self.client.ok(f"inspect {name}")
            tasks = runningTasks(inspected)
            return inspected if running(inspected, 4) and all(
                t["node"] == manager for t in tasks
            ) else None

        after = waitUntil(moved, "four tasks running on the manager", 90)
        self.assertEqual(self.cluster.runningNodes(name), [manager] * 4)
        replacements = {t["id"] for t in runningTasks(after)} - {
            t["id"] for t in runningTasks(before)
        }
        self.assertEqual(len(replacements), 2, after)
        watcher.waitFor(
            lambda events: {
                e["task"] for e in events if e["action"] == "start" and e["node"] == manager
            } >= replacements,
            "start events of the replacements on the manager",
        )
        for task in replacements:  # a restart by the policy, as on one host
            self.assertEqual(
                [e["action"] for e in watcher.events() if e.get("task") == task],
                ["start", "restart"],
            )
        self.cluster.restartWorker()
        waitUntil(
            lambda: running(self.client.ok(f"inspect {name}"), 4)
            and self.cluster.runningNodes(name) == [manager] * 4,
            "the service to run four on the manager with the worker back",
        )


class SwarmOutputTests(SynchronousTestCase):
    """C{logs} and C{kill} reach the tasks on both nodes."""

    def setUp(self) -> None:
        self.cluster = Cluster(self)
        self.daemon = swarmDaemon(self, self.cluster)
        self.client = self.daemon.connect()

    def runWhere(self, name: str, replicas: int, command: str = SAY_WHERE) -> dict[str, Any]:
        """Run C{name} with tasks that know their node and task; its inspect."""
        self.client.ok(f"run --replicas={replicas} {WHERE} {name} {self.cluster.image} {command}")
        inspected = self.client.ok(f"inspect {name}")
        self.assertEqual(
            {t["node"] for t in runningTasks(inspected)},
            {self.cluster.managerNode, self.cluster.workerNode},
        )
        return inspected

    def test_logsFromBothNodes(self) -> None:
        """
        C{logs} merges the output of the tasks on both nodes, each line
        tagged with the task and node that wrote it; the C{pycm} client shows
        every line with its task and node.
        """
        name = self.cluster.serviceName("logs")
        inspected = self.runWhere(name, 4)
        tasks = {t["id"] for t in runningTasks(inspected)}
        lines = waitUntil(
            lambda: len(got := self.client.ok(f"logs {name}")) >= 4 and got, "four log lines"
        )
        self.assertEqual(len(lines), 4, lines)
        for line in lines:
            self.assertEqual(line["line"], f"hello from {line['node']} task {line['task']}")
        self.assertEqual({line["task"] for line in lines}, tasks)
        self.assertEqual(
            {line["node"] for line in lines}, {self.cluster.managerNode, self.cluster.workerNode}
        )
        shown = self.daemon.pycm("logs", name)
        self.assertEqual(shown.returncode, 0, shown.stderr)
        out = shown.stdout.decode().splitlines()
        self.assertEqual(len(out), 4, out)
        for line in lines:
            matching = [o for o in out if o.endswith(line["line"])]
            self.assertEqual(len(matching), 1, (line, out))
            self.assertIn(line["node"], matching[0].removesuffix(line["line"]))

    def test_killOnBothNodes(self) -> None:
        """
        C{kill --signal=USR1} reaches the tasks on both nodes (each says so
        on a followed log, with its task and node); C{kill} (KILL) then ends
        all four: C{die} events from both nodes.
        """
        name = self.cluster.serviceName("kill")
        command = (
            "sh -c 'trap \"echo USR1 on $NODE task $TASK\" USR1; echo ready; "
            "while :; do sleep 0.2; done'"
        )
        inspected = self.runWhere(name, 4, command)
        waitUntil(lambda: len(self.client.ok(f"logs {name}")) >= 4, "the tasks to be ready")
        watcher = Watcher(self.daemon, name)
        follower = self.daemon.connect()
        follower.ok(f"logs --follow --tail=0 {name}")
        killed = jsonOut(self.daemon.pycm("--json", "kill", "--signal=USR1", name))
        self.assertEqual(killed["name"], name)

        def usr1() -> Any:
            follower.ok("ping")
            said = [e for e in follower.events if e.get("type") == "log" and "USR1" in e["line"]]
            return said if len(said) >= 4 else None

        said = waitUntil(usr1, "USR1 said by four tasks")
        for line in said:
            self.assertEqual(line["line"], f"USR1 on {line['node']} task {line['task']}")
        self.assertEqual(
            {line["task"] for line in said}, {t["id"] for t in runningTasks(inspected)}
        )
        self.client.ok(f"kill {name}")
        dies = watcher.waitFor(
            lambda events: len(d := [e for e in events if e["action"] == "die"]) >= 4 and d,
            "four die events",
        )
        self.assertEqual([e["exit_code"] for e in dies], [-9] * 4)
        self.assertEqual(
            {e["node"] for e in dies}, {self.cluster.managerNode, self.cluster.workerNode}
        )


class SwarmEventsTests(SynchronousTestCase):
    """Event ids and replay across a daemon restart."""

    def test_sinceReplayAfterRestart(self) -> None:
        """
        The daemon stops (SIGTERM) and starts again on the same state
        directory while Swarm goes on (the service scaled behind its back):
        C{events --since=0} then replays the events told before, unchanged,
        then what it missed, once (the scale, and the die of the two tasks
        scaled away), then the events of a scale after the restart; ids
        only grow, no task starts or dies twice.  The same after a crash
        (SIGKILL) and a scale up behind its back.
        """
        cluster = Cluster(self)
        daemon = swarmDaemon(self, cluster)
        client = daemon.connect()
        name = cluster.serviceName("replay")
        watcher = Watcher(daemon, name)
        client.ok(f"run --replicas=2 --stop-timeout=2 {name} {cluster.image} sleep 1000")
        client.ok(f"scale {name} 3")
        before = watcher.waitFor(
            lambda events: [e["replicas"] for e in events if e["action"] == "scale"] == [3]
            and len([e for e in events if e["action"] == "start"]) == 3 and events,
            "the scale and the three starts",
        )
        daemon.stop()
        cluster.docker("service", "scale", "--detach", f"{name}=1")
        # Until the two tasks scaled away are gone, not only told to go: a
        # scale up before that starts no task (Swarm 20.10, restart
        # condition none), whoever asks for it.
        waitUntil(lambda: len(cluster.allTasks(name)) == 1, "Swarm to scale to 1")
        daemon.start()
        client = daemon.connect()
        client.ok(f"scale {name} 2")
        running = {t["id"] for t in runningTasks(client.ok(f"inspect {name}"))}
        replay = Watcher(daemon, name, since=0)
        events = replay.waitFor(
            lambda events: {e.get("task") for e in events if e["action"] == "start"} >= running
            and events,
            "the start of the task the scale to 2 added",
        )
        self.assertEqual(events[: len(before)], before)
        ids = [e["id"] for e in events]
        self.assertEqual(ids, sorted(set(ids)))
        gap = events[len(before):]
        self.assertEqual(
            [(e["action"], e.get("replicas")) for e in gap],
            [("scale", 1), ("die", None), ("die", None), ("scale", 2), ("start", None)],
        )
        started = [e["task"] for e in events if e["action"] == "start"]
        died = [e["task"] for e in events if e["action"] == "die"]
        self.assertEqual(len(started), len(set(started)), events)
        self.assertEqual(sorted(died), sorted(set(started) - running), events)
        # A crash (SIGKILL), a scale up behind its back, a scale down after.
        daemon.kill9()
        cluster.docker("service", "scale", "--detach", f"{name}=3")
        waitUntil(lambda: len(cluster.runningNodes(name)) == 3, "Swarm to run three")
        daemon.start()
        client = daemon.connect()
        client.ok(f"scale {name} 2")
        again = Watcher(daemon, name, since=ids[-1])
        told = again.waitFor(
            lambda events: [e["replicas"] for e in events if e["action"] == "scale"] == [3, 2]
            and len([e for e in events if e["action"] in ("start", "die")]) == 2
            and events,
            "the scale to 3 and its start, the scale to 2 and its die",
        )
        self.assertEqual(
            [(e["action"], e.get("replicas")) for e in told],
            [("scale", 3), ("start", None), ("scale", 2), ("die", None)],
        )
        self.assertNotIn(told[1]["task"], started)
        # Whatever the restart told, it told before this scale's events.
        client.ok(f"scale {name} 1")
        told = again.waitFor(
            lambda events: [e["replicas"] for e in events if e["action"] == "scale"][-1:] == [1]
            and len([e for e in events if e["action"] == "die"]) == 2
            and events,
            "the scale to 1 and its die",
        )
        self.assertEqual(
            [(e["action"], e.get("replicas")) for e in told],
            [("scale", 3), ("start", None), ("scale", 2), ("die", None),
             ("scale", 1), ("die", None)],
        )
