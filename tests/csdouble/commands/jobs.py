"""Async jobs: submission by async commands and queryAsyncJobResult."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from ..errors import ApiError
from ..model import Job, JobStatus, cs_timestamp
from ..params import Context

CMD_PACKAGE = "org.apache.cloudstack.api.command.user"


def submit(
    ctx: Context,
    cmd_class: str,
    instance_id: str | None,
    action: Callable[[], dict[str, Any] | None],
    instance_type: str = "Template",
    *,
    begins_at_once: bool = False,
) -> dict[str, Any]:
    """Queue `action`; it runs once the job's pending polls are used up.

    With `begins_at_once`, its first step runs on submission, as CloudStack's job executor picks a job
    up as soon as it is queued, whether or not anyone asks about it later (a copy's destination rows
    appear at once); an action that stays pending then moves on with each poll after the pending ones.
    """
    job = Job(
        id=str(uuid.uuid4()), cmd_class=f"{CMD_PACKAGE}.{cmd_class}", account_id=ctx.caller.id,
        created=cs_timestamp(), instance_type=instance_type, instance_id=instance_id,
        polls_left=ctx.state.settings.job_polls, action=action,
    )  # fmt: skip
    ctx.state.jobs[job.id] = job
    if begins_at_once:
        _run(job)
    return {"jobid": job.id}


def _run(job: Job) -> None:
    assert job.action is not None
    try:
        result = job.action()
    except ApiError as error:
        job.status, job.resultcode = JobStatus.FAILED, error.errorcode
        job.result = {"errorcode": error.errorcode, "errortext": error.errortext}
        job.completed = cs_timestamp()
        return
    if result is not None:
        job.status, job.result, job.completed = JobStatus.SUCCEEDED, result, cs_timestamp()


def query_async_job_result(ctx: Context) -> dict[str, Any]:
    job = ctx.entity("jobid", ctx.state.jobs, required=True)
    assert job is not None
    if job.status is JobStatus.PENDING:
        if job.polls_left > 0:
            job.polls_left -= 1
        else:
            _run(job)
    view: dict[str, Any] = {
        "accountid": job.account_id, "userid": job.account_id, "cmd": job.cmd_class,
        "jobstatus": int(job.status), "jobprocstatus": 0, "jobresultcode": job.resultcode,
        "jobresulttype": "object", "created": job.created, "jobid": job.id,
    }  # fmt: skip
    if job.result is not None:
        view["jobresult"] = job.result
    if job.completed is not None:
        view["completed"] = job.completed
    if job.instance_id is not None:
        view.update({"jobinstancetype": job.instance_type, "jobinstanceid": job.instance_id})
    return view


COMMANDS = {"queryAsyncJobResult": (query_async_job_result, None)}
