"""A Celery app that knows nothing of impactagent; its broker is a directory (kombu's
filesystem transport), shared by the test and the worker's processes."""

import os

from celery import Celery
from celery.signals import worker_process_init, worker_process_shutdown

from tests.apps.zero_code import unleash

broker = os.environ["SHOP_BROKER_DIR"]
app = Celery("zero-shop")
app.conf.update(
    broker_url="filesystem://",
    broker_transport_options={"data_folder_in": broker, "data_folder_out": broker,
                              "processed_folder": broker, "store_processed": False,
                              "control_folder": broker + "-control"},
    task_ignore_result=True,
    worker_hijack_root_logger=False,
)


@worker_process_init.connect
def start_client(**_):
    unleash.start()  # each prefork child has its own client (threads do not survive a fork)


@worker_process_shutdown.connect
def stop_client(**_):
    unleash.stop()  # a child leaves by os._exit: atexit would not run


@app.task(name="shop.checkout")
def checkout(user, n):
    variant = unleash.checkout_variant(user)
    with open(os.path.join(os.environ["SHOP_DONE_DIR"], str(n)), "w") as done:
        done.write(variant)  # tells the test this one ran, and what it decided
    if variant == "disabled":
        raise ValueError("no checkout for this user")
