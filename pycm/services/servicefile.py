"""
Services files: the TOML a person writes (C{pycm apply FILE}, the daemon's
C{--services FILE}) read into the C{apply} request's DOCUMENT,
C{{"project": NAME, "services": {SERVICE: {...}}}}.

Each C{[services.NAME]} table describes one container named NAME, with the
keys of L{SERVICE_KEYS} (all optional) and a C{[services.NAME.healthcheck]}
table with those of L{HEALTHCHECK_KEYS}.  Everything is checked here, so a
mistake is reported as C{FILE:LINE: why} before anything is sent: an
unknown key, a wrong type or a bad value (a duration, a size, a restart
policy, a dependency on a service the file does not have).  The daemon
checks the document again (it trusts no client); a dependency cycle is
its to find.

What the document gets differs from the file in three ways only:
  - C{env_file} (a path, or a list of them, relative to the services
    file's directory) is read here (L{pycm.services.envfile}) and merged
    under C{env}: C{env} wins, then the later file; the path never reaches
    the daemon; each path is read once, and the env files of one services
    file come to 1 MiB at most (L{pycm.services.envfile.EnvFiles});
  - C{healthcheck = {disable = true}} becomes C{{"disable": true}} alone
    (C{disable = false} is dropped);
  - C{project} is the one given (C{--project}), else the services file's
    directory name made to follow the container naming rule (see
    L{projectFromDirectory}).
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from typing import Any

from pycm.errors import BadRequest, InvalidName
from pycm.model import RestartPolicy, parseSignal, validateName
from pycm.printable import printable
from pycm.services.config import RESERVED_LABEL_PREFIX
from pycm.services.definition import MIN_CPUS, REPLICAS_LIMIT, USER_PATTERN
from pycm.services.envfile import EnvFileError, EnvFiles, readTextFile
from pycm.services.tomllines import KeyPath, keyLines, lineOf
from pycm.units import MAX_STOP_TIMEOUT, MIN_MEMORY, parseDuration, parseMemory

#: The largest services file read, in bytes.
MAX_SERVICES_FILE = 1024 * 1024

#: What C{depends_on} may wait for.
CONDITIONS = ("started", "healthy", "completed_successfully")

#: The prefix of the labels pycm sets itself (a file may not).
RESERVED_LABELS = RESERVED_LABEL_PREFIX


class ServicesFileError(BadRequest):
    """A services file cannot be read or is wrong: C{FILE:LINE: why}."""


def projectFromDirectory(directory: str, option: str = "--project") -> str:
    """
    The project name of a services file in C{directory}: its last part,
    each character the container naming rule refuses made C{-}, leading
    C{-}, C{_} and C{.} dropped, cut to 128 characters.

    @param option: the option that names a project instead, as the asker
        spells it (the client's C{--project}, the daemon's
        C{--services-project}).
    @raise BadRequest: if nothing of two characters or more is left (the
        root directory, a name of symbols): C{option NAME} is needed.
    """
    base = os.path.basename(os.path.normpath(os.path.abspath(directory)))
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", base).lstrip("-_.")[:128]
    try:
        return validateName(name)
    except InvalidName:
        raise BadRequest(
            f"the directory {base or '/'!r} makes no project name "
            "(2 to 128 letters, digits, '_', '.' or '-', a letter or digit first): "
            f"give {option} NAME"
        ) from None


def checkProject(name: str) -> str:
    """C{name} if it is a valid project name (the container naming rule)."""
    try:
        return validateName(name)
    except InvalidName:
        raise BadRequest(
            f"invalid project name {name!r}: 2 to 128 characters, a letter or digit "
            "then letters, digits, '_', '.' or '-'"
        ) from None


def loadServicesFile(path: str, project: str | None = None,
                     environ: Mapping[str, str] | None = None,
                     projectOption: str = "--project") -> dict[str, Any]:
    """
    Read the services file at C{path} into the C{apply} DOCUMENT.

    @param project: the project's name (C{--project}); by default the
        file's directory's (L{projectFromDirectory}), once the file is read
        (a missing file is said as such, whatever its directory).
    @param environ: where an env file's bare C{KEY} takes its value
        (C{os.environ} by default).
    @param projectOption: the option that gives C{project}, for the error
        of a directory that makes no project name.
    @raise BadRequest: a L{ServicesFileError} or an
        L{pycm.services.envfile.EnvFileError} saying C{FILE:LINE: why}, or
        a plain one for a bad project name.
    """
    text = readTextFile(path, "services file", MAX_SERVICES_FILE, ServicesFileError)
    name = checkProject(project) if project is not None else projectFromDirectory(
        os.path.dirname(os.path.abspath(path)), projectOption)
    return parseServices(text, path, name, environ)


def parseServices(text: str, path: str, project: str,
                  environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """
    The DOCUMENT of the services file text C{text}; C{path} names it in
    errors and is where C{env_file} paths are relative to.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ServicesFileError(_syntaxError(path, e)) from None
    return _Reader(path, keyLines(text), environ).document(data, project)


def _syntaxError(path: str, error: tomllib.TOMLDecodeError) -> str:
    """C{FILE:LINE:COLUMN: why} for a TOML syntax error."""
    line, column = getattr(error, "lineno", None), getattr(error, "colno", None)
    reason = getattr(error, "msg", None) or str(error)
    # Before Python 3.14 the place is only in the message's end.
    match = re.fullmatch(r"(.*) \(at line (\d+), column (\d+)\)", reason, re.DOTALL)
    if match is not None:
        reason, line, column = match.group(1), int(match.group(2)), int(match.group(3))
    if line is None:
        return f"{printable(path)}: {reason}"
    return f"{printable(path)}:{line}:{column}: {reason}"


_TYPE_NAMES = ((bool, "a boolean"), (int, "an integer"), (float, "a float"),
               (str, "a string"), (list, "an array"), (dict, "a table"))  # fmt: skip


def _typeName(value: object) -> str:
    for kind, name in _TYPE_NAMES:
        if isinstance(value, kind):
            return name
    return "a date or time"


def _table(path: KeyPath) -> str:
    """C{[services.web]} for the path C{("services", "web")}."""
    if not path:
        return "the top level"
    return "[" + ".".join(str(part) for part in path) + "]"


def _reason(error: BadRequest) -> str:
    """A core parser's message without its C{bad --option 'value': } start."""
    return re.sub(r"\Abad (?:--)?[a-z-]+ .*?: (?=expected|only|it )", "", error.message)


def _isNumber(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) \
        and math.isfinite(value)


class _Reader:
    """Checks one parsed services file and builds its DOCUMENT."""

    def __init__(self, path: str, lines: dict[KeyPath, int],
                 environ: Mapping[str, str] | None) -> None:
        self.path = path
        self.lines = lines
        self.envReader = EnvFiles(environ)

    def error(self, where: KeyPath, message: str) -> ServicesFileError:
        line = lineOf(self.lines, where)
        prefix = printable(self.path) + (f":{line}" if line is not None else "")
        return ServicesFileError(f"{prefix}: {message}")

    def unknownKeys(self, table: Mapping[str, Any], where: KeyPath,
                    known: Mapping[str, object]) -> None:
        for key in table:
            if key not in known:
                raise self.error((*where, key), f"unknown key {_quote(key)} in {_table(where)}"
                                 + f" (known: {', '.join(known)})")

    def bad(self, where: KeyPath, message: str) -> ServicesFileError:
        """C{"KEY" in [TABLE] MESSAGE}, at C{where}'s line."""
        return self.error(where, f"{_quote(str(where[-1]))} in {_table(where[:-1])} "
                          f"{message}")

    def document(self, data: dict[str, Any], project: str) -> dict[str, Any]:
        self.unknownKeys(data, (), {"services": None})
        services = data.get("services")
        if services is None or services == {}:
            raise self.error(("services",), "no services: expected a [services.NAME] table")
        if not isinstance(services, dict):
            raise self.bad(("services",), f"must be a table of services, not "
                           f"{_typeName(services)}")
        result = {}
        for name, service in services.items():
            where = ("services", name)
            try:
                validateName(name)
            except InvalidName as e:
                raise self.error(where, e.message.replace("container name", "service name")
                                 ) from None
            if not isinstance(service, dict):
                raise self.bad(where, f"must be a table ([services.{name}]), not "
                               f"{_typeName(service)}")
            result[name] = self.service(service, where, set(services))
        return {"project": project, "services": result}

    def service(self, service: dict[str, Any], where: KeyPath,
                names: set[str]) -> dict[str, Any]:
        self.unknownKeys(service, where, SERVICE_KEYS)
        result: dict[str, Any] = {}
        for key, value in service.items():
            if key == "env_file":
                continue
            if key == "depends_on":
                result[key] = self.dependsOn(value, (*where, key), names)
            else:
                result[key] = SERVICE_KEYS[key](self, value, (*where, key))
        if "env_file" in service:
            env = self.envFiles(service["env_file"], (*where, "env_file"))
            env.update(result.get("env", {}))
            result["env"] = env
        return result

    def envFiles(self, value: Any, where: KeyPath) -> dict[str, str]:
        paths = [value] if isinstance(value, str) else value
        if not isinstance(paths, list) or not all(
                isinstance(item, str) and item for item in paths):
            raise self.bad(where, "must be a path or an array of paths")
        base = os.path.dirname(self.path)
        env: dict[str, str] = {}
        for item in paths:
            try:
                env.update(self.envReader.read(os.path.join(base, item)))
            except EnvFileError as e:
                raise self.error(where, f"in env_file of {_table(where[:-1])}: {e.message}"
                                 ) from None
        return env

    def dependsOn(self, value: Any, where: KeyPath, names: set[str]) -> Any:
        if isinstance(value, list):
            pairs = [((*where, index), item, "started") for index, item in enumerate(value)]
        elif isinstance(value, dict):
            pairs = [((*where, key), key, condition) for key, condition in value.items()]
        else:
            raise self.bad(where, "must be a table (db = \"healthy\") or an array of "
                           f"service names, not {_typeName(value)}")
        for at, dependency, condition in pairs:
            if not isinstance(dependency, str):
                raise self.bad(where, "must list service names (strings)")
            if dependency not in names:
                raise self.error(at, f"{_table(where[:-1])} depends on {_quote(dependency)},"
                                 " which is not a service of this file")
            if condition not in CONDITIONS:
                raise self.error(at, f"bad condition {condition!r} for {_quote(dependency)} "
                                 f"in {_table(where)}: expected " + ", ".join(CONDITIONS))
        return value

    def healthcheck(self, value: Any, where: KeyPath) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.bad(where, f"must be a table, not {_typeName(value)}")
        self.unknownKeys(value, where, HEALTHCHECK_KEYS)
        result = {key: HEALTHCHECK_KEYS[key](self, item, (*where, key))
                  for key, item in value.items()}
        if result.pop("disable", False):
            if result:
                raise self.error(where, f"{_table(where)} has disable = true: it takes no "
                                 "other key (" + ", ".join(result) + ")")
            return {"disable": True}
        if "cmd" not in result:
            raise self.error(where, f"{_table(where)} needs cmd (or disable = true)")
        return result

    def string(self, value: Any, where: KeyPath) -> str:
        if not isinstance(value, str):
            raise self.bad(where, f"must be a string, not {_typeName(value)}")
        if not value.strip() or "\0" in value:
            raise self.bad(where, "must not be empty" if "\0" not in value
                           else "must not hold a NUL character")
        return value

    def command(self, value: Any, where: KeyPath) -> list[str]:
        if not isinstance(value, list) or not value or not all(
                isinstance(word, str) for word in value):
            raise self.bad(where, 'must be a non-empty array of strings, such as '
                           '["my-web", "--port", "8000"]')
        if any("\0" in word for word in value):
            raise self.bad(where, "must not hold a NUL character")
        return value

    def mapping(self, value: Any, where: KeyPath) -> dict[str, str]:
        """A table of strings (integers are written as text)."""
        if not isinstance(value, dict):
            raise self.bad(where, f"must be a table (KEY = \"VALUE\"), not {_typeName(value)}")
        result = {}
        for key, item in value.items():
            at = (*where, key)
            if isinstance(item, int) and not isinstance(item, bool):
                item = str(item)
            if not isinstance(item, str):
                raise self.bad(at, f"must be a string, not {_typeName(item)}")
            if not key or "=" in key or "\0" in key or "\0" in item:
                raise self.error(at, f"bad key {_quote(key)} in {_table(where)}: it must "
                                 "not be empty or hold '=' or a NUL character")
            if where[-1] == "labels" and key.startswith(RESERVED_LABELS):
                raise self.error(at, f"label {_quote(key)}: labels starting "
                                 f"{RESERVED_LABELS} are pycm's own")
            result[key] = item
        return result

    def restart(self, value: Any, where: KeyPath) -> str:
        return self.parsed(self.string(value, where), where, RestartPolicy.parse)

    def stopSignal(self, value: Any, where: KeyPath) -> str:
        return self.parsed(self.string(value, where), where, parseSignal)

    def parsed(self, value: str, where: KeyPath, parse: Callable[[str], object]) -> str:
        try:
            parse(value)
        except BadRequest as e:
            raise self.bad(where, f"is wrong: {_reason(e)}") from None
        return value

    def memory(self, value: Any, where: KeyPath) -> str | int:
        if isinstance(value, str):
            return self.parsed(value, where, parseMemory)
        if isinstance(value, int) and not isinstance(value, bool) and value >= MIN_MEMORY:
            return value
        raise self.bad(where, 'must be a size ("512m", "1g") or a number of bytes, at least 6m')

    def positive(self, value: Any, where: KeyPath) -> int | float:
        if not _isNumber(value) or value <= 0:
            raise self.bad(where, "must be a positive number")
        return value  # type: ignore[no-any-return]

    def count(self, value: Any, where: KeyPath, least: int = 0) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise self.bad(where, f"must be a whole number, {least} or more")
        return value

    def replicas(self, value: Any, where: KeyPath) -> int:
        count = self.count(value, where)
        if count >= REPLICAS_LIMIT:
            raise self.bad(where, f"must be a whole number from 0 to {REPLICAS_LIMIT - 1:,}")
        return count

    def user(self, value: Any, where: KeyPath) -> str:
        """C{USER} or C{USER:GROUP}, names or numbers, as C{run --user} takes them."""
        text = self.string(value, where)
        user, sep, group = text.partition(":")
        if not USER_PATTERN.fullmatch(user) or (sep and not USER_PATTERN.fullmatch(group)):
            raise self.bad(where, 'must be "USER" or "USER:GROUP" (names or numbers, such '
                           'as "postgres" or "1000:1000")')
        return text

    def workdir(self, value: Any, where: KeyPath) -> str:
        text = self.string(value, where)
        if not text.startswith("/"):
            raise self.bad(where, "must be an absolute path (starting with /)")
        return text

    def cpus(self, value: Any, where: KeyPath) -> int | float:
        number = self.positive(value, where)
        if number < MIN_CPUS:
            raise self.bad(where, f"must be at least {MIN_CPUS} (a hundredth of a CPU)")
        return number

    def stopTimeout(self, value: Any, where: KeyPath) -> int | float:
        if not _isNumber(value) or not 0 <= value <= MAX_STOP_TIMEOUT:
            raise self.bad(where, f"must be a number of seconds from 0 to "
                           f"{MAX_STOP_TIMEOUT:g} (an hour)")
        return value  # type: ignore[no-any-return]

    def retries(self, value: Any, where: KeyPath) -> int:
        return self.count(value, where, 1)

    def duration(self, value: Any, where: KeyPath) -> str | int | float:
        least = 0 if where[-1] == "start_period" else 0.001
        if isinstance(value, str):
            try:
                seconds = parseDuration(value, str(where[-1]))
            except BadRequest:
                seconds = -1
        elif _isNumber(value):
            seconds = value
        else:
            seconds = -1
        if _isNumber(seconds) and seconds >= 1e9:
            raise self.bad(where, "must be under 1e9 seconds (31 years)")
        if not least <= seconds < 1e9:
            raise self.bad(where, 'must be a duration ("500ms", "10s", "1m", "1h30m") or a '
                           "number of seconds" + (", more than 0" if least else ""))
        return value  # type: ignore[no-any-return]

    def onFailure(self, value: Any, where: KeyPath) -> str:
        choices = ("none", "restart", "stop", "kill")
        if value not in choices:
            raise self.bad(where, "must be one of " + ", ".join(choices))
        return value  # type: ignore[no-any-return]

    def boolean(self, value: Any, where: KeyPath) -> bool:
        if not isinstance(value, bool):
            raise self.bad(where, f"must be true or false, not {_typeName(value)}")
        return value


def _quote(key: str) -> str:
    """
    A key or name from the file as the errors show it: in double quotes,
    C{\\} and C{"} escaped, and each control character written out
    (L{printable}: C{\\x1b}), so that no error can act on a terminal.
    """
    return '"' + printable(key.replace("\\", "\\\\").replace('"', '\\"')) + '"'


_Check = Callable[[_Reader, Any, KeyPath], Any]

#: A service's keys, in the order the README lists them, and how each is checked
#: (C{depends_on} and C{env_file} are read apart: they look beyond the table).
SERVICE_KEYS: dict[str, _Check] = {
    "image": _Reader.string,
    "command": _Reader.command,
    "user": _Reader.user,
    "env": _Reader.mapping,
    "env_file": _Reader.string,
    "labels": _Reader.mapping,
    "restart": _Reader.restart,
    "memory": _Reader.memory,
    "cpus": _Reader.cpus,
    "workdir": _Reader.workdir,
    "stop_signal": _Reader.stopSignal,
    "stop_timeout": _Reader.stopTimeout,
    "healthcheck": _Reader.healthcheck,
    "depends_on": _Reader.string,
    "replicas": _Reader.replicas,
}

#: A C{healthcheck} table's keys, and how each is checked.
HEALTHCHECK_KEYS: dict[str, _Check] = {
    "cmd": _Reader.string,
    "interval": _Reader.duration,
    "timeout": _Reader.duration,
    "retries": _Reader.retries,
    "start_period": _Reader.duration,
    "on_failure": _Reader.onFailure,
    "disable": _Reader.boolean,
}
