"""Evaluation runs: every item of a golden dataset is submitted as a job of its type (the
same queue, provider, retries and cost accounting as any job), and once they have all
ended the run is scored with `backburner.jobs.evals`.

A run is written before its jobs; the jobs carry idempotency keys `eval:<run>:<position>`,
so a process that stops between the two leaves a run whose missing jobs the next round
makes, never twice. Scoring is a compare-and-set on the run's status: many workers may
look, one scores.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from backburner.clock import Clock
from backburner.config import Settings
from backburner.errors import FieldProblem, InvalidRequest, UnknownJobType
from backburner.jobs.evals.datasets import (
    DOCUMENT_PLACEHOLDER,
    Dataset,
    Expectations,
    with_documents,
)
from backburner.jobs.evals.scoring import ItemOutcome, score_item, score_run
from backburner.jobs.registry import JobRegistry, JobType
from backburner.providers.pricing import WINDOW_SECONDS
from backburner.storage import Objects, open_objects
from backburner.store import Database, NewJob
from backburner.store import documents as documents_store
from backburner.store import evals as evals_store
from backburner.store import jobs as jobs_store
from backburner.store import steps as steps_store
from backburner.store.audit import Actor
from backburner.store.models import new_id
from backburner.store.transitions import TERMINAL_STATUSES, JobStatus

log = logging.getLogger(__name__)

GRADER = "grade_output"
EVALUATOR = Actor("system", user_agent="evaluations")
BATCH = 500  # jobs per insert


@dataclass(frozen=True)
class EvalRequest:
    job_type: str
    dataset: Dataset
    model: str | None = None
    window: str | None = None  # a discounted completion window: "2h" or "8h"
    label: str | None = None
    rubric: bool = False


def _problem(where: tuple[str | int, ...], error: dict[str, Any]) -> FieldProblem:
    return FieldProblem(
        (*where, "input", *error.get("loc", ())), str(error.get("msg")), str(error.get("type"))
    )


def check_request(registry: JobRegistry, request: EvalRequest) -> JobType:
    """The type, once every item's input fits it (InvalidRequest naming each bad item
    and field)."""
    try:
        job_type = registry.get(request.job_type)
    except UnknownJobType:
        raise InvalidRequest(
            f"unknown job type {request.job_type!r}",
            errors=[FieldProblem(("body", "type"), "unknown job type", "unknown_job_type")],
        ) from None
    if request.window is not None and request.window not in WINDOW_SECONDS:
        raise InvalidRequest(
            "window must be 2h or 8h",
            errors=[FieldProblem(("body", "window"), "one of 2h, 8h")],
        )
    problems: list[FieldProblem] = []
    for index, item in enumerate(request.dataset.items):
        stand_ins = [f"{DOCUMENT_PLACEHOLDER}{n}" for n in range(len(item.documents))]
        try:
            job_type.input_model.model_validate(with_documents(item.input, stand_ins))
        except ValidationError as error:
            where = request.dataset.position(index)
            problems.extend(_problem(where, dict(e)) for e in error.errors()[:5])
    if problems:
        raise InvalidRequest(
            f"some items do not fit job type {job_type.name}", errors=problems[:50]
        )
    return job_type


class Evaluations:
    def __init__(
        self,
        db: Database,
        registry: JobRegistry,
        settings: Settings,
        clock: Clock,
        objects: Objects | None = None,
    ) -> None:
        self.db = db
        self.objects = objects or open_objects(settings, db.sealer)
        self.registry = registry
        self.settings = settings
        self.clock = clock

    async def start(
        self,
        request: EvalRequest,
        *,
        owner: str,
        actor: Actor,
        schedule_id: str | None = None,
        slot_at: datetime | None = None,
    ) -> evals_store.EvalRun:
        """Write the run and make its jobs (for a schedule slot that has its run already:
        that run, its missing jobs made)."""
        job_type = check_request(self.registry, request)
        now = self.clock()
        items = []
        for position, item in enumerate(request.dataset.items, start=1):
            ids = [
                (
                    await documents_store.take_document(
                        self.db,
                        owner=owner,
                        filename=document.name,
                        content_type="text/plain",
                        size_bytes=len(document.text.encode()),
                        text=document.text,
                        now=now,
                        actor=actor,
                    )
                )[0].id
                for document in item.documents
            ]
            items.append(
                evals_store.NewItem(
                    position=position,
                    item_id=item.id,
                    input=with_documents(item.input, ids),
                    expected=item.expected.model_dump(mode="json", exclude_none=True),
                )
            )
        run_id = f"ev_{new_id()}"
        run, _created = await evals_store.insert_run(
            self.db,
            {
                "id": run_id,
                "owner": owner,
                "job_type": job_type.name,
                "dataset": request.dataset.name[:200],
                "dataset_sha256": request.dataset.sha256,
                "model": request.model or self.settings.model_for(job_type.name),
                "completion_window": request.window,
                "label": request.label,
                "prompt_version": job_type.prompt_digest(),
                "rubric": request.rubric,
                "status": evals_store.RUNNING,
                "items": len(items),
                "schedule_id": schedule_id,
                "slot_at": slot_at,
                "created_at": now,
            },
            items,
            actor=actor,
        )
        await self._make_jobs(run)
        return run

    async def _make_jobs(self, run: evals_store.EvalRun) -> None:
        """Make the jobs of the run's items that have none yet."""
        job_type = self.registry.get(run.job_type)
        states = await evals_store.item_states(self.db, run.id)
        missing = [s for s in states if s.job_id is None]
        now = self.clock()
        seconds = (
            WINDOW_SECONDS[run.completion_window] * job_type.sequential_model_calls  # type: ignore[index]
            if run.completion_window
            else None
        )
        deadline = job_type.deadline(now, seconds)
        for start in range(0, len(missing), BATCH):
            chunk = missing[start : start + BATCH]
            made = await jobs_store.insert_jobs(
                self.db,
                [
                    keyed_job(
                        job_type,
                        run.owner,
                        s.input,
                        f"eval:{run.id}:{s.position}",
                        now,
                        deadline,
                        run.model,
                    )
                    for s in chunk
                ],
                now=now,
                actor=EVALUATOR,
            )
            await evals_store.attach_jobs(
                self.db,
                run.id,
                {s.position: job.id for s, (job, _) in zip(chunk, made, strict=True)},
            )

    async def advance(self) -> None:
        """One round over the unfinished runs: make missing jobs, send ended items to the
        grader (runs asking for a rubric), and score runs whose jobs have all ended."""
        for run in await evals_store.unfinished_runs(self.db):
            try:
                await self._advance(run)
            except Exception as error:
                if not self.db.outages.absorbed(error, "evaluations"):
                    log.exception("evaluation run could not advance", extra={"run_id": run.id})

    async def _advance(self, run: evals_store.EvalRun) -> None:
        states = await evals_store.item_states(self.db, run.id, content=False)
        if any(s.job_id is None for s in states):
            await self._make_jobs(run)
            return
        if not all(s.ended for s in states):
            return
        if run.rubric and run.status == evals_store.RUNNING:
            await self._send_to_grader(run)
            return
        grades: dict[int, float] = {}
        grade_ids = [s.grade_job_id for s in states if s.grade_job_id]
        if run.status == evals_store.GRADING:
            graded = await evals_store.job_states(self.db, grade_ids)
            if any(status not in TERMINAL_STATUSES for status, _ in graded.values()):
                return
            grades = {
                s.position: float(graded[s.grade_job_id][1]["score"])
                for s in states
                if s.grade_job_id
                and graded.get(s.grade_job_id, ("", None))[0] == JobStatus.SUCCEEDED
            }
        await self._score(run, grades, grade_ids)

    async def _item_states(self, run_id: str) -> list[evals_store.ItemState]:
        """The run's items with their jobs' results, those kept as objects read."""
        states = await evals_store.item_states(self.db, run_id)
        return [
            dataclasses.replace(s, result=await self.objects.get_json(s.result_object))
            if s.result_object is not None
            else s
            for s in states
        ]

    async def _send_to_grader(self, run: evals_store.EvalRun) -> None:
        grader = self.registry.get(GRADER)
        states = await self._item_states(run.id)
        now = self.clock()
        to_grade = [
            s
            for s in states
            if s.job_status == JobStatus.SUCCEEDED
            and s.expected.get("rubric")
            and not s.grade_job_id
        ]
        made = (
            await jobs_store.insert_jobs(
                self.db,
                [
                    keyed_job(
                        grader,
                        run.owner,
                        {
                            "rubric": s.expected["rubric"],
                            "output": s.result,
                            "reference": s.expected.get("reference"),
                        },
                        f"eval-grade:{run.id}:{s.position}",
                        now,
                        grader.deadline(now, None),
                        None,
                    )
                    for s in to_grade
                ],
                now=now,
                actor=EVALUATOR,
            )
            if to_grade
            else []
        )
        await evals_store.attach_grades(
            self.db,
            run.id,
            {s.position: job.id for s, (job, _) in zip(to_grade, made, strict=True)},
        )

    async def _score(
        self, run: evals_store.EvalRun, grades: dict[int, float], grade_ids: Sequence[str]
    ) -> None:
        states = await self._item_states(run.id)
        outcomes = []
        for s in states:
            expected = Expectations.model_validate(s.expected)
            succeeded = s.job_status == JobStatus.SUCCEEDED
            calls: list[dict[str, Any]] = []
            if expected.tool_calls is not None and succeeded and s.job_id is not None:
                calls = steps_store.tool_calls_of(await steps_store.load_steps(self.db, s.job_id))
            outcomes.append(
                ItemOutcome(
                    item_id=s.item_id,
                    expected=expected,
                    succeeded=succeeded,
                    result=s.result,
                    tool_calls=calls,
                    grade=grades.get(s.position),
                )
            )
        # ROUGE over long summaries is CPU work: off the event loop.
        item_scores = await asyncio.to_thread(lambda: [score_item(o) for o in outcomes])
        totals = score_run(outcomes, item_scores)
        job_ids = [s.job_id for s in states if s.job_id] + list(grade_ids)
        ended = await evals_store.last_job_end(self.db, job_ids) or self.clock()
        scored = await evals_store.finish_run(
            self.db,
            run.id,
            item_scores=[
                evals_store.ItemScore(
                    s.position,
                    scores,
                    None
                    if o.succeeded
                    else "the job was deleted"
                    if s.deleted
                    else f"the job ended {s.job_status}",
                )
                for s, o, scores in zip(states, outcomes, item_scores, strict=True)
            ],
            scores=totals.scores,
            # What the rubric grader's calls cost, within the run's cost.
            details={
                **totals.details,
                "grading_cost_usd": await evals_store.cost_of(self.db, grade_ids),
            }
            if grade_ids
            else totals.details,
            cost_usd=await evals_store.cost_of(self.db, job_ids),
            ended_at=ended,
            duration_seconds=max(0.0, (ended - run.created_at).total_seconds()),
        )
        if scored:
            log.info(
                "evaluation run scored",
                extra={
                    "run_id": run.id,
                    "job_type": run.job_type,
                    "model": run.model,
                    "overall": totals.scores.get("overall"),
                },
            )


def keyed_job(
    job_type: JobType,
    owner: str,
    payload: dict[str, Any],
    key: str,
    now: datetime,
    deadline: datetime | None,
    model: str | None = None,
) -> NewJob:
    """A job Backburner makes itself (an evaluation item, a schedule's slot), named by an
    idempotency key so that making it twice makes it once."""
    return NewJob(
        owner=owner,
        type=job_type.name,
        payload=payload,
        max_attempts=job_type.retry.max_attempts,
        timeout_seconds=job_type.attempt_timeout(now, deadline),
        idempotency_key=key,
        # The key names the item; its hash stands for the request (the same key sent again
        # is the same job).
        request_hash=hashlib.sha256(key.encode()).hexdigest(),
        deadline_at=deadline,
        model=model,
    )
