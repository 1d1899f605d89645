"""
C{events --since} through the real daemon (C{twistd pycm}, real sockets,
the memory backend): the replay, a slice a reactor turn, while another
client makes events as fast as it can, with no gap and no double between
the replayed and the live ones; many subscribers each getting every event.
"""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from pycm.daemon.replay import REPLAY_SLICE

from .e2e import RealDaemon

#: Events in the log before the replay: several slices.
BEFORE = 3 * REPLAY_SLICE + 100
#: Events made while it runs.
DURING = 400


class EventReplayE2ETests(SynchronousTestCase):
    def test_replayWhileEventsAreMade(self) -> None:
        """
        A subscriber asks for every retained event while another client
        pipelines creates and removals: it gets ids 1 to the last, each
        once and in order, the OK reply's last_id among them, and a third
        client is answered meanwhile.
        """
        daemon = RealDaemon(self).start()
        maker = daemon.connect()
        maker.send("".join(f"create c{i}\n" for i in range(BEFORE)))
        for _ in range(BEFORE):
            self.assertEqual(maker.reply()[0], "OK")
        subscriber = daemon.connect()
        subscriber.send("events --since 0\n")
        maker.send(
            "".join(f"create d{i}\nrm d{i}\n" for i in range(DURING // 2))
        )
        other = daemon.connect()
        self.assertEqual(other.ok("ping"), "pong")
        kind, reply = subscriber.reply()
        self.assertEqual(kind, "OK")
        self.assertGreaterEqual(reply["last_id"], BEFORE)
        for _ in range(DURING):
            self.assertEqual(maker.reply()[0], "OK")
        last = maker.ok("create last")
        self.assertEqual(last["name"], "last")
        # The replay may still be going on: read up to the last event.
        while not subscriber.events or subscriber.events[-1]["name"] != "last":
            kind, _, rest = subscriber.readLine().partition(b" ")
            self.assertEqual(kind, b"EVENT")
            subscriber.events.append(json.loads(rest))
        ids = [event["id"] for event in subscriber.events]
        self.assertEqual(ids, list(range(1, BEFORE + DURING + 2)))
        self.assertEqual(subscriber.events[-1]["name"], "last")

    def test_manySubscribersEveryEvent(self) -> None:
        """
        Thirty subscribers, two of them filtered, each get every event they
        want, in order, while containers are created and removed.
        """
        daemon = RealDaemon(self).start()
        subscribers = [daemon.connect() for _ in range(30)]
        for subscriber in subscribers[:28]:
            subscriber.ok("events")
        for subscriber in subscribers[28:]:
            subscriber.ok("events --filter action=destroy")
        maker = daemon.connect()
        maker.send("".join(f"create c{i}\n" for i in range(100)))
        maker.send("".join(f"rm c{i}\n" for i in range(100)))
        for _ in range(200):
            self.assertEqual(maker.reply()[0], "OK")
        for subscriber in subscribers:
            self.assertEqual(subscriber.ok("ping"), "pong")
        for subscriber in subscribers[:28]:
            self.assertEqual([e["id"] for e in subscriber.events], list(range(1, 201)))
        for subscriber in subscribers[28:]:
            self.assertEqual([e["id"] for e in subscriber.events], list(range(101, 201)))
