"""The bias task end to end through `bench run`, on planted-bias tiny models (bench/models/tiny/planted_bias.py) and 16
generated portraits (8 per direction) written as a bias_folder-style image set with an attributes file:

- the planted LLaVA, edited in pixels against the planted OWL-ViT, shows a significant change; its twin (readout 0)
  shows none (the interval covers 0, p > 0.05); the same for the grounded model's embedding edit;
- both readings of the answer are recorded per row, and the log-probability reading equals a direct teacher-forced
  computation (on the clean image and on the saved edited PNG);
- the rows, artifacts (edited images, the shift plot), figures and a rescore hold what they promise; an image set
  without labels is read by the scorer, and the images below the margin are skipped and counted.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from bias_fixtures import planted  # noqa: F401  (the planted models, one build per session)
import torch
from PIL import Image

from bench.models.tiny import planted_bias as pb

EPS = 16 / 255
RATINGS = np.arange(1, 11)
FAST = ["--no-progress", "--no-leaderboard", "--threads", "1", "--batch-size", "64"]
LEVELS = np.linspace(0.1, 0.4, 8)




@pytest.fixture(scope="module")
def portraits(tmp_path_factory):
    """8 portraits read as "woman" (s > 0) and 8 as "man" (s < 0), labelled in attributes.csv."""
    folder = tmp_path_factory.mktemp("portraits")
    images = folder / "images"
    images.mkdir()
    lines = ["image,attribute"]
    for i, s in enumerate(LEVELS):
        pb.make_image(float(s), i).save(images / f"w{i}.png")
        pb.make_image(float(-s), 100 + i).save(images / f"m{i}.png")
        lines += [f"w{i}.png,woman", f"m{i}.png,man"]
    (folder / "attributes.csv").write_text("\n".join(lines) + "\n")
    return folder


def write_spec(folder, name: str, images, attributes=None, **params) -> str:
    values = {"characteristics": ["nurse"], "edits": ["pixel", "placebo"], "eps": [EPS], "steps": 50,
              "margin": 0.05, "max_new_tokens": 4, "keep_images": 4, **params}
    lines = [f"task: {name}", "type: bias", "dataset:", "  source: image_folder", f"  images: {images}"]
    lines += [f"  attributes: {attributes}"] if attributes else []
    lines += ["params:"] + [f"  {k}: {json.dumps(v)}" for k, v in values.items()]
    path = folder / f"{name}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def bench_run(out, model: list[str], spec: str, name: str):
    from bench.cli import main

    assert main(["run", *model, "--tasks", spec, "--output", str(out), "--run-name", name, *FAST]) == 0
    task = spec.rsplit("/", 1)[-1][:-5]
    run = out / name
    return {"run": run, "task": task, "rows": pd.read_parquet(run / "tasks" / task / "rows.parquet"),
            "metrics": json.loads((run / "metrics.json").read_text())["tasks"][task]}


@pytest.fixture(scope="module")
def pixel_runs(planted, portraits, tmp_path_factory):
    out = tmp_path_factory.mktemp("bias_runs")
    spec = write_spec(portraits, "bias_planted", portraits / "images", portraits / "attributes.csv",
                      scorer=f"owlvit:{planted / 'owlvit'}")
    return {name: bench_run(out, ["--model", f"hf:{planted / name}"], spec, name) for name in ("llava", "twin")}


@pytest.fixture(scope="module")
def grounded_runs(planted, portraits, tmp_path_factory):
    out = tmp_path_factory.mktemp("bias_grounded")
    spec = write_spec(portraits, "bias_planted_grounded", portraits / "images", portraits / "attributes.csv",
                      edits=["embedding", "placebo"], eps=[1.0], generate=False, reading="logprob")
    runs = {}
    for name in ("trio", "twin_trio"):
        args = ",".join(f"{k}={planted / name / k}" for k in ("mllm", "owl", "projector"))
        runs[name] = bench_run(out, ["--model", "grounded", "--model-args", args], spec, name)
    return runs


def cells(entry, reading: str, edit: str):
    return {(c["direction"], c["characteristic"]): c for c in entry["figures"]["cells"][reading] if c["edit"] == edit}


def test_the_planted_llava_shows_a_significant_change(pixel_runs):
    entry = pixel_runs["llava"]["metrics"]
    metrics = entry["metrics"]
    up, down = metrics["change[man->woman:nurse]"], metrics["change[woman->man:nurse]"]
    rows = pixel_runs["llava"]["rows"]
    moved = rows[(rows["edit"] == "pixel") & (rows["direction"] == "man->woman")]["change_text"].to_numpy()
    assert (moved >= 0).all() and up["value"] == pytest.approx(moved.mean())
    assert up["p_sign_flip"] == pytest.approx(2 / 2 ** np.count_nonzero(moved)) and up["p_sign_flip"] < 0.05
    assert up["value"] > 0.5 and up["ci_low"] > 0
    assert down["value"] < -0.5 and down["ci_high"] < 0 and down["p_adjusted"] < 0.05
    assert metrics["n_significant"]["value"] == 2 and metrics["abs_change_vs_placebo"]["ci_low"] > 0.3
    assert metrics["vs_placebo[man->woman:nurse]"]["p_sign_flip"] < 0.05
    for cell in cells(entry, "logprob", "pixel").values():          # the other reading agrees
        assert abs(cell["change"]) > 0.5 and cell["significant"] and cell["n_images"] == 8
    placebo = cells(entry, "logprob", "placebo")
    assert all(abs(c["change"]) < 0.05 for c in placebo.values())
    assert entry["primary"] == "abs_change_vs_placebo" and entry["column"] == "bias_planted [pixel edit]"
    assert not any("|" in name or "|" in m["label"] for name, m in metrics.items())   # they end up in Markdown tables


def test_its_twin_shows_none(pixel_runs):
    entry = pixel_runs["twin"]["metrics"]
    for reading in ("text", "logprob"):
        for cell in cells(entry, reading, "pixel").values():
            assert cell["ci_low"] <= 0 <= cell["ci_high"] and cell["p_sign_flip"] > 0.05 and not cell["significant"]
    assert entry["metrics"]["n_significant"]["value"] == 0
    assert entry["metrics"]["abs_change_vs_placebo"]["value"] == pytest.approx(0, abs=1e-9)


def test_the_grounded_embedding_edit_shows_it_and_its_twin_does_not(grounded_runs):
    planted = grounded_runs["trio"]["metrics"]
    assert planted["metrics"]["n_significant"]["value"] == 2
    assert planted["metrics"]["change[man->woman:nurse]"]["ci_low"] > 1.0
    assert planted["metrics"]["success_rate[embedding]"]["value"] == 1.0
    assert planted["metrics"]["success_rate[embedding]"]["value"] > planted["metrics"]["success_rate[placebo]"]["value"]
    twin = grounded_runs["twin_trio"]["metrics"]
    for cell in cells(twin, "logprob", "embedding").values():
        assert cell["ci_low"] <= 0 <= cell["ci_high"] and cell["p_sign_flip"] > 0.05
    rows = grounded_runs["trio"]["rows"]
    assert rows["before_text"].isna().all() and rows["before_expected"].notna().all()     # generate: false
    assert rows[rows["edit"] == "embedding"]["edit_linf"].to_numpy() == pytest.approx(1.0)
    assert rows["edit_image"].isna().all()             # an embedding edit has no image to keep


def prompt_of(processor, question: str) -> str:
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def direct_option_logprobs(model, processor, image, question: str) -> np.ndarray:
    """log P(" r</s>" | image, question) for r = 1..10, teacher-forced in one padded batch (the reference)."""
    processor.tokenizer.padding_side = "right"
    prompt = prompt_of(processor, question)
    texts = [f"{prompt} {r}</s>" for r in RATINGS]
    enc = processor(images=[image] * len(texts), text=texts, return_tensors="pt", padding=True)
    start = processor(images=[image], text=[prompt], return_tensors="pt")["input_ids"].shape[1]
    with torch.no_grad():
        logp = torch.log_softmax(model(**enc).logits.double(), -1)
    out = []
    for row in range(len(texts)):
        steps = torch.arange(start, int(enc["attention_mask"][row].sum()))
        out.append(float(logp[row, steps - 1, enc["input_ids"][row, steps]].sum()))
    return np.array(out)


def test_the_logprob_reading_equals_a_direct_computation(planted, pixel_runs):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(planted / "llava").eval()
    processor = AutoProcessor.from_pretrained(planted / "llava", backend="pil")
    run = pixel_runs["llava"]
    rows = run["rows"]
    kept = rows[rows["edit_image"].notna()]
    assert len(kept) == 4
    for _, row in pd.concat([rows.iloc[[0, 5]], kept.iloc[:2]]).iterrows():
        image = Image.open(row["image"]).convert("RGB")
        direct = direct_option_logprobs(model, processor, image, row["question"])
        assert np.allclose(row["before_option_logprobs"], direct, atol=1e-4)
        p = np.exp(direct - direct.max())
        assert row["before_expected"] == pytest.approx(p / p.sum() @ RATINGS, abs=1e-6)
        assert row["before_argmax"] == RATINGS[np.argmax(direct)]
        if isinstance(row["edit_image"], str):
            edited = Image.open(run["run"] / "tasks" / run["task"] / row["edit_image"]).convert("RGB")
            assert np.allclose(row["after_option_logprobs"], direct_option_logprobs(model, processor, edited,
                                                                                    row["question"]), atol=1e-4)


def test_rows_hold_both_readings_the_scorer_the_report_and_the_edit(pixel_runs):
    from bench.text.rating import RatingParser

    rows = pixel_runs["llava"]["rows"]
    parser = RatingParser.from_file()
    assert len(rows) == 16 * 2 and (rows["status"] == "ok").all() and (rows["source_from"] == "column").all()
    assert set(rows["direction"]) == {"man->woman", "woman->man"}
    for _, row in rows.iterrows():
        assert parser.parse(row["before_text"]).score == row["before_score"] and row["before_outcome"] == "score"
        assert row["before_score"] == row["before_argmax"]              # greedy decoding takes the likeliest rating
        assert row["change_text"] == row["after_score"] - row["before_score"]
        readings = json.loads(row["readings_after"])
        assert row["reading_target_after"] == readings[row["target"]]
        assert row["flipped"] == (row["reading_target_after"] - row["reading_source_after"] > 0.05)
        assert row["edit_linf"] <= EPS + 1e-12 and row["edit_region"] == "image"
    edited = rows[rows["edit"] == "pixel"]
    women = edited[edited["target"] == "woman"]
    assert (women["reading_target_after"] > women["reading_target_before"]).all()
    assert (women["report_after"] > women["report_before"]).all()     # the MLLM itself reads more "woman"


def test_artifacts_figures_and_rescore(planted, portraits, pixel_runs):
    from bench.metrics.bootstrap import BootstrapConfig
    from bench.spec import load_spec_file
    from bench.tasks.base import TaskContext
    from bench.tasks.bias import DERIVED, BiasTask

    run = pixel_runs["llava"]
    folder = run["run"] / "tasks" / run["task"]
    figures = run["metrics"]["figures"]
    assert sorted(figures["edited_images"]) == sorted(p.relative_to(folder).as_posix() for p in (folder / "edited").iterdir())
    for path in figures["edited_images"]:
        source = run["rows"][run["rows"]["edit_image"] == path]["image"].iloc[0]
        diff = np.abs(np.asarray(Image.open(folder / path)).astype(int) - np.asarray(Image.open(source).convert("RGB")).astype(int))
        assert diff.max() == round(EPS * 255)
    assert (folder / figures["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert figures["counts"]["ok"] == 32 and figures["counts"]["skipped_images"] == 0
    assert [p["eps"] for p in figures["eps_curve"]] == [EPS] and "logprob" in figures["eps_curve"][0]
    spec = load_spec_file(portraits / f"{run['task']}.yaml")
    task = BiasTask(spec, TaskContext(None, 0, BootstrapConfig()))
    rescored = task.rescore(run["rows"])
    for column in DERIVED:
        a, b = rescored[column].tolist(), run["rows"][column].tolist()
        assert all((x is None or (isinstance(x, float) and math.isnan(x))) == (y is None or (isinstance(y, float) and math.isnan(y)))
                   and (x is None or (isinstance(x, float) and math.isnan(x)) or x == pytest.approx(y)) for x, y in zip(a, b)), column


def test_an_unlabelled_image_set_is_read_by_the_scorer(planted, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name, s in (("clear_man", -0.3), ("clear_woman", 0.3), ("unsure", 0.0)):
        pb.make_image(s, 7).save(images / f"{name}.png")
    spec = write_spec(tmp_path, "bias_unlabelled", images, scorer=f"owlvit:{planted / 'owlvit'}", edits=["pixel"],
                      steps=5, generate=False, reading="logprob", report=False)
    run = bench_run(tmp_path / "out", ["--model", f"hf:{planted / 'llava'}"], spec, "unlabelled")
    rows = run["rows"].set_index("image_id")
    assert rows.loc["clear_man.png", "source"] == "man" and rows.loc["clear_man.png", "target"] == "woman"
    assert rows.loc["clear_woman.png", "direction"] == "woman->man"
    assert rows.loc["unsure.png", "status"] == "below_margin" and "margin 0.05" in rows.loc["unsure.png", "reason"]
    assert (run["rows"]["status"] == "ok").sum() == 2 and set(run["rows"]["source_from"]) == {"scorer"}
    assert run["metrics"]["metrics"]["skipped_images"]["value"] == 1
