"""The command line as a careless or hostile user meets it: every mistake is one line on
stderr and exit status 2, never a traceback; ``--version``; help that describes every
argument.

Each case runs the real command (``python -m impactagent ...``) in a child interpreter that
imports this checkout, against real local servers and real files.
"""

from __future__ import annotations

import errno
import os
import pty
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

import pytest

from impactagent import __version__
from impactagent.cli import bind_problem
from tests.child import ROOT, environment
from tests.loopback import LoopbackHandler, LoopbackServer, refused_url
from tests.scripted_server import ScriptedServer

ADMIN = "*:*.admin-secret"


def impactagent(*args: str, cwd: Path = ROOT, stdin: Optional[bytes] = b"",
                env: Optional[Dict[str, str]] = None, timeout: float = 60
                ) -> subprocess.CompletedProcess:
    """Run the command; ``stdin=None`` runs it with standard input closed."""
    options: Dict[str, Any] = ({"input": stdin} if stdin is not None
                               else {"preexec_fn": lambda: os.close(0)})
    base = environment(env)
    for name in ("UNLEASH_URL", "UNLEASH_API_TOKEN", "UNLEASH_ADMIN_TOKEN"):
        if name not in (env or {}):
            base.pop(name, None)
    ran = subprocess.run([sys.executable, "-m", "impactagent", *args], cwd=cwd, env=base,
                         capture_output=True, timeout=timeout, **options)
    return subprocess.CompletedProcess(ran.args, ran.returncode, ran.stdout.decode(),
                                       ran.stderr.decode())


def assert_mistake(ran: subprocess.CompletedProcess, *words: str) -> str:
    """Exit 2, one line on stderr naming the problem, and no traceback; returns the line."""
    assert "Traceback" not in ran.stderr, ran.stderr
    assert ran.returncode == 2, (ran.returncode, ran.stdout, ran.stderr)
    lines = ran.stderr.splitlines()
    assert len(lines) == 1, ran.stderr
    assert lines[0].startswith("impactagent"), lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


# -- --version and help -----------------------------------------------------------------------


def test_version_prints_the_package_version():
    ran = impactagent("--version")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == f"impactagent {__version__}\n"


OPTIONS = {"demo": ["--requests", "--url", "--token", "--pace"],
           "receive": ["--port", "--host", "--token", "--strict", "--max-body", "--charts",
                       "--features", "--duration"],
           "run": ["--dry-run"],
           "check": ["--max-body"],
           "stats": ["--url", "--token-env", "--format", "--json"],
           "charts": ["--url", "--token-env", "--agent"]}


def described_options(text: str) -> Dict[str, str]:
    """Each option in a help text's options section, with its description on one line."""
    section = text.split("options:\n", 1)[1]
    entries = re.split(r"\n(?=  -)", "\n" + section)
    described = {}
    for entry in filter(str.strip, entries):
        head, _, rest = entry.strip().partition("  ")
        for option in re.findall(r"--[a-z-]+", head):
            described[option] = " ".join(rest.split())
    return described


@pytest.mark.parametrize("command", sorted(OPTIONS))
def test_each_subcommands_help_describes_every_argument_and_its_default(command):
    ran = impactagent(command, "--help")
    assert ran.returncode == 0, ran.stderr
    usage = ran.stdout.split("\n\n", 1)[0]
    in_usage = set(re.findall(r"--[a-z-]+", usage)) - {"--help"}
    assert in_usage == set(OPTIONS[command])  # the list above is the whole list
    described = described_options(ran.stdout)
    for option in OPTIONS[command]:
        assert len(described.get(option, "")) > 20, (command, option, described)
        assert "default" in described[option] or "required" in described[option], (
            command, option, described[option])


def test_check_help_says_what_file_and_dash_are():
    text = " ".join(impactagent("check", "--help").stdout.split())
    assert "FILE" in text and "- reads one from standard input" in text


def test_a_bad_option_is_one_line_pointing_at_help():
    line = assert_mistake(impactagent("demo", "--requests", "abc"), "--requests", "'abc'")
    assert line.endswith("(see 'impactagent demo --help')")
    assert_mistake(impactagent("nosuch"), "invalid choice")
    assert_mistake(impactagent(), "required: COMMAND")


# -- check --------------------------------------------------------------------------------------


def test_check_a_missing_file(tmp_path):
    assert_mistake(impactagent("check", "missing.json", cwd=tmp_path), "missing.json",
                   "no such file")


def test_check_a_directory(tmp_path):
    assert_mistake(impactagent("check", str(tmp_path)), str(tmp_path), "is a directory")


def test_a_missing_file_does_not_cost_the_others_their_verdicts(tmp_path):
    """The mistake is one line on stderr; every readable file still gets its verdict, and the
    exit status is the mistake's."""
    good = tmp_path / "good.json"
    good.write_text("{}")
    later = tmp_path / "later.json"
    later.write_text('{"appName": "shop"}')
    ran = impactagent("check", str(good), "missing.json", str(later), cwd=tmp_path)
    assert_mistake(ran, "missing.json")
    assert ran.stdout.splitlines()[0] == f"{good}: a real server answers 400 and stores nothing"
    assert f"{later}: a real server stores all of it" in ran.stdout.splitlines()


def test_a_body_nested_2000_deep_gets_a_verdict_and_the_next_file_too(tmp_path):
    """The server takes it (JSON.parse has no depth limit); check ended in a traceback and the
    files after it lost their verdicts."""
    deep = tmp_path / "deep.json"
    deep.write_bytes(b'{"appName": "shop", "x": ' + b"[" * 2000 + b"]" * 2000 + b"}")
    huge = tmp_path / "huge.json"
    huge.write_bytes(b'{"appName": "shop", "x": ' + b"9" * 5000 + b"}")
    ran = impactagent("check", str(deep), str(huge), "-",
                      stdin=b'{"appName": "shop", "x": "\\ud800"}')
    assert "Traceback" not in ran.stderr and ran.returncode == 0, ran.stderr
    verdicts = [line for line in ran.stdout.splitlines() if not line.startswith(" ")]
    assert verdicts == [f"{deep}: a real server stores all of it",
                        f"{huge}: a real server stores all of it",
                        "-: a real server stores all of it"]


def test_check_a_path_through_a_file(tmp_path):
    (tmp_path / "body.json").write_text("{}")
    assert_mistake(impactagent("check", "body.json/x", cwd=tmp_path), "body.json/x",
                   "cannot be read")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_check_an_unreadable_file(tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text("{}")
    secret.chmod(0)
    assert_mistake(impactagent("check", str(secret)), "permission denied")


def test_check_stdin_twice_and_closed_stdin():
    assert_mistake(impactagent("check", "-", "-"), "more than once")
    assert_mistake(impactagent("check", "-", stdin=None), "standard input")


def test_check_stdin_from_a_terminal_says_so_instead_of_waiting():
    primary, secondary = pty.openpty()
    try:
        ran = subprocess.run([sys.executable, "-m", "impactagent", "check", "-"], cwd=ROOT,
                             env=environment(), stdin=secondary, capture_output=True,
                             text=True, timeout=60)
    finally:
        os.close(primary)
        os.close(secondary)
    assert_mistake(ran, "terminal", "pipe")


def test_check_garbage_on_stdin_is_a_verdict_not_a_mistake():
    ran = impactagent("check", "-", stdin=b"\xff\xfe<html>")
    assert ran.returncode == 1 and "Traceback" not in ran.stderr
    assert ran.stdout.startswith("-: a real server answers 400")


def test_check_max_body_must_be_positive():
    assert_mistake(impactagent("check", "--max-body", "-5", "-"), "--max-body", "'-5'")


# -- receive ------------------------------------------------------------------------------------


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_receive_on_a_busy_port(busy_port):
    assert_mistake(impactagent("receive", "--port", str(busy_port), "--duration", "0"),
                   f"127.0.0.1:{busy_port}", "in use", "--port")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may listen on any port")
def test_receive_on_a_privileged_port():
    assert_mistake(impactagent("receive", "--port", "80", "--duration", "0"),
                   "permission denied", "1024")


def test_a_refused_bind_is_explained():
    # What the kernel answers a non-root bind below 1024 (the test above, when not root).
    line = bind_problem(PermissionError(errno.EACCES, "Permission denied"), "0.0.0.0", 80)
    assert "permission denied" in line and "--port 1024" in line


@pytest.mark.parametrize("port", ["abc", "-1", "65536", "99999"])
def test_receive_a_bad_port(port):
    assert_mistake(impactagent("receive", "--port", port), "--port", repr(port))


@pytest.mark.parametrize(("host", "words"), [("nosuch.invalid", ["resolve", "--host"]),
                                             ("192.0.2.1", ["not an address of this machine"])])
def test_receive_a_bad_host(host, words):
    assert_mistake(impactagent("receive", "--host", host, "--port", "0", "--duration", "0"),
                   host, *words)


@pytest.mark.parametrize("option", ["--duration", "--max-body"])
def test_receive_negative_numbers(option):
    assert_mistake(impactagent("receive", option, "-1"), option)


# -- stats and charts against servers that are not what --url says -----------------------------


class FixedAnswer(LoopbackServer):
    """Answers every request with one status, body and content type."""

    def __init__(self, status: int, body: bytes, content_type: str) -> None:
        self.fixed = (status, body, content_type)
        super().__init__()

    @property
    def handler_class(self) -> type:  # type: ignore[override]
        class Handler(LoopbackHandler):
            def do_GET(self) -> None:
                status, body, content_type = self.server_ref.fixed  # type: ignore[attr-defined]
                self.answer(status, body, content_type=content_type)

            do_POST = do_GET

        return Handler


ANSWERS = {
    "401": (401, b'{"message": "authentication required"}', "application/json", ["401", "$"]),
    "500 html": (500, b"<html>\n<body>\n<h1>Internal error</h1>\n</body>\n</html>", "text/html",
                 ["500"]),
    "200 html": (200, b"<!doctype html>\n<html><body>Unleash</body></html>", "text/html",
                 ["not the Unleash admin API"]),
    "200 garbage": (200, b"\x00\xffgarbage", "application/octet-stream",
                    ["not the Unleash admin API"]),
    "404": (404, b"Not Found", "text/plain", ["404", "--url"]),
}


@pytest.fixture
def shop_module(tmp_path) -> Path:
    (tmp_path / "shop_metrics.py").write_text(textwrap.dedent("""
        import impactagent
        from impactagent import Chart

        agent = impactagent.Agent("shop")
        agent.counter("checkout_total", "Checkouts", chart=Chart(aggregation="rps"))
        not_an_agent = 42
    """))
    return tmp_path


def admin(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return impactagent(*args, cwd=cwd, env={"UNLEASH_ADMIN_TOKEN": ADMIN})


@pytest.mark.parametrize("answer", sorted(ANSWERS))
def test_stats_and_charts_against_a_server_that_answers(answer, shop_module):
    status, body, content_type, words = ANSWERS[answer]
    with FixedAnswer(status, body, content_type) as server:
        for ran in (admin("stats", "--url", server.url),
                    admin("charts", "plan", "--url", server.url, "--agent",
                          "shop_metrics:agent", cwd=shop_module)):
            line = assert_mistake(ran, *words)
            assert ADMIN not in line and ADMIN not in ran.stdout


def test_stats_answered_with_json_that_is_not_an_object():
    with FixedAnswer(200, b"[]", "application/json") as server:
        assert_mistake(admin("stats", "--url", server.url), "not a JSON object")


def test_stats_and_charts_against_a_closed_port(shop_module):
    url = refused_url()
    assert_mistake(admin("stats", "--url", url), url, "connection refused")
    assert_mistake(admin("charts", "apply", "--url", url, "--agent", "shop_metrics:agent",
                         cwd=shop_module), url, "connection refused")


def test_stats_with_a_url_that_is_not_http():
    assert_mistake(admin("stats", "--url", "localhost:4242"), "http(s) URL")


def test_stats_without_url_or_token():
    assert_mistake(impactagent("stats"), "--url", "$UNLEASH_URL")
    assert_mistake(impactagent("stats", "--url", "http://127.0.0.1:1"), "$UNLEASH_ADMIN_TOKEN")


class EchoGateway(LoopbackServer):
    """A gateway that answers ``status`` and echoes the request's path and headers back, in
    the body, as debugging proxies do (the ``Authorization`` header among them)."""

    def __init__(self, status: int, content_type: str = "text/plain") -> None:
        self.status, self.content_type = status, content_type
        self.paths: list = []
        super().__init__()

    @property
    def handler_class(self) -> type:  # type: ignore[override]
        class Handler(LoopbackHandler):
            def do_GET(self) -> None:
                owner = self.server_ref  # type: ignore[attr-defined]
                owner.paths.append(self.path)
                echoed = "".join(f"{name}: {value}\n" for name, value in self.headers.items())
                if owner.content_type == "text/csv":  # a "CSV" whose one value is the echo
                    body = '"instanceId","echo","sum"\n"i",' + json_text(echoed) + ',"x"\n'
                elif owner.content_type == "application/json":
                    body = json_text({"instanceId": echoed, "sum": "x"})
                else:
                    body = f"502 Bad Gateway\n{self.command} {self.path}\n{echoed}"
                self.answer(owner.status, body.encode(), content_type=owner.content_type)

        return Handler


def json_text(value: Any) -> str:
    import json

    return json.dumps(value)


@pytest.mark.parametrize("form", ["text", "json", "csv"])
def test_stats_never_prints_the_token_a_gateway_echoes(form):
    """A 502 page that echoes the request's headers: neither the token nor its secret part
    is printed, in any output form."""
    with EchoGateway(502) as gateway:
        ran = admin("stats", "--url", gateway.url, "--format", form)
    line = assert_mistake(ran, "HTTP 502", "Authorization: [REDACTED]")
    assert gateway.paths[0].startswith("/api/admin/instance-admin/statistics")
    for secret in (ADMIN, ADMIN.split(".", 1)[1]):
        assert secret not in ran.stdout + ran.stderr, (secret, line)


def test_stats_with_a_password_in_the_url_shows_it_redacted_and_sends_nothing():
    """requests would send the URL's user and password as Basic credentials in place of the
    admin token: the command says so, with the password redacted, before asking anything."""
    with EchoGateway(502) as gateway:
        url = gateway.url.replace("http://", "http://ops:hunter2-pass@")
        ran = admin("stats", "--url", url)
    line = assert_mistake(ran, "user name or password", f"the url {gateway.url} has")
    assert "hunter2-pass" not in ran.stdout + ran.stderr, line
    assert gateway.paths == []


@pytest.mark.parametrize("form", ["json", "csv"])
def test_stats_never_prints_the_token_a_server_answers_with(form):
    content_type = "text/csv" if form == "csv" else "application/json"
    with EchoGateway(200, content_type) as gateway:
        ran = admin("stats", "--url", gateway.url, "--format", form)
    assert ran.returncode == 1, ran.stdout + ran.stderr  # "x" is no checksum of this
    assert "[REDACTED]" in ran.stdout
    assert ADMIN not in ran.stdout + ran.stderr
    assert ADMIN.split(".", 1)[1] not in ran.stdout + ran.stderr


def test_stats_csv_prints_the_servers_csv_and_checks_its_checksum():
    from impactagent.admin.client import statistics_checksum

    row = {"instanceId": "i-1", "users": "1", "featureToggles": "3", "projects": "1",
           "roles": "6", "groups": "0", "environments": "2", "segments": "0"}
    header = ",".join(f'"{k}"' for k in [*row, "sum"])
    values = ",".join(f'"{v}"' if k == "instanceId" else v for k, v in row.items())
    body = f'{header}\n{values},"{statistics_checksum(row)}"\n'.encode()
    with FixedAnswer(200, body, "text/csv; charset=utf-8") as server:
        ran = admin("stats", "--url", server.url + "/api/", "--format", "csv")
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout == body.decode()  # as the server wrote it, for a program to read
        assert ran.stderr == f"checksum        ok ({statistics_checksum(row)})\n"
        tampered = body.replace(b',3,', b',4,')
        server.fixed = (200, tampered, "text/csv")
        ran = admin("stats", "--url", server.url, "--format", "csv")
        assert ran.returncode == 1 and "MISMATCH" in ran.stderr
        server.fixed = (200, b"<html>Unleash</html>", "text/html")
        assert_mistake(admin("stats", "--url", server.url, "--format", "csv"),
                       "not text/csv")


def test_stats_takes_a_token_copied_with_a_line_break_and_refuses_one_broken_inside():
    """A token pasted from a file may end in a line break: taken without it. One with a line
    break inside (or a space) is said so, without showing it, before anything is sent."""
    with EchoGateway(502) as gateway:
        ran = impactagent("stats", "--url", gateway.url,
                          env={"UNLEASH_ADMIN_TOKEN": ADMIN + "\r\n"})
        assert_mistake(ran, "HTTP 502", "Authorization: [REDACTED]")
        for broken in (ADMIN + "\nX-Evil: 1", ADMIN.replace(".", ". ")):
            ran = impactagent("stats", "--url", gateway.url, env={"UNLEASH_ADMIN_TOKEN": broken})
            line = assert_mistake(ran, "$UNLEASH_ADMIN_TOKEN has a space, a line break")
            assert "admin-secret" not in line
        assert len(gateway.paths) == 1


def test_a_404_says_how_the_url_was_read():
    with FixedAnswer(404, b"Not Found", "text/plain") as server:
        line = assert_mistake(admin("stats", "--url", server.url + "/unleash"),
                              "404", f"read as {server.url}/unleash, with its API at /api")
    assert "/unleash/api/admin/instance-admin/statistics" in line


# -- charts --agent -----------------------------------------------------------------------------


@pytest.fixture
def broken_module(shop_module) -> Path:
    (shop_module / "broken_metrics.py").write_text("import json\n\nagent = 1 / 0\n")
    (shop_module / "needs_missing.py").write_text("import nosuch_dependency\n")
    (shop_module / "lazy_metrics.py").write_text(textwrap.dedent("""\
        class ImproperlyConfigured(Exception):
            pass

        class LazySettings:  # as Django's settings before configure()
            def __getattr__(self, name):
                raise ImproperlyConfigured(f"Requested setting {name}, but settings are "
                                           "not configured.\\nCall settings.configure().")

        class Holder:
            @property
            def agent(self):
                raise RuntimeError("no agent before the app starts")

        settings = LazySettings()
        holder = Holder()

        def __getattr__(name):
            raise KeyError(name)
        """))
    return shop_module


@pytest.mark.parametrize(("where", "words"), [
    ("nosuch.mod:agent", ["no module named 'nosuch'", "PYTHONPATH"]),
    ("shop_metrics", ["MODULE:NAME"]),
    ("shop_metrics:", ["MODULE:NAME"]),
    (":agent", ["MODULE:NAME"]),
    (".shop_metrics:agent", ["absolute module name"]),
    ("shop_metrics:nosuch", ["has no 'nosuch'"]),
    ("shop_metrics:not_an_agent", ["is a int, not an impactagent.Agent"]),
    ("broken_metrics:agent", ["ZeroDivisionError", "broken_metrics.py, line 3"]),
    ("needs_missing:agent", ["importing needs_missing failed", "nosuch_dependency"]),
    ("lazy_metrics:settings.AGENT", ["reading settings.AGENT from module lazy_metrics failed",
                                     "ImproperlyConfigured: Requested setting AGENT",
                                     "Call settings.configure()"]),
    ("lazy_metrics:holder.agent", ["reading holder.agent", "RuntimeError: no agent before",
                                   "lazy_metrics.py, line 12"]),
    ("lazy_metrics:agent", ["reading agent from module lazy_metrics failed", "KeyError"]),
])
def test_charts_with_a_bad_agent(broken_module, where, words):
    ran = admin("charts", "plan", "--url", "http://127.0.0.1:1", "--agent", where,
                cwd=broken_module)
    assert_mistake(ran, "--agent", *words)


@pytest.mark.parametrize(("args", "where"), [
    (["demo", "--nope"], "impactagent demo"),
    (["stats", "--jsn"], "impactagent stats"),
    (["charts", "plan", "--agent", "x:y", "--dry-run"], "impactagent charts"),
    (["receive", "--prot", "1"], "impactagent receive"),
    (["--nope", "demo"], "impactagent"),
])
def test_a_mistyped_option_points_at_its_subcommands_help(args, where):
    line = assert_mistake(impactagent(*args), "unrecognized arguments")
    assert line.startswith(f"{where}: ") and line.endswith(f"(see '{where} --help')"), line


def test_the_demos_table_says_in_words_what_did_not_match():
    import io

    from impactagent.devtools.demo import report

    out = io.StringIO()
    code = report([("requests", 2000, 1990), ("checkouts", 500, 510),
                    ("latency observations", 2000, None), ("in-flight gauge (last)", 7, 3),
                    ("events", 83, 0), ("in-flight gauge (last)", 7, 0)],
                   True, [], out)
    lines = out.getvalue().splitlines()
    assert code == 1 and lines[-1] == "counts differ"
    assert lines[1].endswith("MISMATCH: 10 recorded did not arrive")
    assert lines[2].endswith("MISMATCH: 10 more arrived than were recorded (sent twice?)")
    assert lines[3].endswith("MISMATCH: nothing of it arrived")
    assert lines[4].endswith("MISMATCH: the last value set was 7, 3 arrived")
    assert lines[5].endswith("MISMATCH: nothing of it arrived")
    assert lines[6].endswith("MISMATCH: the last value set was 7, 0 arrived")


# -- demo ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("option", "value"), [("--requests", "0"), ("--requests", "-5"),
                                               ("--requests", "abc"), ("--pace", "-1"),
                                               ("--pace", "nan"), ("--pace", "x")])
def test_demo_validates_its_arguments(option, value):
    assert_mistake(impactagent("demo", option, value), option, repr(value))


def test_demo_says_connection_refused_at_once():
    url = refused_url()
    ran = impactagent("demo", "--url", url, "--token", "default:development.x")
    assert_mistake(ran, url, "connection refused")
    assert "requests recorded" not in ran.stdout  # said before any run, not after it


@pytest.mark.parametrize("url", ["localhost:4242/api", "ftp://example.com/api", "http://"])
def test_demo_with_a_url_that_is_not_http(url):
    assert_mistake(impactagent("demo", "--url", url, "--token", "t"), "http(s) URL")


def test_demo_warns_when_a_url_has_no_token():
    with ScriptedServer() as server:
        ran = impactagent("demo", "--requests", "20", "--pace", "0", "--url", server.api_url)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    warnings = [ln for ln in ran.stderr.splitlines() if "without $UNLEASH_API_TOKEN" in ln]
    assert len(warnings) == 1 and "placeholder" in warnings[0]
    assert "all counts accounted for" in ran.stdout


def test_demo_takes_its_token_from_the_environment_and_a_url_without_api():
    token = "default:development.from-the-environment"
    with ScriptedServer(token=token) as server:
        ran = impactagent("demo", "--requests", "20", "--pace", "0", "--url", server.url,
                          env={"UNLEASH_API_TOKEN": token})
        paths = {request.path for request in server.requests}
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "all counts accounted for" in ran.stdout and ran.stderr == ""
    assert paths == {"/api/client/metrics"}
    assert token not in ran.stdout


def test_demo_never_prints_a_password_in_its_url():
    token = "default:development.t"
    with ScriptedServer(token=token) as server:
        url = server.url.replace("http://", "http://ops:hunter2-pass@")
        ran = impactagent("demo", "--requests", "20", "--pace", "0", "--url", url,
                          env={"UNLEASH_API_TOKEN": token})
    assert ran.returncode == 0, ran.stdout + ran.stderr  # the token is sent, not Basic auth
    assert f"simulated requests to {server.api_url}" in ran.stdout
    assert "hunter2-pass" not in ran.stdout + ran.stderr


def test_demo_names_a_refused_token():
    with ScriptedServer(token="default:development.right") as server:
        ran = impactagent("demo", "--requests", "20", "--pace", "0", "--url", server.api_url,
                          "--token", "default:development.wrong")
    assert "Traceback" not in ran.stderr
    assert ran.returncode == 2, ran.stdout + ran.stderr
    last = ran.stderr.splitlines()[-1]
    assert last.startswith("impactagent demo: ") and "HTTP 401" in last
    assert "set $UNLEASH_API_TOKEN" in last
    assert "development.wrong" not in ran.stdout + ran.stderr
    # The table says what happened: the events the agent had, none of them delivered.
    row = next(ln for ln in ran.stdout.splitlines() if ln.startswith("events "))
    assert re.fullmatch(r"events\s+[1-9][\d,]*\s+0   MISMATCH: nothing of it arrived", row), row


def test_demo_writes_one_body_in_the_singular():
    # Twenty requests at no pace fit one body: "1 body", not "1 bodies".
    with ScriptedServer() as server:
        ran = impactagent("demo", "--requests", "20", "--pace", "0", "--url", server.api_url,
                          "--token", "default:development.t")
        bodies = len(server.requests)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    closed = [ln for ln in ran.stdout.splitlines() if ln.startswith("closed: ")]
    expected = "1 body," if bodies == 1 else f"{bodies} bodies,"
    assert closed and closed[0].startswith(f"closed: {expected}"), closed
    assert "bodies" not in closed[0] or bodies != 1


def test_a_netrc_entry_for_the_host_does_not_replace_the_admin_token(tmp_path, monkeypatch):
    """requests sends ~/.netrc's credentials as Basic auth when no auth is set, in place of
    the Authorization header the admin client sets."""
    from impactagent.admin import AdminClient, statistics_checksum

    data = {"instanceId": "i", "users": 1, "featureToggles": 2, "projects": 3, "roles": 4,
            "groups": 5, "environments": 6, "segments": 7}
    data["sum"] = statistics_checksum(data)

    class TokenChecking(LoopbackServer):
        @property
        def handler_class(self) -> type:  # type: ignore[override]
            class Handler(LoopbackHandler):
                def do_GET(self) -> None:
                    if self.headers.get("Authorization") == ADMIN:
                        self.answer(200, json_text(data).encode())
                    else:
                        self.answer(401, b'{"message": "unauthorized"}')

            return Handler

    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password netrc-password\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    with TokenChecking() as server:
        assert AdminClient(server.url, ADMIN).instance_statistics().verified


def test_a_token_with_a_line_break_is_one_line_before_anything_is_sent():
    """``UNLEASH_API_TOKEN`` copied from a file ends in a line break: the demo and ``run``
    say so as the settings do, and nothing reaches the server."""
    said = "api_key has a space, a line break or a control character inside it"
    with EchoGateway(502) as gateway:
        env = {"UNLEASH_API_TOKEN": "*:development.s3cr3t\n", "UNLEASH_URL": gateway.url}
        for ran in (impactagent("demo", "--requests", "10", "--pace", "0", "--url", gateway.url,
                                env=env),
                    impactagent("run", "--dry-run", "--", sys.executable, "app.py", env=env)):
            line = assert_mistake(ran, said)
            assert "s3cr3t" not in line + ran.stdout
        assert gateway.paths == []


@pytest.mark.parametrize("command", [["demo"], ["check", "-"], ["stats"], ["run", "--", "x"]])
def test_ctrl_c_while_the_parser_is_built_is_an_answer_not_a_traceback(command):
    """A real SIGINT, delivered while ``main`` imports what its parser needs (the first
    tenth of a second of every subcommand): exit 130, nothing on stderr."""
    script = textwrap.dedent("""\
        import os, signal, sys
        from impactagent.cli import main

        class CtrlC:  # the user's Ctrl-C, as the parser's import starts
            def find_spec(self, name, path=None, target=None):
                if name == "impactagent.autoinstrument.cli":
                    os.kill(os.getpid(), signal.SIGINT)
                return None

        sys.meta_path.insert(0, CtrlC())
        sys.exit(main(sys.argv[1:]))
        """)
    ran = subprocess.run([sys.executable, "-c", script, *command], cwd=ROOT,
                         env=environment(), capture_output=True, text=True, timeout=60)
    assert (ran.returncode, ran.stderr) == (130, ""), ran.stderr


@pytest.mark.parametrize("interrupts", [1, 2])
def test_ctrl_c_in_the_demo_closes_its_agent_while_the_receiver_still_listens(interrupts):
    """Ctrl-C after the first step, with events not yet sent (the first flush is 2 s away):
    the agent delivers them to the receiver it still has, so nothing fails, nothing is
    printed, and a second Ctrl-C (which used to meet the exit's close against the stopped
    receiver) is no traceback either."""
    demo = subprocess.Popen([sys.executable, "-m", "impactagent", "demo", "--requests", "200",
                             "--pace", "1"], cwd=ROOT, env=environment(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert demo.stdout is not None
        for _ in range(2):
            line = demo.stdout.readline()
        assert "[#.........]" in line, line
        for _ in range(interrupts):  # the second when an exit's close would still run
            demo.send_signal(signal.SIGINT)
            time.sleep(0.5)
        _, err = demo.communicate(timeout=60)
    finally:
        demo.kill()
    assert demo.returncode == 130 and "Traceback" not in err, err
    if interrupts == 1:
        assert err == "", err


@pytest.mark.parametrize(("args", "words"), [
    (["stats", "--url", "http://[::1:1/?token=s3cr3t"],
     ["--url", "Invalid IPv6 URL", "give an http(s) URL such as"]),
    (["charts", "plan", "--agent", "x:y", "--url", "http://127.0.0.1:-1"],
     ["--url", "Port could not be cast", "give an http(s) URL such as"]),
    (["demo", "--url", "http://[::1:1/?token=s3cr3t"],
     ["--url", "Invalid IPv6 URL", "give an http(s) URL such as"]),
    (["demo", "--url", "ftp://x"], ["--url", "is not an http(s) URL; give one such as"]),
    (["stats", "--url", "http://127.0.0.1:1", "--token-env", ""],
     ["--token-env", "'' is not the name of an environment variable; give one such as"]),
    (["stats", "--url", "http://127.0.0.1:1", "--token-env", "A=B"],
     ["--token-env", "'A=B' is not the name of an environment variable"]),
])
def test_a_malformed_url_or_variable_name_says_what_to_give(args, words):
    line = assert_mistake(admin(*args), *words)
    assert "s3cr3t" not in line
