"""A Celery app for a real prefork worker: the broker is a directory (kombu's filesystem
transport, shared by the test and the worker processes), the agent sends to the test's
server with a flush interval too long to fire: only each child's close delivers."""

import os

from celery import Celery

import impactagent
from impactagent.integrations.celery import instrument_celery

broker = os.environ["TEST_CELERY_BROKER_DIR"]
app = Celery("shop")
app.conf.update(
    broker_url="filesystem://",
    broker_transport_options={"data_folder_in": broker, "data_folder_out": broker,
                              "processed_folder": broker, "store_processed": False,
                              "control_folder": broker + "-control"},
    task_ignore_result=True,
    worker_hijack_root_logger=False,
)

agent = impactagent.Agent("shop-worker", url=os.environ["TEST_UNLEASH_URL"],
                          api_key="default:development.token", flush_interval=3600,
                          request_timeout=2).start()
instrument_celery(agent, flags=["new-checkout"])
jobs = agent.counter("jobs_total", "Jobs done", flags=["new-checkout"])


@app.task(name="shop.job")
def job(n):
    if n % 2:
        agent.record_flag("new-checkout", True, "blue")
    jobs.inc()
    # Tell the test this one is done (no result backend needed).
    with open(os.path.join(os.environ["TEST_CELERY_DONE_DIR"], str(n)), "w") as done:
        done.write(str(os.getpid()))
