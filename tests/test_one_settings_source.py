"""Settings is the one place where a setting and its default are written.

``Agent``'s keywords are Settings' fields, each defaulting to "not given" (so that the
default comes from Settings), and the spool's size limit defaults to Settings' own.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path

import pytest

import impactagent
from impactagent.agent import UNSET
from impactagent.delivery.settings import Settings, SettingsError
from impactagent.delivery.spool import Spool

ROOT = Path(__file__).resolve().parents[1]
FIELDS = {field.name: field for field in dataclasses.fields(Settings)}
#: Agent's keywords that are not settings: what it is given besides them.
NOT_SETTINGS = {"self", "settings", "transport"}


def agent_parameters():
    return inspect.signature(impactagent.Agent.__init__).parameters


def test_every_setting_is_a_keyword_of_agent_and_nothing_else_is():
    assert set(agent_parameters()) - NOT_SETTINGS == set(FIELDS)


def test_no_agent_keyword_writes_a_default_of_its_own():
    for name, parameter in agent_parameters().items():
        if name in NOT_SETTINGS:
            continue
        assert parameter.default is UNSET, f"Agent({name}=...) has a default of its own"


def test_agent_keywords_keep_the_types_of_the_settings():
    # Typed for mypy and IDEs: the same annotation as the field (headers also takes None).
    for name, parameter in agent_parameters().items():
        if name in NOT_SETTINGS:
            continue
        expected = FIELDS[name].type
        if name == "headers":
            expected = "Optional[Mapping[str, str]]"
        assert parameter.annotation == expected, name


def test_the_spool_takes_its_default_size_from_settings_not_a_number_of_its_own():
    assert inspect.signature(Spool).parameters["max_bytes"].default == \
        FIELDS["spool_max_bytes"].default
    tree = ast.parse((ROOT / "impactagent" / "delivery" / "spool.py").read_text())
    init = next(node for node in ast.walk(tree)
                if isinstance(node, ast.FunctionDef) and node.name == "__init__")
    default = init.args.kw_defaults[[a.arg for a in init.args.kwonlyargs].index("max_bytes")]
    assert ast.unparse(default) == "Settings.spool_max_bytes"


def test_an_agent_made_from_keywords_has_exactly_the_settings_defaults():
    assert impactagent.Agent("shop").settings == Settings(app_name="shop")
    agent = impactagent.Agent("shop", "production", flush_interval=5, headers=None)
    assert agent.settings == Settings(app_name="shop", environment="production",
                                      flush_interval=5)


def test_an_agent_takes_a_settings_object_and_keywords_override_it():
    settings = Settings(app_name="shop", max_flags=7, flush_interval=30)
    agent = impactagent.Agent(settings=settings)
    assert agent.settings is settings
    assert agent.recorder.flags.max_flags == 7  # reaches the recorder
    overridden = impactagent.Agent(settings=settings, flush_interval=2)
    assert overridden.settings.flush_interval == 2 and overridden.settings.max_flags == 7
    with pytest.raises(SettingsError, match="flush_interval must be positive"):
        impactagent.Agent(settings=settings, flush_interval=-1)  # overrides are checked


def test_wrong_settings_are_refused_with_a_message():
    with pytest.raises(TypeError, match="needs an app_name"):
        impactagent.Agent()
    with pytest.raises(TypeError, match="settings must be"):
        impactagent.Agent(settings={"app_name": "shop"})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        impactagent.Agent("shop", flush_intreval=5)  # type: ignore[call-arg]


def test_from_env_builds_its_settings_once_and_passes_them_whole():
    environ = {"UNLEASH_URL": "http://127.0.0.1:9/api", "UNLEASH_API_TOKEN": "t",
               "UNLEASH_APP_NAME": "shop", "IMPACTAGENT_MAX_FLAGS": "9"}
    agent = impactagent.Agent.from_env(environ, flush_interval=3)
    assert agent.settings == Settings.from_env(environ, flush_interval=3)
    assert agent.settings.max_flags == 9 and agent.settings.flush_interval == 3
