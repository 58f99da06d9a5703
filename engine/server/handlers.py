"""The requests an engine answers, each made by a `Principal` (engine.server.access): a client sees, watches,
cancels, fetches and cleans only its own jobs (an admin: every job, and only an admin may shut down).

Submits are decoded, checked and stored in an IO thread (`RequestHandlers._submit_task`), results loaded in
one, so the loop keeps answering every other client while a big scene moves (see EngineServer._offload).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from shared_protocol.admin import Adopt
from shared_protocol.codec import Decoded
from shared_protocol.errors import ProtocolError
from shared_protocol.fields import TERMINAL_STATES
from shared_protocol.messages import (
    Cancel,
    Clean,
    Cleaned,
    Error,
    Hello,
    JobInfo,
    JobList,
    JobReply,
    ListJobs,
    Message,
    Ok,
    Ping,
    Pong,
    Progress,
    Result,
    ResultData,
    Shutdown,
    Status,
    Submit,
    Unwatch,
    Watch,
    Welcome,
    message_from,
    negotiate,
)

from .access import Forbidden, HelloRequired, Principal, Unauthorized
from .config import BusyError, LimitError
from .estimate import device_memory, fmt_bytes, fmt_seconds
from .store import DiskFullError, InProgressError

if TYPE_CHECKING:
    from .server import EngineServer

log = logging.getLogger(__name__)
Reply = Message | tuple[Message, Callable[[], None]]
"""What a request gives: the reply, or the reply and what the loop does once it is sent for."""


def error_reply(e: BaseException) -> Error:
    """The `error` reply for an exception raised while answering a request."""
    known = (ProtocolError, LimitError, BusyError, DiskFullError, InProgressError)
    known += (Unauthorized, Forbidden, HelloRequired)
    if isinstance(e, known):
        return Error(e.code, str(e))
    if isinstance(e, KeyError):
        return Error("not_found", str(e.args[0]) if e.args else "not found")
    if isinstance(e, ValueError):
        return Error("invalid", str(e))
    log.error("error handling a request", exc_info=(type(e), e, e.__traceback__))
    return Error("internal", f"{type(e).__name__}: {e}")


class RequestHandlers:
    """Mixed into EngineServer: `dispatch` answers one request in the loop (or hands it to an IO thread)."""

    def _job(self: EngineServer, job_id: str, who: Principal) -> JobInfo:
        info = self.store.get(job_id)
        if info is None or not who.may_see(info.owner):  # another client's job does not exist for you
            raise KeyError(f"no job {job_id} on this engine (`splatbrush jobs list` shows yours)")
        return info

    def dispatch(self: EngineServer, identity: bytes, decoded: Decoded, who: Principal) -> Reply | None:
        """The reply, or None when an IO thread answers (the request was handed to `_offload`). Submits
        go to `_submit_task` directly (EngineServer._handle_one)."""
        msg, _ = message_from(decoded)
        if isinstance(msg, Hello):
            self.access.hello(identity, msg.token)
            return Welcome(negotiate(msg.versions), self.name, self.config.limits(), self.devices)
        if isinstance(msg, Ping):
            counts = self.store.counts(None if who.admin else who.owner) if who.owner or who.admin else {}
            return Pong(self.name, time.time(), counts)
        if isinstance(msg, (Status, Watch)):
            info = self._job(msg.job_id, who)
            if isinstance(msg, Watch):
                self._watchers.setdefault(msg.job_id, set()).add(identity)
            return JobReply(info)
        if isinstance(msg, Unwatch):
            self._watchers.get(msg.job_id, set()).discard(identity)
            return Ok("unwatched")
        if isinstance(msg, Cancel):
            return JobReply(self._cancel(self._job(msg.job_id, who)))
        if isinstance(msg, Result):
            info = self._job(msg.job_id, who)
            if info.state != "done":
                raise ValueError(f"job {info.id} is {info.state}; results exist only for done jobs")
            self._offload(identity, decoded.rid, 0, lambda: ResultData(info.id, *self.store.output(info.id)))
            return None
        if isinstance(msg, ListJobs):
            return JobList(self.store.all(None if who.admin else who.owner))
        if isinstance(msg, Clean):
            return self._clean(msg, who)
        if isinstance(msg, Adopt):
            return JobList(self._adopt(msg, who))
        if isinstance(msg, Shutdown):
            if not who.admin:
                raise Forbidden(
                    "only an admin may shut this engine down (CURVE: a key in --admin-keys; loopback: the "
                    "engine user's own client token)"
                )
            return Ok("shutting down"), self.request_stop
        raise ProtocolError(f"{msg.TYPE!r} is not a request an engine answers")

    def _clean(self: EngineServer, msg: Clean, who: Principal) -> Cleaned:
        mine = self.store.all(None if who.admin else who.owner)
        ids = [j.id for j in mine] if msg.job_ids is None else msg.job_ids
        visible = {j.id for j in mine}
        removed = [j for j in ids if j in visible and self.store.remove(j)]
        for j in removed:
            self._watchers.pop(j, None)
        return Cleaned(removed)

    def _adopt(self: EngineServer, msg: Adopt, who: Principal) -> list[JobInfo]:
        """An admin gives jobs stored before ownership existed (owner "") an owner: itself or `msg.owner`."""
        if not who.admin:
            raise Forbidden("only an admin may adopt jobs stored before ownership existed")
        ownerless = [j.id for j in self.store.all() if not j.owner]
        ids = ownerless if msg.job_ids is None else msg.job_ids
        for job_id in ids:
            info = self._job(job_id, who)
            if info.owner:
                raise ValueError(f"job {job_id} already belongs to a client; only ownerless jobs are adopted")
        owner = msg.owner or who.owner
        out = [self.store.update(job_id, owner=owner) for job_id in ids]
        log.info("adopted %d ownerless job(s) for %s", len(out), owner)
        return out

    # -------------------------------------------------------------------------------------- submit
    def _check_submit(self: EngineServer, msg: Submit) -> int:
        """Everything that can be refused before a job exists; returns the job's total steps."""
        c, g, s = self.config, msg.gaussians, msg.settings
        if g.num_gaussians > c.max_gaussians:
            raise LimitError(f"{g.num_gaussians} Gaussians exceed this engine's limit of {c.max_gaussians}")
        h, w = msg.style_image.shape[:2]
        if max(h, w) > c.max_resolution:
            raise LimitError(
                f"style image {w}x{h} exceeds the max resolution {c.max_resolution}; downscale it"
            )
        for key, value, limit in (
            ("steps", s.steps, c.max_steps),
            ("size", s.size, c.max_resolution),
            ("views", s.views, c.max_views),
        ):
            if value is not None and value > limit:
                raise LimitError(f"{key}={value} exceeds this engine's limit of {limit}")
        for cam in msg.cameras or []:
            if max(cam["width"], cam["height"]) > c.max_resolution:
                raise LimitError(
                    f"camera {cam['name']!r} is {cam['width']}x{cam['height']}, over {c.max_resolution}"
                )
        if msg.cameras is not None and len(msg.cameras) > c.max_views:
            raise LimitError(f"{len(msg.cameras)} cameras exceed this engine's limit of {c.max_views}")
        self.runner.validate(s)  # ValueError: unknown preset, device not here, bad override
        total = self.runner.total_steps(s)
        if total > c.max_steps:
            raise LimitError(
                f"preset {s.preset!r} runs {total} steps, over this engine's limit of {c.max_steps}"
            )
        est = self.runner.estimate(s, g.num_gaussians, int(g.sh.shape[1]), msg.cameras)
        memory = c.max_job_memory_bytes or device_memory(est.device)
        if memory is not None and est.memory_bytes > memory:
            raise LimitError(
                f"this job needs about {fmt_bytes(est.memory_bytes)} ({est.detail}), more than the "
                f"{fmt_bytes(memory)} this engine has for a job on {est.device}; lower size or views (or "
                "the Gaussians)"
            )
        if est.seconds > c.max_job_seconds:
            raise LimitError(
                f"this job would run about {fmt_seconds(est.seconds)} ({est.detail}), over this engine's "
                f"limit of {fmt_seconds(c.max_job_seconds)}; lower steps, size or views"
            )
        return total

    def _submit_task(self: EngineServer, identity: bytes, decoded: Decoded, who: Principal) -> Reply:
        """In an IO thread: validate, check, store. A retried submit (same owner and idempotency key) gets
        the job the first one made."""
        msg, _ = message_from(decoded)
        assert isinstance(msg, Submit)
        info = self.store.find(who.owner, msg.idempotency_key)
        created = False
        if info is None:
            total = self._check_submit(msg)
            info, created = self.store.create(
                msg.gaussians,
                msg.style_image,
                msg.cameras,
                msg.settings,
                self.runner.overrides(),
                msg.name,
                owner=who.owner,
                idempotency_key=msg.idempotency_key,
                total_steps=total,
            )

        def after() -> None:
            if msg.watch:
                self._watchers.setdefault(info.id, set()).add(identity)
            if created:
                self.pool.enqueue(info.id)
                log.info("job %s: queued (%d Gaussians)", info.id, info.num_gaussians)

        return JobReply(info), after

    def _cancel(self: EngineServer, info: JobInfo) -> JobInfo:
        job_id = info.id
        if info.state in TERMINAL_STATES:
            return info
        self.pool.cancel(job_id)  # the worker running it stops at its next step
        if info.state == "queued" and not self.pool.running(job_id):
            info = self.store.update(job_id, state="cancelled", finished=time.time(), phase="cancelled")
            self.post(Progress(job_id, "cancelled", info.step, info.total_steps, "cancelled"))
        return info
