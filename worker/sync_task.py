"""The periodic results sync: ``rtbench.sync_results`` on this machine's queue ``sync.<machine>``,
scheduled by the beat embedded in ``python -m worker sync`` (and run once more when it stops).
The cycle and its bookkeeping are ``worker.sync_run.sync_once``."""

from __future__ import annotations

import logging
import random
import time

from worker.app import app
from worker.settings import active
from worker.sync import SyncBusy, SyncError
from worker.sync_run import sync_once

log = logging.getLogger(__name__)
TASK_SYNC_RESULTS = "rtbench.sync_results"


@app.task(name=TASK_SYNC_RESULTS, ignore_result=True)
def sync_results(jitter: bool = True) -> str:
    settings = active()
    if jitter:  # machines started together do not push together
        time.sleep(random.uniform(0, min(30.0, settings.sync_interval_s / 10)))
    try:
        result = sync_once(settings)
    except SyncBusy as busy:
        log.info("%s; this cycle is skipped", busy)
        return "busy"
    except SyncError:
        return "failed"  # logged and noted in Redis by sync_once; the next cycle tries again
    return result.line()
