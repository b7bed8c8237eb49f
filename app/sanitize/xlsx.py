"""Rider list workbooks (XLSX) rewritten and read at the level of their XML, where openpyxl loads
and saves the whole workbook: a quarter of a second a list, a quarter of a 1 GB refresh's time
(BENCHMARKS.md, issue 16).

The app writes its workbooks with openpyxl (app/rider_lists.py), which keeps every text cell as an
inline string in the worksheet's XML: `<c r="A2" t="inlineStr"><is><t>Ada</t></is></c>`. For a
workbook in that form, `rewrite_cells` rewrites each such string by a function of its text and
copies every other part of the zip as it is, and `texts` gives all it holds to the scan, the
strings as openpyxl reads them. A workbook in any other form (shared strings, formulas, rich
text, prefixed elements, character references) is None to both, and files.py takes openpyxl's
way for it.
"""

import io
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from xml.sax.saxutils import escape, unescape

WORKSHEET = re.compile(r"xl/worksheets/[^/]+\.xml")
# An inline string as openpyxl writes it; its text holds no markup.
INLINE = re.compile(r'<is><t(?: xml:space="preserve")?>([^<]*)</t></is>')
# What openpyxl writes and this module does not read: formulas and their string results, shared
# strings, and elements with a namespace prefix (another writer's XML). A pattern that starts
# with "<" is searched for quickly; one that starts with \b tries every character.
OTHER_ELEMENTS = re.compile(r"<(?:f[ >/]|[A-Za-z_][\w.-]*:)")
OTHER_TYPES = (' t="s"', ' t="str"', " t='")
# The entities XML predefines; a character reference (&#64; is "@") is left to openpyxl.
PREDEFINED = {"&quot;": '"', "&apos;": "'"}
OTHER_ENTITY = re.compile(r"&(?!(?:amp|lt|gt|quot|apos);)")


class _OtherForm(Exception):
    pass


def _text(raw: str) -> str:
    """The string a reader sees: entities replaced, line ends as XML normalises them."""
    if "&" not in raw and "\r" not in raw:
        return raw
    if OTHER_ENTITY.search(raw):
        raise _OtherForm
    return unescape(raw, PREDEFINED).replace("\r\n", "\n").replace("\r", "\n")


def _worksheets(archive: zipfile.ZipFile) -> dict[str, str] | None:
    """name -> XML of each worksheet, or None if the workbook is not in the inline form."""
    names = archive.namelist()
    if any(name.lower().endswith("sharedstrings.xml") for name in names):
        return None
    sheets = {}
    for name in names:
        if WORKSHEET.fullmatch(name):
            try:
                xml = archive.read(name).decode("utf-8")
            except UnicodeDecodeError:
                return None
            if (
                OTHER_ELEMENTS.search(xml)
                or any(kind in xml for kind in OTHER_TYPES)
                or xml.count("<is") != len(INLINE.findall(xml))
            ):
                return None
            sheets[name] = xml
    return sheets or None


def texts(path: Path) -> list[tuple[str, str]] | None:
    """(part, text) covering every character of the workbook, for the scan: each text cell as a
    reader sees it, the rest of each worksheet's XML (its cells' text taken out: a tag ends any
    address or hostname), and every other part whole. None if the workbook is not in the inline
    form."""
    with zipfile.ZipFile(path) as archive:
        sheets = _worksheets(archive)
        if sheets is None:
            return None
        found = []
        try:
            for name, xml in sheets.items():
                found += [(name, _text(raw)) for raw in INLINE.findall(xml)]
                found.append((name, INLINE.sub("", xml)))
        except _OtherForm:
            return None
        for name in archive.namelist():
            if name not in sheets:
                found.append((name, archive.read(name).decode("utf-8", "replace")))
    return found


def rewrite_cells(source: Path, rewrite: Callable[[str], str]) -> bytes | None:
    """The workbook with each text cell rewritten, or None if it is not in the inline form. A
    rewritten cell stays an inline string, so text that now starts with "=" is still text."""

    def replace(match: re.Match) -> str:
        text = _text(match.group(1))
        new = rewrite(text)
        if new == text:
            return match.group(0)
        return f'<is><t xml:space="preserve">{escape(new)}</t></is>'

    with zipfile.ZipFile(source) as archive:
        sheets = _worksheets(archive)
        if sheets is None:
            return None
        try:
            rewritten = {name: INLINE.sub(replace, xml) for name, xml in sheets.items()}
        except _OtherForm:
            return None
        written = io.BytesIO()
        with zipfile.ZipFile(written, "w", zipfile.ZIP_DEFLATED) as out:
            for info in archive.infolist():
                if info.filename in rewritten:
                    out.writestr(info, rewritten[info.filename].encode("utf-8"))
                else:
                    out.writestr(info, archive.read(info))
    return written.getvalue()
