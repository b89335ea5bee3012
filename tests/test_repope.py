"""RePOPE beside POPE: the relabelling's counts against the shared files, the RePOPE specs reading the user's copy,
and a finished POPE run re-scored under other labels without the model (hand-checked, refused when ids differ)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from bench.config import RunConfig
from bench.data.pope_files import REPOPE_SHA256, read_questions
from bench.resources import assets_dir
from bench.results.relabel import compare, question_table
from bench.runner.plan import build_tasks

from conftest import SHARED, run_cli

REFERENCE = SHARED / "reference"
SPLITS = ("random", "popular", "adversarial")
# Questions kept / removed / relabelled per split, as RePOPE publishes them (shared/reference/PROVENANCE.md).
PUBLISHED = {"random": (2774, 226, 144), "popular": (2727, 273, 178), "adversarial": (2684, 316, 172)}

needs_shared = pytest.mark.skipif(not (REFERENCE / "repope").is_dir(),
                                  reason=f"{REFERENCE / 'repope'} is absent (the shared reference copy of RePOPE)")


def repope_file(split: str) -> Path:
    return REFERENCE / "repope" / f"coco_repope_{split}.json"


def one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2 and err.startswith("bench: error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, err


# -- RePOPE against the official files ---------------------------------------------------------------------------

@needs_shared
@pytest.mark.parametrize("split", SPLITS)
def test_repope_counts_against_the_official_files(split):
    assert hashlib.sha256(repope_file(split).read_bytes()).hexdigest() == REPOPE_SHA256[repope_file(split).name]
    official = question_table(read_questions(REFERENCE / "pope" / f"coco_pope_{split}.json"))
    repope = question_table(read_questions(repope_file(split)))
    counts = compare(official, repope)
    assert counts["unmatched"] == 0                  # same ids, images and texts
    assert (counts["kept"], counts["removed"], counts["relabelled"]) == PUBLISHED[split]
    # the same counts by a plain reading of both files
    labels = {q.question_id: q.label for q in read_questions(REFERENCE / "pope" / f"coco_pope_{split}.json")}
    new = {q.question_id: q.label for q in read_questions(repope_file(split))}
    assert (len(new), len(labels) - len(new), sum(labels[i] != new[i] for i in new)) == PUBLISHED[split]


@needs_shared
def test_repope_spec_reads_the_users_folder_and_pins_its_files(tmp_path):
    (tmp_path / "val2014").mkdir()
    config = RunConfig(model="fake-harness", tasks=["repope_coco"], data_root=tmp_path,
                       overrides={"repope_dir": str(REFERENCE / "repope")})
    tasks = {t.name: t for t in build_tasks(config)}
    assert sorted(tasks) == [f"repope_coco_{s}" for s in sorted(SPLITS)]
    for split in SPLITS:
        task = tasks[f"repope_coco_{split}"]
        samples = task.samples()
        assert len(samples) == PUBLISHED[split][0]
        assert task.data_fingerprint()["questions"]["sha256"] == REPOPE_SHA256[f"coco_repope_{split}.json"]
        assert task.primary_metric() == "generate_f1" and task.spec.group == "repope_coco"
    assert type(tasks["repope_coco_random"]).group_label(list(tasks.values())).startswith("RePOPE splits")


def test_repope_spec_without_its_folder_is_one_line_error(tmp_path, capsys):
    (tmp_path / "val2014").mkdir()
    args = ["run", "--model", "fake-harness", "--tasks", "repope_coco_random", "--data-root", str(tmp_path),
            "--output", str(tmp_path / "r"), "--no-progress"]
    code, _, err = run_cli(args, capsys)
    one_line_error(code, err, "repope_coco_random", "--set repope_dir=", "coco_repope_random.json", "not shipped")
    code, _, err = run_cli(args + ["--set", f"repope_dir={tmp_path / 'empty'}"], capsys)
    one_line_error(code, err, "RePOPE question file not found", str(tmp_path / "empty" / "coco_repope_random.json"))


@needs_shared
def test_a_changed_repope_file_fails_its_checksum(tmp_path, capsys):
    (tmp_path / "val2014").mkdir()
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "coco_repope_random.json").write_bytes(repope_file("random").read_bytes()[:-200])
    code, _, err = run_cli(["run", "--model", "fake-harness", "--tasks", "repope_coco_random", "--data-root", str(tmp_path),
                            "--set", f"repope_dir={tmp_path / 'copy'}", "--output", str(tmp_path / "r"), "--no-progress"],
                           capsys)
    one_line_error(code, err, "does not match the pinned RePOPE file", REPOPE_SHA256["coco_repope_random.json"])


# -- re-scoring a POPE run under other labels --------------------------------------------------------------------

IMAGES = ("dog.jpg", "giraffe.jpg", "horses.jpg", "kite.jpg", "motorcycle.jpg", "fruits.jpg")
OBJECTS = ("dog", "car", "cat", "bus")


def write_jsonl(path: Path, items: list[dict]) -> Path:
    path.write_text("".join(json.dumps(i) + "\n" for i in items))
    return path


@pytest.fixture
def pope_run(tmp_path, capsys):
    """A finished run of an official-format POPE question file over six mini photos (24 questions), answered by
    the fake harness (deterministic yes/no answers): (its folder, its questions)."""
    questions = [{"question_id": 1 + i * len(OBJECTS) + j, "image": image, "text": f"Is there a {obj} in the image?",
                  "label": "yes" if (i + j) % 2 else "no"}
                 for i, image in enumerate(IMAGES) for j, obj in enumerate(OBJECTS)]
    qfile = write_jsonl(tmp_path / "questions.json", questions)
    spec = tmp_path / "my_pope.yaml"
    spec.write_text(f"task: my_pope\ntype: pope\ndataset:\n  source: pope_official\n  root: {assets_dir() / 'mini_coco'}\n"
                    f"  questions: {qfile}\n  images: images\nparams:\n  answer_mode: generate\n")
    code, _, err = run_cli(["run", "--model", "fake-harness", "--tasks", str(spec), "--output", str(tmp_path / "results"),
                            "--run-name", "p", "--chunk-images", "2", "--bootstrap-resamples", "50", "--no-progress"], capsys)
    assert code == 0, err
    return tmp_path / "results" / "p", questions


def hand_metrics(pairs: list[tuple[str, str]]) -> dict[str, float]:
    """Accuracy, precision, recall, F1 (yes positive) and the predicted yes-ratio of (prediction, label) pairs."""
    tp = sum(p == "yes" and t == "yes" for p, t in pairs)
    fp = sum(p == "yes" and t == "no" for p, t in pairs)
    fn = sum(p == "no" and t == "yes" for p, t in pairs)
    def share(num, den):  # 0 when the denominator is 0, as scikit-learn's zero_division=0
        return num / den if den else 0.0

    precision, recall = share(tp, tp + fp), share(tp, tp + fn)
    return {"accuracy": sum(p == t for p, t in pairs) / len(pairs), "precision": precision, "recall": recall,
            "f1": share(2 * precision * recall, precision + recall), "yes_ratio": (tp + fp) / len(pairs)}


def test_rescoring_under_new_labels_equals_a_hand_computation(pope_run, tmp_path, capsys):
    run, questions = pope_run
    before = (run / "metrics.json").read_bytes()
    rows = pd.read_parquet(run / "tasks" / "my_pope" / "rows.parquet")
    answers = dict(zip(rows["question_id"], rows["gen_answer"]))
    assert set(answers.values()) == {"yes", "no"}             # the fixture exercises both answers
    # relabel: drop questions 3, 10 and 17; flip the labels of 5, 6 and 20 (a RePOPE-style file of my own)
    new = [{**q, "label": {"yes": "no", "no": "yes"}[q["label"]] if q["question_id"] in (5, 6, 20) else q["label"]}
           for q in questions if q["question_id"] not in (3, 10, 17)]
    labels = write_jsonl(tmp_path / "mine.json", new)
    code, out, err = run_cli(["rescore", str(run), "--labels", str(labels), "--labels-name", "Mine v1"], capsys)
    assert code == 0, err
    assert "my_pope under Mine v1 labels (mine.json): 21 questions kept, 3 removed, 3 relabelled" in out
    assert (run / "metrics.json").read_bytes() == before       # the original metrics stay as they were
    relabelled = json.loads((run / "metrics.mine-v1.json").read_text())
    entry = relabelled["tasks"]["my_pope"]
    expected = hand_metrics([(answers[q["question_id"]], q["label"]) for q in new])
    for name, value in expected.items():
        assert entry["metrics"][f"generate_{name}"]["value"] == pytest.approx(value), name
    assert entry["n_samples"] == 21
    assert relabelled["labels"]["source"] == "Mine v1"
    assert relabelled["labels"]["files"]["my_pope"] == {
        "task": "my_pope", "file": "mine.json", "sha256": hashlib.sha256(labels.read_bytes()).hexdigest(),
        "n_kept": 21, "n_removed": 3, "n_relabelled": 3}
    original = json.loads(before)["tasks"]["my_pope"]["metrics"]["generate_f1"]["value"]
    assert original == pytest.approx(hand_metrics([(answers[q["question_id"]], q["label"]) for q in questions])["f1"])
    # the leaderboard shows both, the relabelled one in its own column named with its label source
    code, _, err = run_cli(["leaderboard", "--results", str(run.parent), "--out", str(tmp_path / "board.csv"),
                            "--format", "csv"], capsys)
    assert code == 0, err
    board = pd.read_csv(tmp_path / "board.csv")
    assert board.loc[0, "my_pope · F1 (generate)"] == pytest.approx(100 * original, abs=1e-4)
    assert board.loc[0, "my_pope · F1 (generate) [labels: Mine v1]"] == pytest.approx(100 * expected["f1"], abs=1e-4)


def test_labels_that_are_not_repope_need_a_name(pope_run, tmp_path, capsys):
    run, questions = pope_run
    labels = write_jsonl(tmp_path / "mine.json", questions)
    code, _, err = run_cli(["rescore", str(run), "--labels", str(labels)], capsys)
    one_line_error(code, err, str(labels), "not one of the pinned RePOPE files", "--labels-name")
    assert not list(run.glob("metrics.*.json"))


def test_labels_whose_ids_do_not_match_the_run_are_refused(pope_run, tmp_path, capsys):
    run, questions = pope_run
    moved = [{**q, "text": "Is there a zebra in the image?"} if q["question_id"] in (2, 7, 9) else q for q in questions]
    labels = write_jsonl(tmp_path / "moved.json", moved)
    code, _, err = run_cli(["rescore", str(run), "--labels", str(labels), "--labels-name", "x"], capsys)
    one_line_error(code, err, str(labels), "3 of 24 question ids do not match run p")
    assert not list(run.glob("metrics.*.json"))


@needs_shared
def test_a_repope_file_of_another_run_is_refused(pope_run, capsys):
    run, _ = pope_run
    code, _, err = run_cli(["rescore", str(run), "--labels", str(repope_file("random"))], capsys)
    one_line_error(code, err, "coco_repope_random.json", "2774 of 2774 question ids do not match run p")


def test_each_split_finds_its_own_file_and_the_group_mean_needs_all_three(tmp_path, capsys):
    """POPE's splits share question ids and positives: a file is matched to its split by its negatives."""
    out = tmp_path / "results"
    code, _, err = run_cli(["run", "--model", "fake-harness", "--tasks", "pope_mini", "--answer-mode", "generate",
                            "--output", str(out), "--run-name", "g", "--bootstrap-resamples", "50", "--no-progress"], capsys)
    assert code == 0, err
    files = {}
    for split in SPLITS:
        rows = pd.read_parquet(out / "g" / "tasks" / f"pope_mini_{split}" / "rows.parquet")
        assert rows["question_id"].tolist()[:3] == [1, 2, 3]        # ids repeat across the splits
        files[split] = write_jsonl(tmp_path / f"labels_{split}.json", [
            {"question_id": int(r.question_id), "image": Path(r.image).name, "text": r.question,
             "label": {"yes": "no", "no": "yes"}[r.label] if r.question_id == 2 else r.label}
            for r in rows.itertuples() if r.question_id != 1])
    code, stdout, err = run_cli(["rescore", str(out / "g"), "--labels", *map(str, files.values()), "--labels-name", "t"],
                                capsys)
    assert code == 0, err
    for split in SPLITS:
        assert f"pope_mini_{split} under t labels (labels_{split}.json)" in stdout
    metrics = json.loads((out / "g" / "metrics.t.json").read_text())
    group = metrics["groups"]["pope_mini"]["metrics"]["generate_f1"]["value"]
    assert group == pytest.approx(sum(metrics["tasks"][f"pope_mini_{s}"]["metrics"]["generate_f1"]["value"]
                                      for s in SPLITS) / 3)
    assert {e["n_removed"] for e in metrics["labels"]["files"].values()} == {1}
    code, _, err = run_cli(["rescore", str(out / "g"), "--labels", str(files["random"]), str(files["popular"]),
                            "--labels-name", "t"], capsys)
    assert code == 0, err
    assert json.loads((out / "g" / "metrics.t.json").read_text())["groups"] == {}   # no mean over two of three splits
    code, _, err = run_cli(["rescore", str(out / "g"), "--labels", str(files["random"]), str(files["random"]),
                            "--labels-name", "t"], capsys)
    one_line_error(code, err, "task pope_mini_random is already relabelled by")


@needs_shared
def test_a_pope_run_rescored_under_repope_equals_a_repope_run(tmp_path, capsys):
    """The fake harness answers from (image, prompt) alone, so rescoring its pope_coco_random run under RePOPE's
    labels must give exactly what its repope_coco_random run gives: values and intervals."""
    from PIL import Image

    (tmp_path / "val2014").mkdir()
    for name in {q.image for q in read_questions(repope_file("random"))}:
        Image.new("RGB", (8, 8), (len(name) % 256, 0, 0)).save(tmp_path / "val2014" / name)
    common = ["--model", "fake-harness", "--data-root", str(tmp_path), "--output", str(tmp_path / "results"),
              "--bootstrap-resamples", "100", "--no-progress", "--no-leaderboard"]
    assert run_cli(["run", *common, "--tasks", "pope_coco_random", "--run-name", "pope"], capsys)[0] == 0
    assert run_cli(["run", *common, "--tasks", "repope_coco_random", "--run-name", "repope",
                    "--set", f"repope_dir={REFERENCE / 'repope'}"], capsys)[0] == 0
    code, out, err = run_cli(["rescore", str(tmp_path / "results" / "pope"), "--labels", str(repope_file("random"))],
                             capsys)
    assert code == 0, err
    assert "pope_coco_random under RePOPE labels (coco_repope_random.json): 2774 questions kept, 226 removed, " \
           "144 relabelled" in out
    rescored = json.loads((tmp_path / "results" / "pope" / "metrics.repope.json").read_text())["tasks"]["pope_coco_random"]
    direct = json.loads((tmp_path / "results" / "repope" / "metrics.json").read_text())["tasks"]["repope_coco_random"]
    assert rescored["metrics"] == direct["metrics"] and rescored["n_samples"] == direct["n_samples"] == 2774


def test_a_broken_relabelled_file_is_named_and_the_run_keeps_its_row(pope_run, tmp_path, capsys):
    run, _ = pope_run
    (run / "metrics.broken.json").write_text("{not json")
    code, _, err = run_cli(["leaderboard", "--results", str(run.parent), "--out", str(tmp_path / "board.md")], capsys)
    assert code == 0, err
    assert f"skipped {run / 'metrics.broken.json'}" in err
    board = (tmp_path / "board.md").read_text()
    assert "| p |" in board and "my_pope · F1 (generate) ↑" in board and "[labels:" not in board
