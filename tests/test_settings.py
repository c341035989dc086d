"""Settings: validated at construction, read from the environment, errors name the setting."""

import time
from email.utils import formatdate

import pytest

import impactagent
from impactagent.delivery.settings import Settings, SettingsError
from impactagent.delivery.transport import (
    DELIVERED,
    REJECTED,
    RETRY,
    TOO_LARGE,
    UNAUTHORIZED,
    classify,
    parse_retry_after,
)

ENV = {
    "UNLEASH_URL": "http://127.0.0.1:4242/api",
    "UNLEASH_API_TOKEN": "default:production.s3cr3t-t0ken",
    "UNLEASH_APP_NAME": "shop",
}


def test_from_env_reads_unleash_and_agent_variables():
    env = dict(ENV, UNLEASH_INSTANCE_ID="pod-1", IMPACTAGENT_FLUSH_INTERVAL="2.5",
               IMPACTAGENT_REQUEST_TIMEOUT="3", IMPACTAGENT_VERIFY="false",
               IMPACTAGENT_MAX_SERIES="50")
    agent = impactagent.Agent.from_env(env)
    assert agent.settings.flush_interval == 2.5
    assert agent.settings.request_timeout == 3
    assert agent.settings.verify is False
    assert agent.settings.max_series_per_metric == 50
    assert agent.identity.instance_id == "pod-1"
    # The environment comes from a project:environment.secret token.
    assert agent.identity.environment == "production"
    assert agent.settings.metrics_url == "http://127.0.0.1:4242/api/client/metrics"


def test_overrides_win_over_the_environment():
    agent = impactagent.Agent.from_env(ENV, app_name="other", flush_interval=1)
    assert agent.identity.app_name == "other" and agent.settings.flush_interval == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"UNLEASH_API_TOKEN": None}, "UNLEASH_API_TOKEN is not set"),
        ({"UNLEASH_APP_NAME": None}, "UNLEASH_APP_NAME is not set"),
        ({"UNLEASH_URL": "ftp://x"}, "UNLEASH_URL: url must be an http"),
        ({"IMPACTAGENT_FLUSH_INTERVAL": "soon"}, "IMPACTAGENT_FLUSH_INTERVAL='soon' is not"),
        ({"IMPACTAGENT_FLUSH_INTERVAL": "-1"}, "IMPACTAGENT_FLUSH_INTERVAL: flush_interval"),
        ({"IMPACTAGENT_MAX_SERIES": "1.5"}, "IMPACTAGENT_MAX_SERIES='1.5'"),
        ({"IMPACTAGENT_VERIFY": "/no/such/ca.pem"}, "does not exist"),
    ],
)
def test_missing_or_malformed_settings_name_the_variable(change, message):
    env = dict(ENV)
    for key, value in change.items():
        if value is None:
            env.pop(key)
        else:
            env[key] = value
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        impactagent.Agent.from_env(env)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": "http://h/api"}, "api_key is required"),
        ({"flush_interval": 0}, "flush_interval must be positive"),
        ({"request_timeout": float("nan")}, "request_timeout must be positive"),
        ({"max_flags": 1.5}, "max_flags must be a positive int"),
        ({"headers": {"x": 1}}, "headers must map"),
        ({"headers": 1.5}, r"headers must map names \(str\) to values \(str\), got float"),
        ({"headers": [("x", "y")]}, "headers must map"),
        ({"proxies": ["http://p"]}, "proxies must map"),
        ({"proxies": {"https": 5}}, "proxies must map"),
        ({"verify": "maybe"}, "does not exist"),
    ],
)
def test_agent_arguments_are_checked(kwargs, message):
    with pytest.raises(SettingsError, match=message):
        impactagent.Agent("shop", **kwargs)


@pytest.mark.parametrize("token", ["*:production.s3cr3t\n", "*:production.s3cr3t\r\n",
                                   " *:production.s3cr3t", "*:production. s3cr3t",
                                   "*:production.s3cr3t\nX-Evil: 1", "*:production\ts3cr3t",
                                   "*:production.s3cr3t\x00", "Bearer  *:production.s3cr3t"])
def test_a_token_with_a_space_or_a_line_break_is_refused_at_definition(token):
    """A copy from a file brings a line break: said at once, not by every send failing."""
    said = "has a space, a line break or a control character inside it; set it to the token"
    with pytest.raises(SettingsError) as from_env:
        impactagent.Agent.from_env({**ENV, "UNLEASH_API_TOKEN": token})
    assert str(from_env.value).startswith(f"UNLEASH_API_TOKEN: api_key {said}")
    with pytest.raises(SettingsError) as given:
        impactagent.Agent("shop", url="http://127.0.0.1:4242", api_key=token)
    assert str(given.value).startswith(f"api_key {said}")
    assert "s3cr3t" not in str(from_env.value) + str(given.value)


def test_a_bearer_token_is_taken_as_the_server_takes_it():
    agent = impactagent.Agent("shop", url="http://127.0.0.1:4242", api_key="Bearer *:dev.abc")
    assert agent.settings.api_key == "Bearer *:dev.abc"
    with pytest.raises(SettingsError, match=r"^api_key is 'Bearer ' without a token after it"):
        impactagent.Agent("shop", url="http://127.0.0.1:4242", api_key="Bearer ")


def test_the_token_is_not_in_reprs():
    agent = impactagent.Agent.from_env(ENV)
    for text in (repr(agent), repr(agent.settings), str(agent.settings),
                 repr(agent.lifecycle.delivery.transport)):
        assert "s3cr3t" not in text


def test_the_settings_repr_shows_header_and_proxy_names_without_their_values():
    """docs/configuration.md: header values are redacted like the token; a proxy or the URL
    may carry a password."""
    agent = impactagent.Agent(
        "shop", url="http://user:s3cr3t@127.0.0.1:4242", api_key="*:dev.s3cr3t",
        headers={"X-Api-Key": "s3cr3t"},
        proxies={"https": "http://user:s3cr3t@proxy:3128", "http": None})
    text = repr(agent.settings)
    assert "s3cr3t" not in text and "s3cr3t" not in str(agent.settings)
    assert "headers={'X-Api-Key': '[REDACTED]'}" in text
    assert "proxies={'https': '[REDACTED]', 'http': None}" in text
    assert "url='http://127.0.0.1:4242/api'" in text and "app_name='shop'" in text


def test_retry_after_in_seconds_and_as_http_date():
    assert parse_retry_after("7") == 7
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after("-3") == 0
    assert parse_retry_after("999999") == 3600  # capped
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = time.time()
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30, 1)
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now=now) == 0


@pytest.mark.parametrize(
    ("status", "kind"),
    [(200, DELIVERED), (202, DELIVERED), (204, DELIVERED), (400, REJECTED),
     (401, UNAUTHORIZED), (403, UNAUTHORIZED), (413, TOO_LARGE), (404, RETRY),
     (408, RETRY), (429, RETRY), (500, RETRY), (502, RETRY), (503, RETRY), (504, RETRY)],
)
def test_status_classes(status, kind):
    assert classify(status) == kind


def test_settings_are_immutable():
    settings = Settings(app_name="shop")
    with pytest.raises(AttributeError):
        settings.app_name = "x"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"app_name": "a" * 256}, "app_name must be at most 255 characters"),
        ({"app_name": "shop\x00"}, r"app_name must not contain control characters.*'\\x00'"),
        ({"app_name": "shop\r\nX-Evil: 1"}, "app_name must not contain control characters"),
        ({"app_name": "shop\x7f"}, "app_name must not contain control characters"),
        ({"instance_id": "i" * 256}, "instance_id must be at most 255 characters"),
        ({"instance_id": "pod\x00-1"}, "instance_id must not contain control characters"),
        ({"instance_id": 7}, "instance_id must be a string"),
        ({"environment": "prod\x00"}, "environment must not contain control characters"),
    ],
)
def test_identities_the_server_cannot_store_are_refused(kwargs, message):
    # unleash-server 8.2.0 answers 202 to an appName over 255 characters or with NUL and
    # then fails the write window: every app's counts in it are lost. An instance id so
    # made fails its registration batch: every client seen with it goes unregistered. An
    # impact metric labelled with an environment holding NUL is dropped from its view.
    kwargs = {"app_name": "shop", **kwargs}
    with pytest.raises(SettingsError, match=message):
        impactagent.Agent(**kwargs)


def test_identities_at_the_limit_are_taken_and_the_variable_is_named():
    longest = "\U0001f6d2" + "é" * 253 + "x"  # 255 characters (PostgreSQL counts characters)
    agent = impactagent.Agent(longest, instance_id="i" * 255)
    assert agent.identity.app_name == longest and len(agent.identity.instance_id) == 255
    with pytest.raises(SettingsError, match=r"^UNLEASH_APP_NAME: app_name must be at most"):
        impactagent.Agent.from_env(dict(ENV, UNLEASH_APP_NAME="a" * 300))
    with pytest.raises(SettingsError, match=r"^UNLEASH_INSTANCE_ID: instance_id must not"):
        impactagent.Agent.from_env(dict(ENV, UNLEASH_INSTANCE_ID="pod\n1"))


def test_a_wrong_header_value_is_refused_without_showing_it():
    """The headers carry the token: a mistake in them is told without their values."""
    with pytest.raises(SettingsError) as refused:
        impactagent.Agent("shop", headers={"Authorization": "s3cr3t", "X-Retries": 3})
    assert "s3cr3t" not in str(refused.value)
