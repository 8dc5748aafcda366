"""highdicom's table of the DICOM standard's modules, read one module at a time.

highdicom reads ``_standard/module_attribute_map.json`` (22 MB; about 69 MB of Python objects, 0.13-0.3 s) whole,
on the first DICOM object built, though building our SR, SEG and Secondary Capture reads only the modules of their
IODs. :class:`LazyModuleTable` is the same mapping (module key -> list of attribute items) that parses a module's
items from highdicom's own file when first asked for them, using :data:`INDEX`: where each module's list lies in
that file (byte offsets), derived from the file of one highdicom version. :func:`use_lazy_table` puts it in the
place of highdicom's ``get_module_attribute_map`` when the installed highdicom is that version with that file, and
leaves highdicom alone otherwise. Every value it returns is parsed from highdicom's file, so the objects built are
the same (``tests/test_interop_reuse.py`` compares the reports written with either table); a test derives the
index again from the installed file, so an upgrade of highdicom cannot pass unnoticed. Rebuild it with
``python -m interop.standard_table``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

INDEX = Path(__file__).with_name("highdicom_module_index.json")
"""``{"highdicom": version, "source_bytes": size of its file, "modules": {key: [start, end]}}`` (byte offsets of
each module's JSON list in highdicom's ``module_attribute_map.json``)."""
_PATCHED = ("highdicom._standard_utils", "highdicom.base", "highdicom.image")
"""The modules that hold highdicom's ``get_module_attribute_map`` under that name."""
_SAVED: dict[str, Any] = {}
"""highdicom's own ``get_module_attribute_map`` while the lazy table is in its place (key ``original``)."""


def source_file() -> Path | None:
    """The installed highdicom's module table, or None (highdicom absent or moved)."""
    try:
        import highdicom
    except ImportError:
        return None
    path = Path(highdicom.__file__).parent / "_standard" / "module_attribute_map.json"
    return path if path.is_file() else None


def derive_index(source: Path) -> dict[str, list[int]]:
    """Byte offsets ``[start, end)`` of each module's list in highdicom's table (a JSON object of lists)."""
    raw = source.read_bytes()
    text = raw.decode("utf-8")
    if not text.isascii():
        raise ValueError("the table is not ASCII: character and byte offsets differ")
    decoder = json.JSONDecoder()
    out: dict[str, list[int]] = {}
    pos = text.index("{") + 1
    while True:
        while text[pos] in " \t\r\n,":
            pos += 1
        if text[pos] == "}":
            return out
        key, pos = decoder.raw_decode(text, pos)
        pos = text.index(":", pos) + 1
        while text[pos] in " \t\r\n":
            pos += 1
        _, end = decoder.raw_decode(text, pos)
        out[str(key)] = [pos, end]
        pos = end


class LazyModuleTable(Mapping[str, list[dict[str, Any]]]):
    """highdicom's module table; each module's items parsed from its file on first access (then kept)."""

    def __init__(self, source: Path, index: dict[str, list[int]]) -> None:
        self._source, self._index = source, index
        self._parsed: dict[str, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def __getitem__(self, key: str) -> list[dict[str, Any]]:
        """The items of module ``key``, as highdicom's own table holds them."""
        with self._lock:
            if key not in self._parsed:
                start, end = self._index[key]  # KeyError for an unknown module, as a dict
                with self._source.open("rb") as fh:
                    fh.seek(start)
                    self._parsed[key] = json.loads(fh.read(end - start))
            return self._parsed[key]

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` is a module of the table."""
        return key in self._index

    def __iter__(self) -> Iterator[str]:
        """The module keys, in the file's order."""
        return iter(self._index)

    def __len__(self) -> int:
        """The number of modules."""
        return len(self._index)


def _read_index() -> dict[str, Any]:
    return dict(json.loads(INDEX.read_text(encoding="utf-8")))


def matches() -> bool:
    """Whether :data:`INDEX` was derived from the installed highdicom's file (same version, same size)."""
    source = source_file()
    if source is None or not INDEX.is_file():
        return False
    import highdicom

    meta = _read_index()
    return bool(meta.get("highdicom") == highdicom.__version__ and meta.get("source_bytes") == source.stat().st_size)


@lru_cache(1)
def _lazy_table() -> LazyModuleTable:
    """The lazy table (one per process, as highdicom's own)."""
    source = source_file()
    if source is None:  # use_lazy_table checked it
        raise FileNotFoundError("highdicom's module table")
    return LazyModuleTable(source, _read_index()["modules"])


def use_lazy_table() -> bool:
    """Put :class:`LazyModuleTable` in the place of highdicom's whole table (once per process); False, changing
    nothing, when the installed highdicom is not the one :data:`INDEX` was derived from."""
    if "original" in _SAVED:
        return True
    if not matches():
        return False
    import importlib

    modules = [importlib.import_module(name) for name in _PATCHED]
    original = _SAVED["original"] = getattr(modules[0], "get_module_attribute_map")  # noqa: B009
    for module in modules:
        if getattr(module, "get_module_attribute_map", None) is original:
            setattr(module, "get_module_attribute_map", _lazy_table)  # noqa: B010
    return True


_IOD_LOOKUP = ("highdicom._standard_utils", "highdicom.base", "highdicom.sr.content")
"""The modules that hold highdicom's ``is_attribute_in_iod`` under that name."""


def use_memoised_iod_lookup() -> bool:
    """Answer highdicom's ``is_attribute_in_iod(attribute, sop_class_uid, exclude_path_elements)`` from a memo
    (once per process); False, changing nothing, when highdicom has no such function.

    The answer depends only on the standard's tables, yet highdicom walks every attribute of every module of the
    IOD on each call: once per source image when it builds a SEG (``is_multiframe_image``), about 0.1 s of the
    reports of a 512 x 512 x 300 study. The memo gives the same answers (an exception, such as an unknown SOP
    class, is raised again each time, not remembered)."""
    if "iod_lookup" in _SAVED:
        return True
    import importlib

    try:
        modules = [importlib.import_module(name) for name in _IOD_LOOKUP]
    except ImportError:
        return False
    original = getattr(modules[0], "is_attribute_in_iod", None)
    if original is None:
        return False

    @lru_cache(maxsize=4096)
    def memo(attribute: str, sop_class_uid: str, exclude: tuple[str, ...] | None) -> bool:
        return bool(original(attribute, sop_class_uid, None if exclude is None else list(exclude)))

    def is_attribute_in_iod(attribute: str, sop_class_uid: str,
                            exclude_path_elements: Sequence[str] | None = None) -> bool:
        exclude = None if exclude_path_elements is None else tuple(exclude_path_elements)
        return memo(str(attribute), str(sop_class_uid), exclude)

    is_attribute_in_iod.memoised = True  # type: ignore[attr-defined]
    _SAVED["iod_lookup"] = original
    for module in modules:
        if getattr(module, "is_attribute_in_iod", None) is original:
            setattr(module, "is_attribute_in_iod", is_attribute_in_iod)  # noqa: B010
    return True


def _restore(saved: str, modules: tuple[str, ...], attribute: str, ours: Callable[[object], bool]) -> None:
    """Put highdicom's own function (kept under ``saved``) back as ``attribute`` of each of ``modules`` where
    ``ours`` says ours stands in for it."""
    if saved not in _SAVED:
        return
    import importlib

    original = _SAVED.pop(saved)
    for name in modules:
        module = importlib.import_module(name)
        if ours(getattr(module, attribute, None)):
            setattr(module, attribute, original)


def use_plain_iod_lookup() -> None:
    """Give highdicom its own ``is_attribute_in_iod`` back (tests compare the reports written with each)."""
    _restore("iod_lookup", _IOD_LOOKUP, "is_attribute_in_iod", lambda f: bool(getattr(f, "memoised", False)))


def use_full_table() -> None:
    """Give highdicom its own whole table back (tests compare the reports written with each)."""
    _restore("original", _PATCHED, "get_module_attribute_map", lambda f: f is _lazy_table)


def main() -> None:
    """Write :data:`INDEX` from the installed highdicom."""
    source = source_file()
    if source is None:
        raise SystemExit("error: highdicom is not installed")
    import highdicom

    modules = derive_index(source)
    data = {"highdicom": highdicom.__version__, "source_bytes": source.stat().st_size, "modules": modules}
    INDEX.write_text(json.dumps(data, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"wrote {INDEX} ({len(modules)} modules)")


if __name__ == "__main__":
    main()
