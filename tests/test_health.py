"""
Tests for L{pycm.health}, health checks as values, and the durations of
L{pycm.units} they are written in.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pycm.errors import BadRequest
from pycm.health import (
    KEPT_RESULTS,
    MAX_OUTPUT,
    Health,
    HealthCheck,
    HealthResult,
    HealthStatus,
    OnFailure,
    healthCheckFrom,
)
from pycm.units import formatDuration, isDuration, parseDuration

PASS = HealthResult(1.0, 1.5, 0, "ok")
FAIL = HealthResult(2.0, 2.5, 1, "down")


class DurationTests(SynchronousTestCase):
    """L{parseDuration}, L{formatDuration} and L{isDuration}."""

    def test_parse(self) -> None:
        """Units add up; a bare number is seconds."""
        for text, seconds in [
            ("500ms", 0.5), ("10s", 10), ("1m", 60), ("1h30m", 5400), ("1.5h", 5400),
            ("2m30s", 150), ("30", 30), ("2.5", 2.5), (" 10s ", 10), ("0s", 0),
        ]:  # fmt: skip
            self.assertEqual(parseDuration(text), seconds, text)

    def test_parseRefused(self) -> None:
        """Anything else is L{BadRequest} naming the option it came from."""
        for text in ["s", "-1s", "1d", "10 s", "1e3", "1h-30m", "ten"]:
            error = self.assertRaises(BadRequest, parseDuration, text, "health-interval")
            self.assertEqual(
                str(error),
                f"bad --health-interval {text.strip()!r}: expected a duration such as"
                " 500ms, 10s, 1m or 1h30m",
            )
        self.assertRaises(BadRequest, parseDuration, "")

    def test_format(self) -> None:
        """The shortest form: milliseconds under a second, else h, m and s."""
        for seconds, text in [
            (0, "0s"), (0.2, "200ms"), (1, "1s"), (1.5, "1.5s"), (60, "1m"),
            (90, "1m30s"), (3600, "1h"), (5400, "1h30m"), (3661, "1h1m1s"),
        ]:  # fmt: skip
            self.assertEqual(formatDuration(seconds), text, seconds)

    def test_roundTrip(self) -> None:
        """What L{formatDuration} writes, L{parseDuration} reads back."""
        for seconds in (0.001, 0.2, 1, 2.5, 59, 61, 3599, 86400):
            self.assertEqual(parseDuration(formatDuration(seconds)), seconds)

    def test_isDuration(self) -> None:
        """Only text with units is a duration (a bare number may be a time)."""
        self.assertTrue(isDuration("10m"))
        self.assertTrue(isDuration("1h30m"))
        self.assertFalse(isDuration("1764514800"))
        self.assertFalse(isDuration("2026-11-30"))


class HealthCheckTests(SynchronousTestCase):
    """L{HealthCheck}: defaults, JSON, description."""

    def test_defaults(self) -> None:
        """Docker's defaults: 30 s, 30 s, 3 retries, no start period, no action."""
        check = HealthCheck("true")
        self.assertEqual(
            (check.interval, check.timeout, check.retries, check.startPeriod, check.onFailure),
            (30.0, 30.0, 3, 0.0, OnFailure.NONE),
        )
        self.assertFalse(check.disabled)
        self.assertTrue(HealthCheck(None).disabled)

    def test_json(self) -> None:
        """L{HealthCheck.toJSON} is what inspect shows, and L{fromJSON} reads it back."""
        check = HealthCheck("pg_isready", 2.0, 3.0, 5, 10.0, OnFailure.RESTART)
        self.assertEqual(
            check.toJSON(),
            {"cmd": "pg_isready", "interval": 2.0, "timeout": 3.0, "retries": 5,
             "start_period": 10.0, "on_failure": "restart"},
        )  # fmt: skip
        self.assertEqual(HealthCheck.fromJSON(check.toJSON()), check)
        self.assertEqual(HealthCheck.fromJSON(HealthCheck(None).toJSON()), HealthCheck(None))

    def test_fromJSONRefused(self) -> None:
        """Anything L{toJSON} does not make is a L{ValueError}."""
        good = HealthCheck("true").toJSON()
        for bad in [
            None, [], {}, dict(good, cmd=3), dict(good, interval="1s"), dict(good, timeout=0),
            dict(good, interval=0), dict(good, start_period=-1), dict(good, retries=0),
            dict(good, retries=True), dict(good, retries=1.5), dict(good, on_failure="explode"),
            dict(good, interval=float("inf")),
        ]:  # fmt: skip
            self.assertRaises(ValueError, HealthCheck.fromJSON, bad)

    def test_describe(self) -> None:
        """L{HealthCheck.describe} says it for people."""
        self.assertEqual(
            HealthCheck("pg_isready -q", interval=2).describe(),
            "pg_isready -q every 2s (timeout 30s, 3 retries)",
        )
        self.assertEqual(HealthCheck(None).describe(), "no health check")


class HealthResultTests(SynchronousTestCase):
    """L{HealthResult}."""

    def test_passed(self) -> None:
        """Exit code 0 passes; anything else (-1: timed out) fails."""
        self.assertTrue(PASS.passed)
        self.assertFalse(FAIL.passed)
        self.assertFalse(HealthResult(0, 1, -1, "timed out").passed)

    def test_capOutput(self) -> None:
        """Output is capped at 4 KiB, decoded with replacement."""
        self.assertEqual(len(HealthResult.capOutput(b"x" * 10_000)), MAX_OUTPUT)
        self.assertEqual(HealthResult.capOutput(b"ok\xff"), "ok\ufffd")

    def test_json(self) -> None:
        """RFC 3339 times, the exit code and the output."""
        self.assertEqual(
            HealthResult(0, 1.5, 0, "ok").toJSON(),
            {"start": "1970-01-01T00:00:00.000Z", "end": "1970-01-01T00:00:01.500Z",
             "exit_code": 0, "output": "ok"},
        )  # fmt: skip


class HealthAfterTests(SynchronousTestCase):
    """L{Health.after}: Docker's rules for folding a result in."""

    check = HealthCheck("true", retries=3)

    def test_starting(self) -> None:
        """A new health is C{starting}, no streak, no log."""
        self.assertEqual(Health(), Health(HealthStatus.STARTING, 0, ()))

    def test_passMakesHealthy(self) -> None:
        """A pass makes it healthy with no streak, from any status."""
        for before in (Health(), Health("unhealthy", 7, (FAIL,)), Health("healthy", 2)):
            after = before.after(self.check, PASS, inStartPeriod=False)
            self.assertEqual((after.status, after.failingStreak), ("healthy", 0))
            self.assertEqual(after.log[-1], PASS)

    def test_streakToUnhealthy(self) -> None:
        """Failures grow the streak; C{retries} in a row make it unhealthy."""
        health = Health()
        statuses = []
        for _ in range(4):
            health = health.after(self.check, FAIL, inStartPeriod=False)
            statuses.append((health.status, health.failingStreak))
        self.assertEqual(
            statuses, [("starting", 1), ("starting", 2), ("unhealthy", 3), ("unhealthy", 4)]
        )

    def test_healthyKeepsUntilRetries(self) -> None:
        """A healthy container stays healthy until C{retries} failures."""
        health = Health("healthy")
        health = health.after(self.check, FAIL, False).after(self.check, FAIL, False)
        self.assertEqual((health.status, health.failingStreak), ("healthy", 2))
        self.assertEqual(health.after(self.check, FAIL, False).status, "unhealthy")

    def test_startPeriod(self) -> None:
        """A failure in the start period changes nothing but the log."""
        health = Health().after(self.check, FAIL, inStartPeriod=True)
        self.assertEqual(health, Health("starting", 0, (FAIL,)))

    def test_logKeepsTheLast(self) -> None:
        """The log keeps the last L{KEPT_RESULTS} results, oldest first."""
        health = Health()
        results = [HealthResult(i, i, 1, str(i)) for i in range(8)]
        for result in results:
            health = health.after(self.check, result, False)
        self.assertEqual(health.log, tuple(results[-KEPT_RESULTS:]))

    def test_json(self) -> None:
        """The contract's C{health} object."""
        self.assertEqual(
            Health("unhealthy", 3, (FAIL,)).toJSON(),
            {"status": "unhealthy", "failing_streak": 3, "log": [FAIL.toJSON()]},
        )


class HealthCheckFromTests(SynchronousTestCase):
    """L{healthCheckFrom}: the C{--health-*} options to a L{HealthCheck}."""

    def test_none(self) -> None:
        """No health option: None."""
        self.assertIsNone(healthCheckFrom({}))
        self.assertIsNone(healthCheckFrom({"env": "A=1", "no-healthcheck": False}))

    def test_values(self) -> None:
        """Every option, as text from a request line or numbers from a file."""
        given = {"health-cmd": "pg_isready", "health-interval": "2s", "health-timeout": "500ms",
                 "health-retries": "5", "health-start-period": "1m",
                 "health-on-failure": "kill"}  # fmt: skip
        expected = HealthCheck("pg_isready", 2.0, 0.5, 5, 60.0, OnFailure.KILL)
        self.assertEqual(healthCheckFrom(given), expected)
        numbers = dict(given, **{"health-interval": 2, "health-timeout": 0.5,
                                 "health-retries": 5, "health-start-period": 60})  # fmt: skip
        self.assertEqual(healthCheckFrom(numbers), expected)
        self.assertEqual(
            healthCheckFrom({"health-cmd": "x", "health-start-period": "0s"}).startPeriod, 0
        )

    def test_disabled(self) -> None:
        """C{--no-healthcheck}: a check with no command; not with another option."""
        self.assertEqual(healthCheckFrom({"no-healthcheck": True}), HealthCheck(None))
        error = self.assertRaises(
            BadRequest, healthCheckFrom, {"no-healthcheck": True, "health-cmd": "true"}
        )
        self.assertEqual(str(error), "--no-healthcheck cannot be given with --health-cmd")

    def test_refused(self) -> None:
        """Each bad value is a L{BadRequest} naming its option."""
        for values, message in [
            ({"health-interval": "1s"}, "--health-interval needs --health-cmd"),
            ({"health-cmd": " "}, "bad --health-cmd: expected a command line"),
            ({"health-cmd": "x", "health-interval": "0s"}, "bad --health-interval '0s'"),
            ({"health-cmd": "x", "health-interval": "1000000h"},
             "bad --health-interval '1000000h': expected a duration under 1e9 seconds"),
            ({"health-cmd": "x", "health-interval": float("nan")},
             "bad --health-interval nan: expected a duration of at least 1ms"),
            ({"health-cmd": "x", "health-timeout": "soon"}, "bad --health-timeout 'soon'"),
            ({"health-cmd": "x", "health-timeout": True}, "bad --health-timeout True"),
            ({"health-cmd": "x", "health-retries": "0"}, "bad --health-retries 0"),
            ({"health-cmd": "x", "health-retries": "-1"}, "bad --health-retries '-1'"),
            ({"health-cmd": "x", "health-retries": True}, "bad --health-retries True"),
            ({"health-cmd": "x", "health-on-failure": "boom"}, "bad --health-on-failure 'boom'"),
        ]:
            error = self.assertRaises(BadRequest, healthCheckFrom, values)
            self.assertTrue(str(error).startswith(message), (str(error), message))

    def test_onFailureParse(self) -> None:
        """L{OnFailure.parse} takes the four words."""
        for word in OnFailure.ALL:
            self.assertEqual(OnFailure.parse(word), word)
        self.assertRaises(BadRequest, OnFailure.parse, "Restart")
