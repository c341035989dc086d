"""``module:attribute``, one rule for the command line, the frameworks' settings and the
gunicorn hook: an absolute module name, a dotted attribute, and an app module's own import
error never taken for a mistake in the reference."""

from __future__ import annotations

import logging
import sys
import types

import pytest

from impactagent.delivery.settings import SettingsError
from impactagent.devtools.agent_reference import load_agent
from impactagent.devtools.cli_support import UsageError
from impactagent.integrations import gunicorn
from impactagent.integrations._config import IntegrationOptions


@pytest.fixture
def app(tmp_path, monkeypatch):
    """An app module with its agent one attribute down, and one whose import fails."""
    (tmp_path / "ref_shop.py").write_text(
        "import types\nimport impactagent\n"
        "metrics = types.SimpleNamespace(agent=impactagent.Agent('shop'))\n")
    (tmp_path / "ref_broken.py").write_text("raise KeyError('the app broke')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    yield
    for name in ("ref_shop", "ref_broken"):
        sys.modules.pop(name, None)


def close_at_worker_exit(reference, monkeypatch, caplog):
    monkeypatch.setenv(gunicorn.AGENT_VARIABLE, reference)
    server = types.SimpleNamespace(log=logging.getLogger("gunicorn.error"))
    with caplog.at_level(logging.INFO, "gunicorn.error"):
        gunicorn.worker_exit(server, types.SimpleNamespace(pid=7))
    return caplog.text


def test_a_dotted_attribute_names_the_agent_everywhere(app, monkeypatch, caplog):
    agent = load_agent("ref_shop:metrics.agent")
    assert IntegrationOptions(agent="ref_shop:metrics.agent",
                              agent_settings={}).build_agent() is agent
    assert "worker 7 closed its agent" in close_at_worker_exit("ref_shop:metrics.agent",
                                                              monkeypatch, caplog)


@pytest.mark.parametrize("reference", [".ref_shop:metrics", "ref_shop.:metrics",
                                       "a..b:agent", "ref_shop", ":agent"])
def test_a_relative_or_incomplete_reference_is_refused_everywhere(app, monkeypatch, caplog,
                                                                  reference):
    with pytest.raises(UsageError, match=r"^--agent (takes MODULE:NAME|needs an absolute)"):
        load_agent(reference)
    with pytest.raises(SettingsError, match=r"'agent' must look like 'package\.module:attribute'"):
        IntegrationOptions(agent=reference, agent_settings={}).build_agent()
    assert f"set {gunicorn.AGENT_VARIABLE} to where your agent is" in close_at_worker_exit(
        reference, monkeypatch, caplog)


def test_an_app_module_that_fails_to_import_is_not_a_bad_reference(app):
    # The import's own KeyError is no missing attribute, and it is not swallowed.
    with pytest.raises(KeyError, match="the app broke"):
        IntegrationOptions(agent="ref_broken:agent", agent_settings={}).build_agent()
    with pytest.raises(UsageError, match=r"importing ref_broken failed: KeyError"):
        load_agent("ref_broken:agent")


def test_the_gunicorn_hook_imports_nothing(app, monkeypatch, caplog):
    assert close_at_worker_exit("ref_shop:metrics.agent", monkeypatch, caplog) == ""
    assert "ref_shop" not in sys.modules


def test_an_attribute_that_raises_is_one_line_everywhere(tmp_path, monkeypatch, caplog):
    (tmp_path / "ref_lazy.py").write_text(
        "def __getattr__(name):\n    raise RuntimeError('settings are not configured')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    try:
        with pytest.raises(UsageError, match=r"^--agent ref_lazy:agent: reading agent from "
                           r"module ref_lazy failed: RuntimeError: settings are not"):
            load_agent("ref_lazy:agent")
        logged = close_at_worker_exit("ref_lazy:agent", monkeypatch, caplog)
    finally:
        sys.modules.pop("ref_lazy", None)
    assert "reading agent from module ref_lazy failed (RuntimeError: settings are not " \
        "configured); worker_exit closes no agent" in logged
    assert len(logged.splitlines()) == 1, logged
