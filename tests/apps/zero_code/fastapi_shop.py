"""A FastAPI app that knows nothing of impactagent: ``uvicorn ...:app --workers 2``."""

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from tests.apps.zero_code import unleash

unleash.start()  # each uvicorn worker imports the app, and so has its own client
app = FastAPI()


@app.get("/hello/{user}")
def hello(user: str):
    return {"dark_mode": unleash.dark_mode(user)}


@app.post("/checkout/{user}")
async def checkout(user: str):
    variant = unleash.checkout_variant(user)
    return JSONResponse({"new_checkout": variant},
                        status_code=402 if variant == "disabled" else 200)


@app.get("/boom")
def boom():
    raise RuntimeError("the app's own bug")
