"""gunicorn's config for the project: with --preload the app is loaded once, in the
parent, so each worker makes its own UnleashClient after the fork (a client's threads do
not survive a fork), as the SDK's documentation advises."""


def post_fork(server, worker):
    from tests.apps.zero_code import unleash

    unleash.start()
