"""
End-to-end test of services as code (issue 10): the real C{twistd -n pycm}
on the process backend (its own state directory and cgroup parent, a UNIX
socket in a temporary directory) and the real C{pycm apply} command on a
services file of three services in a dependency chain: C{db}, whose health
check passes once its command has made a file (about a second after it
starts), C{app} wanting C{db} healthy, and C{web} wanting C{app} started.

Everything is real: processes, sockets, time.  The test waits on the
client's own wait (C{pycm apply} answers once every service is up) and on
the daemon's event log, never on a fixed sleep.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.e2e import DEADLINE, RealDaemon, pycmCommand

#: The container events that say a container was made, started or ended.
LIFECYCLE = frozenset({"create", "start", "die", "stop", "kill", "restart", "destroy"})

#: An env value that must never show in clear text in a label.
SECRET = "s3cret-value-1"


def servicesFile(workdir: str, webGreeting: str = "hello", withWeb: bool = True,
                 cycle: bool = False) -> str:
    """
    The TOML of the test's services: C{db} (healthy about a second after
    it starts), C{app} (needs C{db} healthy), C{web} (needs C{app}
    started; its env says C{webGreeting}); with C{cycle}, C{app} also
    needs C{web}, a cycle.
    """
    appNeeds = '{ db = "healthy", web = "started" }' if cycle else '{ db = "healthy" }'
    text = f"""\
[services.db]
command = ["sh", "-c", "sleep 1 && touch ready && exec sleep 1000"]
workdir = {json.dumps(workdir)}
env = {{ DB_PASSWORD = "{SECRET}" }}
[services.db.healthcheck]
cmd = "test -e ready"
interval = "200ms"
timeout = "5s"
start_period = "30s"

[services.app]
command = ["sleep", "1000"]
depends_on = {appNeeds}
"""
    if withWeb:
        text += f"""
[services.web]
command = ["sleep", "1000"]
env = {{ GREETING = "{webGreeting}" }}
depends_on = {{ app = "started" }}
"""
    return text


class ServicesEndToEndTests(SynchronousTestCase):
    """C{pycm apply} of a services file, through the real daemon."""

    def setUp(self) -> None:
        self.cgroupParent = f"/pycm-e2e-services-{os.getpid()}"
        self.addCleanup(self.removeCgroupParent)
        self.daemon = RealDaemon(
            self, backend="process",
            args=["--backend-option", f"cgroup-parent={self.cgroupParent}"],
        ).start()
        # Run after the daemon is stopped (cleanups run last in, first out):
        # no container process of this test survives it.
        self.pids: set[int] = set()
        self.addCleanup(self.killContainers)
        self.addCleanup(self.removeContainers)
        self.env = dict(self.daemon.clientEnv(), HOME=self.daemon.home, TERM="dumb")
        for name in ("PYCM_TOKEN", "PYCM_CLIENT", "PYCM_HISTORY"):
            self.env.pop(name, None)
        self.shop = os.path.join(self.daemon.home, "shop")
        self.dbDir = os.path.join(self.daemon.home, "db-data")
        os.mkdir(self.shop)
        os.mkdir(self.dbDir)
        self.shopFile = os.path.join(self.shop, "services.toml")

    def pycm(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The real C{pycm} client against the test's daemon."""
        return subprocess.run(
            [*pycmCommand(), *args], stdin=subprocess.DEVNULL, capture_output=True,
            text=True, env=self.env, timeout=DEADLINE * 2,
        )

    def apply(self, *args: str, text: str | None = None,
              expect: int = 0) -> subprocess.CompletedProcess[str]:
        """C{pycm apply ARGS... shop/services.toml} (written from C{text})."""
        if text is not None:
            with open(self.shopFile, "w") as f:
                f.write(text)
        result = self.pycm("apply", *args, self.shopFile)
        self.assertEqual(result.returncode, expect,
                         f"pycm apply {' '.join(args)}: {result.stdout}{result.stderr}")
        return result

    def containers(self) -> dict[str, dict[str, Any]]:
        """Every container the daemon has, by name."""
        client = self.daemon.connect(unix=True)
        try:
            listed = client.ok("list")
        finally:
            client.close()
        for container in listed:
            if container.get("pid"):
                self.pids.add(container["pid"])
        return {container["name"]: container for container in listed}

    def history(self) -> list[dict[str, Any]]:
        """The daemon's kept container events, oldest first (C{events --since 0})."""
        client = self.daemon.connect(unix=True)
        try:
            reply = client.ok("events --since 0")
            last = reply["last_id"]
            events: list[dict[str, Any]] = []
            while last and (not events or events[-1]["id"] < last):
                kind, _, payload = client.readLine().decode("utf-8").partition(" ")
                self.assertEqual(kind, "EVENT", payload)
                event = json.loads(payload)
                if event.get("type") == "container":
                    events.append(event)
            return events
        finally:
            client.close()

    def removeContainers(self) -> None:
        """Remove every container through the daemon, if it still runs."""
        if self.daemon.process is None or self.daemon.process.poll() is not None:
            return
        try:
            client = self.daemon.connect(unix=True)
            for container in client.ok("list"):
                if container.get("pid"):
                    self.pids.add(container["pid"])
                client.request(f"rm --force {container['name']}")
            client.close()
        except (OSError, AssertionError):
            pass

    def killContainers(self) -> None:
        """Kill every container's process group seen, whatever the daemon did."""
        for pid in self.pids:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass

    def removeCgroupParent(self) -> None:
        """Remove the test's (empty) cgroup directories, deepest first."""
        root = "/sys/fs/cgroup"
        if not os.path.isdir(root):
            return
        for hierarchy in os.listdir(root):
            top = os.path.join(root, hierarchy, self.cgroupParent.lstrip("/"))
            if not os.path.isdir(top):
                continue
            for path, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
                try:
                    os.rmdir(path)
                except OSError:
                    pass

    def assertOrdered(self, events: list[dict[str, Any]],
                      *wanted: tuple[str, str, str | None]) -> None:
        """Each (name, action, status) of C{wanted} is seen, in this order."""
        positions = []
        for name, action, status in wanted:
            matches = [i for i, event in enumerate(events)
                       if event["name"] == name and event["action"] == action
                       and (status is None or event.get("status") == status)]
            self.assertTrue(matches, f"no {action} {status or ''} of {name} in {events}")
            positions.append(matches[0])
        self.assertEqual(positions, sorted(positions), f"{wanted} out of order in {events}")

    def assertOrderedLines(self, lines: list[str], *wanted: str) -> None:
        """Each of C{wanted} is one of C{lines}, in this order."""
        for line in wanted:
            self.assertIn(line, lines)
        positions = [lines.index(line) for line in wanted]
        self.assertEqual(positions, sorted(positions), lines)

    def test_applyChain(self) -> None:
        """
        A chain of three services comes up in order (db started, db
        healthy, then app started, then web started), with progress on
        stderr; applied again unchanged, nothing is restarted; with web's
        env changed, only web is recreated; C{--dry-run} prints the plan
        and changes nothing; C{--prune} removes a service dropped from the
        file but not another project's container nor one of no project;
        a cycle is refused naming the services, and nothing changes.
        """
        # 1. The first apply: every service created, in dependency order.
        first = self.apply(text=servicesFile(self.dbDir))
        progress = first.stderr.splitlines()
        self.assertIn("app: waiting for db to be healthy", progress)
        self.assertOrderedLines(progress, "db: creating", "db: healthy", "app: creating",
                                "web: creating")
        self.assertEqual([line.split()[:2] for line in first.stdout.splitlines()[2:]],
                         [["db", "create"], ["app", "create"], ["web", "create"]],
                         first.stdout)
        before = self.containers()
        self.assertEqual(sorted(before), ["app", "db", "web"])
        for name, container in before.items():
            self.assertEqual(container["state"], "running", name)
            self.assertEqual(container["labels"].get("io.pycm.project"), "shop", name)
            self.assertEqual(container["labels"].get("io.pycm.service"), name, name)
            self.assertNotIn(SECRET, json.dumps(container["labels"]), name)
        self.assertEqual(before["db"]["health"]["status"], "healthy")
        self.assertIsNone(before["app"]["health"])
        events = self.history()
        self.assertOrdered(events, ("db", "start", None), ("db", "health_status", "healthy"),
                           ("app", "start", None), ("web", "start", None))
        self.assertEqual([e["name"] for e in events if e["action"] == "start"],
                         ["db", "app", "web"])
        lastId = events[-1]["id"]

        # 2. Unchanged: every service kept, nothing restarted.
        again = self.apply("--dry-run")
        self.assertNotIn("create", again.stdout.lower())
        kept = self.pycm("--json", "apply", self.shopFile)
        self.assertEqual(kept.returncode, 0, kept.stderr)
        reply = json.loads(kept.stdout)
        self.assertEqual(reply["project"], "shop")
        self.assertEqual({s["name"]: s["action"] for s in reply["services"]},
                         {"db": "keep", "app": "keep", "web": "keep"})
        self.assertEqual(self.lifecycle(self.history(), lastId), [])
        self.assertEqual(self.identities(), self.identities(before))

        # 3. web's env changed, --dry-run: the plan, and nothing changes.
        changed = servicesFile(self.dbDir, webGreeting="bonjour")
        plan = self.apply("--dry-run", text=changed)
        planLines = [line for line in plan.stdout.splitlines() if "web" in line]
        self.assertTrue(planLines, plan.stdout)
        self.assertIn("recreate", " ".join(planLines))
        self.assertIn("env", " ".join(planLines))
        self.assertNotIn("bonjour", plan.stdout + plan.stderr)
        self.assertEqual(self.identities(), self.identities(before))
        self.assertEqual(self.lifecycle(self.history(), lastId), [])

        # 4. Applied: only web recreated.
        self.apply(text=changed)
        after = self.containers()
        self.assertEqual(self.identities(after, ("db", "app")),
                         self.identities(before, ("db", "app")))
        self.assertNotEqual(after["web"]["id"], before["web"]["id"])
        self.assertEqual(after["web"]["state"], "running")
        client = self.daemon.connect(unix=True)
        self.assertEqual(client.ok("inspect web")["env"].get("GREETING"), "bonjour")
        client.close()
        recent = self.lifecycle(self.history(), lastId)
        self.assertEqual({e["name"] for e in recent}, {"web"}, recent)
        lastId = self.history()[-1]["id"]

        # 5. --prune: web dropped from the file goes; another project's
        # container and a container of no project stay.
        other = os.path.join(self.daemon.home, "other")
        os.mkdir(other)
        with open(os.path.join(other, "services.toml"), "w") as f:
            f.write('[services.cache]\ncommand = ["sleep", "1000"]\n')
        result = self.pycm("apply", os.path.join(other, "services.toml"))
        self.assertEqual(result.returncode, 0, result.stderr)
        result = self.pycm("run", "loose", "host", "sleep", "1000")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(self.containers()["cache"]["labels"].get("io.pycm.project"), "other")
        withoutWeb = servicesFile(self.dbDir, webGreeting="bonjour", withWeb=False)
        self.apply("--dry-run", "--prune", text=withoutWeb)
        self.assertIn("web", self.containers())
        pruned = self.apply("--prune", text=withoutWeb)
        self.assertIn("web", pruned.stdout + pruned.stderr)
        remaining = self.containers()
        self.assertEqual(sorted(remaining), ["app", "cache", "db", "loose"])
        self.assertEqual(self.identities(remaining, ("db", "app")),
                         self.identities(before, ("db", "app")))
        lastId = self.history()[-1]["id"]

        # 6. A cycle: refused before anything changes, naming the services.
        with open(self.shopFile, "w") as f:
            f.write(servicesFile(self.dbDir, webGreeting="hola", cycle=True))
        refused = self.pycm("apply", "--prune", self.shopFile)
        self.assertIn(refused.returncode, (1, 2), refused.stdout + refused.stderr)
        self.assertIn("app", refused.stderr)
        self.assertIn("web", refused.stderr)
        self.assertEqual(self.identities(), self.identities(remaining))
        self.assertEqual(self.lifecycle(self.history(), lastId), [])

    def identities(self, containers: dict[str, dict[str, Any]] | None = None,
                   names: tuple[str, ...] | None = None) -> dict[str, tuple[Any, ...]]:
        """Each container's id, start time, pid and state (of C{names})."""
        if containers is None:
            containers = self.containers()
        return {name: (c["id"], c["started"], c["pid"], c["state"])
                for name, c in containers.items() if names is None or name in names}

    def lifecycle(self, events: list[dict[str, Any]], after: int) -> list[dict[str, Any]]:
        """The lifecycle events (no health, no progress) after event C{after}."""
        return [e for e in events if e["id"] > after and e["action"] in LIFECYCLE]

    def test_refusedBeforeAnything(self) -> None:
        """
        A mistake the client can see (a stop timeout over an hour) is
        refused with the file's line and key, exit 2, before anything is
        sent; one only the daemon's host can see (a user it does not have,
        more CPUs than it has) refuses the whole apply, dry or not, naming
        each service and key, exit 2: the good service is not created.
        """
        result = self.apply(text='[services.good]\ncommand = ["sleep", "1000"]\n\n'
                                 '[services.bad]\nstop_timeout = 7200\n', expect=2)
        self.assertIn(f'{self.shopFile}:5: "stop_timeout" in [services.bad] must be a '
                      "number of seconds from 0 to 3600", result.stderr)
        text = ('[services.good]\ncommand = ["sleep", "1000"]\n\n'
                '[services.bad]\nuser = "nosuchuserzz"\n')
        expected = "service bad, key user: unknown user 'nosuchuserzz': no such user"
        # More CPUs than the host has: only where this daemon limits CPUs
        # (elsewhere --cpus is an option it does not honour at all).
        info = json.loads(self.pycm("--json", "info").stdout)
        if "cpus" in info["capabilities"]["limits"]:
            text += f'\n[services.big]\ncpus = {(os.cpu_count() or 1) + 62}\n'
            expected += "; service big, key cpus: bad cpus "
        for args in (("--dry-run",), ()):
            result = self.apply(*args, text=text, expect=2)
            self.assertIn(expected, result.stderr)
            self.assertIn("nothing was changed", result.stderr)
            self.assertNotIn("--", result.stderr)
        self.assertEqual(self.containers(), {})
