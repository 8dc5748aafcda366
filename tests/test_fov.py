"""Any spine, any field of view: the generator's field-of-view truth, body finding and naming, the coverage rule
and the training targets that teach them."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from data.synthetic.cohort import FOV_KINDS, CohortOptions, draw_fov, write_cohort
from inference.errors import InputError
from inference.findings import Body, find_bodies, name_bodies, require_levels
from inference.spec import LEVELS, OTHER, PreprocessSpec

CLASSES = PreprocessSpec().name_classes


def _profile(centres: dict[str, float], n_z: int = 100, step: float = 4.0, sure: float = 0.95) -> dict[str, np.ndarray]:
    """Name-class probabilities along z with a body of each named level at its centre (mm)."""
    probs = np.zeros((len(CLASSES), n_z))
    probs[-1] = 1.0
    pos = (np.arange(n_z) + 0.5) * step
    for name, zc in centres.items():
        w = np.exp(-0.5 * ((pos - zc) / 3.0) ** 2)
        k = CLASSES.index(name)
        probs[k] += w * sure
        others = [i for i in range(len(CLASSES) - 1) if i != k]
        probs[others] += w * (1 - sure) / len(others)
        probs[-1] -= w
    return {"name_probs": probs, "hu_profile": np.full(n_z, 120.0), "ratio_profile": np.full(n_z, 0.98),
            "profile_step_mm": np.asarray(step)}


def test_bodies_are_found_at_their_centres_and_named() -> None:
    bodies = find_bodies(_profile({"T12": 300.0, "L1": 265.0, "L2": 229.0, "S1": 80.0}), (*LEVELS, OTHER))
    assert [b.name for b in bodies] == ["T12", "L1", "L2", "S1"]
    assert [round(b.z_mm) for b in bodies] == [300, 265, 229, 80]
    assert all(b.confidence > 0.9 for b in bodies)


def test_a_body_the_scan_edge_cuts_is_not_found() -> None:
    """With the scanned range of the crop, a body centred within EDGE_MM of its end is cut, not whole; the range
    comes from the crop's padding (slices all at -1000 HU lie beyond the scan)."""
    from inference.crop import Crop
    from inference.findings import EDGE_MM, scanned_mm

    out = _profile({"T12": 300.0, "L1": 265.0, "L2": 229.0})
    image = np.full((160, 8, 8), -1000.0, dtype=np.float32)
    image[40:125] = 40.0  # slices 40-124 of 2.5 mm: 100 to 312.5 mm scanned
    image[60, 2, 2] = -1000.0  # air inside the scan leaves the range alone
    window = scanned_mm(Crop(image, (2.5, 2.0, 2.0), (0, 0, 0), (0.0, 0.0, 0.0)))
    assert window == (100.0, 312.5)
    assert EDGE_MM < 312.5 - 300.0  # T12's centre lies 12.5 mm below the top of the scan: whole
    assert [b.name for b in find_bodies(out, (*LEVELS, OTHER), window)] == ["T12", "L1", "L2"]
    cut = find_bodies(out, (*LEVELS, OTHER), (100.0, 305.0))  # the scan ends 5 mm above T12's centre
    assert [b.name for b in cut] == ["L1", "L2"]
    assert [b.name for b in find_bodies(out, (*LEVELS, OTHER), (235.0, 320.0))] == ["T12", "L1"]  # L2 cut below


def test_an_ambiguous_body_is_found_though_its_name_is_not_sure() -> None:
    out = _profile({"L2": 200.0, "L3": 165.0}, sure=0.5)
    bodies = find_bodies(out, (*LEVELS, OTHER))
    assert len(bodies) == 2 and all(b.confidence < 0.9 for b in bodies)
    naming = name_bodies(bodies)
    assert naming.anchors == ()  # neither the sacrum nor the last rib: every name uncertain
    assert naming.warnings(["L2", "L3"])[0].startswith("no anchor of the numbering")


def _body(z: float, **probs: float) -> Body:
    name = max(probs, key=probs.__getitem__)
    return Body(z, 1.0, name, probs[name], 150.0, 1.0, probs)


def test_names_follow_the_order_of_the_bodies_and_are_never_repeated() -> None:
    bodies = [_body(100, T12=0.6, L1=0.4), _body(70, L1=0.5, L2=0.5), _body(40, L1=0.7, L2=0.3)]
    naming = name_bodies(bodies)
    assert naming.names == ("T12", "L1", "L2")
    assert naming.consistent == (True, True, False)  # the third body's own best name (L1) was taken by the second


def test_names_are_counted_from_the_sacrum() -> None:
    """Bodies the model is unsure of are named by counting up from a sure sacrum, the gaps one level each; the
    count makes the names sure (the posterior, not each body's own probability)."""
    lumbar = ["L1", "L2", "L3", "L4", "L5"]
    vague = {lv: 0.2 for lv in lumbar}
    bodies = [_body(200 - 36 * i, **vague) for i in range(5)] + [_body(200 - 36 * 5, S1=0.99, other=0.01)]
    naming = name_bodies(bodies)
    assert naming.names == (*lumbar, "S1")
    assert naming.anchors == ("sacrum",)
    assert all(c >= 0.9 for c in naming.confidence[2:])  # L3-L5: the transitional priors alone keep L1-L2 lower
    assert all(b.confidence < 0.5 for b in bodies[:5])


def test_a_gap_of_two_pitches_skips_the_level_not_found() -> None:
    vague = {lv: 0.2 for lv in ("L1", "L2", "L3", "L4", "L5")}
    bodies = [_body(140, **vague), _body(105, **vague), _body(35, **vague), _body(0, S1=0.99, other=0.01)]
    assert name_bodies(bodies).names == ("L2", "L3", "L5", "S1")  # L4, 70 mm above L5, was not found


def test_names_that_contradict_each_other_are_not_sure() -> None:
    """Two neighbouring bodies the model names L2 and L4 with the same conviction: one of them is wrong, and the
    names reported say so instead of picking one silently."""
    bodies = [_body(100, L2=0.95, L3=0.05), _body(64, L4=0.95, L3=0.05)]  # one pitch apart: neighbours
    naming = name_bodies(bodies)
    assert naming.names in (("L2", "L3"), ("L3", "L4"))
    assert max(naming.confidence) < 0.6


def test_the_sacrum_and_its_neighbours_outweigh_one_body_that_looks_otherwise() -> None:
    bodies = [_body(100, L2=0.9, L3=0.1), _body(64, L4=0.95, L3=0.05), _body(28, L5=0.97, L4=0.03),
              _body(-8, S1=0.99, other=0.01)]
    naming = name_bodies(bodies)
    assert naming.names == ("L3", "L4", "L5", "S1")
    assert naming.consistent == (False, True, True, True)


def test_vertebrae_above_t10_are_other_and_do_not_count() -> None:
    bodies = [_body(200, other=0.9, T10=0.1), _body(165, other=0.8, T10=0.2)]
    assert name_bodies(bodies).names == (OTHER, OTHER)


@pytest.mark.parametrize(("lumbar", "expected"), [(["L1", "L2", "L3", "L4", "L5", "L6"], "six lumbar vertebrae"),
                                                  (["L1", "L2", "L3", "L4"], "four lumbar vertebrae")])
def test_transitional_anatomy_is_reported_when_both_anchors_show_it(lumbar: list[str], expected: str) -> None:
    names = ["T11", "T12", *lumbar, "S1"]
    bodies = [_body(400 - 35 * i, **{n: 0.97, OTHER: 0.03}) for i, n in enumerate(names)]
    naming = name_bodies(bodies)
    assert naming.names == tuple(names)
    assert naming.transitional == expected


def test_the_coverage_rule_needs_two_whole_bodies() -> None:
    require_levels(["L2", "L3"])
    with pytest.raises(InputError) as err:
        require_levels(["L3"])
    assert err.value.code == "spine_not_covered"
    assert "levels found: L3" in err.value.message
    with pytest.raises(InputError, match="levels found: none"):
        require_levels([])


def test_a_refusal_for_too_few_bodies_carries_the_bodies_it_found() -> None:
    """``coverage`` refuses with :class:`NotCoveredError`: the same one-line refusal, plus the bodies found (their
    names and positions), so that a check can tell a body found in a refused scan from one missed."""
    from inference.findings import NotCoveredError, Vertebra, coverage

    l3 = Vertebra("L3", True, 0, 1.0, 120.0, -68.7, name_confidence=0.55, name_uncertain=True)
    others = [Vertebra(lv, False, None, None, None, None) for lv in ("T10", "L2", "L4", "S1")]
    with pytest.raises(NotCoveredError) as err:
        coverage([l3, *others])
    assert err.value.one_line() == ("spine_not_covered: fewer than 2 whole vertebral bodies of T10-L5 in the "
                                    "field: levels found: L3")
    assert err.value.found == (l3,)
    l4 = Vertebra("L4", True, 0, 1.0, 110.0, -100.0)
    assert coverage([l3, l4, *others[:2], others[3]]) == [  # two bodies: scored, the missing levels named
        "levels not seen: T10, L2; scored on the levels found, with an interval widened for what is missing"]


def test_fov_draws_cover_every_kind_and_transitional_spines() -> None:
    plans = [draw_fov(7, i) for i in range(600)]
    kinds = {p.kind for p in plans}
    assert kinds == set(FOV_KINDS)
    lumbar = [p.lumbar for p in plans]
    assert 4 in lumbar and 6 in lumbar
    assert 0.02 < lumbar.count(4) / len(lumbar) < 0.08


@pytest.fixture(scope="module")
def mixed_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fov") / "c"
    write_cohort(out, CohortOptions(n=12, seed=5, matrix=64, workers=1, extras=False, fov="mixed"))
    return out


def test_mixed_cohort_truth_records_what_is_in_view(mixed_cohort: Path) -> None:
    from inference.io import load_any

    rows = list(csv.DictReader((mixed_cohort / "truth.csv").open()))
    assert {"fov_kind", "lumbar_count", "scan_top_mm", "scan_bottom_mm", "S1_in_view", "T10_z_mm"} <= set(rows[0])
    for r in rows:
        lo, hi = float(r["scan_bottom_mm"]), float(r["scan_top_mm"])
        study = load_any(mixed_cohort / r["study"])
        z = [float((study.affine @ np.array([k, 0, 0, 1.0]))[2]) for k in (0, study.volume.shape[0] - 1)]
        assert min(z) == pytest.approx(lo, abs=0.01) and max(z) == pytest.approx(hi, abs=0.01)
        for lv in LEVELS:
            if r[f"{lv}_in_view"] == "1":
                assert lo <= float(r[f"{lv}_z_mm"]) <= hi
        if r["fov_kind"] == "none":
            assert sum(r[f"{lv}_in_view"] == "1" for lv in LEVELS if lv != "S1") < 2


def test_a_standard_cohort_is_drawn_as_before(tmp_path: Path) -> None:
    """The field-of-view draws come from a stream of their own: a standard cohort has no new columns and its
    levels stay T11-L5."""
    out = tmp_path / "c"
    write_cohort(out, CohortOptions(n=1, seed=5, matrix=64, workers=1, extras=False))
    row = next(csv.DictReader((out / "truth.csv").open()))
    assert "fov_kind" not in row and "T10_z_mm" not in row and "L5_z_mm" in row


def test_name_targets_label_centres_of_whole_bodies_and_leave_cut_ones_alone() -> None:
    from training.augment import augment
    from training.train import CENTRE_MM, name_targets

    n = len(LEVELS)
    z = torch.full((1, n), float("nan"))
    seen = torch.zeros((1, n))
    centres = {"T10": 360.0, "T11": 330.0, "T12": 298.0, "L1": 264.0, "L2": 228.0, "L3": 190.0, "L4": 151.0,
               "L5": 112.0, "S1": 70.0}
    for lv, c in centres.items():
        z[0, LEVELS.index(lv)] = c
        seen[0, LEVELS.index(lv)] = 1.0
    seen[0, LEVELS.index("T10")] = 0.0  # cut by the scan's edge
    lab = name_targets(z, seen, 100, 4.0, n)[0]
    scanned = torch.tensor([[0.0, 330.0]])  # the scan ends at the centre of T11: T11 is cut too
    cut_lab = name_targets(z, seen, 100, 4.0, n, scanned)[0]
    assert (cut_lab[((torch.arange(100) + 0.5) * 4.0 - 330.0).abs() <= CENTRE_MM] == n + 1).all()
    pos = (torch.arange(100) + 0.5) * 4.0
    at = lambda c: lab[(pos - c).abs() <= CENTRE_MM]  # noqa: E731
    assert (at(264.0) == LEVELS.index("L1")).all()
    assert (at(70.0) == LEVELS.index("S1")).all()
    assert (at(360.0) == n + 1).all()  # a body the edge cuts: "none", not a body to find
    assert (at(246.0) == n + 1).all()  # the L1/L2 disc: no body centre
    # a cut through the image takes the bodies beyond it out of view
    x = torch.ones((1, 1, 200, 4, 4))
    gen = torch.Generator().manual_seed(3)
    for _ in range(20):
        out, z2, seen2 = augment(x, z, seen, (0, 0, 0.0), gen, 2.0, cut_prob=1.0)
        kept = out[0, 0, :, 0, 0] > 0
        lo, hi = int(kept.nonzero().min()) * 2.0, (int(kept.nonzero().max()) + 1) * 2.0
        for j in range(n):
            if seen2[0, j] == 1:
                assert lo <= float(z2[0, j]) - 12.0 and float(z2[0, j]) + 12.0 <= hi


def test_the_fov_check_counts_found_named_uncertain_and_sure_names() -> None:
    from dataclasses import replace

    from tests.factories import make_prediction, vertebra
    from training.evaluate_bundle import Scored
    from training.fov_check import by_level, study_counts, summarise

    truth = {f"{lv}_in_view": "" for lv in LEVELS}
    truth |= {"L1_in_view": "1", "L1_z_mm": "100", "L2_in_view": "1", "L2_z_mm": "65", "L3_in_view": "1",
              "L3_z_mm": "28", "T12_in_view": "0", "T12_z_mm": "135"}
    reported = (replace(vertebra("L1", z_mm=102.0), name_confidence=0.97),  # found, right, sure
                replace(vertebra("L3", z_mm=66.0), name_confidence=0.6, name_uncertain=True),  # found, wrong
                vertebra("L4", z_mm=-40.0))  # nothing true within 10 mm of it; L3's body is not found
    pred = replace(make_prediction(vertebrae=list(reported)), anchors=("sacrum",))
    counts = study_counts(truth, Scored("s", (pred,)))
    assert counts == {"bodies": 3, "found": 2, "named": 1, "uncertain": 1, "sure": 1, "sure_right": 1}
    refused = Scored("t", refusal="spine_not_covered: fewer than 2 whole vertebral bodies")
    none_truth = {f"{lv}_in_view": "0" for lv in LEVELS} | {f"{lv}_z_mm": "0" for lv in LEVELS}
    table = summarise([({}, truth, Scored("s", (pred,))), ({}, none_truth, refused)])
    assert table["eligible_scored_rate"] == 1.0 and table["not_eligible_refused_rate"] == 1.0
    assert table["found_rate"] == round(2 / 3, 4) and table["named_right_rate"] == 0.5
    levels = by_level([({}, truth, Scored("s", (pred,))), ({}, none_truth, refused)])
    assert set(levels) == {"L1", "L2", "L3"}  # T12 is not wholly in view; the refused scan shows none
    assert levels["L1"] == {"bodies": 1, "found_rate": 1.0, "named_right_rate": 1.0}
    assert levels["L2"]["found_rate"] == 1.0 and levels["L2"]["named_right_rate"] == 0.0  # found, named L3
    assert levels["L3"]["found_rate"] == 0.0 and math.isnan(levels["L3"]["named_right_rate"])


def test_enhance_organs_paints_over_soft_tissue_only_and_is_off_at_zero() -> None:
    """Kidneys and an aorta appear in soft tissue (at 60-450 HU), never over bone, fat or air; with probability 0
    the crops and the generator are untouched (a run without it is the run it was)."""
    from training.augment import enhance_organs

    lo, hi = -200.0, 1300.0
    hu = torch.full((2, 1, 60, 48, 48), 40.0)
    hu[:, :, :, :, :4] = -100.0  # fat at one edge
    hu[:, :, :, 20:28, 20:28] = 700.0  # a bony column in the middle
    hu[:, :, :5] = lo  # air at the top (windowed 0)
    x = ((hu - lo) / (hi - lo)).clamp(0, 1)
    gen = torch.Generator().manual_seed(3)
    state = gen.get_state()
    assert torch.equal(enhance_organs(x, gen, (2.0, 2.5, 2.5), (lo, hi), 0.0), x)
    assert torch.equal(gen.get_state(), state)
    y = enhance_organs(x, gen, (2.0, 2.5, 2.5), (lo, hi), 1.0)
    changed = y != x
    assert changed.any(dim=(1, 2, 3, 4)).all()  # every crop enhanced at probability 1
    assert not changed[hu != 40.0].any()  # bone, fat and air stay
    new_hu = y[changed] * (hi - lo) + lo
    assert float(new_hu.min()) >= 47.0 and float(new_hu.max()) <= 450.5


def test_elastic_reshapes_in_plane_keeps_the_levels_and_is_off_at_zero() -> None:
    """The smooth deformation changes the bodies' outlines in plane but moves a body along the spine by well under
    a slice on average (the level truth stays); at 0 the crops and the generator are untouched."""
    from training.augment import elastic

    x = torch.zeros((4, 1, 100, 48, 48))
    x[:, :, 48:53, 14:34, 14:34] = 0.6  # a body, 10 mm tall, at slices 48-52
    gen = torch.Generator().manual_seed(11)
    state = gen.get_state()
    assert torch.equal(elastic(x, gen, (2.0, 2.5, 2.5), 0.0), x)
    assert torch.equal(gen.get_state(), state)
    y = elastic(x, gen, (2.0, 2.5, 2.5), 6.0, prob=1.0)
    assert (y - x).abs().sum(dim=(1, 2, 3, 4)).gt(0).all()  # every crop deformed
    zs = torch.arange(100, dtype=torch.float32)[None, :]
    mass = y[:, 0].sum(dim=(2, 3))
    centre = (mass * zs).sum(1) / mass.sum(1)
    assert torch.allclose(centre, torch.full_like(centre, 50.0), atol=0.5)
    inplane = (y[:, 0, 50] > 0.3) != (x[:, 0, 50] > 0.3)
    assert inplane.any(dim=(1, 2)).any()  # an outline moved


def test_bend_sacrum_turns_what_lies_below_the_lumbosacral_disc_and_moves_s1_with_it() -> None:
    """A bar below the disc (S1's endplate) comes out sloped by the angle drawn, steeper means its back end higher;
    the L5 above the blend is untouched; S1's centre moves as the turn moves it; crops without an S1 and strength
    0 are left alone."""
    from training.augment import bend_sacrum

    vox = (2.0, 2.5)
    x = torch.zeros((2, 1, 100, 48, 8))
    x[:, :, 62:68, 10:30] = 0.5  # L5, centre 130 mm
    x[:, :, 39:41, 12:28] = 0.8  # S1's endplate, a bar at 80 mm, 20 mm below the disc
    z = torch.full((2, len(LEVELS)), float("nan"))
    z[:, LEVELS.index("L5")], z[:, LEVELS.index("S1")] = 130.0, 70.0
    z[1, LEVELS.index("S1")] = float("nan")  # no S1 in the second crop
    assert bend_sacrum(x, z, torch.Generator(), vox, 0.0)[0] is x
    for seed in range(4):
        draws = torch.Generator().manual_seed(seed)
        torch.rand(1, generator=draws)  # whether to turn (always, at prob 1)
        deg = 40.0 * (1.25 * float(torch.rand(1, generator=draws)) - 0.25)  # the angle drawn
        y, z2 = bend_sacrum(x, z, torch.Generator().manual_seed(seed), vox, 40.0, prob=1.0)
        assert torch.equal(y[1], x[1]) and torch.equal(z2[1].isnan(), z[1].isnan())
        assert torch.allclose(y[0, :, 56:], x[0, :, 56:], atol=1e-5)  # L5, above the disc's blend, as it was
        bar = y[0, 0, :56, :, 4] > 0.4  # (D, H)
        rows = torch.nonzero(bar.any(0))[:, 0]
        lo, hi = int(rows.min()) + 2, int(rows.max()) - 2
        rise = float(torch.nonzero(bar[:, hi])[:, 0].float().mean() - torch.nonzero(bar[:, lo])[:, 0].float().mean())
        slope = math.degrees(math.atan2(rise * vox[0], (hi - lo) * vox[1]))
        assert abs(slope - deg) < 4.0, (seed, slope, deg)  # positive: the back (higher rows) up, steeper
        pivot = (130.0 + 70.0) / 2
        assert float(z2[0, LEVELS.index("S1")]) == pytest.approx(pivot + (70.0 - pivot) * math.cos(math.radians(deg)))
        dot = torch.zeros((1, 1, 100, 48, 8))
        dot[:, :, 34:36, 19:21] = 1.0  # S1's centre, 30 mm below the disc on the turn's row (10 mm in front)
        moved = bend_sacrum(dot, z[:1], torch.Generator().manual_seed(seed), vox, 40.0, prob=1.0)[0][0, 0, :, :, 4]
        at = torch.nonzero(moved > 0.2).float()
        weight = moved[moved > 0.2]
        row = float((at[:, 1] * weight).sum() / weight.sum())
        assert row == pytest.approx(19.5 + 30.0 * math.sin(math.radians(deg)) / vox[1], abs=0.6)  # steeper: back
    assert float(z2[0, LEVELS.index("L5")]) == 130.0


def test_the_fov_check_reads_the_contrast_phase_of_either_family() -> None:
    """Family B's phase as recorded, family A's opacified vessels as ``enhanced``; a truth without either: none."""
    from training.fov_check import contrast_phase

    assert contrast_phase({"contrast_phase": "arterial", "contrast": ""}) == "arterial"
    assert contrast_phase({"contrast": "1"}) == "enhanced"
    assert contrast_phase({"contrast": "0"}) == "none"
    assert contrast_phase({"contrast": ""}) is None and contrast_phase({}) is None


def test_an_uncertain_l1_does_not_give_the_suggestion_engine_its_hu() -> None:
    """The R-CT-1 density rule reads L1's HU: a body whose name is uncertain may be a neighbour, so its HU is not
    passed as L1's (missing is missing); a sure L1's is."""
    from dataclasses import replace

    from tests.factories import make_prediction, vertebra
    from vfrisk.pipeline import clinical_context

    sure = make_prediction(vertebrae=[replace(vertebra("L1", hu=95.0), name_confidence=0.97)])
    unsure = make_prediction(vertebrae=[replace(vertebra("L1", hu=95.0), name_confidence=0.6, name_uncertain=True)])
    assert clinical_context(sure, None)["patient"]["imaging"]["l1_trabecular_hu"] == 95.0
    assert clinical_context(unsure, None)["patient"]["imaging"]["l1_trabecular_hu"] is None


def test_a_stretched_crop_keeps_its_level_truth_on_its_bodies() -> None:
    """``vary_look``: a crop stretched or squeezed along the spine carries its level centres with it (the bright
    bodies stay where the truth says), slices it empties stay padding, and noise never touches the padding."""
    from training.augment import vary_look

    x = torch.zeros(6, 1, 200, 8, 8)
    x[:, :, 50:150] = 0.3
    for c in (60, 100, 140):
        x[:, :, c - 2: c + 3] = 0.9  # bodies centred on slices 60, 100, 140: (c + 0.5) x 2 mm
    z = torch.tensor([[121.0, 201.0, 281.0]] * 6)
    y, z2 = vary_look(x, z, torch.Generator().manual_seed(3), 2.0, (0.15, 0.0, 0.0))
    assert not torch.equal(z2, z)  # some crops were stretched
    for i in range(6):
        prof = y[i, 0, :, 4, 4]
        bright = (prof > 0.8).nonzero()[:, 0].float()
        runs = torch.tensor_split(bright, (torch.diff(bright) > 1).nonzero()[:, 0] + 1)
        centres = [(float(r.mean()) + 0.5) * 2.0 for r in runs]
        assert np.allclose(centres, z2[i].tolist(), atol=2.5), (centres, z2[i])
        scale = float(z2[i, 2] - z2[i, 0]) / 160.0
        assert 0.84 <= scale <= 1.16
    noisy, same = vary_look(x, z, torch.Generator().manual_seed(4), 2.0, (0.0, 0.02, 1.0))
    assert torch.equal(same, z) and bool((noisy[:, :, :49] == 0).all()) and not torch.equal(noisy, x)
    assert vary_look(x, z, torch.Generator(), 2.0, (0.0, 0.0, 0.0))[0] is x  # nothing asked: unchanged


def test_a_tilted_crop_keeps_its_bodies_centres_and_tilts_their_endplates() -> None:
    """``tilt``: the bodies and discs of a crop lean front to back (an endplate is no longer one axial slice), the
    middle row (the column, where the level truth lies) does not move, the padding stays padding, and nothing
    changes when it is off."""
    from training.augment import tilt

    x = torch.zeros(4, 1, 200, 48, 48)
    x[:, :, 40:160] = 0.2
    x[:, :, 98:103] = 0.9  # an endplate-like bright slab across the whole plane
    y = tilt(x, torch.Generator().manual_seed(5), (2.0, 2.5), 30.0, prob=1.0)
    leans = []
    for i in range(4):
        plane = y[i, 0, :, :, 20]  # one sagittal plane: (z, row)
        first = [int((plane[:, r] > 0.6).nonzero()[0]) for r in (0, 23, 24, 47)]
        assert abs(first[1] - 98) <= 1 and abs(first[2] - 98) <= 1  # the middle rows stay put
        leans.append(abs(first[0] - first[3]))  # front and back of the slab at different heights
        assert leans[-1] <= 2 * math.tan(math.radians(30.0)) * 47 * 2.5 / 2.0 + 2  # at most 30 degrees
        assert bool((y[i, 0, :30] == 0).all())  # padding stays air
    assert sum(lean >= 3 for lean in leans) >= 2, leans  # most lean (an angle near 0 can be drawn)
    assert tilt(x, torch.Generator(), (2.0, 2.5), 0.0) is x
    assert torch.equal(tilt(x, torch.Generator(), (2.0, 2.5), 30.0, prob=0.0), x)


def test_warped_discs_thin_or_thicken_between_fixed_body_centres() -> None:
    """``warp_discs``: bodies (bright, centred on the level truth) and discs (dark) between them; a negative
    amount thins the disc, a positive one thickens it, the centres keep their value and place, nothing beyond the
    outer centres changes, and it is off at strength 0."""
    from training.augment import disc_map, warp_discs

    mm = 2.0
    z = torch.arange(100, dtype=torch.float32)
    centres = torch.tensor([40.0, 100.0, 160.0])  # mm; bodies 40 mm tall, discs 20 mm between them
    bright = ((((z + 0.5) * mm)[:, None] - centres[None, :]).abs() < 20).any(1)
    x = torch.where(bright, 0.8, 0.1)[None, None, :, None, None].expand(1, 1, 100, 4, 4).clone()
    levels = torch.tensor([[40.0, 100.0, 160.0, float("nan")]])

    def disc_mm(amount: float) -> float:
        src = disc_map((z + 0.5) * mm, centres, torch.tensor([amount, amount]))
        assert bool((src[1:] >= src[:-1]).all())  # monotone
        assert torch.allclose(src[(z + 0.5) * mm < 40], ((z + 0.5) * mm)[(z + 0.5) * mm < 40])
        return float(((src > 100) & (src < 160) & ~(((src[:, None] - centres).abs() < 20).any(1))).sum()) * mm

    assert disc_mm(-0.8) < 20.0 * 0.7 < 20.0 * 1.3 < disc_mm(0.8)
    y = warp_discs(x, levels, torch.Generator().manual_seed(1), mm, 0.8, prob=1.0)
    for c in (40.0, 100.0, 160.0):
        k = int(c / mm)
        assert float(y[0, 0, k, 0, 0]) == pytest.approx(0.8)
    assert torch.equal(y[0, 0, :15], x[0, 0, :15]) and torch.equal(y[0, 0, 85:], x[0, 0, 85:])
    def dark(v: torch.Tensor) -> list[int]:
        return [int((v[0, 0, 20:50, 0, 0] < 0.45).sum()), int((v[0, 0, 50:80, 0, 0] < 0.45).sum())]

    assert dark(x) == [10, 10] and dark(y) != [10, 10]  # the discs are 10 slices each before; warped, changed
    assert warp_discs(x, levels, torch.Generator(), mm, 0.0) is x


def test_a_zoomed_crop_scales_its_bodies_and_their_centres_together() -> None:
    """``zoom``: a body (a bright block) grows or shrinks about the crop's centre by the drawn factor in every axis,
    its level centre moves with it, the factor stays within its range, and nothing changes at strength 0."""
    from training.augment import zoom

    mm = 2.0
    x = torch.zeros(6, 1, 100, 40, 40)
    x[:, :, 60:70, 15:25, 15:25] = 0.8  # a 20 mm tall body centred at 130 mm, 10 voxels wide in plane
    z = torch.tensor([[130.0, float("nan")]]).repeat(6, 1)
    y, z2 = zoom(x, z, torch.Generator().manual_seed(3), mm, 0.25, prob=1.0)
    scales = []
    for i in range(6):
        s = (float(z2[i, 0]) - 100.0) / 30.0  # the centre moved from 30 mm above the middle
        assert 1 / 1.25 - 1e-6 <= s <= 1.25 + 1e-6 and math.isnan(float(z2[i, 1]))
        scales.append(s)
        body = y[i, 0] > 0.4
        rows = body.any(dim=2).any(dim=1).nonzero()
        zc = (float(rows.float().mean()) + 0.5) * mm
        assert abs(zc - float(z2[i, 0])) <= 1.0  # the label sits on the body
        assert abs(int(body.any(dim=2).any(dim=1).sum()) * mm - 20.0 * s) <= 2 * mm  # height scaled by s
        assert abs(int(body.any(dim=0).any(dim=0).sum()) - 10.0 * s) <= 2  # width scaled by s too
    assert max(scales) - min(scales) > 0.1  # different draws
    assert zoom(x, z, torch.Generator(), mm, 0.0)[0] is x


def test_bone_contrast_scales_bone_above_the_knee_and_remaps_the_hu_truth_with_it() -> None:
    """``bone_contrast``: soft tissue only shifts, bone's distance above 150 HU is scaled by the crop's gain (within
    its range, different per crop), air and padding stay exactly 0, and the trabecular HU truth goes through the
    same map as the voxels; strength 0 changes nothing."""
    from training.augment import BONE_KNEE_HU, bone_contrast

    lo, hi = -200.0, 1300.0
    hu_vals = torch.tensor([-1000.0, -100.0, 40.0, 120.0, 250.0, 900.0])  # air, fat, muscle, bone x 3
    u = ((hu_vals - lo) / (hi - lo)).clamp(0, 1)
    x = u.reshape(1, 1, 1, 1, 6).repeat(8, 1, 2, 2, 1)
    truth = torch.tensor([[120.0, 250.0, float("nan")]]).repeat(8, 1)
    y, t = bone_contrast(x, truth, torch.Generator().manual_seed(5), (lo, hi), 0.5, 20.0, prob=1.0)
    gains = []
    for i in range(8):
        got = y[i, 0, 0, 0] * (hi - lo) + lo
        assert float(y[i, 0, 0, 0, 0]) == 0.0  # air stays air
        off = float(got[2] - 40.0)
        assert abs(off) <= 20.0 + 1e-3 and abs(float(got[1] + 100.0) - off) < 1e-3  # tissue shifted alike
        gain = float(got[5] - BONE_KNEE_HU - off) / (900.0 - BONE_KNEE_HU)
        assert 1 / 1.5 - 1e-4 <= gain <= 1.5 + 1e-4
        assert abs(float(got[4]) - (BONE_KNEE_HU + off + 100.0 * gain)) < 0.05  # one gain for all bone
        assert abs(float(t[i, 0]) - float(got[3])) < 0.05 and abs(float(t[i, 1]) - float(got[4])) < 0.05
        assert math.isnan(float(t[i, 2]))
        gains.append(gain)
    assert max(gains) - min(gains) > 0.2  # each crop draws its own
    # the whole scale about 0 HU: every tissue and the truth by one factor per crop
    y, t = bone_contrast(x, truth, torch.Generator().manual_seed(6), (lo, hi), 0.0, 0.0, max_scale=0.4, prob=1.0)
    for i in range(8):
        got = y[i, 0, 0, 0] * (hi - lo) + lo
        s = float(got[5]) / 900.0
        assert 1 / 1.4 - 1e-4 <= s <= 1.4 + 1e-4 and float(y[i, 0, 0, 0, 0]) == 0.0
        assert torch.allclose(got[1:], hu_vals[1:] * s, atol=0.05) and abs(float(t[i, 1]) - 250.0 * s) < 0.05
    same, same_t = bone_contrast(x, truth, torch.Generator(), (lo, hi), 0.0, 0.0)
    assert same is x and same_t is truth


def test_a_count_the_bodies_own_names_do_not_corroborate_is_not_trusted() -> None:
    """A sure sacrum under bodies whose own names all say something else (a model out of its domain, sure of one
    wrong anchor): the count names them from the sacrum, but trusts none of it."""
    bodies = [_body(140 - 35 * i, T11=0.6, T12=0.2, L3=0.1, L4=0.05, L5=0.05) for i in range(3)]
    bodies.append(_body(35, S1=0.97, other=0.03))
    naming = name_bodies(bodies)
    assert naming.names == ("L3", "L4", "L5", "S1") and naming.anchors == ("sacrum",)
    assert naming.agreement == 0.25 and not naming.trusted
    assert any("agrees with the model's own names of only 1 of 4" in w for w in naming.warnings(["L3", "L4"]))
    agreeing = [_body(140 - 35 * i, **{lv: 0.6, "L2": 0.4}) for i, lv in enumerate(("L3", "L4", "L5"))]
    assert name_bodies([*agreeing, bodies[-1]]).trusted


def test_several_less_sure_names_the_count_overrules_make_every_name_uncertain() -> None:
    """The bodies of the real reference CT as a retrained model named them (a sure last-rib pair one level too high,
    then L3 0.62 and L4 0.87 that the count must lower by one, a sacrum far below): no single name overruled is sure
    (< 0.9) and five of seven own names agree with the count, but together the overruled names weigh as much as
    one sure name overruled, and the two anchors cannot check each other across the body missed between the last
    lumbar body and the "sacrum", so nothing is reported as sure; one weakly overruled name alone does not do that."""
    bodies = [_body(348, T11=0.99, T12=0.01), _body(321, T12=0.96, T11=0.02, L1=0.02),
              _body(287, L1=0.93, L2=0.06, T12=0.01), _body(251, L3=0.62, L2=0.31, L4=0.07),
              _body(214, L4=0.87, L3=0.12, L5=0.01), _body(176, L4=0.78, L5=0.18, L3=0.04),
              _body(64, S1=0.97, other=0.03)]
    naming = name_bodies(bodies)
    assert naming.names == ("T11", "T12", "L1", "L2", "L3", "L4", "S1")
    assert naming.anchors == ("sacrum", "last rib") and not naming.overruled and naming.agreement >= 0.7
    assert naming.conflict == pytest.approx(math.log(0.62 / 0.31) + math.log(0.87 / 0.12), abs=1e-6)
    assert not naming.trusted
    assert any("as strongly as it would overrule a sure name" in w for w in naming.warnings(["T11", "T12"]))
    mild = [*bodies[:3], _body(251, L3=0.5, L2=0.45, L4=0.05), _body(214, L3=0.8, L4=0.2),
            _body(176, L4=0.78, L5=0.18, L3=0.04), bodies[-1]]
    calm = name_bodies(mild)
    assert calm.names == naming.names and 0.0 < calm.conflict < math.log(9.0) and calm.trusted
    # the same bodies with the sacrum one pitch under the last lumbar body: both anchors check the count with no
    # body missed between them (a four-lumbar spine), so the renamed names do not cast doubt on it
    checked = name_bodies([*bodies[:-1], _body(140, S1=0.97, other=0.03)])
    assert naming.gapless is False and checked.gapless and checked.cross_checked
    assert checked.conflict == pytest.approx(naming.conflict) and checked.trusted
    assert checked.transitional == "four lumbar vertebrae"


def test_training_cohorts_can_hold_more_transitional_spines() -> None:
    plans = [draw_fov(7, i, 0.1) for i in range(600)]
    share = sum(p.lumbar != 5 for p in plans) / len(plans)
    assert 0.15 < share < 0.25
    assert [p.kind for p in plans] == [draw_fov(7, i).kind for i in range(600)]  # only the lumbar count moves


def test_ribs_articulate_with_their_vertebra_inside_the_model_crop() -> None:
    """The last rib is what numbers a transitional spine: its head must sit at the body, its neck along the
    transverse process, inside the 120 mm crop round the column, on T12 and never on a lumbar vertebra."""
    from data.synthetic.anatomy import Body, Grid, draw_spine, place_spine, rib_centres
    from data.synthetic.model import draw_patient

    rng = np.random.default_rng(3)
    patient = draw_patient(rng, 5)
    body = Body(ax=140.0, ay=100.0, fat=15.0)
    spine = place_spine(patient, rng, z_l5_bottom=0.0, y_spine=25.0)
    by = {v.level: v for v in spine}
    t12 = by["T12"]
    path = rib_centres(t12, 1, body, 0.3)
    head = path[0]
    assert abs(head[2] - t12.xc) < t12.width / 2 + 6 and abs(head[1] - t12.yc) < t12.depth / 2
    inside = (np.abs(path[:, 1] - t12.yc) < 60) & (np.abs(path[:, 2] - t12.xc) < 60)
    assert inside.sum() * 3.0 >= 40.0  # at least 40 mm of the rib inside the crop
    grid = Grid(z=np.arange(t12.z_bottom - 60, t12.z_bottom + 40, 1.0), y=np.arange(-100.0, 101.0, 1.0),
                x=np.arange(-140.0, 141.0, 1.0))
    vol = np.full((len(grid.z), len(grid.y), len(grid.x)), -1000.0, dtype=np.float32)
    draw_spine(vol, grid, spine, body, rng)

    def hu_at(z: float, y: float, x: float) -> float:
        return float(vol[np.argmin(abs(grid.z - z)), np.argmin(abs(grid.y - y)), np.argmin(abs(grid.x - x))])

    assert hu_at(*head) > 300  # the rib head is bone
    l1 = by["L1"]
    lateral = t12.width / 2 + 3.0 + (l1.width - t12.width) / 2
    assert hu_at(l1.z_center + 0.3 * l1.height, l1.yc + 0.32 * l1.depth, l1.xc + lateral) < 0  # no rib on L1


def test_section_width_is_the_tissue_holding_the_column_and_unknown_where_the_field_cuts_it() -> None:
    from inference.trunk import TISSUE_HU, section_width_mm

    y, x = np.mgrid[0:256, 0:256]
    neck = np.where(((x - 128) / 75.0) ** 2 + ((y - 128) / 60.0) ** 2 < 1, 40.0, -1000.0)  # 150 voxels wide
    neck[120:136, 100:110] = -900.0  # the airway: a hole does not split the section
    tissue = neck > TISSUE_HU
    assert abs(section_width_mm(tissue, 1.0, 150, 128) - 150.0) <= 2.0
    assert abs(section_width_mm(tissue, 0.8, 150, 128) - 120.0) <= 2.0
    assert section_width_mm(tissue, 1.0, 5, 5) is None  # the column is not in tissue
    tissue[240:250, 20:236] = True  # a table, wider than the neck but smaller
    assert abs(section_width_mm(tissue, 1.0, 150, 128) - 150.0) <= 2.0
    assert section_width_mm(tissue, 1.0, 245, 128) is None  # a column estimate on the table says nothing
    trunk = np.where(((x - 128) / 200.0) ** 2 + ((y - 128) / 90.0) ** 2 < 1, 40.0, -1000.0)
    assert section_width_mm(trunk > TISSUE_HU, 1.0, 128, 128) is None  # the field of view cuts the body


def test_bodies_in_a_section_narrower_than_the_trunk_do_not_count() -> None:
    from inference.trunk import TRUNK_MIN_WIDTH_MM, Sections

    require_levels(["L1", "L2"], {})
    with pytest.raises(InputError, match="L1 found in a section 150 mm wide") as err:
        require_levels(["L1", "L2"], {"L1": 150.0})
    assert err.value.code == "spine_not_covered" and "levels found: L2;" in err.value.message
    secs = Sections(np.array([5.0, 15.0, 25.0]), np.array([150.0, np.nan, TRUNK_MIN_WIDTH_MM + 50]))
    assert secs.narrow(5.0 * 2.0, 2.0) == 150.0  # crop z 10 mm = slice 4.5: the first sample
    assert secs.narrow(15.5 * 2.0, 2.0) is None  # unknown width: the body counts
    assert secs.narrow(25.5 * 2.0, 2.0) is None  # a trunk
    assert Sections(np.array([]), np.array([])).narrow(10.0, 2.0) is None
    assert Sections(np.array([5.0]), np.array([150.0])).narrow(40.0 * 2.0, 2.0) is None  # no sample near


def test_the_crop_measures_the_section_through_the_column() -> None:
    """A narrow section (a neck) is measured along the crop; a wide phantom trunk is not narrow anywhere."""
    from inference.crop import crop_volume
    from inference.trunk import TRUNK_MIN_WIDTH_MM

    spec = PreprocessSpec()
    _z, y, x = np.mgrid[0:120, 0:200, 0:200]
    vol = np.where(((x - 100) / 70.0) ** 2 + ((y - 100) / 55.0) ** 2 < 1, 40.0, -1000.0).astype(np.float32)
    vol[((x - 100) / 8.0) ** 2 + ((y - 120) / 8.0) ** 2 < 1] = 600.0  # a column of bone
    crop = crop_volume(vol, (2.0, 1.0, 1.0), spec)
    assert crop.sections is not None and crop.sections.index.size >= 5
    assert np.allclose(crop.sections.width_mm, 140.0, atol=2.0)
    at = (float(crop.sections.index[3]) + 0.5) * 2.0  # crop z (mm) of a sampled slice
    assert crop.sections.narrow(at, 2.0) == pytest.approx(140.0, abs=2.0)
    wide = np.where(((x - 100) / 60.0) ** 2 + ((y - 100) / 40.0) ** 2 < 1, 40.0, -1000.0).astype(np.float32)
    wide[((x - 100) / 8.0) ** 2 + ((y - 120) / 8.0) ** 2 < 1] = 600.0
    secs = crop_volume(wide, (2.0, 2.0, 2.0), spec).sections
    assert secs is not None and secs.index.size and np.all(secs.width_mm >= TRUNK_MIN_WIDTH_MM)  # 240 mm
