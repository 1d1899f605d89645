"""
Tests for L{pycm.services.definition} (a services document checked and
made into a L{ServiceSet}), L{pycm.services.order} (start order, cycles)
and L{pycm.services.config} (the labels and per-field hashes of apply).
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.trial.unittest import SynchronousTestCase

from pycm.daemon.runoptions import RUN_OPTIONS
from pycm.errors import BadRequest
from pycm.health import HealthCheck, OnFailure
from pycm.model import ContainerSpec, RestartPolicy
from pycm.services import config, servicefile
from pycm.services.definition import USER_PATTERN, ServiceSet, serviceSetFrom
from pycm.services.order import startOrder


def document(project: str | None = "shop", **services: Any) -> dict[str, Any]:
    result: dict[str, Any] = {"services": services}
    if project is not None:
        result["project"] = project
    return result


class DefinitionTests(SynchronousTestCase):
    """A document's every key is read with its run option's grammar."""

    def refused(self, message: str, value: Any, project: str | None = None) -> None:
        error = self.assertRaises(BadRequest, serviceSetFrom, value, project)
        self.assertIn(message, error.message)

    def test_everyKey(self) -> None:
        """Each key fills its spec field, values read as run reads its options."""
        services = serviceSetFrom(document(db={
            "image": "host", "command": ["my-db", "--port", "5432"], "user": "postgres:db",
            "env": {"PGDATA": "/var/lib/db"}, "labels": {"tier": "data"},
            "restart": "on-failure:3", "memory": "512m", "cpus": 1.5, "workdir": "/var/lib/db",
            "stop_signal": "int", "stop_timeout": 30, "replicas": 2,
            "healthcheck": {"cmd": "pg_isready -q", "interval": "2s", "retries": 5,
                            "start_period": 5, "on_failure": "restart"},
        }))  # fmt: skip
        spec = services.services["db"].spec
        self.assertEqual(spec, ContainerSpec(
            name="db", image="host", command=("my-db", "--port", "5432"), user="postgres:db",
            env={"PGDATA": "/var/lib/db"},
            labels={"tier": "data", "io.pycm.project": "shop", "io.pycm.service": "db"},
            restartPolicy=RestartPolicy("on-failure", 3), memory=512 * 2**20, cpus=1.5,
            workdir="/var/lib/db", stopSignal="SIGINT", stopTimeout=30.0, replicas=2,
            healthcheck=HealthCheck("pg_isready -q", interval=2.0, retries=5, startPeriod=5.0,
                                    onFailure=OnFailure.RESTART),
        ))  # fmt: skip
        self.assertEqual(services.project, "shop")

    def test_projectOption(self) -> None:
        """C{--project} wins over the document's; with neither, it is refused."""
        self.assertEqual(serviceSetFrom(document(), "other").project, "other")
        self.refused("apply needs a project", document(project=None))
        self.refused("bad project", document(project="no/slash"))
        self.refused("bad project", document(project=7))

    def test_projectNamingRule(self) -> None:
        """
        A project's name follows the container naming rule, as the
        client's services file reader does: one character is refused,
        two are a name.
        """
        self.refused("bad project 'a': expected 2 to 128", document(project="a"))
        self.refused("bad project", document(project="x" * 129))
        self.assertEqual(serviceSetFrom(document(project="ab")).project, "ab")

    def test_unknownKeys(self) -> None:
        """An unknown key is refused naming the service and the key."""
        self.refused("service web: unknown key 'ports'", document(web={"ports": [80]}))
        self.refused("unknown key 'version'", {"version": 3, "services": {}})
        self.refused("service web, key healthcheck: unknown key 'test'",
                     document(web={"healthcheck": {"test": "x"}}))  # fmt: skip

    def test_badValues(self) -> None:
        """A bad value is refused naming the service and key, with the grammar's reason."""
        cases = [
            ({"restart": "sometimes"}, "key restart: bad --restart 'sometimes'"),
            ({"memory": "lots"}, "key memory: bad size 'lots'"),
            ({"memory": 0}, "key memory: bad size 0"),
            ({"cpus": 0}, "key cpus: bad cpus 0"),
            ({"cpus": "2"}, "key cpus: bad value '2'"),
            ({"stop_signal": "SIGNOPE"}, "key stop_signal: unknown signal"),
            ({"stop_timeout": -1}, "key stop_timeout: bad stop_timeout -1"),
            ({"command": "sh -c x"}, "key command: expected a list of strings"),
            ({"command": []}, "key command: expected a list of strings"),
            ({"user": "a b"}, "key user: bad user 'a b'"),
            ({"replicas": True}, "key replicas: bad replicas True"),
            ({"labels": {"io.pycm.project": "x"}}, "io.pycm.* labels are pycm's own"),
            ({"healthcheck": {"interval": "1s"}}, "--health-interval needs --health-cmd"),
            ({"healthcheck": {"cmd": "x", "disable": True}}, "--no-healthcheck cannot be"),
            ({"depends_on": {"db": "ready"}}, "bad condition 'ready' for db"),
            ({"depends_on": "db"}, "key depends_on: expected a list"),
        ]
        for value, message in cases:
            self.refused(message, document(web=value, db={}))

    def test_staticLimits(self) -> None:
        """
        The limits any backend holds a container to are the document's too,
        refused naming the service and key before the apply changes
        anything: a stop timeout over an hour (C{--stop-timeout}'s cap),
        fewer CPUs than a hundredth, a billion replicas.
        """
        cases = [
            ({"stop_timeout": 7200}, "service web, key stop_timeout: bad stop_timeout 7200: "
                                     "at most 3600 seconds (an hour)"),
            ({"stop_timeout": 1e308}, "key stop_timeout: bad stop_timeout 1e+308: at most"),
            ({"cpus": 0.001}, "service web, key cpus: bad cpus 0.001: at least 0.01"),
            ({"replicas": 10**9}, "service web, key replicas: bad replicas 1000000000"),
        ]
        for value, message in cases:
            self.refused(message, document(web=value))
        spec = serviceSetFrom(document(web={"stop_timeout": 3600, "cpus": 0.01})).services[
            "web"].spec
        self.assertEqual((spec.stopTimeout, spec.cpus), (3600.0, 0.01))

    def test_envValueNeverInError(self) -> None:
        """A bad env value is refused naming the variable, never showing the value."""
        error = self.assertRaises(
            BadRequest, serviceSetFrom, document(web={"env": {"PASSWORD": 12345}})
        )
        self.assertIn("PASSWORD", error.message)
        self.assertNotIn("12345", error.message)

    def test_noNul(self) -> None:
        """
        No text of a service may hold a NUL character (JSON's C{\\u0000}),
        which run's request line cannot carry and no process can be given:
        a command's word, a health check's cmd, an env or label name or
        value, a workdir, a user... each refused naming the service and the
        key, never showing a value.
        """
        cases = [
            ({"command": ["sh", "-c", "echo hi\0there"]},
             "service web, key command: word 3 must not hold a NUL character"),
            ({"healthcheck": {"cmd": "true\0false"}},
             "service web, key healthcheck: cmd must not hold a NUL character"),
            ({"healthcheck": {"cmd": "true", "interval": "2s\0"}},
             "service web, key healthcheck: interval must not hold a NUL character"),
            ({"env": {"PASSWORD": "hunter2\0"}},
             "service web, key env: variable PASSWORD must not hold a NUL character"),
            ({"env": {"A\0B": "x"}},
             "service web, key env: variable name 'A\\x00B' must not hold a NUL character"),
            ({"labels": {"tier": "a\0b"}},
             "service web, key labels: label tier must not hold a NUL character"),
            ({"labels": {"ti\0er": "a"}},
             "service web, key labels: label name 'ti\\x00er' must not hold a NUL"),
            ({"workdir": "/srv\0x"},
             "service web, key workdir: the value must not hold a NUL character"),
            ({"user": "root\0"}, "service web, key user: the value must not hold a NUL"),
            ({"image": "host\0"}, "service web, key image: the value must not hold a NUL"),
        ]  # fmt: skip
        for value, message in cases:
            error = self.assertRaises(BadRequest, serviceSetFrom, document(web=value))
            self.assertEqual(error.message[: len(message)], message, value)
            self.assertNotIn("hunter2", error.message)

    def test_serviceNames(self) -> None:
        """A service's name is a container's: the naming rule applies."""
        self.refused("bad service name 'x'", document(x={}))
        self.refused("service web: expected an object", document(web=[]))

    def test_healthyNeedsHealthCheck(self) -> None:
        """Waiting for a service without a health check to be healthy is refused."""
        self.refused("web waits for db to be healthy, but db has no healthcheck",
                     document(db={}, web={"depends_on": {"db": "healthy"}}))  # fmt: skip

    def test_disabledHealthCheck(self) -> None:
        """C{disable = true} is C{--no-healthcheck}: no check to wait for."""
        services = serviceSetFrom(document(db={"healthcheck": {"disable": True}}))
        self.assertEqual(services.services["db"].spec.healthcheck, HealthCheck(None))
        self.assertFalse(services.services["db"].hasHealthCheck)

    def test_dependsOnList(self) -> None:
        """A list of names means each is to have started."""
        services = serviceSetFrom(document(web={"depends_on": ["db"]}, db={}))
        self.assertEqual(services.services["web"].dependsOn, {"db": "started"})
        self.assertEqual(services.order, ("db", "web"))
        self.assertEqual(services.conditionsWanted("db"), {"started"})
        self.assertEqual(services.ownCondition("db"), "started")

    def test_ownCondition(self) -> None:
        """
        A service is up once completed if a dependent wants that, else once
        healthy if it has a health check, else once started.
        """
        services = serviceSetFrom(document(
            job={}, db={"healthcheck": {"cmd": "ready"}}, plain={},
            web={"depends_on": {"job": "completed_successfully", "db": "started"}},
        ))  # fmt: skip
        self.assertEqual({name: services.ownCondition(name) for name in services.order},
                         {"job": "completed_successfully", "db": "healthy",
                          "plain": "started", "web": "started"})  # fmt: skip

    def test_userGrammarIsRuns(self) -> None:
        """The user key accepts and refuses what run's C{--user} does."""
        readUser = {option.name: option for option in RUN_OPTIONS}["user"].read
        assert readUser is not None
        for value in ("root", "1000", "1000:1000", "www-data:www", "a$", "a:b:c", ":x",
                      "x:", "-x", "a b", "é", "a" * 33):  # fmt: skip
            try:
                readUser(value, "user")
                accepted = True
            except BadRequest:
                accepted = False
            try:
                serviceSetFrom(document(web={"user": value}))
                read = True
            except BadRequest:
                read = False
            self.assertEqual(read, accepted, value)
        # The client's services file reader takes the same pattern.
        self.assertIs(servicefile.USER_PATTERN, USER_PATTERN)


class OrderTests(SynchronousTestCase):
    """L{startOrder}: dependencies first, cycles and unknown names refused."""

    def test_order(self) -> None:
        """Each name comes after its dependencies; free ones in the given order."""
        graph = {"web": ["app"], "app": ["db", "cache"], "cache": [], "db": [], "cron": []}
        self.assertEqual(startOrder(graph), ["cache", "db", "cron", "app", "web"])

    def test_unknown(self) -> None:
        """A dependency on a name that is not a service is refused, naming both."""
        error = self.assertRaises(BadRequest, startOrder, {"web": ["dbx"]})
        self.assertEqual(error.message, "service web depends on dbx, which is not a service")

    def test_cycles(self) -> None:
        """A cycle is refused naming its services in order, itself included."""
        for graph, message in [
            ({"web": ["app"], "app": ["web"]}, "web -> app -> web"),
            ({"web": ["web"]}, "web -> web"),
            ({"free": [], "top": ["a"], "a": ["b"], "b": ["c"], "c": ["a"]}, "a -> b -> c -> a"),
        ]:
            error = self.assertRaises(BadRequest, startOrder, graph)
            self.assertEqual(error.message, "dependency cycle: " + message)

    def test_manyIsLinear(self) -> None:
        """A long chain and many independent services are ordered at once."""
        chain = {f"s{i}": [f"s{i - 1}"] if i else [] for i in range(5000)}
        self.assertEqual(startOrder(chain), list(chain))
        free = {f"s{i}": [] for i in range(5000)}
        self.assertEqual(startOrder(free), list(free))


class ConfigTests(SynchronousTestCase):
    """The config label: per-field hashes, no value in clear text."""

    def spec(self, **fields: Any) -> ContainerSpec:
        services: ServiceSet = serviceSetFrom(document(web=fields))
        return services.services["web"].spec

    def test_noClearText(self) -> None:
        """The label holds no value of the spec, only field names and hashes."""
        spec = self.spec(env={"PASSWORD": "hunter2"}, command=["serve", "--token=abc"],
                         healthcheck={"cmd": "check --secret=s3"})  # fmt: skip
        label = config.configLabel(spec, lambda: "salt")
        for secret in ("hunter2", "PASSWORD", "abc", "s3", "serve"):
            self.assertNotIn(secret, label)
        self.assertEqual([word.partition("=")[0] for word in label.split()[2:]],
                         ["command", "env", "healthcheck"])  # fmt: skip

    def test_changedFields(self) -> None:
        """Only the fields whose values differ are named; a field set or unset counts."""
        spec = self.spec(env={"A": "1"}, memory="1g")
        labels = {config.CONFIG_LABEL: config.configLabel(spec)}
        self.assertEqual(config.changedFields(labels, spec), [])
        changed = self.spec(env={"A": "2"}, memory="1g", cpus=2)
        self.assertEqual(config.changedFields(labels, changed), ["cpus", "env"])
        self.assertEqual(config.changedFields(labels, attrs.evolve(spec, memory=None)),
                         ["memory"])  # fmt: skip

    def test_formerSpelling(self) -> None:
        """
        A container an older pycm labelled with C{restart=on-failure:0}
        (which now reads as C{on-failure}, no limit) is not recreated for
        it; one labelled C{on-failure:3} still is.
        """
        spec = self.spec(restart="on-failure:0")
        for formerly, changed in (("on-failure:0", []), ("on-failure:3", ["restart"])):
            digest = config._hash("salt", "restart", formerly)
            labels = {config.CONFIG_LABEL: f"v1 salt restart={digest}"}
            self.assertEqual(config.changedFields(labels, spec), changed, formerly)

    def test_saltedPerContainer(self) -> None:
        """Two containers of one spec have different hashes (a salt each)."""
        spec = self.spec(env={"A": "1"})
        salts = iter(["one", "two"])
        first = config.configLabel(spec, lambda: next(salts))
        second = config.configLabel(spec, lambda: next(salts))
        self.assertNotEqual(first.split()[2], second.split()[2])

    def test_unreadableLabel(self) -> None:
        """A container without a readable config label counts as changed: C{config}."""
        spec = self.spec()
        for labels in ({}, {config.CONFIG_LABEL: "v9 x"}, {config.CONFIG_LABEL: "v1 s bad"}):
            self.assertEqual(config.changedFields(labels, spec), ["config"])
