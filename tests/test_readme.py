"""The README's first two commands are the ones CI runs, the demo really works, and every
Python snippet of the README and of the docs' pages runs as written."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_commands():
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    return [line.split("#")[0].strip() for line in block.strip().splitlines()]


def test_readme_starts_with_the_demo_and_the_test_commands():
    demo, tests = readme_commands()
    assert demo.endswith("python -m impactagent demo")
    assert tests.endswith("python -m pytest")
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests in ci, "CI must run the README's test command"
    assert "python -m impactagent demo" in ci


def test_demo_accounts_for_every_count():
    result = subprocess.run(
        [sys.executable, "-m", "impactagent", "demo", "--requests", "2000"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "all counts accounted for" in result.stdout
    assert "MISMATCH" not in result.stdout
    rows = dict(re.findall(r"^(requests)\s+([\d,]+)", result.stdout, re.M))
    assert rows == {"requests": "2,000"}


def test_the_readme_commands_work_in_a_fresh_copy(tmp_path):
    """Both commands, as written, in a copy of the tracked files with a brand-new virtual
    environment. The test command is run with --collect-only: running the whole suite
    inside itself would prove nothing more (CI runs it from a clean clone)."""
    import os
    import shutil

    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True)
    if listed.returncode != 0:
        import pytest

        pytest.skip("not a git checkout: no list of tracked files to copy")
    clone = tmp_path / "clone"
    for name in filter(None, listed.stdout.decode().split("\0")):
        if (ROOT / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, clone / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {**os.environ, "VIRTUAL_ENV": str(venv),
           "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)
    demo, tests = readme_commands()

    ran = subprocess.run(["bash", "-c", demo], cwd=clone, env=env, capture_output=True,
                         text=True, timeout=900)
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    assert "all counts accounted for" in ran.stdout

    collect = tests.replace("python -m pytest", "python -m pytest --collect-only -q")
    ran = subprocess.run(["bash", "-c", collect], cwd=clone, env=env, capture_output=True,
                         text=True, timeout=900)
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    assert re.search(r"\d+ tests collected", ran.stdout), ran.stdout[-500:]


# -- every Python snippet runs as written ------------------------------------------------------
#
# Each ```python block of the README and of docs/*.md runs in a child interpreter of its own,
# with this checkout on PYTHONPATH, in an empty directory, and with UNLEASH_URL,
# UNLEASH_API_TOKEN and UNLEASH_APP_NAME pointing at a strict development receiver on
# 127.0.0.1 (the receiver answers 400 to any body a real server would not store whole). A
# block may be named by an HTML comment on the line before it, ``<!-- snippet: NAME -->``,
# so that a test below can check what it did; a block that cannot run on its own says why
# with ``<!-- not run: REASON -->``.

#: The documents whose snippets are run: the README and the docs' pages.
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

SNIPPET_APP = "shop"
SNIPPET_TOKEN = "default:development.readme-snippets"


class Snippet:
    """One ```python block: its name, where it is, its code, why it is not run."""

    def __init__(self, name: str, where: str, code: str, not_run: str | None) -> None:
        self.name, self.where, self.code, self.not_run = name, where, code, not_run

    def __repr__(self) -> str:
        return f"{self.where} ({self.name})"


def readme_snippets() -> list:
    """Every ```python block of the documents, in order."""
    snippets = []
    for document in DOCUMENTS:
        text = document.read_text()
        for match in re.finditer(r"^```python\n(.*?)^```", text, re.S | re.M):
            before = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
            named = re.fullmatch(r"<!-- snippet: ([\w-]+) -->", before)
            not_run = re.fullmatch(r"<!-- not run: (.+?) -->", before)
            line = text.count("\n", 0, match.start()) + 1
            where = f"{document.relative_to(ROOT)}:{line}"
            snippets.append(Snippet(named.group(1) if named else where, where,
                                    match.group(1), not_run.group(1) if not_run else None))
    return snippets


#: The frameworks a snippet may import: a job without the examples extra (the lower-bounds
#: job) skips the snippets that need one.
FRAMEWORKS = ("flask", "fastapi", "django", "celery", "opentelemetry", "UnleashClient")


def run_snippet(code: str, receiver, cwd: Path, *, without: tuple = ()
                ) -> subprocess.CompletedProcess:
    """Run ``code`` as ``shop.py``; ``without`` names variables to leave unset."""
    import os
    import re as regex

    for framework in FRAMEWORKS:
        if regex.search(rf"^\s*(from|import) {framework}\b", code, regex.M):
            pytest.importorskip(framework)

    script = cwd / "shop.py"  # the name the quick starts give the file
    script.write_text(code)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "UNLEASH_URL": receiver.api_url,
           "UNLEASH_API_TOKEN": SNIPPET_TOKEN, "UNLEASH_APP_NAME": SNIPPET_APP}
    for name in ("IMPACTAGENT_SPOOL_DIR", "IMPACTAGENT_REGISTER", *without):
        env.pop(name, None)
    return subprocess.run([sys.executable, str(script)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def receiver():
    from impactagent.devtools.receiver import Receiver

    with Receiver(strict=True, token=SNIPPET_TOKEN) as running:
        yield running


def snippet(name: str) -> Snippet:
    found = [s for s in readme_snippets() if s.name == name]
    assert len(found) == 1, f"the documents have no (or more than one) snippet named {name!r}"
    return found[0]


def test_the_readme_has_python_snippets_and_each_not_run_says_why():
    snippets = readme_snippets()
    assert len(snippets) >= 4
    names = [s.name for s in snippets]
    assert len(names) == len(set(names)), names
    for s in snippets:
        assert s.not_run is None or len(s.not_run.split()) >= 3, f"{s}: say why it is not run"


@pytest.mark.parametrize("block", readme_snippets(), ids=repr)
def test_every_python_snippet_runs_as_written(block, receiver, tmp_path):
    if block.not_run:
        pytest.skip(f"{block} is marked as not run: {block.not_run}")
    ran = run_snippet(block.code, receiver, tmp_path)
    assert ran.returncode == 0, f"{block} failed:\n{ran.stderr[-3000:]}"
    assert receiver.problems() == []


#: What each quick start's app is asked, after the snippet, with its framework's test client:
#: three checkouts and a path no route matches. The process then exits: the agent's atexit
#: flush sends everything to the receiver.
QUICK_START_REQUESTS = {
    "quick-start-flask": """
client = app.test_client()
for user in ("beta-ann", "bob", "carl"):
    client.post(f"/checkout/{user}").close()
client.get("/nowhere").close()
""",
    "quick-start-fastapi": """
from fastapi.testclient import TestClient

with TestClient(app) as client:
    for user in ("beta-ann", "bob", "carl"):
        client.post(f"/checkout/{user}")
    client.get("/nowhere")
""",
}

QUICK_START_ROUTES = {"quick-start-flask": "/checkout/<user>",
                      "quick-start-fastapi": "/checkout/{user}"}


@pytest.mark.parametrize("name", sorted(QUICK_START_REQUESTS))
def test_a_quick_start_labels_requests_by_route_and_flag_and_reports_at_exit(
        name, receiver, tmp_path):
    """The quick start as written, served: its requests reach the receiver labelled by their
    route template (only the unmatched path is "unmatched") and by the flag's state, and its
    checkouts by the variant."""
    ran = run_snippet(snippet(name).code + QUICK_START_REQUESTS[name], receiver, tmp_path)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert receiver.problems() == []
    totals = receiver.totals(SNIPPET_APP)
    assert totals["flags"] == {"new-checkout": {"yes": 1, "no": 2, "variants": {"blue": 1}}}

    requests_by = {}
    for (metric, labels), value in totals["counters"].items():
        if metric == "http_server_requests_total":
            label = dict(labels)
            requests_by[label["route"], label["status_class"], label["new_checkout"]] = value
    route = QUICK_START_ROUTES[name]
    assert requests_by == {(route, "2xx", "blue"): 1, (route, "2xx", "disabled"): 2,
                           ("unmatched", "4xx", "not_evaluated"): 1}
    checkouts = {dict(labels)["new_checkout"]: value
                 for (metric, labels), value in totals["counters"].items()
                 if metric == "checkout_total"}
    assert checkouts == {"blue": 1, "disabled": 2}


@pytest.mark.parametrize("name", sorted(QUICK_START_REQUESTS))
def test_a_quick_start_runs_without_unleash_and_only_records(name, receiver, tmp_path):
    """Local development and CI: without UNLEASH_URL and UNLEASH_API_TOKEN the same app runs,
    counts, and sends nothing (it raised SettingsError: UNLEASH_URL is not set)."""
    check = """
stats = agent.statistics()
assert stats["recorded"]["counter_increments"] >= 4, stats["recorded"]
assert stats["delivery"]["attempts"] == 0
"""
    ran = run_snippet(snippet(name).code + QUICK_START_REQUESTS[name] + check, receiver,
                      tmp_path, without=("UNLEASH_URL", "UNLEASH_API_TOKEN"))
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert receiver.totals()["flags"] == {}


def test_the_recording_snippet_builds_payloads_with_a_body_and_a_document(receiver, tmp_path):
    check = """
import json

assert payloads and all(isinstance(p.body, bytes) for p in payloads)
assert [json.loads(p.body) for p in payloads] == [p.document for p in payloads]
assert payloads[0].document["appName"] == "shop"
"""
    ran = run_snippet(snippet("recording").code + check, receiver, tmp_path)
    assert ran.returncode == 0, ran.stderr[-3000:]


# -- what the docs say about the settings and the drops ------------------------------------------


def test_the_readme_is_a_readme():
    """The install, what it is, one quick start and links: at most about 250 lines."""
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    assert [s.name for s in readme_snippets() if s.where.startswith("README.md")] == [
        "quick-start-flask"]


def test_every_link_of_the_readme_and_the_docs_resolves_in_a_clone():
    """Relative links (pages, images, files) name files of the repository."""
    for document in DOCUMENTS:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", document.read_text()):
            if re.match(r"[a-z]+://", target):
                continue
            assert (document.parent / target).exists(), f"{document.name}: {target}"


def test_the_drop_reasons_the_troubleshooting_page_lists_are_every_reason():
    from impactagent.core.statistics import DROP_REASONS

    text = (ROOT / "docs" / "troubleshooting.md").read_text()
    table = text.split("## Drops", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| `(\w+)` \|", table, re.M)
    assert sorted(listed) == sorted(DROP_REASONS)


def configuration_rows() -> dict:
    """The configuration page's settings table: setting -> (variable cell, default cell)."""
    text = (ROOT / "docs" / "configuration.md").read_text()
    table = text.split("## Every setting", 1)[1].split("\n## ", 1)[0]
    return {m.group(1): (m.group(2), m.group(3))
            for m in re.finditer(r"^\| `(\w+)` \| ([^|]*) \| ([^|]*) \|", table, re.M)}


def test_the_configuration_page_lists_every_setting():
    import dataclasses

    from impactagent.delivery.settings import Settings

    assert sorted(configuration_rows()) == sorted(f.name for f in dataclasses.fields(Settings))


def test_every_variable_the_configuration_page_names_is_read():
    """Each variable, set to a value its setting refuses (or a new string), reaches it."""
    import impactagent
    from impactagent.delivery.settings import SettingsError

    base = {"UNLEASH_APP_NAME": "shop"}
    for setting, (variable_cell, _) in configuration_rows().items():
        named = re.fullmatch(r"`((?:UNLEASH|IMPACTAGENT)_\w+)`", variable_cell.strip())
        if not named:
            continue
        variable = named.group(1)
        if setting in ("app_name", "environment", "instance_id", "api_key", "spool_dir"):
            environ = {**base, "UNLEASH_API_TOKEN": "t", variable: "from-the-variable"}
            agent = impactagent.Agent.from_env(environ)
            assert getattr(agent.settings, setting) == "from-the-variable", variable
        else:
            with pytest.raises(SettingsError, match=variable):
                impactagent.Agent.from_env({**base, "UNLEASH_API_TOKEN": "t",
                                            variable: "-1" if setting != "url" else "ftp://x"})


def test_the_settings_table_gives_the_spool_cap_as_the_variable_takes_it():
    """The spool cap's default, as the table writes it, is a value the variable takes and the
    real default (it once said "50 MB", which the variable refuses)."""
    import impactagent

    default = configuration_rows()["spool_max_bytes"][1].strip().strip("`")
    environ = {"UNLEASH_APP_NAME": "shop", "IMPACTAGENT_SPOOL_MAX_BYTES": default}
    configured = impactagent.Agent.from_env(environ)
    assert configured.settings.spool_max_bytes == impactagent.Agent("shop").settings \
        .spool_max_bytes


# -- the example apps, run as the README says ----------------------------------------------------


def test_the_examples_extra_brings_the_server_the_readme_runs_the_fastapi_example_with():
    extra = re.search(r"^examples = \[(.*?)\]", (ROOT / "pyproject.toml").read_text(),
                      re.M | re.S)
    assert extra, "pyproject.toml has no examples extra"
    packages = {re.split(r"[<>=!~;\[ ]", name)[0].lower()
                for name in re.findall(r'"([^"]+)"', extra.group(1))}
    assert "uvicorn examples.fastapi_app:app" in (ROOT / "docs" / "frameworks.md").read_text()
    assert {"flask", "fastapi", "django", "uvicorn"} <= packages


def test_the_fastapi_example_answers_metrics_itself():
    """``curl localhost:8000/metrics`` gets the scrape, not a redirect to ``/metrics/`` (what a
    ``mount("/metrics", ...)`` answers)."""
    fastapi_app = pytest.importorskip("examples.fastapi_app")
    from fastapi.testclient import TestClient

    # Only scrapes: the module's agent is shared with tests/test_web.py, which counts requests.
    with TestClient(fastapi_app.app) as client:
        scrape = client.get("/metrics", follow_redirects=False)
    assert scrape.status_code == 200
    assert "# TYPE checkout_total counter" in scrape.text


def test_uvicorn_serves_the_fastapi_example(tmp_path):
    """``uvicorn examples.fastapi_app:app``, as the README runs it (on a socket this test
    opened, so that no port is guessed), answers a checkout and ``GET /metrics`` with 200."""
    pytest.importorskip("uvicorn", reason="uvicorn comes with the examples extra: "
                                          "pip install -e '.[examples]'")
    import http.client
    import os
    import socket

    from tests.loopback import wait_until

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("UNLEASH_", "IMPACTAGENT_"))}
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--fd", str(listener.fileno()),
         "examples.fastapi_app:app"],
        cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, pass_fds=[listener.fileno()],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "uvicorn.log").open("w"))
    listener.close()

    def get(method: str, path: str):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            connection.request(method, path)
            response = connection.getresponse()
            return response.status, response.read().decode()
        finally:
            connection.close()

    def answers() -> bool:
        try:
            return get("GET", "/health")[0] == 200
        except OSError:
            return False

    try:
        wait_until(lambda: server.poll() is not None or answers(), timeout=30)
        assert answers(), (tmp_path / "uvicorn.log").read_text()[-2000:]
        assert get("POST", "/checkout/beta-ann")[0] == 200
        status, text = get("GET", "/metrics")
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert status == 200
    assert 'checkout_total{appName="shop-fastapi",environment="default",new_checkout="blue"}' \
        in text


def test_every_file_the_readme_and_the_docs_point_at_exists():
    """The README once sent readers to docs/protocol.md, which the repository did not have."""
    named = {"LICENSE"}
    for document in DOCUMENTS:
        named |= set(re.findall(r"`((?:docs|examples|tests|benchmarks)/[\w./-]*[\w/])`",
                                document.read_text()))
    assert "docs/protocol.md" in named
    missing = sorted(name for name in named if not (ROOT / name).exists())
    assert missing == []


def test_the_receiver_page_shows_the_impact_view():
    page = (ROOT / "docs" / "receiver.md").read_text()
    images = re.findall(r"!\[[^\]]+\]\(([^)]+\.png)\)", page)
    assert images == ["receiver-impact-view.png"]
    png = (ROOT / "docs" / images[0]).read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    for words in ("/api/impact", "--charts", "10-second steps", "histogram_quantile"):
        assert words in page, words
