"""Regenerate clip/ftfy_data.ts: the codec tables and regular expressions of ftfy's
`fix_encoding`, converted to JavaScript syntax. Needs ftfy (6.3.1 was used):

    python3 clip/testdata/make_ftfy_data.py
"""
import json
import os
import re

import ftfy
import ftfy.badness as badness
import ftfy.chardata as chardata
import ftfy.fixes as fixes

PY_SPACE = r"\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
PY_WORD = r"\p{L}\p{N}_"


def js_escape_char(ch: str) -> str:
    o = ord(ch)
    if 0x20 < o < 0x7F or (o > 0xA0 and ch.isprintable() and o not in (0xAD,)):
        return ch
    return "\\x%02x" % o if o < 0x100 else "\\u%04x" % o


def verbose_to_js(p: str) -> str:
    """Python re.VERBOSE str pattern -> JS pattern for the `u` flag (\\s, \\w as Python's)."""
    out, i, in_class = [], 0, False
    while i < len(p):
        c = p[i]
        if c == "\\":
            nxt = p[i + 1]
            if nxt == "s":
                out.append(PY_SPACE if in_class else "[" + PY_SPACE + "]")
            elif nxt == "w":
                out.append(PY_WORD if in_class else "[" + PY_WORD + "]")
            elif nxt == "x":
                out.append(p[i : i + 4])
                i += 2
            else:
                raise ValueError("unhandled escape \\" + nxt)
            i += 2
            continue
        if in_class:
            if c == "]":
                in_class = False
            out.append(js_escape_char(c) if c not in "-^]" else c)
        else:
            if c in " \t\n\r\v\f":
                pass
            elif c == "#":
                while i < len(p) and p[i] != "\n":
                    i += 1
                continue
            else:
                if c == "[":
                    in_class = True
                out.append(js_escape_char(c) if c not in "()|?!<{}+*.:$^" else c)
        i += 1
    return "".join(out)


def bytes_to_js(p: bytes) -> str:
    """A bytes pattern -> a JS pattern over 'binary strings' (one char per byte)."""
    return "".join(
        chr(b) if 0x20 < b < 0x7F and chr(b) not in "\\" else "\\x%02x" % b for b in p
    )


codecs = {}
for enc in chardata.CHARMAP_ENCODINGS:
    table = "".join(bytes([b]).decode(enc) for b in range(256))
    assert len(table) == 256
    assert all(table[b] == chr(b) for b in range(0x80) if b != 0x1A), enc
    assert len(set(table)) == 256, enc
    for b in range(256):
        assert table[b].encode(enc) == bytes([b]), (enc, b)
    codecs[enc] = table
win1252 = "".join(
    (bytes([b]).decode("windows-1252", "replace") if b not in (0x81, 0x8D, 0x8F, 0x90, 0x9D) else "\uffff")
    for b in range(256)
)
lines = [
    "/**",
    f" * Data of ftfy {ftfy.__version__}'s `fix_encoding`: single-byte codec tables and regular",
    " * expressions, converted from Python by `clip/testdata/make_ftfy_data.py`. Do not edit by hand.",
    " *",
    " * @module",
    " */",
    "",
    "/** ftfy's `CHARMAP_ENCODINGS` in order, each with its 256-character decoding table. */",
    "export const CHARMAP_CODECS: ReadonlyArray<readonly [string, string]> = [",
]
for enc, table in codecs.items():
    lines.append("  [%s, %s]," % (json.dumps(enc), json.dumps(table)))
lines += [
    "];",
    "",
    "/** Strict Windows-1252 decoding table (U+FFFF marks the five undefined bytes). */",
    "export const WINDOWS_1252: string = %s;" % json.dumps(win1252),
    "",
    "/** ftfy's `BADNESS_RE` (flags: u). */",
    "export const BADNESS_SOURCE: string = %s;" % json.dumps(verbose_to_js(badness.BADNESS_RE.pattern)),
    "",
    "/** ftfy's `UTF8_DETECTOR_RE` (flags: u). */",
    "export const UTF8_DETECTOR_SOURCE: string = %s;" % json.dumps(verbose_to_js(chardata.UTF8_DETECTOR_RE.pattern)),
    "",
    "/** ftfy's `ALTERED_UTF8_RE`, over binary strings. */",
    "export const ALTERED_UTF8_SOURCE: string = %s;" % json.dumps(bytes_to_js(chardata.ALTERED_UTF8_RE.pattern)),
    "",
    "/** ftfy's `LOSSY_UTF8_RE`, over binary strings. */",
    "export const LOSSY_UTF8_SOURCE: string = %s;" % json.dumps(bytes_to_js(chardata.LOSSY_UTF8_RE.pattern)),
    "",
    "/** ftfy's `A_GRAVE_WORD_RE`, over binary strings. */",
    "export const A_GRAVE_WORD_SOURCE: string = %s;" % json.dumps(bytes_to_js(fixes.A_GRAVE_WORD_RE.pattern)),
    "",
]
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ftfy_data.ts")
open(out, "w").write("\n".join(lines))
print("wrote", out)
