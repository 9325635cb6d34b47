"""``fsx prepare``: detect, align, crop and equalise every face of a source once (Sec. 4.2), label its head pose,
and write the result in the prepared format that ``fsx.data.faces.prepared`` reads at memory speed.

Work is cut into chunks of ``CHUNK`` pictures, analysed in parallel by worker processes; each finished chunk is
written atomically under ``OUT/.parts``, so a killed run continues where it stopped, and the final files are
assembled from the chunks in order, so a resumed run ends with the same bytes as an uninterrupted one.
"""

from __future__ import annotations

import csv
import io
import json
import math
import multiprocessing
import os
import shutil
import time
from pathlib import Path
from typing import Callable

import torch

from fsx.checkpoint import atomic_write_bytes
from fsx.data.faces.analyser import FaceAnalyser, Rejected
from fsx.data.folder import folder_target, read_rows, row_files
from fsx.data.images import ImageReadError, read_rgb
from fsx.data.labels import declared_labels
from fsx.data.real import LOADERS
from fsx.version import __version__

CHUNK = 64
FORMAT = "fsx-prepared"
VERSION = 1
POSE_COLUMNS = ("yaw", "pitch", "roll")


def _cell(value) -> str:
    """A label as a table cell; missing values (NaN, or -1 for integer labels) as an empty cell."""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return "" if isinstance(value, int) and value < 0 else str(value)


def list_source(name: str, path: str | Path) -> tuple[Path, list[Path], list, list[dict[str, str]]]:
    """A source's root, its picture files, their face boxes (or None) and their labels as table cells, without
    reading a picture: a paper data set's official layout (``fsx.data.real``) or a folder with labels.csv
    (``outside:FOLDER`` to read its files outside the folder, as ``--data`` does)."""
    root, outside = folder_target(path)
    if not root.is_dir():
        raise FileNotFoundError(f"source {name!r}: {root} is not a folder")
    if name in LOADERS:
        src = LOADERS[name](root, name=name)
        columns = {}
        for key, values in src.labels.items():
            declared = declared_labels().get(key)
            if values.dim() == 2:  # a joined vector label: back into its named columns
                names = declared.columns if declared is not None and declared.kind == "vector" else [
                    f"{key}_{j}" for j in range(values.shape[1])]
                for j, column in enumerate(names):
                    columns[column] = values[:, j].tolist()
            else:
                columns[key] = values.tolist()
        rows = [{c: _cell(v[i]) for c, v in columns.items()} for i in range(len(src.files))]
        boxes = list(src.boxes) if src.boxes is not None else [None] * len(src.files)
        return root, list(src.files), boxes, rows
    table, table_rows = read_rows(root, name)
    files = row_files(table, table_rows, outside)
    rows = [{k: (v or "").strip() for k, v in r.items() if k != "file" and k is not None} for r in table_rows]
    return root, files, [None] * len(files), rows


# --- the work of one chunk (in a worker process) ---------------------------------------------------------------
_ANALYSER: FaceAnalyser | None = None


def _start_worker(settings: dict) -> None:
    global _ANALYSER
    torch.set_num_threads(1)
    _ANALYSER = FaceAnalyser(size=settings["size"], equalize=settings["equalize"], detector=settings["detector"],
                             min_face=settings["min_face"], min_score=settings["min_score"])


def _start_pool_worker(settings: dict) -> None:
    _start_worker(settings)
    _ANALYSER.cv2.setNumThreads(1)  # one process per core: OpenCV's own threads would only contend


def _analyse_chunk(job: tuple[int, list[tuple[str, tuple | None]]]) -> tuple[int, bytes, bytes, list[dict]]:
    """(chunk id, the aligned crops of its faces, their landmarks, one result per picture)."""
    chunk, items = job
    crops, marks, results = [], [], []
    for file, box in items:
        try:
            face = _ANALYSER.analyse(read_rgb(file), box)
        except ImageReadError as exc:
            results.append({"status": "unreadable", "reason": str(exc)})
            continue
        except Rejected as exc:
            results.append({"status": "rejected", "reason": exc.reason})
            continue
        crops.append(face.crop.tobytes())
        marks.append(face.landmarks.astype("<f4").tobytes())
        results.append({"status": "ok", "pose": [round(v, 4) for v in face.pose], "score": face.score,
                        "faces": face.faces})
    return chunk, b"".join(crops), b"".join(marks), results


# --- the job ------------------------------------------------------------------------------------------------
def _settings(name: str, root: Path, count: int, size: int, equalize: str, detector: str, min_face: int,
              min_score: float) -> dict:
    return {"source": name, "root": str(root.resolve()), "pictures": count, "size": size, "equalize": equalize,
            "detector": detector, "min_face": min_face, "min_score": min_score}


def prepare_source(name: str, path: str | Path, out: str | Path, size: int = 128, equalize: str = "luminance",
                   detector: str = "hog", workers: int = 1, min_face: int = 40, min_score: float = 0.5,
                   progress: Callable[[int], None] | None = None) -> dict:
    """Prepare one source into ``out`` (a new folder, or one this same preparation left unfinished); returns
    the report: pictures read, faces kept, rejected by reason, unreadable files by name, pictures per second."""
    out = Path(out)
    if (out / "manifest.json").exists():
        raise FileExistsError(f"{out}: already holds prepared data; prepare into a new folder")
    root, files, boxes, rows = list_source(name, path)
    settings = _settings(name, root, len(files), size, equalize, detector, min_face, min_score)
    parts = out / ".parts"
    parts.mkdir(parents=True, exist_ok=True)
    marker = parts / "settings.json"
    if marker.exists():
        before = json.loads(marker.read_text())
        if before != settings:
            changed = sorted(k for k in settings if before.get(k) != settings[k])
            raise ValueError(f"{out}: an unfinished preparation with other settings ({', '.join(changed)}) is there; "
                             f"rerun it as it was, or prepare into a new folder")
    else:
        atomic_write_bytes(marker, json.dumps(settings, indent=1).encode())
    n_chunks = math.ceil(len(files) / CHUNK)
    done = {c for c in range(n_chunks) if (parts / f"{c:06d}.json").exists()}
    jobs = [(c, [(str(files[i]), boxes[i]) for i in range(c * CHUNK, min((c + 1) * CHUNK, len(files)))])
            for c in range(n_chunks) if c not in done]
    resumed = sum(min(CHUNK, len(files) - c * CHUNK) for c in done)  # pictures a killed run had done
    if progress is not None and resumed:
        progress(resumed)  # the bar starts where the killed run was
    start = time.perf_counter()

    def keep(result: tuple[int, bytes, bytes, list[dict]]) -> None:
        chunk, crops, marks, results = result
        atomic_write_bytes(parts / f"{chunk:06d}.u8", crops)
        atomic_write_bytes(parts / f"{chunk:06d}.f32", marks)
        atomic_write_bytes(parts / f"{chunk:06d}.json", json.dumps(results).encode())  # last: the chunk is done
        if progress is not None:
            progress(len(results))

    if workers <= 1:
        _start_worker(settings)
        for job in jobs:
            keep(_analyse_chunk(job))
    else:
        # spawn: workers that do not inherit the parent's threads and torch state
        with multiprocessing.get_context("spawn").Pool(workers, _start_pool_worker, (settings,)) as pool:
            for result in pool.imap(_analyse_chunk, jobs):
                keep(result)
    seconds = time.perf_counter() - start
    timing = {"resumed": resumed,
              "seconds": round(seconds, 2),
              "pictures_per_second": round(sum(len(j[1]) for j in jobs) / seconds, 2) if jobs and seconds > 0 else None}
    if name == "lfw" and (root / "pairs.txt").is_file():  # the verification protocol travels with the crops
        atomic_write_bytes(out / "pairs.txt", (root / "pairs.txt").read_bytes())
    report = _assemble(out, parts, root, files, rows, settings, n_chunks, timing)
    shutil.rmtree(parts)
    return report


def _assemble(out: Path, parts: Path, root: Path, files: list[Path], rows: list[dict], settings: dict,
              n_chunks: int, timing: dict) -> dict:
    """The final files from the chunks, in order; manifest.json last (a folder with it is complete)."""
    size = settings["size"]
    results = [r for c in range(n_chunks) for r in json.loads((parts / f"{c:06d}.json").read_text())]
    kept = [i for i, r in enumerate(results) if r["status"] == "ok"]
    has_pose = all(c in (rows[0] if rows else {}) for c in POSE_COLUMNS)
    label_columns = list(rows[0]) if rows else []
    header = ["file", *label_columns, *([] if has_pose else POSE_COLUMNS), "face_score", "faces"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for i in kept:
        r = results[i]
        pose = [] if has_pose else [_cell(float(v)) for v in r["pose"]]
        rel = files[i].relative_to(root).as_posix() if files[i].is_relative_to(root) else str(files[i])
        writer.writerow([rel, *(rows[i].get(c, "") for c in label_columns), *pose, _cell(float(r["score"])),
                         r["faces"]])
    for kind in ("u8", "f32"):
        tmp = out / f".{kind}.tmp"
        with open(tmp, "wb") as fh:
            for c in range(n_chunks):
                fh.write((parts / f"{c:06d}.{kind}").read_bytes())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out / ("images.u8" if kind == "u8" else "landmarks.f32"))
    atomic_write_bytes(out / "labels.csv", buf.getvalue().encode())
    rejected: dict[str, int] = {}
    for r in results:
        if r["status"] == "rejected":
            rejected[r["reason"]] = rejected.get(r["reason"], 0) + 1
    report = {"pictures": len(results), "faces": len(kept), "rejected": rejected,
              "unreadable": [r["reason"] for r in results if r["status"] == "unreadable"],
              "several_faces": sum(1 for i in kept if results[i]["faces"] > 1), **timing}
    manifest = {"format": FORMAT, "version": VERSION, "fsx_version": __version__, "count": len(kept),
                "images": {"file": "images.u8", "dtype": "uint8", "shape": [len(kept), size, size, 3]},
                "landmarks": {"file": "landmarks.f32", "dtype": "float32<", "shape": [len(kept), 68, 2]},
                "pose": "source" if has_pose else "landmarks (PnP against a mean face)", **{
                    k: settings[k] for k in ("source", "root", "size", "equalize", "detector", "min_face",
                                             "min_score")}, "report": report}
    atomic_write_bytes(out / "manifest.json", json.dumps(manifest, indent=1).encode())
    return report


def prepare_summary(name: str, report: dict, target) -> str:
    """``fsx prepare``'s line for one prepared source."""
    rejected = ", ".join(f"{k} {v}" for k, v in sorted(report["rejected"].items())) or "none"
    speed = f", {report['pictures_per_second']} pictures/s" if report["pictures_per_second"] else ""
    return (f"{name}: {report['pictures']} pictures, {report['faces']} faces kept, rejected: {rejected}; "
            f"{len(report['unreadable'])} unreadable{speed} -> {target} (--data {name}=prepared:{target})")
