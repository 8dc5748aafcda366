"""The sagittal key image: a midline sagittal slice through the spine column with the levels marked (PNG), and the
same image as a DICOM Secondary Capture in the scored study, so that a PACS viewer shows it.

Rendered from the canonical Study volume with Pillow (a reportlab dependency): superior at the top,
anterior on the left, square pixels, a bone window. Each found level gets a line and its name, coloured by
its Genant grade; where the measurement delineated a body (the DICOM SEG's segment), its sagittal outline
(the endplates and the antero-posterior extent) is drawn in the same colour. The image carries no patient
identity (Burned In Annotation NO); the DICOM header does.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw

from inference.findings import Vertebra as LevelFinding
from inference.study import Study
from interop.spine import level_boxes, spine_column

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from interop.seg import BodySegment
    from interop.source import SourceSeries
    from vfrisk.result import Result

SC_SERIES_NUMBER = 9904
SC_SERIES_DESCRIPTION = "vfrisk key image: levels marked (decision support)"

WINDOW = (400.0, 1800.0)
"""Bone window (level, width) in HU."""
HEIGHT_PX = 560
GRADE_COLOURS = {0: (80, 200, 120), 1: (255, 200, 0), 2: (255, 120, 0), 3: (255, 40, 40)}
UNGRADED = (120, 170, 255)


def _window(plane: np.ndarray) -> np.ndarray:
    level, width = WINDOW
    scaled = (plane - (level - width / 2)) / width
    out: np.ndarray = (np.clip(scaled, 0.0, 1.0) * 255).astype(np.uint8)
    return out


def sagittal_png(study: Study, levels: Sequence[LevelFinding] = (), bodies: Sequence[BodySegment] = ()) -> bytes:
    """PNG bytes of the midline sagittal slice with ``levels`` (those with a z position) marked and the ``bodies``
    (the SEG's segments) outlined."""
    return png_bytes(sagittal_image(study, levels, bodies))


def png_bytes(image: Image.Image) -> bytes:
    """``image`` as PNG bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def sagittal_image(study: Study, levels: Sequence[LevelFinding] = (),
                   bodies: Sequence[BodySegment] = ()) -> Image.Image:
    """The key image (RGB): the midline sagittal slice, levels marked, bodies outlined."""
    column = spine_column(study)
    plane = study.volume[::-1, :, round(column[1])]  # (Z, Y), superior row first
    sz, sy, _ = study.spacing_mm
    n_z, n_y = plane.shape
    scale = HEIGHT_PX / (n_z * sz)
    size = (max(1, round(n_y * sy * scale)), max(1, round(n_z * sz * scale)))
    image = Image.fromarray(_window(plane)).resize(size, Image.Resampling.BILINEAR).convert("RGB")
    found = [v for v in levels if v.present and v.z_mm is not None]
    if found:
        _mark_levels(image, study, found, scale)
    for body in bodies:
        _outline(image, study, body, scale)
    return image


def _colour(level: LevelFinding) -> tuple[int, int, int]:
    return GRADE_COLOURS.get(level.genant_grade, UNGRADED) if level.genant_grade is not None else UNGRADED


def _outline(image: Image.Image, study: Study, body: BodySegment, scale: float) -> None:
    """The body's sagittal outline: endplates (top and bottom) and antero-posterior extent (front and back)."""
    sz, sy, _ = study.spacing_mm
    n_z = study.volume.shape[0]
    top = (n_z - 1 - body.region.slices[1]) * sz * scale
    bottom = (n_z - 1 - body.region.slices[0]) * sz * scale
    front, back = body.region.rows[0] * sy * scale, body.region.rows[1] * sy * scale
    ImageDraw.Draw(image).rectangle([(front, top), (back, bottom)], outline=_colour(body.level), width=1)


def _mark_levels(image: Image.Image, study: Study, levels: Sequence[LevelFinding], scale: float) -> None:
    draw = ImageDraw.Draw(image)
    sz, sy, _ = study.spacing_mm
    n_z = study.volume.shape[0]
    boxes = level_boxes(study, [(v.level, float(v.z_mm or 0.0)) for v in levels])
    for level, box in zip(levels, boxes, strict=True):
        k = box.centre[0]
        row = (n_z - 1 - k) * sz * scale
        x0 = max(0.0, box.j[0] * sy * scale)
        x1 = min(float(image.width - 1), box.j[1] * sy * scale)
        colour = _colour(level)
        draw.line([(x0, row), (x1, row)], fill=colour, width=2)
        draw.text((min(x1 + 4, image.width - 30), row - 6), level.level, fill=colour)


def build_key_image(result: Result, study: Study, source: SourceSeries,
                    bodies: Sequence[BodySegment] = (), image: Image.Image | None = None) -> Dataset:
    """The key image as a DICOM Secondary Capture (RGB) in the scored study: patient and study copied from the
    scored series, its own series, pixel spacing and patient orientation (rows run posterior, columns to the
    feet) of the rendered sagittal plane; ``image``: that plane already rendered by :func:`sagittal_image` with
    the result's found levels and ``bodies`` (rendered here when not given)."""
    import highdicom as hd

    image = image if image is not None else sagittal_image(study, result.found_levels(), bodies)
    sz = study.spacing_mm[0]
    mm_per_px = (study.volume.shape[0] * sz) / image.height
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source.first,
        pixel_array=np.asarray(image, dtype=np.uint8),
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        series_instance_uid=hd.UID(),
        series_number=SC_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="vfrisk",
        pixel_spacing=(round(mm_per_px, 4), round(mm_per_px, 4)),
        patient_orientation=("P", "F"),
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        series_description=SC_SERIES_DESCRIPTION,
    )
    sc.BurnedInAnnotation = "NO"
    sc.BodyPartExamined = "SPINE"  # unpaired: no Laterality (General Series, type 2C)
    sc.DerivationDescription = "Midline sagittal reformat of the scored CT series, bone window, levels marked"
    return sc
