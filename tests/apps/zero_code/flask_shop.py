"""A Flask app that knows nothing of impactagent: ``flask --app ... run``."""

from flask import Flask

from tests.apps.zero_code import unleash

unleash.start()
app = Flask(__name__)


@app.get("/hello/<user>")
def hello(user):
    return {"dark_mode": unleash.dark_mode(user)}


@app.post("/checkout/<user>")
def checkout(user):
    variant = unleash.checkout_variant(user)
    return {"new_checkout": variant}, 402 if variant == "disabled" else 200


@app.get("/boom")
def boom():
    raise RuntimeError("the app's own bug")
