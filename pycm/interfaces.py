"""
The seams of pycm, as zope interfaces.

L{IContainerBackend} is the one the daemon drives: the command table calls
it and nothing above it knows which backend it is.  The others are the
seams inside the supervising backends (memory and process), which share one
lifecycle engine (L{pycm.backends.supervisor.backend}) and differ only in how a run
is started, where logs go and where records are kept.

Every method that returns a Deferred fails only by errback, with a
L{pycm.errors.PycmError} subclass; none raises synchronously.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


class IContainerBackend(Interface):
    """
    A place where containers run: in memory, as host processes, in Docker.

    Names are validated by the caller; the backend may assume a valid name.
    Operations on one container are applied in the order they are called.
    C{stop}, C{kill} and C{remove} never fail for want of disk space: a
    backend that keeps state on disk applies them anyway and says so with a
    container whose C{saved} is False.
    """

    name = Attribute("The backend's registered name, e.g. C{'process'}.")
    capabilities = Attribute("A L{pycm.capabilities.Capabilities}.")
    defaultImage = Attribute("The image used when a spec has none (a C{str}).")

    def open():
        """
        Get ready: load saved records, reconcile them with what really runs,
        connect to an engine.  Called once, before any other method.

        @return: a Deferred that fires with None when ready.
        """

    def close():
        """
        Shut down as the daemon stops: stop the containers the backend owns
        (each with its stop timeout, in parallel), save, release resources.

        @return: a Deferred that fires with None when done.
        """

    def addObserver(observer):
        """
        Register C{observer}, a callable taking a L{pycm.model.ContainerEvent}
        (with C{id} None).  It is called synchronously for every lifecycle
        event, in order, after the change is durable (or, when it cannot be
        written yet, kept in memory to be written later).  A backend with long
        operations (an image pull) may also give it
        L{pycm.model.ProgressEvent}s.  This is the one seam through which
        events reach the daemon.
        """

    def removeObserver(observer):
        """Unregister an observer added with L{addObserver}."""

    def create(spec):
        """
        Create a container from a L{pycm.model.ContainerSpec} without
        starting it; emits C{create}.

        @return: Deferred firing with the L{pycm.model.Container} (state
            C{created}); errbacks with L{pycm.errors.Conflict} if the name is
            taken, L{pycm.errors.NoImage}, L{pycm.errors.BadRequest} for an
            option the backend cannot honour.
        """

    def start(name):
        """
        Start a created or exited container; emits C{start}.  Starting a
        running container is a no-op that fires with it.

        @return: Deferred firing with the L{pycm.model.Container} once it is
            running; L{pycm.errors.NotFound}; L{pycm.errors.BackendError} if
            it could not be started (the container is then C{dead}, with its
            C{error}, and stays listed).
        """

    def stop(name, timeout):
        """
        Send the stop signal, wait up to C{timeout} seconds (None: the
        container's stop timeout), then SIGKILL; emits C{kill} (if it had to)
        C{die} and C{stop}.  A client stop disables the restart policy until
        the next start.  Stopping a stopped container is a no-op.

        @return: Deferred firing with the L{pycm.model.Container} once it has
            exited; L{pycm.errors.NotFound}.
        """

    def restart(name, timeout):
        """
        Stop (as L{stop}), then start; emits C{restart} too.

        @return: Deferred firing with the running L{pycm.model.Container}.
        """

    def kill(name, signal):
        """
        Send signal number C{signal}; emits C{kill}.

        @return: Deferred firing with the L{pycm.model.Container} as it is
            right after the signal was sent; L{pycm.errors.NotFound};
            L{pycm.errors.Conflict} if it is not running.
        """

    def remove(name, force):
        """
        Remove a container and its logs; emits C{destroy}.  A running (or
        restarting) one only with C{force}, which kills it first.

        @return: Deferred firing with None, or with the removed
            L{pycm.model.Container} whose C{saved} is False when the removal
            is done but not yet written to disk (a full disk: it is written
            when it can be); L{pycm.errors.NotFound};
            L{pycm.errors.Conflict} if running and not C{force}.
        """

    def list():
        """
        @return: Deferred firing with a list of every
            L{pycm.model.Container} this backend owns, in any order.
        """

    def inspect(name):
        """
        @return: Deferred firing with the L{pycm.model.Container};
            L{pycm.errors.NotFound}.
        """

    def logs(name, tail, since=None):
        """
        @param tail: how many of the last lines, or None for all.
        @param since: a POSIX time, or None: only the lines written at or
            after it (C{tail} then counts among those).
        @return: Deferred firing with a list of L{pycm.model.LogLine}, oldest
            first; L{pycm.errors.NotFound}.
        """

    def follow(name, tail, observer, since=None):
        """
        Like L{logs} (C{tail} and C{since} limit the backlog), then go on:
        call C{observer} with each new L{pycm.model.LogLine} as it is written.

        @return: Deferred firing with a L{pycm.model.LogFollow} whose
            C{backlog} is what L{logs} would have returned (no line is both
            in the backlog and given to C{observer}, none is missed) and
            whose C{ended} fires when the container stops running (or is
            removed) or when its C{cancel} is called.
        """

    def wait(name, condition):
        """
        Wait for a L{pycm.model.WaitCondition}: C{not-running} (fires at
        once if it is not running), C{running} (at once if running),
        C{next-exit} (the next time it exits), C{removed}; C{healthy} (at
        once if healthy) and C{unhealthy} (at once if unhealthy) for a
        container with a health check.

        @return: a cancellable Deferred firing with the
            L{pycm.model.Container} as it was when the condition held;
            L{pycm.errors.NotFound} if there is no such container when
            called.  Cancelling it leaves nothing behind.  For C{healthy}:
            L{pycm.errors.BadRequest} if it has no health check (or the
            backend none at all); L{pycm.errors.BackendError} saying why
            if it turns C{unhealthy}, or ends and will not be restarted
            (C{exited}, C{dead}, removed), before it is healthy.  For
            C{unhealthy}: BadRequest likewise; it keeps waiting across
            restarts.
        """

    def stats(names):
        """
        The resource usage of containers (see L{pycm.stats}).

        @param names: a sequence of container names; empty for every
            running container.
        @return: Deferred firing with a list of L{pycm.stats.ContainerStats},
            in any order: one per running container, or one per distinct
            name given (a container that is not running has every figure
            None); L{pycm.errors.NotFound} if a name is unknown.  Figures
            the backend cannot know are None; C{cpuPercent} is over the
            last interval as L{pycm.stats.CpuSampler} defines it.
        """


class IScalable(Interface):
    """
    Optional for an L{IContainerBackend}: one that runs several copies of a
    container (the swarm backend's services) and can change how many.
    """

    def scale(name, replicas):
        """
        Set how many copies of C{name} should run (0 allowed); emits
        C{scale} with the new count.

        @return: Deferred firing with the L{pycm.model.Container} once that
            many run (scaling down: once the others are gone);
            L{pycm.errors.NotFound}; L{pycm.errors.BackendError} when the
            copies cannot all be placed or started.
        """


class ICreateAndStart(Interface):
    """
    Optional for an L{IContainerBackend}: one that does C{run} (C{create}
    then C{start}) as one operation, in fewer durable writes.  The daemon
    uses it for C{run} when the backend provides it, else C{create} then
    C{start}.
    """

    def createAndStart(spec):
        """
        C{create(spec)}, then C{start} of the new container, as the two
        would: the same events (C{create}, then C{start}, or C{die} if the
        run cannot start), the same errors.

        @return: Deferred firing with the running L{pycm.model.Container};
            a run that cannot start leaves the container (C{dead}) and
            errbacks as C{start} would, once that is durable.
        """


class IJournaledEvents(Interface):
    """
    Optional for an L{IContainerBackend}: one whose durable writes are
    group commits (L{pycm.groupcommit.GroupCommit}) that an observer of its
    events can join, storing each event in the commit of the change it
    tells of (the daemon's event log).
    """

    commits = Attribute("The L{pycm.groupcommit.GroupCommit} of the backend's writes.")

    def addJournalObserver(observer):
        """
        Call C{observer(event)} with each L{pycm.model.ContainerEvent} as it
        is emitted, before the change it tells of is durable: the observer
        queues it in L{commits} itself and publishes it only after.
        """


class IRunObserver(Interface):
    """
    What a supervisor gives a runtime to hear about one run.
    """

    def output(stream, lines):
        """
        Lines of output, in order, each without its newline: C{stream} is
        C{"stdout"} or C{"stderr"}, C{lines} a non-empty list of C{bytes}
        (possibly not UTF-8, possibly cut by the runtime's line-length
        limit).  A runtime hands on what it read at once as one batch.
        """

    def exited(exitCode):
        """
        The run is over: all its output has been delivered and it has been
        reaped.  C{exitCode} is its status, or minus the signal number that
        ended it.  Called exactly once.
        """


class IRun(Interface):
    """One run (one process group) of a container, as a runtime started it."""

    pid = Attribute(
        "The main process id (a simulated run's is made up, but unique), or None."
    )
    startTime = Attribute(
        "An opaque JSON-able value that, with C{pid}, identifies the process "
        "across a daemon restart (the process backend: the boot id and the "
        "start time in clock ticks from /proc/PID/stat), or None."
    )

    def signal(signum):
        """
        Send C{signum} to the whole run (its process group).  A run that has
        already exited ignores it.
        """


class IRuntime(Interface):
    """
    How a supervising backend starts one run of a container.
    """

    images = Attribute("A frozenset of the image names this runtime accepts.")
    defaultImage = Attribute("The image used when a spec names none.")
    defaultCommand = Attribute("The command (tuple of str) used when none is given.")
    capabilities = Attribute("A L{pycm.capabilities.Capabilities}.")

    def spawn(container, observer, runId=None):
        """
        Start one run of C{container} (a L{pycm.model.Container} whose
        C{image} and C{command} are already filled in), reporting to
        C{observer} (an L{IRunObserver}).  C{runId}, saved with the record
        before the spawn, marks the run's processes (the process backend
        puts it in their environment as C{PYCM_RUN_ID}) so that L{sweep}
        can find them after a crash.

        @return: Deferred firing with an L{IRun}, or failing with
            L{pycm.errors.BackendError} saying why it could not start (an
            executable that does not exist, a workdir that is missing).
        """

    def reclaim(container, pid, startTime):
        """
        After a daemon restart, deal with a run the previous daemon left:
        if C{pid} still names the same process (same C{startTime}), stop its
        whole process group (stop signal, then SIGKILL after the container's
        stop timeout).

        @return: Deferred firing with C{True} if it was still running and is
            now gone, C{False} if it was already gone (or C{pid} is None);
            or, in place of C{True}, the number of the signal it is known to
            have ended by (C{SIGKILL}, which cannot be caught), which the
            record shows as its exit code (minus the signal's number).
        """


class IRuntimeHealth(Interface):
    """
    Optional for an L{IRuntime}: one that can run a container's health
    check (the supervisor schedules the checks, keeps the results and the
    status; the runtime only runs one check when asked).
    """

    def probe(container, run, timeout):
        """
        Run C{container.healthcheck.cmd} once, as the container would run
        it (the process backend: C{/bin/sh -c CMD} in the container's
        cgroup, with its user, environment and working directory; the
        memory backend: simulated, C{exit N} on its clock).

        @param run: the container's current L{IRun}.
        @param timeout: seconds before the check is killed.
        @return: Deferred firing with a L{pycm.health.HealthResult} (a
            check that timed out: exit code -1 and output saying so; one
            that could not be started: exit code -1 and why); never fails.
            Cancelling it kills the check.
        """


class IRuntimeSweep(Interface):
    """
    Optional for an L{IRuntime}: what a runtime whose runs can outlive the
    daemon offers to clean up after a crash.
    """

    def sweep(runs, strays=()):
        """
        After a daemon restart, once every leftover run was reclaimed: stop
        whatever still carries the run id of one of C{runs} (a C{dict} of run
        id to L{pycm.model.Container}): processes started while the daemon
        died, before their record said so; and whatever this daemon's runs
        of the containers named in C{strays} left (records put aside with no
        run id left to read; no run of them has started since).

        @return: Deferred firing with the list of run ids something was
            found of.
        """


class IRuntimeStats(Interface):
    """
    Optional for an L{IRuntime}: reading its runs' resource usage.  Without
    it, a supervising backend's C{stats} has every figure None.
    """

    def usage(runs):
        """
        Read the counters of running containers, all at once (a runtime may
        share one look at C{/proc} between them).

        @param runs: a list of (L{pycm.model.Container}, L{IRun}) pairs.
        @return: a list of L{pycm.stats.Usage} (or None where nothing is
            known), in the same order.
        """


class ILogStore(Interface):
    """Where a supervising backend keeps its containers' output."""

    def append(name, logLine):
        """Store one L{pycm.model.LogLine} for container C{name}."""

    def appendLines(name, time, stream, lines):
        """
        Store C{lines} (a list of C{str}) for container C{name}, all with
        the same C{time} and C{stream}, in order: the same as one L{append}
        per line, cheaper.
        """

    def prepare(name):
        """
        Before a run of C{name} starts: raise L{pycm.errors.BackendError}
        if its output cannot be kept safely (the run is then not started).
        Optional: a store without it is not asked.
        """

    def tail(name, count):
        """
        @return: a list of the last C{count} (None: all kept)
            L{pycm.model.LogLine}s of container C{name}, oldest first
            (empty for a container that wrote nothing, or a C{count} of 0).
        """

    def remove(name):
        """
        Forget container C{name}'s output (no error if there is none); lines
        appended afterwards start afresh.
        """


class IRecordStore(Interface):
    """
    Where a supervising backend keeps its container records durably.
    Writes are durable when the call returns: the supervisor saves before
    it replies or emits the event (or, when a write fails, keeps the change
    in memory, says so in the reply and writes it later).  A write that
    fails raises (L{pycm.errors.BackendError}, or C{OSError}).

    A store may keep nothing at all (the memory backend's default, whose
    containers do not outlive the daemon): every call then succeeds, and
    L{load}, L{quarantined} and L{remains} are always empty.
    """

    def load():
        """
        @return: a list of every saved record, each a JSON-able C{dict} as
            given to L{save}; a record that cannot be read is put in
            quarantine (L{quarantine}) and left out.
        @raise pycm.errors.BackendError: if the store is corrupt or
            truncated (never an empty list in its place).
        """

    def quarantine(name, reason):
        """
        Put the damaged record of C{name} aside (kept for an operator, no
        longer loaded) and log it with C{reason}.  Never raises; a name
        with no record is listed by L{quarantined} all the same, with
        nothing in L{remains}.
        """

    def quarantined():
        """
        @return: the records put aside, as C{{"name": ..., "reason": ...}}
            dicts in name order.
        """

    def remains():
        """
        @return: C{(name, text)} of each record put aside since the store
            was opened, C{text} the record as it was stored (C{bytes}), so
            that the supervisor can stop what its last run left running.
        """

    def save(name, record):
        """Durably save one record (a JSON-able C{dict}) under C{name}."""

    def delete(name):
        """Durably forget the record of C{name} (no error if there is none)."""


class IEventStore(Interface):
    """Where the daemon's event log is kept across restarts."""

    def lastId():
        """
        @return: the highest event id ever stored (0 if none), also once
            older events were dropped.
        """

    def append(event):
        """
        Durably store one numbered L{pycm.model.ContainerEvent}, its id
        above every id stored.  A store may drop its oldest events, keeping
        at least the newest number it was made to keep.

        @raise ValueError: if the event has no id.
        """

    def since(eventId, limit):
        """
        @return: the stored events with an id above C{eventId}, oldest
            first, at most C{limit} of them, equal to those appended.
        """

    prunedThrough = Attribute(
        "The highest id of the events this store dropped to keep its"
        " number (0 if none since it was opened): a reader behind it missed"
        " events."
    )
