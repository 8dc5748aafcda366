"""What a PACS viewer shows: the PDF report as a DICOM Encapsulated PDF and the sagittal key image as a Secondary
Capture, both in the scored study; validated by dciodvfy, rendered by poppler's pdftoppm and by Orthanc."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from test_interop_support import OrthancServer, Scored, dciodvfy_errors, run_tool

from interop.dicomweb import store_files
from interop.encapsulated import ENCAPSULATED_PDF_STORAGE, pdf_of

pytest_plugins = ["test_interop_support"]

SAME_STUDY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
              "AccessionNumber", "StudyID")


def not_blank(image: Image.Image) -> bool:
    """A page or image that shows something: at least 1 % of its pixels differ from its most common value and
    the grey levels spread."""
    grey = np.asarray(image.convert("L"), dtype=np.int16)
    values, counts = np.unique(grey, return_counts=True)
    background = values[np.argmax(counts)]
    return bool((grey != background).mean() > 0.01 and grey.std() > 5)


def render_pdf_page_one(pdf: bytes, tmp: Path) -> Image.Image:
    """Page 1 of a PDF rendered by poppler's pdftoppm (PNG, 50 dpi)."""
    (tmp / "page.pdf").write_bytes(pdf)
    proc = run_tool("pdftoppm", "-png", "-r", "50", "-f", "1", "-l", "1", str(tmp / "page.pdf"), str(tmp / "page"))
    assert proc.returncode == 0, proc.stderr
    (png,) = sorted(tmp.glob("page*.png"))
    return Image.open(png)


def test_pdftoppm_renders_page_one_not_blank(reports: dict[str, Path], tmp_path: Path) -> None:
    page = render_pdf_page_one(reports["pdf"].read_bytes(), tmp_path)
    assert page.height > page.width  # A4 portrait
    assert not_blank(page)


def test_blank_page_is_seen_as_blank() -> None:
    assert not not_blank(Image.new("RGB", (400, 560), "white"))


def test_encapsulated_pdf_validates_and_holds_the_report(reports: dict[str, Path], scored: Scored) -> None:
    assert dciodvfy_errors(reports["encapsulated_pdf"]) == []
    ds = pydicom.dcmread(reports["encapsulated_pdf"])
    assert ds.SOPClassUID == ENCAPSULATED_PDF_STORAGE and ds.Modality == "DOC"
    assert ds.MIMETypeOfEncapsulatedDocument == "application/pdf"
    assert pdf_of(ds) == reports["pdf"].read_bytes()
    source = pydicom.dcmread(next(scored.source.iterdir()), stop_before_pixels=True)
    for keyword in SAME_STUDY:
        assert str(ds.get(keyword, "")) == str(source.get(keyword, "")), keyword
    assert ds.SeriesInstanceUID != source.SeriesInstanceUID
    assert {i.ReferencedSOPInstanceUID for i in ds.SourceInstanceSequence} == {
        pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in scored.source.iterdir()}


def test_key_image_validates_and_shows_the_levels(reports: dict[str, Path], scored: Scored) -> None:
    assert dciodvfy_errors(reports["key_image"]) == []
    ds = pydicom.dcmread(reports["key_image"])
    assert ds.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage
    assert ds.StudyInstanceUID == scored.result.study_instance_uid
    assert ds.PhotometricInterpretation == "RGB" and list(ds.PatientOrientation) == ["P", "F"]
    pixels = ds.pixel_array
    assert not_blank(Image.fromarray(pixels))
    coloured = ((pixels.max(axis=-1).astype(int) - pixels.min(axis=-1)) > 60).sum()
    assert coloured > 50  # the level marks and body outlines are drawn in colour on a grey image


def test_orthanc_shows_the_pdf_and_the_key_image(orthanc: OrthancServer, reports: dict[str, Path],
                                                 scored: Scored, tmp_path: Path) -> None:
    """Stored in the study, Orthanc's own renderers show both: the key image's preview and the PDF it hands out
    (page 1 rendered by pdftoppm) are not blank."""
    stored = store_files(orthanc.dicomweb, [reports["encapsulated_pdf"], reports["key_image"]])
    assert len(stored) == 2
    held = {i["sop_instance_uid"]: i for i in orthanc.study_instances(scored.result.study_instance_uid)}
    key = held[pydicom.dcmread(reports["key_image"], stop_before_pixels=True).SOPInstanceUID]
    preview = Image.open(io.BytesIO(orthanc.get(f"/instances/{key['id']}/preview")))
    assert not_blank(preview)
    doc = held[pydicom.dcmread(reports["encapsulated_pdf"], stop_before_pixels=True).SOPInstanceUID]
    pdf = orthanc.get(f"/instances/{doc['id']}/pdf")
    assert pdf == reports["pdf"].read_bytes()
    assert not_blank(render_pdf_page_one(pdf, tmp_path))


def test_pdftoppm_is_a_system_dependency() -> None:
    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    line = next(x for x in makefile.splitlines() if x.startswith("SYSTEM_PACKAGES"))
    assert "poppler-utils" in line.split()
    assert subprocess.run(["pdftoppm", "-v"], capture_output=True, check=False).returncode == 0
