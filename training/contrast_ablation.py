"""Which part of family B's contrast enhancement loses a model its vertebral bodies: counterfactual cohorts.

``python -m training.contrast_ablation --model BUNDLE --out DIR [--n 60] [--seed 2200] [--matrix 160]
[--variants as_drawn,none,aorta,kidneys,organs]`` writes, for each variant, the first ``n`` studies of the family-B
cohort of ``seed`` (the same studies as ``vfrisk synth --family b --seed SEED``: the same patients, fields of view,
scanners and phases, every random draw the same) with only the named part of the enhancement kept, and runs
:func:`training.fov_check.check` on each with ``BUNDLE``:

- ``as_drawn``: the cohort as family B draws it (every enhanced study enhanced);
- ``none``: every tissue and the bone at its unenhanced HU (the phase and the header's contrast tags unchanged);
- ``aorta``: only the aorta enhanced; ``kidneys``: only the renal cortex and medulla; ``organs``: every organ and
  muscle (liver, spleen, kidneys, myocardium, bowel wall, muscle) but not the vessels; ``vessels``: the aorta, IVC
  and portal vein; ``bone``: only the trabecular bone's enhancement.

A training-time diagnostic (it changes nothing family B draws by default): the variants are made in this process
with :func:`withheld_enhancement`, which swaps family B's tissue draw for one that keeps the same random stream.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from training.command import run_check

PARTS: dict[str, tuple[str, ...]] = {
    "as_drawn": (),
    "none": (),
    "aorta": ("aorta",),
    "kidneys": ("kidney_cortex", "kidney_medulla"),
    "organs": ("liver", "spleen", "kidney_cortex", "kidney_medulla", "myocardium", "bowel_wall", "muscle"),
    "vessels": ("aorta", "ivc", "portal"),
    "bone": ("bone_offset",),
}
"""The tissues (fields of family B's ``Tissues``) each variant keeps enhanced."""
ENHANCED: tuple[str, ...] = (*PARTS["organs"], "ivc", "aorta", "portal", "bone_offset")
"""The fields the phase changes; the others (fat, discs, cartilage...) are drawn after them and kept as drawn."""


@contextlib.contextmanager
def withheld_enhancement(keep: tuple[str, ...]) -> Iterator[None]:
    """While open, family B's studies are drawn with only the tissues ``keep`` enhanced: every draw of the enhanced
    phase is still made (so every later draw of the study, the bone's look included, is the same), then the
    unenhanced values (drawn first, the same in either phase) replace the other enhanced tissues (and, without
    ``bone_offset``, every level's bone enhancement)."""
    from data.synthetic.family_b import plan

    original, original_look = plan.draw_tissues, plan.draw_look
    drawn_offset: list[float] = [0.0]

    def draw(rng: np.random.Generator, phase: str, age: int, sex: str) -> Any:
        state = rng.bit_generator.state
        plain = original(rng, "none", age, sex)
        rng.bit_generator.state = state
        enhanced = original(rng, phase, age, sex)
        drawn_offset[0] = enhanced.bone_offset
        return replace(enhanced, **{k: getattr(plain, k) for k in ENHANCED if k not in keep})

    def draw_look(rng: np.random.Generator, spine: Any, offset: float, age: int) -> Any:
        look = original_look(rng, spine, drawn_offset[0], age)  # the draws of the study as drawn
        return look if offset else replace(look, enhancement=dict.fromkeys(look.enhancement, 0.0))

    plan.draw_tissues, plan.draw_look = draw, draw_look
    try:
        yield
    finally:
        plan.draw_tissues, plan.draw_look = original, original_look


def write_variant(out: Path, variant: str, n: int, seed: int, matrix: int | None) -> Path:
    """The cohort of one variant in ``out / variant`` (one worker process: the swapped draw lives in this one)."""
    from data.synthetic.family_b.cohort import Options, write_cohort

    if variant not in PARTS:
        raise SystemExit(f"error: unknown variant {variant!r} (one of {', '.join(PARTS)})")
    folder = out / variant
    opts = Options(n=n, seed=seed, matrix=matrix, workers=1, extras=False)
    if variant == "as_drawn":
        write_cohort(folder, opts)
    else:
        with withheld_enhancement(PARTS[variant]):
            write_cohort(folder, opts)
    return folder


def ablate(model: Path, out: Path, variants: list[str], n: int, seed: int, matrix: int | None,
           workers: int = 0) -> dict[str, Any]:
    """Each variant's cohort and its field-of-view check; the overall rows, by variant."""
    from inference.bundle import load_bundle
    from training.fov_check import check

    unknown = [v for v in variants if v not in PARTS]
    if unknown:  # refused before any cohort is written
        raise SystemExit(f"error: unknown variant {unknown[0]!r} (one of {', '.join(PARTS)})")
    load_bundle(model)  # a missing or broken bundle is refused (bad_bundle) before minutes of synthesis
    rows: dict[str, Any] = {}
    for variant in variants:
        folder = write_variant(out, variant, n, seed, matrix)
        result = check(folder, model, workers)
        (out / f"{variant}.json").write_text(json.dumps(result, indent=1, default=float))
        rows[variant] = result["all"]
    return {"model": str(model), "seed": seed, "n": n, "variants": rows}


def print_table(result: dict[str, Any]) -> None:
    """One line per variant: studies scored (of those showing two or more whole bodies), bodies found."""
    print(f"{'variant':10s} {'scored':>16s} {'found':>20s}")
    for name, a in result["variants"].items():
        found = round(a["found_rate"] * a["bodies_in_view"])
        print(f"{name:10s} {a['eligible_scored']:>5d} / {a['eligible']:<4d} {a['eligible_scored_rate']:6.1%}"
              f" {found:>6d} / {a['bodies_in_view']:<5d} {a['found_rate']:6.1%}")


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True, help="folder for the cohorts and the results")
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--seed", type=int, default=2200)
    ap.add_argument("--matrix", type=int, default=160)
    ap.add_argument("--variants", default="as_drawn,none,aorta,kidneys,organs")
    ap.add_argument("--workers", type=int, default=0, help="scoring worker processes")
    args = ap.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    run_check(lambda: ablate(args.model, args.out, variants, args.n, args.seed, args.matrix, args.workers),
              print_table, args.out / "ablation.json")


if __name__ == "__main__":
    main()
