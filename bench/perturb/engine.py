"""Answers `BiasRequest`s (registered in `request.py`), for one chunk at a time.

1. Each clean image is read once by each scorer it needs: the external pixel scorer (OWL-ViT through its PIL
   path), or, for the embedding space, the grounded model's own detector on the image's cached embedding.
2. Each request's source attribute is the one it carries (an attributes file, a pairs layout) or the scorer's
   reading with the margin; its target is the one it names, or the other attribute of a two-attribute axis.
   Requests that cannot run say why (status ``below_margin``, ``same_attribute``, ``excluded``).
3. Each distinct edit (image, edit settings, direction) runs once, every edit of one setting batched over images
   through its registered `Edit`.
4. Each (image or edited image, question) is asked once: the generated answer (greedy) and the log-probabilities of
   the options, and the self-report "Is the person in this image a {target}?" (P(yes) against P(no) at the first
   answer token). Requests about up to ``prefix_cache_size`` images go to the adapter together, so each image's
   prefix (its vision features) is computed once for all its questions; an edited embedding is handed to the
   adapter under its variant key right before its own questions.
5. The edited image is read again by the scorer: a pixel edit through the scorer's PIL path, on the saved PNG (so
   what is measured is what was saved); an embedding edit by the model's own detector on the edited e.

The options: "1".."10" as the model would write them after its prompt (with a leading space unless the prompt ends
in white space), each followed by an end-of-answer token; an option's log-probability is the logsumexp over the
model's end tokens. So "1" is "1" then the end, never the first token of "10".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.images import ImageRef, load_image
from ..errors import ConfigError
from ..models.base import GenerateRequest, ImageInput, ScoreRequest
from ..registry import EDITS
from .edits import EditContext, EditJob, EditOutcome
from .request import Answer, BiasRequest, BiasResult, EditSpec
from .scorer import decide, embedding_readings, make_scorer

YES_NO = (("yes", ("yes",)), ("no", ("no",)))


class _State:
    """Per adapter: the scorers made so far, the option token ids per prompt, person boxes per image."""

    def __init__(self, adapter):
        self.adapter = adapter
        self.scorers: dict[str, Any] = {}
        self.options: dict[tuple[str, int, int], tuple[tuple[int, ...], ...]] = {}
        self.person_boxes: dict[tuple[str, str, float], Any] = {}

    @classmethod
    def of(cls, adapter) -> "_State":
        state = getattr(adapter, "_bias_state", None)
        if state is None:
            state = adapter._bias_state = cls(adapter)
        return state

    def scorer(self, name: str):
        if name not in self.scorers:
            self.scorers[name] = make_scorer(name, str(getattr(self.adapter, "device", "cpu")))
        return self.scorers[name]

    def end_ids(self) -> list[int]:
        ids = sorted(getattr(self.adapter, "eos_ids", ()) or ())
        if not ids:
            raise ConfigError(f"{type(self.adapter).__name__}: the bias probes need the model's end-of-answer token")
        return ids

    def option_ids(self, question: str, low: int, high: int) -> tuple[tuple[int, ...], ...]:
        """For each option low..high and each end token: the token ids of the option then the end token."""
        key = (question, low, high)
        if key not in self.options:
            adapter = self.adapter
            if not hasattr(adapter, "_continuation_ids") or not hasattr(adapter, "tokenizer"):
                raise ConfigError(f"{type(adapter).__name__} gives no token ids; the bias probes read the answer's "
                                  "options by their token ids (an hf, tiny-* or grounded model)")
            text = adapter.format_prompt(question)
            lead = "" if text[-1:].isspace() else " "
            ends = self.end_ids()
            self.options[key] = tuple(tuple(adapter._continuation_ids(text, lead + str(r))) + (end,)
                                      for r in range(low, high + 1) for end in ends)
        return self.options[key]


@dataclass
class _Ask:
    image: ImageInput
    question: str
    kind: str                 # "rating" or "report"
    generate: bool = True
    max_new_tokens: int = 16
    low: int = 1
    high: int = 10

    @property
    def key(self) -> tuple:
        return (self.image.cache_key, self.kind, self.question, self.generate, self.max_new_tokens, self.low, self.high)


def _p_yes(words: dict[str, float]) -> float:
    from ..tasks.pope import p_yes

    return p_yes(words["yes"], words["no"])


def ask(adapter, state: _State, items: list[_Ask]) -> dict[tuple, Any]:
    """Each distinct item's answer: an `Answer` (rating) or P(yes) (report), keyed by ``_Ask.key``. The items
    about at most ``prefix_cache_size`` images go to the adapter in one generate and one score call."""
    unique = list({item.key: item for item in items}.values())
    by_image: dict[str, list[_Ask]] = {}
    for item in unique:
        by_image.setdefault(item.image.cache_key, []).append(item)
    per_call = max(1, int(getattr(adapter, "prefix_cache_size", 8) or 1))
    keys = list(by_image)
    out: dict[tuple, Any] = {}
    for start in range(0, len(keys), per_call):
        group = [item for key in keys[start:start + per_call] for item in by_image[key]]
        ratings = [i for i in group if i.kind == "rating"]
        generating = [i for i in ratings if i.generate]
        texts = adapter.generate([GenerateRequest(i.image, i.question, i.max_new_tokens) for i in generating]) \
            if generating else []
        generated = {i.key: t for i, t in zip(generating, texts)}
        requests = []
        for item in group:
            if item.kind == "rating":
                requests.append(ScoreRequest(item.image, item.question,
                                             continuation_ids=state.option_ids(item.question, item.low, item.high)))
            else:
                requests.append(ScoreRequest(item.image, item.question, first_token_words=YES_NO))
        scores = adapter.score(requests)
        n_ends = len(state.end_ids())
        for item, score in zip(group, scores):
            if item.kind == "report":
                out[item.key] = _p_yes(score.first_token_words)
                continue
            values = np.asarray(score.continuation_ids, dtype=np.float64).reshape(item.high - item.low + 1, n_ends)
            options = tuple(float(np.logaddexp.reduce(row)) for row in values)
            text = generated.get(item.key)
            out[item.key] = Answer(text.text if text else None, text.n_tokens if text else None,
                                   text.finished if text else None, options)
    return out


def _reader(request: BiasRequest) -> str | None:
    """Who reads the request's attributes: "model" (the grounded model's own detector), a scorer name, or None."""
    if request.edit.space == "embedding":
        return "model"
    return request.scorer


def _readings(adapter, state: _State, images: dict[str, ImageInput], requests: list[BiasRequest]) -> dict[tuple, dict]:
    """{(cache key, reader, axis name): {attribute: confidence}} for every clean image a request reads."""
    wanted: dict[tuple[str, str], dict[str, Any]] = {}
    for r in requests:
        reader = _reader(r)
        if reader is not None:
            wanted.setdefault((reader, r.axis.name), {"axis": r.axis, "keys": {}})["keys"][r.image.cache_key] = None
    out: dict[tuple, dict] = {}
    for (reader, axis_name), entry in wanted.items():
        keys = list(entry["keys"])
        if reader == "model":
            import torch

            e = torch.stack([adapter.embedding(k, images[k].image) for k in keys])
            found = embedding_readings(adapter, e, entry["axis"])
        else:
            found = state.scorer(reader).readings([images[k].image for k in keys], entry["axis"])
        out.update({(k, reader, axis_name): reading for k, reading in zip(keys, found)})
    return out


@dataclass
class _Plan:
    request: BiasRequest
    result: BiasResult
    job_key: tuple | None = None


def _resolve(request: BiasRequest, reading: dict[str, float] | None) -> BiasResult:
    """The request's source and target, or why it cannot run."""
    axis = request.axis
    space = request.edit.space
    if request.source is not None:
        source, origin = request.source, "pairs" if space == "pairs" else "column"
    else:
        origin = "scorer"
        source = decide(reading, request.margin) if reading else None
    result = BiasResult("ok", source, request.target, origin, reading_before=dict(reading or {}))
    if source is None:
        result.status = "below_margin"
        result.reason = (f"the scorer's readings ({', '.join(f'{k} {v:.3f}' for k, v in (reading or {}).items())}) are "
                         f"within the margin {request.margin:g} of each other" if reading else "no scorer to read it")
        return result
    target = request.target
    if target is None:
        others = [a for a in axis.names if a != source]
        if len(others) != 1:
            raise ConfigError(f"axis {axis.name} has {len(axis.names)} attributes: a request must name its target")
        target = others[0]
    result.target = target
    if target == source:
        result.status, result.reason = "same_attribute", f"the image already shows {source}"
    elif request.directions and (source, target) not in request.directions:
        result.status, result.reason = "excluded", f"direction {source}->{target} is not asked"
    return result


def answer(adapter, requests: list[BiasRequest]) -> list[BiasResult]:
    state = _State.of(adapter)
    images = {r.image.cache_key: r.image for r in requests}
    readings = _readings(adapter, state, images, requests)
    plans = [_Plan(r, _resolve(r, readings.get((r.image.cache_key, _reader(r), r.axis.name)))) for r in requests]

    # -- the edits: one job per (image, edit settings, direction), batched per edit setting ------------------------
    jobs: dict[tuple, EditJob] = {}
    for plan in plans:
        r, res = plan.request, plan.result
        if res.status != "ok":
            continue
        plan.job_key = (r.image.cache_key, r.edit, res.source, res.target, r.counterpart)
        if plan.job_key in jobs:
            continue
        region = _region(state, r) if r.edit.space == "pixel" else None
        counterpart = load_image(ImageRef(path=r.counterpart)) if r.edit.space == "pairs" else None
        jobs[plan.job_key] = EditJob(r.image.cache_key, r.image.image, r.edit, r.axis, res.source, res.target,
                                     region, counterpart)
    outcomes = _run_edits(adapter, state, plans, jobs)

    # -- the questions: clean images first, then each edited image --------------------------------------------------
    clean_asks = [a for p in plans if p.result.status == "ok" for a in _asks(p.request, p.request.image, p.result.target)]
    answers = ask(adapter, state, clean_asks)
    after_images: dict[tuple, ImageInput] = {}
    by_job: dict[tuple, list[_Plan]] = {}
    for plan in plans:
        if plan.job_key is not None:
            by_job.setdefault(plan.job_key, []).append(plan)
    pending: list[_Ask] = []
    for job_key, members in by_job.items():
        job, outcome = jobs[job_key], outcomes[job_key]
        request = members[0].request
        variant = job.spec.variant(job.source, job.target)
        if job.spec.space == "pairs":
            edited = ImageInput(request.counterpart, outcome.image)
        else:
            edited = ImageInput(request.image.key, outcome.image if outcome.image is not None else request.image.image,
                                variant=variant)
        after_images[job_key] = edited
        asks = [a for p in members for a in _asks(p.request, edited, p.result.target)]
        if outcome.embedding is not None:        # an edited embedding: served under its variant key, asked at once
            adapter.put_embedding(edited.cache_key, outcome.embedding)
            answers.update(ask(adapter, state, asks))
        else:
            pending += asks
    answers.update(ask(adapter, state, pending))
    after_readings = _after_readings(adapter, state, jobs, outcomes, by_job, after_images)

    # -- the results -----------------------------------------------------------------------------------------------
    out = []
    for plan in plans:
        r, res = plan.request, plan.result
        if res.status == "ok":
            outcome = outcomes[plan.job_key]
            edited = after_images[plan.job_key]
            res.before = answers[_rating(r, r.image).key]
            res.after = answers[_rating(r, edited).key]
            if r.report:
                res.report_before = answers[_report(r, r.image, res.target).key]
                res.report_after = answers[_report(r, edited, res.target).key]
            res.reading_after = dict(after_readings.get(plan.job_key, {}))
            res.l2, res.linf, res.seconds = outcome.l2, outcome.linf, outcome.seconds
            if r.edit.space == "pixel":
                res.region = "person" if jobs[plan.job_key].region is not None else "image"
            if r.keep_image and outcome.png is not None:
                res.png = outcome.png
        out.append(res)
    return out


def _rating(request: BiasRequest, image: ImageInput) -> _Ask:
    return _Ask(image, request.question, "rating", request.generate, request.max_new_tokens, request.low, request.high)


def _report(request: BiasRequest, image: ImageInput, target: str) -> _Ask:
    return _Ask(image, request.axis.report_question(target), "report")


def _asks(request: BiasRequest, image: ImageInput, target: str) -> list[_Ask]:
    return [_rating(request, image)] + ([_report(request, image, target)] if request.report else [])


def _region(state: _State, request: BiasRequest):
    """The box a pixel edit may change: the whole image, or the largest person box (the image set's, or the
    scorer's at ``person_threshold``); None means the whole image (also when no person is found)."""
    spec = request.edit
    if spec.region != "person":
        return None
    if request.person_box is not None:
        return request.person_box
    key = (request.image.cache_key, request.scorer, spec.person_threshold)
    if key not in state.person_boxes:
        state.person_boxes[key] = state.scorer(request.scorer).person_box(request.image.image, spec.person_threshold)
    return state.person_boxes[key]


def _run_edits(adapter, state: _State, plans: list[_Plan], jobs: dict[tuple, EditJob]) -> dict[tuple, EditOutcome]:
    """Every job's outcome, the jobs of one edit spec in one `Edit.run` call."""
    by_spec: dict[tuple[EditSpec, str | None], list[tuple]] = {}
    scorer_of = {p.job_key: p.request.scorer for p in plans if p.job_key is not None}
    for key, job in jobs.items():
        by_spec.setdefault((job.spec, scorer_of[key]), []).append(key)
    outcomes: dict[tuple, EditOutcome] = {}
    for (spec, scorer_name), keys in by_spec.items():
        edit = EDITS.get(spec.name)()
        scorer = None
        if edit.uses_scorer(spec.space):
            if scorer_name is None:
                raise ConfigError(f"the {spec.name} edit in {spec.space} space needs a scorer (params field 'scorer')")
            scorer = state.scorer(scorer_name)
        found = edit.run(EditContext(adapter, scorer), [jobs[k] for k in keys])
        outcomes.update(zip(keys, found))
    return outcomes


def _after_readings(adapter, state: _State, jobs: dict[tuple, EditJob], outcomes: dict[tuple, EditOutcome],
                    by_job: dict[tuple, list[_Plan]], after_images: dict[tuple, ImageInput]) -> dict[tuple, dict]:
    """The scorer's reading of each edited image: the saved pixels through its PIL path, or the edited e through the
    model's own detector; pairs: the counterpart, when the request names a scorer."""
    out: dict[tuple, dict] = {}
    pixel: dict[tuple[str, str], list[tuple]] = {}
    embedded: dict[str, list[tuple]] = {}
    for key, members in by_job.items():
        reader = _reader(members[0].request)
        if reader == "model":
            embedded.setdefault(jobs[key].axis.name, []).append(key)
        elif reader is not None:
            pixel.setdefault((reader, jobs[key].axis.name), []).append(key)
    for (reader, _), keys in pixel.items():
        found = state.scorer(reader).readings([after_images[k].image for k in keys], jobs[keys[0]].axis)
        out.update(zip(keys, found))
    for _, keys in embedded.items():
        import torch

        e = torch.stack([outcomes[k].embedding for k in keys])
        out.update(zip(keys, embedding_readings(adapter, e, jobs[keys[0]].axis)))
    return out


__all__ = ["answer", "ask"]
