/**
 * The subset of Python's `ftfy.fix_text` (ftfy 6.x defaults) and `html.unescape` that CLIP's
 * tokenizer relies on, so that text is cleaned exactly as the reference `simple_tokenizer.py`
 * cleans it.
 *
 * Implemented `fix_text` steps, in ftfy's order, repeated per line until nothing changes:
 * 1. `unescape_html` — HTML entities with a `;` (HTML5 names, their upper-cased forms, numeric
 *    references); skipped from the first line containing a `<` on (ftfy's `"auto"` mode).
 * 2. `fix_encoding` — mojibake repair (`cafÃ©` → `café`, `â€™` → `’`): ftfy's plan of
 *    re-encoding with ten single-byte codecs and decoding as UTF-8 (with `restore_byte_a0`,
 *    `replace_lossy_sequences`, the `utf-8-variants` decoder and `decode_inconsistent_utf8`),
 *    gated by ftfy's "badness" expression. Tables and expressions come from ftfy itself
 *    (`ftfy_data.ts`).
 * 3. `fix_c1_controls` — U+0080..U+009F decoded as (sloppy) Windows-1252.
 * 4. `fix_latin_ligatures` — `ﬁ` → `fi`, `ĳ` → `ij`, Serbo-Croatian digraphs, … .
 * 5. `fix_character_width` — full-/half-width forms (U+FF01..U+FFEF) to their NFKC form, U+3000 →
 *    space.
 * 6. `uncurl_quotes` — `‘’‚‛ʼ` → `'`, `“”„‟` → `"`.
 * 7. `fix_line_breaks` — CRLF, CR, U+2028, U+2029, U+0085 → LF.
 * 8. `fix_surrogates` — lone UTF-16 surrogates → U+FFFD (pairs are already joined in JS strings).
 * 9. `remove_terminal_escapes` — ANSI `ESC [ … letter` sequences.
 * 10. `remove_control_chars` — C0 controls except TAB/LF/FF/CR, DEL, U+206A..U+206F, BOM,
 *    U+FFF9..U+FFFC.
 * 11. NFC normalisation.
 *
 * Checked against ftfy 6.3.1 on thousands of random and mojibake strings (see `ftfy_test.ts`).
 *
 * @module
 */
import { HTML5_ENTITIES } from "./ftfy_entities.ts";
import {
  A_GRAVE_WORD_SOURCE,
  ALTERED_UTF8_SOURCE,
  BADNESS_SOURCE,
  CHARMAP_CODECS,
  LOSSY_UTF8_SOURCE,
  UTF8_DETECTOR_SOURCE,
  WINDOWS_1252,
} from "./ftfy_data.ts";

/** Windows-1252 decoding of the bytes 0x80..0x9F (undefined bytes map to themselves). */
const WINDOWS_1252_C1 =
  "\u20ac\x81\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152\x8d\u017d\x8f" +
  "\x90\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\x9d\u017e\u0178";

const HAS_OWN = Object.prototype.hasOwnProperty;
function entity(name: string): string | undefined {
  return HAS_OWN.call(HTML5_ENTITIES, name) ? HTML5_ENTITIES[name] : undefined;
}

function invalidCodepoint(n: number): boolean {
  return (n >= 0x1 && n <= 0x8) || n === 0xb || (n >= 0xe && n <= 0x1f) ||
    (n >= 0x7f && n <= 0x9f) || (n >= 0xfdd0 && n <= 0xfdef) || (n & 0xfffe) === 0xfffe;
}

const CHARREF_RE = /&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)/gu;

/**
 * Python's `html.unescape`: numeric and named character references as HTML5 defines them,
 * including names without the `;` and the longest-prefix rule (`&ampx` → `&x`).
 */
export function htmlUnescape(s: string): string {
  if (!s.includes("&")) return s;
  return s.replace(CHARREF_RE, (_m, ref: string) => {
    if (ref[0] === "#") {
      const hex = ref[1] === "x" || ref[1] === "X";
      const digits = ref.slice(hex ? 2 : 1).replace(/;$/, "");
      // Long digit strings overflow to huge numbers or Infinity: both are > 0x10FFFF.
      const num = hex ? parseInt(digits, 16) : parseInt(digits, 10);
      if (num === 0) return "\ufffd";
      if (num === 0x0d) return "\r";
      if (num >= 0x80 && num <= 0x9f) return WINDOWS_1252_C1[num - 0x80];
      if ((num >= 0xd800 && num <= 0xdfff) || num > 0x10ffff) return "\ufffd";
      if (invalidCodepoint(num)) return "";
      return String.fromCodePoint(num);
    }
    const whole = entity(ref);
    if (whole !== undefined) return whole;
    const cps = Array.from(ref);
    for (let x = cps.length - 1; x > 1; x--) {
      const head = cps.slice(0, x).join("");
      const v = entity(head);
      if (v !== undefined) return v + cps.slice(x).join("");
    }
    return "&" + ref;
  });
}

let ftfyEntities: Map<string, string> | undefined;
/** ftfy's `HTML_ENTITIES`: `&name;` for HTML5 names ending in `;`, plus upper-cased lower names. */
function ftfyEntityTable(): Map<string, string> {
  if (ftfyEntities) return ftfyEntities;
  const m = new Map<string, string>();
  for (const [name, ch] of Object.entries(HTML5_ENTITIES)) {
    if (!name.endsWith(";")) continue;
    m.set("&" + name, ch);
    if (name === name.toLowerCase()) {
      const upper = "&" + name.toUpperCase();
      if (htmlUnescape(upper) === upper) m.set(upper, ch.toUpperCase());
    }
  }
  ftfyEntities = m;
  return m;
}

const FTFY_ENTITY_RE = /&#?[0-9A-Za-z]{1,24};/g;

/** ftfy's `unescape_html`: only entities terminated by `;`, HTML5 names and numeric references. */
export function ftfyUnescapeHtml(text: string): string {
  if (!text.includes("&")) return text;
  const table = ftfyEntityTable();
  return text.replace(FTFY_ENTITY_RE, (m) => {
    const v = table.get(m);
    if (v !== undefined) return v;
    if (m.startsWith("&#")) {
      const u = htmlUnescape(m);
      return u.includes(";") ? m : u;
    }
    return m;
  });
}

/** ftfy's `fix_c1_controls`: C1 control characters decoded as Windows-1252. */
export function fixC1Controls(text: string): string {
  return text.replace(/[\x80-\x9f]/g, (c) => WINDOWS_1252_C1[c.charCodeAt(0) - 0x80]);
}

const LIGATURES: Record<string, string> = {
  "\u0132": "IJ",
  "\u0133": "ij",
  "\u0149": "\u02bcn",
  "\u01f1": "DZ",
  "\u01f2": "Dz",
  "\u01f3": "dz",
  "\u01c4": "D\u017d",
  "\u01c5": "D\u017e",
  "\u01c6": "d\u017e",
  "\u01c7": "LJ",
  "\u01c8": "Lj",
  "\u01c9": "lj",
  "\u01ca": "NJ",
  "\u01cb": "Nj",
  "\u01cc": "nj",
  "\ufb00": "ff",
  "\ufb01": "fi",
  "\ufb02": "fl",
  "\ufb03": "ffi",
  "\ufb04": "ffl",
  "\ufb05": "\u017ft",
  "\ufb06": "st",
};
const LIGATURE_RE = new RegExp(`[${Object.keys(LIGATURES).join("")}]`, "g");

/** ftfy's `fix_latin_ligatures`. */
export function fixLatinLigatures(text: string): string {
  return text.replace(LIGATURE_RE, (c) => LIGATURES[c]);
}

let widthMap: Map<string, string> | undefined;
function buildWidthMap(): Map<string, string> {
  if (widthMap) return widthMap;
  const m = new Map<string, string>([["\u3000", " "]]);
  for (let i = 0xff01; i < 0xfff0; i++) {
    const c = String.fromCharCode(i);
    const alt = c.normalize("NFKC");
    if (alt !== c) m.set(c, alt);
  }
  widthMap = m;
  return m;
}

/** ftfy's `fix_character_width`: full-width and half-width forms to standard width. */
export function fixCharacterWidth(text: string): string {
  const m = buildWidthMap();
  return text.replace(/[\u3000\uff01-\uffef]/g, (c) => m.get(c) ?? c);
}

/** ftfy's `uncurl_quotes`. */
export function uncurlQuotes(text: string): string {
  return text.replace(/[\u201c-\u201f]/g, '"').replace(/[\u02bc\u2018-\u201b]/g, "'");
}

/** ftfy's `fix_line_breaks`. */
export function fixLineBreaks(text: string): string {
  return text.replace(/\r\n|[\r\u2028\u2029\u0085]/g, "\n");
}

/** ftfy's `fix_surrogates`, for JS strings: lone surrogates become U+FFFD. */
export function fixSurrogates(text: string): string {
  return text.replace(
    /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g,
    "\ufffd",
  );
}

/** ftfy's `remove_terminal_escapes`. */
export function removeTerminalEscapes(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.replace(/\x1b\[((?:\p{Nd}|;)*)([a-zA-Z])/gu, "");
}

/** ftfy's `remove_control_chars`. */
export function removeControlChars(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.replace(/[\x00-\x08\x0b\x0e-\x1f\x7f\u206a-\u206f\ufeff\ufff9-\ufffc]/g, "");
}

// ---------------------------------------------------------------------------------------------
// fix_encoding (mojibake). Byte strings are "binary strings": one char (U+0000..U+00FF) per byte.

const BADNESS_RE = new RegExp(BADNESS_SOURCE, "u");
const UTF8_DETECTOR_RE = new RegExp(UTF8_DETECTOR_SOURCE, "gu");
const ALTERED_UTF8_TEST = new RegExp(ALTERED_UTF8_SOURCE);
const ALTERED_UTF8_RE = new RegExp(ALTERED_UTF8_SOURCE, "g");
const LOSSY_UTF8_RE = new RegExp(LOSSY_UTF8_SOURCE, "g");
const A_GRAVE_WORD_RE = new RegExp(A_GRAVE_WORD_SOURCE, "g");
// deno-lint-ignore no-control-regex
const ASCII_RE = /^[\x00-\x7f]*$/;

interface Codec {
  name: string;
  encode: Map<string, number>;
}
let codecs: Codec[] | undefined;
function charmapCodecs(): Codec[] {
  codecs ??= CHARMAP_CODECS.map(([name, table]) => ({
    name,
    encode: new Map(Array.from(table, (c, i) => [c, i] as [string, number])),
  }));
  return codecs;
}

/** ftfy's `is_bad`: does the text contain a sequence that looks like mojibake? */
export function isBad(text: string): boolean {
  return BADNESS_RE.test(text);
}

/** `text.encode(codec)` as a binary string, or undefined when a character is not encodable. */
function encodeCharmap(text: string, codec: Codec): string | undefined {
  let out = "";
  for (const ch of text) {
    const b = codec.encode.get(ch);
    if (b === undefined) return undefined;
    out += String.fromCharCode(b);
  }
  return out;
}

function binaryToBytes(bin: string): Uint8Array {
  const u8 = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) u8[i] = bin.charCodeAt(i);
  return u8;
}

const STRICT_UTF8 = new TextDecoder("utf-8", { fatal: true });

/** ftfy's `utf-8-variants` decoder (strict): UTF-8 plus CESU-8 surrogate pairs and Java's C0 80. */
function decodeUtf8Variants(b: Uint8Array): string {
  let out = "";
  let start = 0;
  let i = 0;
  while (i < b.length) {
    if (b[i] === 0xc0 && b[i + 1] === 0x80) {
      out += STRICT_UTF8.decode(b.subarray(start, i)) + "\0";
      i += 2;
      start = i;
    } else if (
      b[i] === 0xed && i + 5 < b.length && b[i + 1] >= 0xa0 && b[i + 1] <= 0xaf &&
      b[i + 2] >= 0x80 && b[i + 2] <= 0xbf && b[i + 3] === 0xed && b[i + 4] >= 0xb0 &&
      b[i + 4] <= 0xbf && b[i + 5] >= 0x80 && b[i + 5] <= 0xbf
    ) {
      const cp = ((b[i + 1] & 0x0f) << 16) + ((b[i + 2] & 0x3f) << 10) + ((b[i + 4] & 0x0f) << 6) +
        (b[i + 5] & 0x3f) + 0x10000;
      out += STRICT_UTF8.decode(b.subarray(start, i)) + String.fromCodePoint(cp);
      i += 6;
      start = i;
    } else i++;
  }
  return out + STRICT_UTF8.decode(b.subarray(start));
}

function restoreByteA0(bin: string): string {
  return bin.replace(A_GRAVE_WORD_RE, "\xc3\xa0 ").replace(
    ALTERED_UTF8_RE,
    (m) => m.replaceAll(" ", "\xa0"),
  );
}

function decodeInconsistentUtf8(text: string): string {
  return text.replace(
    UTF8_DETECTOR_RE,
    (m) => (m.length < text.length && isBad(m) ? fixEncoding(m) : m),
  );
}

function fixEncodingOneStep(text: string): string {
  if (text.length === 0 || ASCII_RE.test(text) || !isBad(text)) return text;
  const possible: string[] = [];
  for (const codec of charmapCodecs()) {
    let bin = encodeCharmap(text, codec);
    if (bin === undefined) continue;
    possible.push(codec.name);
    if (codec.name !== "macroman" && ALTERED_UTF8_TEST.test(bin)) bin = restoreByteA0(bin);
    if (codec.name.startsWith("sloppy")) bin = bin.replace(LOSSY_UTF8_RE, "\xef\xbf\xbd");
    const bytes = binaryToBytes(bin);
    try {
      return bin.includes("\xed") || bin.includes("\xc0")
        ? decodeUtf8Variants(bytes)
        : STRICT_UTF8.decode(bytes);
    } catch {
      // not UTF-8 in this codec: try the next one
    }
  }
  UTF8_DETECTOR_RE.lastIndex = 0;
  if (UTF8_DETECTOR_RE.test(text)) {
    UTF8_DETECTOR_RE.lastIndex = 0;
    const fixed = decodeInconsistentUtf8(text);
    if (fixed !== text) return fixed;
  }
  UTF8_DETECTOR_RE.lastIndex = 0;
  // ftfy tests `"windows-1252" in possible`, which never holds (its names are "sloppy-…").
  if (possible.includes("latin-1")) {
    let fixed = "";
    let ok = true;
    for (let i = 0; i < text.length && ok; i++) {
      const c = WINDOWS_1252[text.charCodeAt(i)];
      if (c === "\uffff") ok = false;
      else fixed += c;
    }
    if (ok && fixed !== text) return fixed;
  }
  if (/[\x80-\x9f]/.test(text)) return fixC1Controls(text);
  return text;
}

/** ftfy's `fix_encoding`: repeat the one-step mojibake repair until nothing changes. */
export function fixEncoding(text: string): string {
  for (let guard = 0; guard < 100; guard++) {
    const next = fixEncodingOneStep(text);
    if (next === text) break;
    text = next;
  }
  return text;
}

function fixSegment(segment: string, unescape: boolean): string {
  let text = segment;
  for (let guard = 0; guard < 100; guard++) {
    const orig = text;
    if (unescape) text = ftfyUnescapeHtml(text);
    text = fixEncoding(text);
    text = fixC1Controls(text);
    text = fixLatinLigatures(text);
    text = fixCharacterWidth(text);
    text = uncurlQuotes(text);
    text = fixLineBreaks(text);
    text = fixSurrogates(text);
    text = removeTerminalEscapes(text);
    text = removeControlChars(text);
    text = text.normalize("NFC");
    if (text === orig) break;
  }
  return text;
}

/**
 * `ftfy.fix_text(text)` with its default options, restricted to the steps listed in the module
 * documentation (no mojibake repair). Works line by line, like ftfy.
 */
export function fixText(text: string): string {
  // ftfy's "auto" HTML mode: once a segment contains "<", entities are left alone from there on.
  let unescape = true;
  const out: string[] = [];
  let pos = 0;
  while (pos < text.length) {
    let end = text.indexOf("\n", pos) + 1;
    if (end === 0) end = text.length;
    const segment = text.slice(pos, end);
    if (unescape && segment.includes("<")) unescape = false;
    out.push(fixSegment(segment, unescape));
    pos = end;
  }
  return out.join("");
}
