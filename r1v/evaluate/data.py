"""Reading benchmark files as published (parquet with embedded images, jsonl, csv), locally.

Nothing is downloaded: point `--data` at a file or at a folder of the published files (for
example a snapshot of the `MMMU/MMMU` data set repository, one folder per subject).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from r1v.errors import R1VError

FORMATS = (".parquet", ".jsonl", ".json", ".csv")


def find_files(path: str | Path, *, prefer: str | None = None) -> list[Path]:
    """Data files at `path` (a file, or every data file under a folder, sorted).

    `prefer`: under a folder, keep only files whose name starts with it when there are any
    (MMMU's folders hold dev / validation / test parquet side by side)."""
    path = Path(path)
    if not path.exists():
        raise R1VError(f"data not found: {path}")
    if path.is_file():
        if path.suffix not in FORMATS:
            raise R1VError(f"{path}: unknown data format {path.suffix!r}; expected one of {', '.join(FORMATS)}")
        return [path]
    files = sorted(p for p in path.rglob("*") if p.suffix in FORMATS and p.is_file() and not p.name.startswith("."))
    if prefer:
        chosen = [p for p in files if p.name.startswith(prefer)]
        files = chosen or files
    if not files:
        raise R1VError(f"no data files ({', '.join(FORMATS)}) under {path}")
    return files


def read_rows(path: str | Path, *, prefer: str | None = None) -> list[dict]:
    """Every row of every data file at `path`, as dicts (image columns keep their bytes)."""
    rows = []
    for f in find_files(path, prefer=prefer):
        try:
            rows += _read_one(f)
        except R1VError:
            raise
        except UnicodeDecodeError:
            raise R1VError(f"{f} is not UTF-8 text") from None
        except Exception as e:  # a corrupt or foreign file: say which, not a traceback
            raise R1VError(f"cannot read {f}: {type(e).__name__}: {e}") from None
    if not rows:
        raise R1VError(f"no rows in {path}")
    return rows


def _read_one(f: Path) -> list[dict]:
    if f.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(f).to_pylist()
    if f.suffix == ".csv":
        with open(f, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    text = f.read_text(encoding="utf-8")
    if f.suffix == ".json" and text.lstrip()[:1] in "[{":
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None  # JSON lines in a .json file
        if isinstance(data, list):
            return data
        if isinstance(data, dict) and all(isinstance(v, dict) for v in data.values()):
            return list(data.values())  # {id: row} (MathVista's GitHub release)
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise R1VError(f"{f}:{n}: not JSON: {e}") from None
    return rows


def image_bytes(cell) -> bytes | None:
    """An image cell as published: {"bytes": ..., "path": ...} (parquet), raw bytes, or None."""
    if cell is None:
        return None
    if isinstance(cell, (bytes, bytearray)):
        return bytes(cell)
    if isinstance(cell, dict) and cell.get("bytes"):
        return cell["bytes"]
    return None


def need(rows: list[dict], fields: tuple[str, ...], where: str) -> None:
    """Every row has every field, or one clear error (the wrong --bench, or a folder of mixed files)."""
    for n, row in enumerate(rows):
        missing = [f for f in fields if not isinstance(row, dict) or f not in row]
        if missing:
            has = ", ".join(sorted(row)) if isinstance(row, dict) else type(row).__name__
            raise R1VError(f"{where}: row {n} lacks field(s) {', '.join(missing)} (has: {has}); "
                           f"is this the right --bench and --data?")
