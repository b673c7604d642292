"""A few made-up rows per benchmark, written in each benchmark's published format.

    r1v eval examples --out runs/bench-examples     # then point `r1v eval ... --data` at them

They let anyone try every `r1v eval` command offline, and the tests read them through the
same readers as the real files: MMMU's per-subject parquet folders (with a dev file that must
be skipped), MathVista's testmini parquet (decoded_image + metadata struct), MATH-500's
jsonl, AIME's parquet, GPQA's csv (with a multi-line quoted column), POPE's JSON lines (one
file per split, COCO-named images in a val2014/ folder beside them). Images are real PNG
bytes in the parquet image struct ({"bytes", "path"}) that `datasets` writes. The questions
are not the benchmarks' (those are never copied here).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def png(seed: int, size=(64, 48)) -> bytes:
    img = Image.new("RGB", size, (255, 255, 255))
    d = ImageDraw.Draw(img)
    d.ellipse([seed % 20, 5, 30 + seed % 20, 35], fill=((seed * 50) % 256, 80, 160))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


MMMU_ROWS = [
    # subject Art: multiple choice with two images, open numeric
    dict(id="validation_Art_1", question="<image 1> and <image 2>: which shape is round?",
         options="['square', 'circle', 'triangle', 'line']", answer="B", question_type="multiple-choice",
         subfield="Drawing", topic_difficulty="Easy", n_images=2),
    dict(id="validation_Art_2", question="How many sides has the shape in <image 1>?", options="[]", answer="4",
         question_type="open", subfield="Drawing", topic_difficulty="Medium", n_images=1),
    # subject Math: open with a decimal answer, multiple choice
    dict(id="validation_Math_1", question="What is pi to two decimals? <image 1>", options="[]", answer="3.14",
         question_type="open", subfield="Geometry", topic_difficulty="Hard", n_images=1),
    dict(id="validation_Math_2", question="Which is prime? <image 1>", options="['4', '6', '7', '9']",
         answer="C", question_type="multiple-choice", subfield="Number theory", topic_difficulty="Easy",
         n_images=1),
]


def write_mmmu(root: Path) -> list[dict]:
    """MMMU/MMMU layout: <Subject>/validation-00000-of-00001.parquet (+ a dev file beside it)."""
    for subject in ("Art", "Math"):
        rows = [r for r in MMMU_ROWS if r["id"].split("_")[1] == subject]
        table = {k: [r[k] for r in rows] for k in ("id", "question", "options", "answer", "question_type",
                                                   "subfield", "topic_difficulty")}
        arrays = {k: pa.array(v, pa.string()) for k, v in table.items()}
        for k in range(1, 8):
            cells = [{"bytes": png(10 * i + k), "path": f"{r['id']}_{k}.png"} if k <= r["n_images"] else None
                     for i, r in enumerate(rows)]
            arrays[f"image_{k}"] = pa.array(cells, IMAGE)
        d = root / subject
        d.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(arrays), d / "validation-00000-of-00001.parquet")
        dev = {k: pa.array([f"dev_{subject}_1"] if k == "id" else ["x"], pa.string()) for k in table}
        pq.write_table(pa.table(dev), d / "dev-00000-of-00001.parquet")  # must not be read
    return MMMU_ROWS


MATHVISTA_ROWS = [
    dict(pid="1", question="Which colour is the circle?", query="Hint: answer with the option letter.\n"
         "Question: Which colour is the circle?\nChoices:\n(A) red\n(B) blue\n(C) green",
         choices=["red", "blue", "green"], unit=None, precision=None, answer="blue", question_type="multi_choice",
         answer_type="text", task="figure question answering"),
    dict(pid="2", question="How many circles?", query="Hint: answer with an integer.\nQuestion: How many circles?",
         choices=None, unit=None, precision=None, answer="3", question_type="free_form", answer_type="integer",
         task="math word problem"),
    dict(pid="3", question="What is the ratio?", query="Hint: answer with a two-decimal float.\nQuestion: What is "
         "the ratio?", choices=None, unit=None, precision=2.0, answer="1.45", question_type="free_form",
         answer_type="float", task="math word problem"),
    dict(pid="4", question="List the years.", query="Question: List the years.", choices=None, unit=None,
         precision=None, answer="[2007, 2008]", question_type="free_form", answer_type="list",
         task="figure question answering"),
]


def write_mathvista(root: Path) -> list[dict]:
    """AI4Math/MathVista: data/testmini-00000-of-00001.parquet with decoded_image + metadata struct."""
    rows = MATHVISTA_ROWS
    arrays = {k: pa.array([r[k] for r in rows], pa.string()) for k in
              ("pid", "question", "query", "unit", "answer", "question_type", "answer_type")}
    arrays["choices"] = pa.array([r["choices"] for r in rows], pa.list_(pa.string()))
    arrays["precision"] = pa.array([r["precision"] for r in rows], pa.float64())
    arrays["image"] = pa.array([f"images/{r['pid']}.jpg" for r in rows], pa.string())
    arrays["decoded_image"] = pa.array([{"bytes": png(i), "path": None} for i in range(len(rows))], IMAGE)
    arrays["metadata"] = pa.array([{"task": r["task"], "category": "math-targeted-vqa"} for r in rows])
    d = root / "data"
    d.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(arrays), d / "testmini-00000-of-00001.parquet")
    return rows


MATH500_ROWS = [
    dict(problem="Compute $1+1$.", solution="Clearly $1+1=\\boxed{2}$.", answer="2", subject="Prealgebra",
         level=1, unique_id="test/prealgebra/1.json"),
    dict(problem="Simplify $\\frac{2}{4}$.", solution="It is $\\boxed{\\frac{1}{2}}$.", answer="\\frac12",
         subject="Algebra", level=2, unique_id="test/algebra/2.json"),
    dict(problem="Solve $x^2=9$, $x>0$.", solution="So $x=\\boxed{3}$.", answer="3", subject="Algebra", level=3,
         unique_id="test/algebra/3.json"),
]


def write_math500(path: Path) -> list[dict]:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in MATH500_ROWS))
    return MATH500_ROWS


AIME_ROWS = [
    dict(id=60, problem="Find the remainder of 2024 divided by 1000.", solution="24", answer="24",
         url="https://example.org/1", year="2024"),
    dict(id=61, problem="Find 3 cubed.", solution="27", answer="27", url="https://example.org/2", year="2024"),
]


def write_aime(path: Path) -> list[dict]:
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = {k: [r[k] for r in AIME_ROWS] for k in AIME_ROWS[0]}
    pq.write_table(pa.table(cols), path)
    return AIME_ROWS


GPQA_ROWS = [
    {"Record ID": "recA", "Question": "Which particle carries a negative charge?", "Correct Answer": "electron",
     "Incorrect Answer 1": "proton", "Incorrect Answer 2": "neutron", "Incorrect Answer 3": "photon",
     "High-level domain": "Physics"},
    {"Record ID": "recB", "Question": "Which molecule is water?", "Correct Answer": "H2O",
     "Incorrect Answer 1": "CO2", "Incorrect Answer 2": "O2", "Incorrect Answer 3": "NaCl",
     "High-level domain": "Chemistry"},
    {"Record ID": "recC", "Question": "Which organelle makes ATP?", "Correct Answer": "mitochondrion",
     "Incorrect Answer 1": "ribosome", "Incorrect Answer 2": "nucleus", "Incorrect Answer 3": "vacuole",
     "High-level domain": "Biology"},
]


def write_gpqa(path: Path) -> list[dict]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(GPQA_ROWS[0]) + ["Explanation"])
        w.writeheader()
        for r in GPQA_ROWS:
            w.writerow({**r, "Explanation": "because, \"quoted\", and\nmulti-line"})
    return GPQA_ROWS


POPE_ROWS = [  # (question_id, image, object, label): present and absent objects, as POPE pairs them
    (1, "COCO_val2014_000000000001.jpg", "circle", "yes"), (2, "COCO_val2014_000000000001.jpg", "dog", "no"),
    (3, "COCO_val2014_000000000002.jpg", "circle", "yes"), (4, "COCO_val2014_000000000002.jpg", "car", "no"),
]


def write_pope(root: Path) -> list[dict]:
    """RUCAIBox/POPE's layout: coco_pope_<split>.json (JSON lines) with the images in val2014/."""
    (root / "val2014").mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(sorted({r[1] for r in POPE_ROWS})):
        (root / "val2014" / name).write_bytes(png(k + 7))
    rows = [{"question_id": q, "image": img, "text": f"Is there a {obj} in the image?", "label": label}
            for q, img, obj, label in POPE_ROWS]
    for split in ("random", "adversarial"):
        (root / f"coco_pope_{split}.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def write_examples(root: Path) -> dict[str, Path]:
    """Write every benchmark's examples under `root`; {bench: the path to pass as --data}."""
    root = Path(root)
    paths = {"mmmu": root / "MMMU", "mathvista": root / "MathVista", "math500": root / "MATH-500" / "test.jsonl",
             "aime24": root / "aime_2024" / "train-00000-of-00001.parquet", "gpqa": root / "gpqa" / "gpqa_diamond.csv",
             "pope": root / "POPE"}
    write_mmmu(paths["mmmu"])
    write_mathvista(paths["mathvista"])
    write_math500(paths["math500"])
    write_aime(paths["aime24"])
    write_gpqa(paths["gpqa"])
    write_pope(paths["pope"])
    return paths
