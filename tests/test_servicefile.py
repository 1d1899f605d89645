"""
Tests for L{pycm.services.servicefile} (a services file read into the
C{apply} DOCUMENT, every mistake as C{FILE:LINE: why}) and
L{pycm.services.tomllines} (where each key is written).
"""

from __future__ import annotations

import json
import os
import textwrap

from twisted.trial.unittest import SynchronousTestCase

from pycm.errors import BadRequest
from pycm.services.envfile import MAX_ENV_FILES, EnvFileError
from pycm.services.servicefile import (
    HEALTHCHECK_KEYS,
    SERVICE_KEYS,
    ServicesFileError,
    checkProject,
    loadServicesFile,
    parseServices,
    projectFromDirectory,
)
from pycm.services.tomllines import keyLines, lineOf
from tests.envreads import countReads

#: The issue's example, every key of a service and of a health check.
EXAMPLE = """\
[services.db]
image = "host"                       # optional, the backend's default image otherwise
command = ["sh", "-c", "exec my-db --port 5432"]
user = "postgres"
env = { PGDATA = "/var/lib/db" }
env_file = "db.env"                  # relative to the services file
labels = { tier = "data" }
restart = "always"
memory = "512m"
cpus = 1.5
workdir = "/var/lib/db"
stop_signal = "SIGINT"
stop_timeout = 30
[services.db.healthcheck]
cmd = "pg_isready -q"
interval = "2s"
timeout = 1
retries = 5
start_period = "5s"
on_failure = "restart"

[services.web]
command = ["my-web", "--port", "8000"]
depends_on = { db = "healthy" }      # started | healthy | completed_successfully
replicas = 3                         # only where the backend scales (swarm)
"""


def parse(text: str, project: str = "proj") -> dict:
    return parseServices(textwrap.dedent(text), "dir/services.toml", project, {})


class LoadTests(SynchronousTestCase):
    """A whole services file, read from disk."""

    def setUp(self) -> None:
        self.directory = os.path.join(self.mktemp(), "shop")
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, "services.toml")

    def write(self, name: str, text: str) -> str:
        path = os.path.join(self.directory, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def test_example(self) -> None:
        """
        The issue's example becomes the DOCUMENT: every key as written
        (JSON-ready), the env file merged under C{env}, the project the
        directory's name.
        """
        self.write("services.toml", EXAMPLE)
        self.write("db.env", "PGDATA=/from/file\nPGUSER=pg\n")
        document = loadServicesFile(self.path, environ={})
        self.assertEqual(document, {
            "project": "shop",
            "services": {
                "db": {
                    "image": "host",
                    "command": ["sh", "-c", "exec my-db --port 5432"],
                    "user": "postgres",
                    "env": {"PGDATA": "/var/lib/db", "PGUSER": "pg"},
                    "labels": {"tier": "data"},
                    "restart": "always",
                    "memory": "512m",
                    "cpus": 1.5,
                    "workdir": "/var/lib/db",
                    "stop_signal": "SIGINT",
                    "stop_timeout": 30,
                    "healthcheck": {"cmd": "pg_isready -q", "interval": "2s", "timeout": 1,
                                    "retries": 5, "start_period": "5s",
                                    "on_failure": "restart"},
                },
                "web": {
                    "command": ["my-web", "--port", "8000"],
                    "depends_on": {"db": "healthy"},
                    "replicas": 3,
                },
            },
        })
        self.assertEqual(json.loads(json.dumps(document)), document)

    def test_everyKeyKnown(self) -> None:
        """The example uses every key the reader knows (so the test above covers them)."""
        self.assertEqual(set(SERVICE_KEYS) - {"env_file"} - set(
            parse(EXAMPLE.replace('env_file = "db.env"', ""))["services"]["db"])
            - {"depends_on", "replicas"}, set())
        self.assertEqual(set(HEALTHCHECK_KEYS) - {"disable"},
                         {"cmd", "interval", "timeout", "retries", "start_period",
                          "on_failure"})

    def test_envFilePrecedence(self) -> None:
        """
        Env files are read relative to the services file's directory (not
        the working directory), a later one wins over an earlier, and
        C{env} wins over them all; the path is not in the DOCUMENT.
        """
        os.mkdir(os.path.join(self.directory, "env"))
        self.write("env/a.env", "A=a\nB=a\nC=a\n")
        self.write("env/b.env", "B=b\nC=b\nHOME\n")
        self.write("services.toml", textwrap.dedent("""\
            [services.web]
            env_file = ["env/a.env", "env/b.env"]
            env = { C = "env" }
        """))
        document = loadServicesFile(self.path, environ={"HOME": "/home/me"})
        web = document["services"]["web"]
        self.assertEqual(web, {"env": {"A": "a", "B": "b", "C": "env", "HOME": "/home/me"}})

    def test_envFileAlone(self) -> None:
        """An env file alone makes the C{env} of the service."""
        self.write("web.env", "A=1\n")
        self.write("services.toml", '[services.web]\nenv_file = "web.env"\n')
        self.assertEqual(loadServicesFile(self.path)["services"]["web"], {"env": {"A": "1"}})

    def test_envFileErrors(self) -> None:
        """
        A missing or wrong env file is an error at the C{env_file} line,
        saying the env file's own name (and line).
        """
        self.write("services.toml", '[services.web]\nimage = "x"\nenv_file = "web.env"\n')
        error = self.assertRaises(ServicesFileError, loadServicesFile, self.path)
        self.assertTrue(str(error).startswith(f"{self.path}:3: in env_file of [services.web]: "
                                              f"{self.directory}/web.env: cannot read"),
                        str(error))
        self.write("web.env", "A=1\nnot valid\n")
        error = self.assertRaises(ServicesFileError, loadServicesFile, self.path)
        self.assertIn(f"{self.directory}/web.env:2: not a KEY=VALUE line", str(error))
        self.assertNotIn("not valid", str(error))

    def test_envFileNamedOften(self) -> None:
        """
        An env file named many times is read once; the env files of one
        services file come to L{MAX_ENV_FILES} bytes at most, each counted
        every time it is named: more is refused at the env_file line.
        """
        reads = countReads(self)
        self.write("small.env", "A=1\n")
        self.write("services.toml", '[services.web]\nenv_file = ['
                   + ", ".join(['"small.env"'] * 1000) + "]\n")
        self.assertEqual(loadServicesFile(self.path)["services"]["web"], {"env": {"A": "1"}})
        self.assertEqual(reads, [f"{self.directory}/small.env"])
        self.write("big.env", "#" * (MAX_ENV_FILES // 2) + "\nB=2\n")
        self.write("services.toml", '[services.web]\nimage = "x"\n'
                   'env_file = ["big.env", "small.env", "big.env", "big.env"]\n')
        error = self.assertRaises(ServicesFileError, loadServicesFile, self.path)
        self.assertEqual(str(error), f"{self.path}:3: in env_file of [services.web]: "
                         f"{self.directory}/big.env: too much to read: the environment "
                         f"files named come to over {MAX_ENV_FILES:,} bytes, each counted "
                         "every time it is named (a request carries 64 KiB at most)")

    def test_projectGiven(self) -> None:
        """A given project wins over the directory's name; a bad one is refused."""
        self.write("services.toml", '[services.web]\nimage = "x"\n')
        self.assertEqual(loadServicesFile(self.path, "other")["project"], "other")
        error = self.assertRaises(BadRequest, loadServicesFile, self.path, "no good")
        self.assertIn("invalid project name 'no good'", str(error))

    def test_notAFile(self) -> None:
        """A services file that is missing or a directory: a clear error naming it."""
        error = self.assertRaises(ServicesFileError, loadServicesFile, self.path)
        self.assertIn(f"{self.path}: cannot read the services file", str(error))
        error = self.assertRaises(ServicesFileError, loadServicesFile, self.directory)
        self.assertIn("not a regular file", str(error))

    def test_missingBeforeProject(self) -> None:
        """
        A missing file is said to be missing even where its directory
        makes no project name (the root, C{a/}); an existing one there asks
        for the option the caller names (C{--project} by default).
        """
        for path in ("/nonexistent-pycm-services.toml",
                     os.path.join(self.directory, "a", "services.toml")):
            error = self.assertRaises(ServicesFileError, loadServicesFile, path)
            self.assertIn(f"{path}: cannot read the services file", str(error))
        os.mkdir(os.path.join(self.directory, "a"))
        path = os.path.join(self.directory, "a", "services.toml")
        with open(path, "w") as f:
            f.write("[services.web]\n")
        error = self.assertRaises(BadRequest, loadServicesFile, path)
        self.assertIn("give --project NAME", str(error))
        error = self.assertRaises(BadRequest, loadServicesFile, path,
                                  projectOption="--services-project")
        self.assertIn("give --services-project NAME", str(error))


class ProjectNameTests(SynchronousTestCase):
    """The project's name from the services file's directory."""

    def test_plain(self) -> None:
        """A directory name that follows the naming rule is the project's name."""
        self.assertEqual(projectFromDirectory("/srv/shop-2.0_x"), "shop-2.0_x")
        self.assertEqual(projectFromDirectory("/srv/Shop/"), "Shop")

    def test_sanitised(self) -> None:
        """
        Characters the naming rule refuses become C{-}; leading C{-}, C{_}
        and C{.} are dropped; the name is cut to 128 characters.
        """
        self.assertEqual(projectFromDirectory("/srv/my shop (old)"), "my-shop--old-")
        self.assertEqual(projectFromDirectory("/srv/.hidden"), "hidden")
        self.assertEqual(projectFromDirectory("/srv/café"), "caf-")
        self.assertEqual(projectFromDirectory("/srv/" + "a" * 200), "a" * 128)

    def test_nothingLeft(self) -> None:
        """The root, or a name of symbols, makes no project: --project is needed."""
        for directory in ("/", "/srv/__", "/srv/x", "/srv/.!"):
            error = self.assertRaises(BadRequest, projectFromDirectory, directory)
            self.assertIn("give --project NAME", str(error))

    def test_checkProject(self) -> None:
        """A given name must follow the naming rule."""
        self.assertEqual(checkProject("ab"), "ab")
        self.assertRaises(BadRequest, checkProject, "a")


class MistakeTests(SynchronousTestCase):
    """Every mistake is C{FILE:LINE: why}."""

    def assertMistake(self, text: str, expected: str) -> None:
        error = self.assertRaises(ServicesFileError, parse, text)
        self.assertEqual(str(error), "dir/services.toml:" + expected)

    def test_unknownServiceKey(self) -> None:
        """An unknown key of a service names itself, its table and its line."""
        error = self.assertRaises(ServicesFileError, parse, """\
            [services.web]
            image = "x"

            imag = "y"
        """)
        self.assertTrue(str(error).startswith(
            'dir/services.toml:4: unknown key "imag" in [services.web] (known: image, '))

    def test_unknownTopLevel(self) -> None:
        """An unknown key at the top, or a table of that name."""
        self.assertMistake('version = 3\n[services.web]\nimage = "x"\n',
                           '1: unknown key "version" in the top level (known: services)')
        self.assertMistake('[services.web]\nimage = "x"\n[volumes.data]\n',
                           '3: unknown key "volumes" in the top level (known: services)')

    def test_unknownDotted(self) -> None:
        """An unknown key written as a dotted key is found on its own line."""
        error = self.assertRaises(ServicesFileError, parse, """\
            [services]
            web.image = "x"
            web.healthcheck.cmd = "true"
            web.healthcheck.intervall = "1s"
        """)
        self.assertIn(':4: unknown key "intervall" in [services.web.healthcheck]', str(error))

    def test_unknownInline(self) -> None:
        """An unknown key inside an inline table is found on its line."""
        error = self.assertRaises(ServicesFileError, parse, """\
            [services.web]
            image = "x"
            command = [
              "a",
            ]
            healthcheck = { cmd = "true", retires = 3 }
        """)
        self.assertIn(':6: unknown key "retires" in [services.web.healthcheck]', str(error))

    def test_unknownSubTable(self) -> None:
        """An unknown sub-table of a service is found at its header."""
        error = self.assertRaises(ServicesFileError, parse, """\
            [services.web]
            image = "x"
            # [services.web.ports] in a comment is not it
            s = '''
            [services.web.ports]
            '''
            [services.web.ports]
            http = 80
        """)
        self.assertIn(':4: unknown key "s"', str(error))
        error = self.assertRaises(ServicesFileError, parse, """\
            [services.web]
            image = "x"
            [services.web.ports]
            http = 80
        """)
        self.assertIn(':3: unknown key "ports" in [services.web]', str(error))

    def test_quotedKey(self) -> None:
        """A quoted key is matched by its value, escapes and all."""
        error = self.assertRaises(ServicesFileError, parse, """\
            [services."web"]
            "im\\u0061ge" = "x"
            'bad key' = 1
        """)
        self.assertIn(':3: unknown key "bad key" in [services.web]', str(error))

    def test_wrongTypes(self) -> None:
        """A value of the wrong type names the key, its table, the type and the line."""
        cases = [
            ('image = 3', '"image" in [services.web] must be a string, not an integer'),
            ('command = "my-web"', '"command" in [services.web] must be a non-empty array'),
            ('command = []', '"command" in [services.web] must be a non-empty array'),
            ('command = ["a", 1]', '"command" in [services.web] must be a non-empty array'),
            ('env = ["A=1"]', '"env" in [services.web] must be a table'),
            ('env = { A = true }', '"A" in [services.web.env] must be a string, not a boolean'),
            ('labels = { a = 1.5 }', '"a" in [services.web.labels] must be a string, not a fl'),
            ('cpus = "2"', '"cpus" in [services.web] must be a positive number'),
            ('cpus = inf', '"cpus" in [services.web] must be a positive number'),
            ('cpus = 0', '"cpus" in [services.web] must be a positive number'),
            ('stop_timeout = -1', '"stop_timeout" in [services.web] must be a number of sec'),
            ('replicas = 1.0', '"replicas" in [services.web] must be a whole number, 0 or'),
            ('replicas = true', '"replicas" in [services.web] must be a whole number'),
            ('memory = 0', '"memory" in [services.web] must be a size'),
            ('memory = "lots"', '"memory" in [services.web] is wrong: expected bytes'),
            ('memory = "5m"', '"memory" in [services.web] is wrong: it must be at least 6m'),
            ('memory = 1024', '"memory" in [services.web] must be a size ("512m", "1g") or a'),
            ('restart = "sometimes"', '"restart" in [services.web] is wrong: expected one of'),
            ('stop_signal = "SIGNOPE"', '"stop_signal" in [services.web] is wrong: unknown si'),
            ('user = ""', '"user" in [services.web] must not be empty'),
            ('workdir = 2026-01-01', '"workdir" in [services.web] must be a string, not a da'),
            ('env_file = 3', '"env_file" in [services.web] must be a path or an array'),
            ('depends_on = "db"', '"depends_on" in [services.web] must be a table'),
            ('healthcheck = "true"', '"healthcheck" in [services.web] must be a table'),
        ]
        for line, expected in cases:
            error = self.assertRaises(ServicesFileError, parse,
                                      f'[services.db]\n\n[services.web]\n{line}\n')
            self.assertTrue(str(error).startswith("dir/services.toml:4: " + expected),
                            (line, str(error)))

    def test_daemonLimits(self) -> None:
        """
        What the daemon would refuse of a service on any host is refused
        here, with the line and the key, before anything is sent: a stop
        timeout over an hour, fewer CPUs than a hundredth, a user
        C{--user} does not take, a relative workdir, a billion replicas.
        """
        cases = [
            ('stop_timeout = 7200', '"stop_timeout" in [services.web] must be a number of '
                                    'seconds from 0 to 3600 (an hour)'),
            ('stop_timeout = 1e308', '"stop_timeout" in [services.web] must be a number of '
                                     'seconds from 0 to 3600'),
            ('stop_timeout = nan', '"stop_timeout" in [services.web] must be a number of sec'),
            ('cpus = 0.001', '"cpus" in [services.web] must be at least 0.01'),
            ('user = "no body"', '"user" in [services.web] must be "USER" or "USER:GROUP"'),
            ('user = "a:b:c"', '"user" in [services.web] must be "USER" or "USER:GROUP"'),
            ('workdir = "srv"', '"workdir" in [services.web] must be an absolute path'),
            ('replicas = 1_000_000_000', '"replicas" in [services.web] must be a whole '
                                         'number from 0 to 999,999,999'),
        ]
        for line, expected in cases:
            error = self.assertRaises(ServicesFileError, parse,
                                      f'[services.db]\n\n[services.web]\n{line}\n')
            self.assertTrue(str(error).startswith("dir/services.toml:4: " + expected),
                            (line, str(error)))
        document = parse('[services.web]\nstop_timeout = 3600\ncpus = 0.01\n'
                         'user = "1000:1000"\nworkdir = "/srv"\nreplicas = 999_999_999\n')
        self.assertEqual(document["services"]["web"]["stop_timeout"], 3600)

    def test_healthcheckValues(self) -> None:
        """A health check's durations, retries and on_failure are checked, with lines."""
        cases = [
            ('interval = "2x"', '"interval" in [services.web.healthcheck] must be a duration'),
            ('interval = 0', '"interval" in [services.web.healthcheck] must be a duration'),
            ('interval = "1000000h"', '"interval" in [services.web.healthcheck] must be under '
             '1e9 seconds'),
            ('timeout = "0s"', '"timeout" in [services.web.healthcheck] must be a duration'),
            ('start_period = -1', '"start_period" in [services.web.healthcheck] must be a d'),
            ('retries = 0', '"retries" in [services.web.healthcheck] must be a whole number'),
            ('on_failure = "explode"', '"on_failure" in [services.web.healthcheck] must be '),
            ('disable = "yes"', '"disable" in [services.web.healthcheck] must be true or f'),
        ]
        for line, expected in cases:
            error = self.assertRaises(ServicesFileError, parse,
                                      f'[services.web.healthcheck]\ncmd = "true"\n{line}\n')
            self.assertTrue(str(error).startswith("dir/services.toml:3: " + expected),
                            (line, str(error)))
        self.assertEqual(parse('[services.web.healthcheck]\ncmd = "true"\nstart_period = 0\n'
                               'interval = 0.5\ntimeout = "1m30s"\n')["services"]["web"],
                         {"healthcheck": {"cmd": "true", "start_period": 0, "interval": 0.5,
                                          "timeout": "1m30s"}})

    def test_healthcheckDisable(self) -> None:
        """
        C{disable = true} is C{{"disable": true}} (--no-healthcheck) and
        takes no other key; C{disable = false} is dropped; a check needs C{cmd}.
        """
        self.assertEqual(parse("[services.web]\nhealthcheck = { disable = true }\n")
                         ["services"]["web"], {"healthcheck": {"disable": True}})
        self.assertEqual(parse('[services.web.healthcheck]\ndisable = false\ncmd = "true"\n')
                         ["services"]["web"], {"healthcheck": {"cmd": "true"}})
        self.assertMistake('[services.web.healthcheck]\ndisable = true\ncmd = "true"\n',
                           "1: [services.web.healthcheck] has disable = true: it takes no "
                           "other key (cmd)")
        self.assertMistake('[services.web]\nimage = "x"\n[services.web.healthcheck]\n'
                           'interval = "1s"\n',
                           "3: [services.web.healthcheck] needs cmd (or disable = true)")

    def test_dependsOn(self) -> None:
        """
        C{depends_on} is a table of conditions or an array of names (kept
        as written); an unknown service or condition is an error at its line.
        """
        text = ('[services.db]\n[services.cache]\n[services.web]\n'
                'depends_on = ["db", "cache"]\n[services.api]\n'
                'depends_on = { db = "completed_successfully", cache = "started" }\n')
        services = parse(text)["services"]
        self.assertEqual(services["web"]["depends_on"], ["db", "cache"])
        self.assertEqual(services["api"]["depends_on"],
                         {"db": "completed_successfully", "cache": "started"})
        self.assertMistake('[services.web]\ndepends_on = [\n  "db",\n]\n',
                           '3: [services.web] depends on "db", which is not a service of '
                           "this file")
        self.assertMistake('[services.db]\n[services.web]\ndepends_on = { db = "ready" }\n',
                           "3: bad condition 'ready' for \"db\" in [services.web.depends_on]: "
                           "expected started, healthy, completed_successfully")

    def test_labels(self) -> None:
        """Labels starting C{io.pycm.} are pycm's own: refused; integers become text."""
        self.assertMistake('[services.web]\nlabels = { "io.pycm.project" = "x" }\n',
                           '2: label "io.pycm.project": labels starting io.pycm. are '
                           "pycm's own")
        self.assertEqual(parse("[services.web]\nlabels = { port = 80 }\nenv = { N = 1 }\n")
                         ["services"]["web"], {"labels": {"port": "80"}, "env": {"N": "1"}})

    def test_serviceNames(self) -> None:
        """A service's name follows the container naming rule; a service is a table."""
        error = self.assertRaises(ServicesFileError, parse, '[services.web]\n[services."a b"]\n')
        self.assertTrue(str(error).startswith(
            "dir/services.toml:2: invalid service name 'a b': a name is 2 to 128"))
        self.assertMistake('[services]\nweb = "x"\n', '2: "web" in [services] must be a '
                           "table ([services.web]), not a string")

    def test_controlCharacters(self) -> None:
        """
        A key, a dependency or an env file's path holding control
        characters is shown with them written out (C{\\x1b}), so that no
        error can act on a terminal; the services file's own path too.
        """
        esc = "\\u001b]0;T\\u0007\\u001b[2J"
        shown = "\\x1b]0;T\\x07\\x1b[2J"
        self.assertMistake(f'[services.web]\n"{esc}k" = 1\n',
                           f'2: unknown key "{shown}k" in [services.web] (known: '
                           + ", ".join(SERVICE_KEYS) + ")")
        self.assertMistake(f'[services.web.healthcheck]\ncmd = "true"\n"{esc}" = 1\n',
                           f'3: unknown key "{shown}" in [services.web.healthcheck] (known: '
                           + ", ".join(HEALTHCHECK_KEYS) + ")")
        self.assertMistake(f'[services.web]\ndepends_on = ["{esc}"]\n',
                           f'2: [services.web] depends on "{shown}", which is not a '
                           "service of this file")
        self.assertMistake(f'[services.web]\nenv = {{ "{esc}=" = "1" }}\n',
                           f'2: bad key "{shown}=" in [services.web.env]: it must not be '
                           "empty or hold '=' or a NUL character")
        self.assertMistake(f'[services.web]\nlabels = {{ "{esc}" = 1.5 }}\n',
                           f'2: "{shown}" in [services.web.labels] must be a string, not '
                           "a float")
        self.assertMistake(f'[services.web]\nenv_file = "{esc}"\n',
                           f"2: in env_file of [services.web]: dir/{shown}: cannot read "
                           "the environment file: No such file or directory")
        error = self.assertRaises(ServicesFileError, parseServices, "[services]\n",
                                  "\x1b[2J.toml", "proj")
        self.assertTrue(str(error).startswith("\\x1b[2J.toml:1: no services"), str(error))

    def test_noServices(self) -> None:
        """A file with no service is an error (it would apply nothing)."""
        self.assertMistake("# nothing\n[services]\n",
                           "2: no services: expected a [services.NAME] table")
        error = self.assertRaises(ServicesFileError, parse, "")
        self.assertEqual(str(error),
                         "dir/services.toml: no services: expected a [services.NAME] table")

    def test_syntaxError(self) -> None:
        """TOML's own syntax errors keep their line and column, after the file's name."""
        self.assertMistake('[services.web]\nimage = "x\n',
                           "2:11: Illegal character '\\n'")
        self.assertMistake('[services.web]\nimage = "x"\nimage = "y"\n',
                           "3:12: Cannot overwrite a value")

    def test_errorsAreBadRequests(self) -> None:
        """Every error of a services or env file is a L{BadRequest}."""
        self.assertTrue(issubclass(ServicesFileError, BadRequest))
        self.assertTrue(issubclass(EnvFileError, BadRequest))


class KeyLinesTests(SynchronousTestCase):
    """L{keyLines} finds the line that defines each key."""

    def test_shapes(self) -> None:
        """Headers, dotted keys, inline tables, arrays, arrays of tables, strings."""
        text = textwrap.dedent("""\
            # [not.a.header]
            a = 1
            [t]
            "q.k" = 'x'
            d.e.f = \"\"\"
            multi ''' "" line
            \"\"\"
            [[arr]]
            x = [ 1,
              { y = 2 } ]
            [[arr]]
            z = { w = [ ], v = "]}#" }  # comment
        """)
        lines = keyLines(text)
        self.assertEqual(lines[("a",)], 2)
        self.assertEqual(lines[("t",)], 3)
        self.assertEqual(lines[("t", "q.k")], 4)
        self.assertEqual(lines[("t", "d")], 5)
        self.assertEqual(lines[("t", "d", "e", "f")], 5)
        self.assertEqual(lines[("arr", 0)], 8)
        self.assertEqual(lines[("arr", 0, "x", 1, "y")], 10)
        self.assertEqual(lines[("arr", 1, "z", "v")], 12)
        self.assertNotIn(("not",), lines)

    def test_lineOf(self) -> None:
        """A path without a line of its own takes its nearest table's."""
        lines = keyLines("[a]\nb = 1\n")
        self.assertEqual(lineOf(lines, ("a", "b", "c")), 2)
        self.assertEqual(lineOf(lines, ("a", "x")), 1)
        self.assertIsNone(lineOf(lines, ("z",)))
