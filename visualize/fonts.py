"""The CJK font flowcharts are drawn with.

Graphviz silently substitutes a font it cannot find, and the substitute usually has no Chinese
glyphs: the chart then shows boxes (tofu) instead of 投诉处理. So the font is looked up through
fontconfig once, checked for Chinese coverage, and a missing font is an error with the fix
(install fonts-noto-cjk), never a chart nobody can read.
"""

from __future__ import annotations

import functools
import shutil
import subprocess

from engine.errors import SvcflowError

#: Families tried first, in order: the ones fonts-noto-cjk installs for Simplified Chinese.
PREFERRED: tuple[str, ...] = ("Noto Sans CJK SC", "Noto Serif CJK SC")
INSTALL_HINT = "install the Debian package fonts-noto-cjk (apt-get install fonts-noto-cjk)"


class FontMissing(SvcflowError):
    """No font able to draw Chinese is installed, or fontconfig itself is missing."""


def _fc(*args: str) -> str:
    executable = shutil.which(args[0])
    if executable is None:
        raise FontMissing(f"'{args[0]}' (fontconfig) is not installed, so no CJK font can be found",
                          hint=INSTALL_HINT)
    result = subprocess.run([executable, *args[1:]], capture_output=True, text=True, check=False, timeout=30)
    return result.stdout


def _covers_chinese(family: str) -> bool:
    return bool(_fc("fc-list", f"{family}:lang=zh-cn", "family").strip())


@functools.cache
def cjk_font() -> str:
    """The family name to give Graphviz (`fontname`), e.g. "Noto Sans CJK SC". Cached per process."""
    for family in PREFERRED:
        if _covers_chinese(family):
            return family
    matched = _fc("fc-match", "-f", "%{family}", ":lang=zh-cn").strip()
    # fc-match always answers (DejaVu when nothing fits), so the answer is checked, not trusted
    for family in (part.strip() for part in matched.split(",")):
        if family and _covers_chinese(family):
            return family
    listed = sorted({line.split(",")[0].strip() for line in _fc("fc-list", ":lang=zh-cn", "family").splitlines()
                     if line.strip()})
    if listed:
        return listed[0]
    raise FontMissing("no font with Chinese glyphs is installed; flowcharts would show boxes instead of text",
                      hint=INSTALL_HINT)


def missing_glyphs(text: str, family: str | None = None) -> list[str]:
    """Characters of `text` that no installed font can draw (with `family`: that family cannot draw).

    For checks and tests: a character listed here would come out as tofu.
    """
    missing: list[str] = []
    for char in sorted(set(text)):
        if char.isspace():
            continue
        pattern = f"{family or ''}:charset={ord(char):x}"
        if not _fc("fc-list", pattern, "family").strip():
            missing.append(char)
    return missing


__all__ = ["FontMissing", "cjk_font", "missing_glyphs", "PREFERRED", "INSTALL_HINT"]
