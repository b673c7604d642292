"""A few made-up rows per benchmark, written in each benchmark's published format.

    r1v eval examples --out runs/bench-examples     # then point `r1v eval ... --data` at them

They let anyone try every `r1v eval` command offline, and the tests read them through the
same readers as the real files: MMMU's per-subject parquet folders (with a dev file that must
be skipped), MathVista's testmini parquet (decoded_image + metadata struct), MATH-500's
jsonl, AIME's parquet, GPQA's csv (with a multi-line quoted column), POPE's JSON lines (one
file per split, COCO-named images in a val2014/ folder beside them), OlympiadBench's per-config
parquet, MathVision's test / testmini parquet, MathVerse's testmini (+ text-only) parquet, MMMU-Pro's
per-config folders, and HallusionBench's JSON with its figure folder. Images are real PNG
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


# ---------------------------------------------------------------- OlympiadBench, MathVision, MathVerse
OLYMPIADBENCH_ROWS = [  # (config, row): made-up problems in the published fields
    ("OE_MM_maths_en_COMP", dict(id=3001, question="<image_1>\nA square has side 2. What is its area?",
                                 final_answer=["$4$"], is_multiple_answer=False, unit=None,
                                 answer_type="Numerical", error=None, subfield="Geometry", n_images=1)),
    ("OE_MM_maths_en_COMP", dict(id=3002, question="Find all real $x$ with $x^2=5x-6$, as in <image_1>.",
                                 final_answer=["$2, 3$"], is_multiple_answer=True, unit=None,
                                 answer_type="Numerical", error=None, subfield="Algebra", n_images=1)),
    ("OE_TO_maths_en_COMP", dict(id=3101, question="Solve $|x|<2$.", final_answer=["$(-2,2)$"],
                                 is_multiple_answer=False, unit=None, answer_type="Interval", error=None,
                                 subfield="Algebra", n_images=0)),
    ("OE_TO_maths_en_COMP", dict(id=3102, question="Give $\\sqrt{2}$ to two decimal places.",
                                 final_answer=["$1.41$"], is_multiple_answer=False, unit=None,
                                 answer_type="Numerical", error="0.01", subfield="Number Theory", n_images=0)),
    ("OE_TO_maths_en_COMP", dict(id=3103, question="Simplify $(x+1)^2-x^2$.", final_answer=["$2 x+1$"],
                                 is_multiple_answer=False, unit=None, answer_type="Expression", error=None,
                                 subfield="Algebra", n_images=0)),
]
OLYMPIADBENCH_SKIPPED = [  # under a folder: other languages and theorem proofs are not read
    ("OE_TO_maths_zh_COMP", dict(id=9001, question="计算 $1+1$。", final_answer=["$2$"], is_multiple_answer=False,
                                 unit=None, answer_type="Numerical", error=None, subfield="代数", n_images=0)),
    ("TP_TO_maths_en_COMP", dict(id=9501, question="Prove that 1 < 2.", final_answer=None, is_multiple_answer=False,
                                 unit=None, answer_type=None, error=None, subfield="Algebra", n_images=0)),
]


def write_olympiadbench(root: Path) -> list[dict]:
    """Hothan/OlympiadBench (parquet export): <config>/train/0000.parquet, image_1..image_5 structs."""
    by_config: dict[str, list[dict]] = {}
    for config, row in OLYMPIADBENCH_ROWS + OLYMPIADBENCH_SKIPPED:
        by_config.setdefault(config, []).append(row)
    for config, rows in by_config.items():
        arrays = {
            "id": pa.array([r["id"] for r in rows], pa.int64()),
            "question": pa.array([r["question"] for r in rows], pa.string()),
            "solution": pa.array([[f"Worked solution for {r['id']}."] for r in rows], pa.list_(pa.string())),
            "final_answer": pa.array([r["final_answer"] for r in rows], pa.list_(pa.string())),
            "context": pa.array([None] * len(rows), pa.string()),
        }
        for k in range(1, 6):
            arrays[f"image_{k}"] = pa.array([{"bytes": png(r["id"] + k), "path": None} if k <= r["n_images"] else None
                                             for r in rows], IMAGE)
        arrays["modality"] = pa.array(["Multimodal" if "_MM_" in config else "Text-only"] * len(rows), pa.string())
        arrays["difficulty"] = pa.array(["Competition"] * len(rows), pa.string())
        arrays["is_multiple_answer"] = pa.array([r["is_multiple_answer"] for r in rows], pa.bool_())
        for k in ("unit", "answer_type", "error", "subfield"):
            arrays[k] = pa.array([r[k] for r in rows], pa.string())
        arrays["question_type"] = pa.array(["Theorem proof" if config.startswith("TP") else "Open-ended"] * len(rows))
        arrays["subject"] = pa.array(["Math"] * len(rows), pa.string())
        arrays["language"] = pa.array(["Chinese" if "_zh_" in config else "English"] * len(rows), pa.string())
        d = root / config / "train"
        d.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(arrays), d / "0000.parquet")
    return [r for _, r in OLYMPIADBENCH_ROWS]


MATHVISION_ROWS = [  # test; ids "1" and "2" are also in testmini, as testmini is a subset of test
    dict(id="1", question="<image1>\nHow many dots are in the picture?", options=["3", "4", "5", "6", "7"],
         answer="C", level=1, subject="counting"),
    dict(id="2", question="<image1>\nThe triangle is equilateral with side 4. What is its height?", options=[],
         answer="2\\sqrt{3}", level=3, subject="metric geometry - length"),
    dict(id="3", question="<image1>\nWhich of the figures can be folded into a cube?",
         options=["A", "B", "C", "D", "E"],
         answer="E", level=2, subject="solid geometry"),
]


def write_mathvision(root: Path) -> list[dict]:
    """MathLLMs/MathVision: data/test-*.parquet and data/testmini-*.parquet (decoded_image struct)."""
    d = root / "data"
    d.mkdir(parents=True, exist_ok=True)
    for name, rows in (("test-00000-of-00001-3532b8d3f1b4047a.parquet", MATHVISION_ROWS),
                       ("testmini-00000-of-00001-f8ff70fcb2f29b1d.parquet", MATHVISION_ROWS[:2])):
        arrays = {k: pa.array([r[k] for r in rows], pa.string()) for k in ("id", "question", "answer", "subject")}
        arrays["options"] = pa.array([r["options"] for r in rows], pa.list_(pa.string()))
        arrays["image"] = pa.array([f"images/{r['id']}.jpg" for r in rows], pa.string())
        arrays["decoded_image"] = pa.array([{"bytes": png(40 + int(r["id"])), "path": None} for r in rows], IMAGE)
        arrays["solution"] = pa.array([""] * len(rows), pa.string())
        arrays["level"] = pa.array([r["level"] for r in rows], pa.int64())
        pq.write_table(pa.table(arrays), d / name)
    return MATHVISION_ROWS


MATHVERSE_PROBLEMS = [  # (problem_index, question_type, full question, answer, subject)
    ("1", "multi-choice", "The circle has radius 1. What is its area?\nChoices:\nA:1\nB:\\pi\nC:2\\pi\nD:4",
     "B", "Plane Geometry"),
    ("2", "free-form", "The line passes through (0, 1) and (1, 3). What is its slope?", "2", "Functions"),
]
MATHVERSE_VERSIONS = ("Text Dominant", "Text Lite", "Vision Intensive", "Vision Dominant", "Vision Only")


def mathverse_rows() -> list[dict]:
    rows, n = [], 0
    for pid, qtype, question, answer, subject in MATHVERSE_PROBLEMS:
        for version in MATHVERSE_VERSIONS:
            n += 1
            shown = "" if version == "Vision Only" else question
            hint = ("provide the correct option letter, e.g., A, B, C, D" if qtype == "multi-choice"
                    else "provide the final value, e.g., 1, 2.5, 300")
            lead = "According to the question shown in the image, " if version == "Vision Only" else ""
            rows.append(dict(sample_index=str(n), problem_index=pid, problem_version=version, question=shown,
                             answer=answer, question_type=qtype,
                             metadata={"split": "testmini", "source": "made-up", "subject": subject,
                                       "subfield": "Example"},
                             query_wo=f"{lead}Please directly answer the question and {hint}.\nQuestion: {shown}",
                             query_cot=f"{lead}Please first conduct reasoning, and then answer the question and "
                                       f"{hint}, at the end.\nQuestion: {shown}",
                             question_for_eval=question))
    return rows


def write_mathverse(root: Path) -> list[dict]:
    """AI4Math/MathVerse: testmini.parquet (five versions, image struct) + testmini_text_only.parquet."""
    root.mkdir(parents=True, exist_ok=True)
    rows = mathverse_rows()
    text_only = [dict(r, sample_index=r["problem_index"], problem_version="Text Only")
                 for r in rows if r["problem_version"] == "Text Dominant"]
    for name, part, with_image in (("testmini.parquet", rows, True), ("testmini_text_only.parquet", text_only, False)):
        keys = ("sample_index", "problem_index", "problem_version", "question", "answer", "question_type",
                "query_wo", "query_cot", "question_for_eval")
        arrays = {k: pa.array([r[k] for r in part], pa.string()) for k in keys}
        arrays["image"] = (pa.array([{"bytes": png(60 + i), "path": f"image_{i}.png"} for i in range(len(part))], IMAGE)
                           if with_image else pa.array([""] * len(part), pa.string()))
        arrays["metadata"] = pa.array([r["metadata"] for r in part])
        pq.write_table(pa.table(arrays), root / name)
    return rows + text_only


# ---------------------------------------------------------------- MMMU-Pro, HallusionBench
COLOURS = ["red", "blue", "green", "yellow", "purple", "orange", "black", "white", "grey", "brown"]
MMMUPRO_ROWS = [  # (config, row): made-up questions; `refs` are the image_k a row holds
    ("standard (10 options)", dict(id="test_Art_1", question="Which colour fills the circle in <image 1>?",
                                   options=str(COLOURS), answer="C", subject="Art", topic_difficulty="Easy",
                                   img_type="['Paintings']", refs=[1])),
    # options that are images, in shuffled order: A is <image 2>, B is <image 1>
    ("standard (10 options)", dict(id="test_Math_2", question="Which picture shows the larger circle?",
                                   options=str(["<image 2>", "<image 1>", "both are equal", "neither"]), answer="B",
                                   subject="Math", topic_difficulty="Medium", img_type="['Diagrams']", refs=[1, 2])),
    # image_2 belongs to the explanation: referenced nowhere, so never sent
    ("standard (10 options)", dict(id="test_Biology_3", question="How many cells are drawn in <image 1>?",
                                   options=str([str(n) for n in range(1, 11)]), answer="D", subject="Biology",
                                   topic_difficulty="Hard", img_type="['Diagrams']", refs=[1, 2])),
    ("standard (4 options)", dict(id="test_Art_1", question="Which colour fills the circle in <image 1>?",
                                  options=str(["red", "blue", "green", "yellow"]), answer="C", subject="Art",
                                  topic_difficulty="Easy", img_type="['Paintings']", refs=[1])),
    ("vision", dict(id="test_Art_1", options=COLOURS, answer="C", subject="Art")),
    ("vision", dict(id="test_Math_2", options=["<image 2>", "<image 1>", "both are equal", "neither"], answer="B",
                    subject="Math")),
]


def write_mmmupro(root: Path) -> list[tuple[str, dict]]:
    """MMMU/MMMU_Pro snapshot: '<config>/test-00000-of-00001.parquet' per config; standard rows with
    image_1..image_7 structs and options as a Python-list string, vision rows with one screenshot."""
    for config in dict.fromkeys(c for c, _ in MMMUPRO_ROWS):
        rows = [r for c, r in MMMUPRO_ROWS if c == config]
        if config == "vision":
            arrays = {"id": pa.array([r["id"] for r in rows], pa.string()),
                      "image": pa.array([{"bytes": png(40 + i, (96, 96)), "path": f"{r['id']}.png"}
                                         for i, r in enumerate(rows)], IMAGE),
                      "options": pa.array([r["options"] for r in rows], pa.list_(pa.string())),
                      "answer": pa.array([r["answer"] for r in rows], pa.string()),
                      "subject": pa.array([r["subject"] for r in rows], pa.string())}
        else:
            arrays = {k: pa.array([r.get(k, "?") for r in rows], pa.string()) for k in ("id", "question", "options",
                                                                                       "explanation")}
            for k in range(1, 8):
                arrays[f"image_{k}"] = pa.array([{"bytes": mmmupro_image(r["id"], k), "path": None}
                                                 if k in r["refs"] else None for r in rows], IMAGE)
            for k in ("img_type", "answer", "topic_difficulty", "subject"):
                arrays[k] = pa.array([r[k] for r in rows], pa.string())
        d = root / config
        d.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(arrays), d / "test-00000-of-00001.parquet")
    return MMMUPRO_ROWS


def mmmupro_image(row_id: str, k: int) -> bytes:
    """The bytes of a standard row's image_k (distinct per row and k, so tests can check the order)."""
    return png(sum(map(ord, row_id)) + 7 * k)


# (category, subcategory, visual_input, set_id, figure_id, question_id, question, gt_answer): two sets, nine
# questions, four question pairs and four figures (the VS questions of figure 0 have no figure)
HALLUSIONBENCH_ROWS = [
    ("VD", "illusion", "1", "0", "0", "0", "Are the two bars in the figure the same length?", "1"),
    ("VD", "illusion", "1", "0", "0", "1", "Is the left bar longer than the right bar?", "0"),
    ("VD", "illusion", "2", "0", "1", "0", "Are the two bars in the figure the same length?", "0"),
    ("VD", "illusion", "2", "0", "1", "1", "Is the left bar longer than the right bar?", "1"),
    ("VS", "chart", "0", "0", "0", "0", "Did Lakeland sell more kites than Hillport in 2011?", "1"),
    ("VS", "chart", "0", "0", "0", "1", "Did Hillport sell more than 900 kites in 2011?", "0"),
    ("VS", "chart", "1", "0", "1", "0", "Did Lakeland sell more kites than Hillport in 2011?", "1"),
    ("VS", "chart", "1", "0", "1", "1", "Did Hillport sell more than 900 kites in 2011?", "0"),
    ("VS", "chart", "2", "0", "2", "0", "Did Lakeland sell more kites than Hillport in 2011?", "0"),
]
_HB_KEYS = ("category", "subcategory", "visual_input", "set_id", "figure_id", "question_id", "question", "gt_answer")


def hallusionbench_rows() -> list[dict]:
    rows = []
    for values in HALLUSIONBENCH_ROWS:
        r = dict(zip(_HB_KEYS, values))
        fig = f"./{r['category']}/{r['subcategory']}/{r['set_id']}_{r['figure_id']}.png"
        fig = None if r["visual_input"] == "0" else fig
        rows.append({**r, "sample_note": "kites" if r["category"] == "VS" else "bars",
                     "gt_answer_details": ("It is so: " if r["gt_answer"] == "1" else "It is not so: ") + r["question"],
                     "filename": fig})
    return [{k: r[k] for k in ("category", "subcategory", "visual_input", "set_id", "figure_id", "sample_note",
                               "question_id", "question", "gt_answer_details", "gt_answer", "filename")} for r in rows]


def write_hallusionbench(root: Path) -> list[dict]:
    """tianyi-lab/HallusionBench's release: HallusionBench.json with the figures unzipped beside it in
    hallusion_bench/<category>/<subcategory>/<set>_<figure>.png (and the repository's result sample)."""
    rows = hallusionbench_rows()
    root.mkdir(parents=True, exist_ok=True)
    (root / "HallusionBench.json").write_text(json.dumps(rows, indent=2))
    (root / "HallusionBench_result_sample.json").write_text(json.dumps([{**rows[0], "model_prediction": "Yes"}]))
    for r in rows:
        if r["filename"]:
            p = root / "hallusion_bench" / r["filename"].removeprefix("./")
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(png(int(r["figure_id"]) + (0 if r["category"] == "VD" else 20)))
    return rows


def write_hallusionbench_parquet(root: Path) -> list[dict]:
    """lmms-lab/HallusionBench: data/image-00000-of-00001.parquet and data/non_image-00000-of-00001.parquet."""
    rows = hallusionbench_rows()
    d = root / "data"
    d.mkdir(parents=True, exist_ok=True)
    for split, part in (("image", [r for r in rows if r["visual_input"] != "0"]),
                        ("non_image", [r for r in rows if r["visual_input"] == "0"])):
        arrays = {k: pa.array([r[k] for r in part], pa.string()) for k in part[0]}
        arrays["image"] = pa.array([{"bytes": png(int(r["figure_id"]) + (0 if r["category"] == "VD" else 20)),
                                     "path": None} if split == "image" else None for r in part], IMAGE)
        pq.write_table(pa.table(arrays), d / f"{split}-00000-of-00001.parquet")
    return rows


def write_examples(root: Path) -> dict[str, Path]:
    """Write every benchmark's examples under `root`; {bench: the path to pass as --data}."""
    root = Path(root)
    paths = {"mmmu": root / "MMMU", "mathvista": root / "MathVista", "math500": root / "MATH-500" / "test.jsonl",
             "aime24": root / "aime_2024" / "train-00000-of-00001.parquet", "gpqa": root / "gpqa" / "gpqa_diamond.csv",
             "pope": root / "POPE", "olympiadbench": root / "OlympiadBench", "mathvision": root / "MathVision",
             "mathverse": root / "MathVerse", "mmmupro": root / "MMMU_Pro", "hallusionbench": root / "HallusionBench"}
    for bench, write in (("mmmu", write_mmmu), ("mathvista", write_mathvista), ("math500", write_math500),
                         ("aime24", write_aime), ("gpqa", write_gpqa), ("pope", write_pope),
                         ("olympiadbench", write_olympiadbench), ("mathvision", write_mathvision),
                         ("mathverse", write_mathverse), ("mmmupro", write_mmmupro),
                         ("hallusionbench", write_hallusionbench)):
        write(paths[bench])
    return paths
