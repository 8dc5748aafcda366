"""``python -m training.prune --cohort DIR``: delete a synthetic cohort's DICOM files once every study is cached.

The decoded-crop cache (:func:`training.data.build_cache`) is all training reads; its index records the entry of
each study, so a cohort pruned here trains again without its DICOM files (as long as the preprocessing spec is
unchanged: a new spec needs the studies regenerated, ``vfrisk synth`` resumes from its progress files only while
they are there). Refuses, deleting nothing, when any study of the manifest has no cache entry (a study the reader
refused has one: its reason).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from inference.spec import PreprocessSpec
from training.command import one_line_errors
from training.data import read_index, read_manifest


def prune(cohort: Path, cache_dir: Path | None = None) -> int:
    """Delete ``cohort/studies``' folders of the cached studies; return how many were deleted."""
    cache = cache_dir or cohort / ".vfrisk-cache"
    entries = read_index(cache).get(PreprocessSpec().sha256(), {})
    rows = read_manifest(cohort)
    missing = [r["study"] for r in rows
               if r["study"] not in entries or not (cache / (entries[r["study"]] + ".npy.json")).is_file()]
    if missing:
        raise SystemExit(f"error: {len(missing)} studies are not cached (train on the cohort first): nothing deleted")
    done = 0
    for r in rows:
        path = (cohort / r["study"]).resolve()
        if cohort.resolve() in path.parents and path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
            done += 1
    return done


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cohort", type=Path, required=True)
    ap.add_argument("--cache", type=Path, default=None)
    args = ap.parse_args(argv)
    deleted = one_line_errors(lambda: prune(args.cohort, args.cache))
    print(json.dumps({"cohort": str(args.cohort), "deleted_studies": deleted}))


if __name__ == "__main__":
    main(sys.argv[1:])
