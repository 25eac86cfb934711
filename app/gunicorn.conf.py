"""gunicorn's settings for the benefits app (read from the working directory at start).

Graceful by design, for the blue/green switch in the app role: a stopping container finishes the
requests it has (graceful_timeout) before it exits. The workers share Prometheus counters through
a directory on the container's tmpfs, emptied at start (stale files would count twice)."""
import os
import shutil

bind = "0.0.0.0:8000"
workers = int(os.environ.get("BENEFITS_WORKERS", "3"))
accesslog = "-"
forwarded_allow_ips = "*"          # only nginx on the host reaches the published 127.0.0.1 port
graceful_timeout = 25
timeout = 60

os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", "/tmp/prometheus")


def on_starting(server):
    path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, mode=0o700)


def child_exit(server, worker):
    from prometheus_client import multiprocess
    multiprocess.mark_process_dead(worker.pid)
