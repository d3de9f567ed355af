/**
 * CLIP's byte-level BPE tokenizer, exactly as OpenAI's `simple_tokenizer.py` and `clip.tokenize`:
 * ftfy + double HTML unescape + whitespace collapse + lowercase, the reference regex, the
 * byte-to-unicode table, the 48,894 merges of `bpe_simple_vocab_16e6.txt.gz`, and the
 * `<|startoftext|>` / `<|endoftext|>` tokens (ids 49406 / 49407).
 *
 * The merges file is never bundled: it is read from `opts.vocabPath`, `MTIL_BPE_PATH`, or the
 * cache directory (downloaded once there with its sha256 checked).
 *
 * @module
 */
import { gunzipSync } from "fflate";
import { tf } from "../backends/tf.ts";
import { fixText, htmlUnescape } from "./ftfy.ts";
import { BPE_VOCAB, resolveBpeVocab } from "../registry.ts";

/** File name of the merges file in the cache directory. */
export const BPE_VOCAB_FILE: string = BPE_VOCAB.fileName;
/** Id of `<|startoftext|>`. */
export const SOT_TOKEN = 49406;
/** Id of `<|endoftext|>`. */
export const EOT_TOKEN = 49407;
/** CLIP's text context length. */
export const CONTEXT_LENGTH = 77;
/** Number of merges the reference uses (`merges[1:49152-256-2+1]`). */
const N_MERGES = 49152 - 256 - 2;
/** Upper bound on the compressed and decompressed size of a merges file we accept. */
const MAX_GZ_BYTES = 64 << 20;
const MAX_TEXT_BYTES = 256 << 20;

/** How `tokenizeIds` treats a text longer than the context: see {@link TokenizeOptions}. */
export type Truncate = boolean | "cut";

/** Options of {@link Tokenizer.tokenizeIds} and {@link tokenize}. */
export interface TokenizeOptions {
  /** Row length (default 77). */
  contextLength?: number;
  /**
   * Too-long texts: `false` (default) throws as OpenAI's `clip.tokenize`; `true` keeps
   * `contextLength` tokens with `<|endoftext|>` forced last (OpenAI's `truncate=True`); `"cut"`
   * keeps the first `contextLength` tokens with no end token forced (the Python MTIL/ZSCL code's
   * `tokens[:77]` for long captions).
   */
  truncate?: Truncate;
}

/** Options of {@link loadTokenizer}. */
export interface LoadTokenizerOptions {
  /** Path of `bpe_simple_vocab_16e6.txt.gz` (else `MTIL_BPE_PATH`, else the cache). */
  vocabPath?: string;
  /** Cache directory override (default: `MTIL_CACHE` or `~/.cache/mtil`). */
  cacheDir?: string;
  /** Show a download progress bar (default true). */
  progress?: boolean;
}

/** A loaded CLIP tokenizer. */
export interface Tokenizer {
  /** BPE ids of `text` without start/end tokens (`SimpleTokenizer.encode`). */
  encode(text: string): number[];
  /** Text of ids (`SimpleTokenizer.decode`): `</w>` becomes a space; invalid UTF-8 → U+FFFD. */
  decode(ids: ArrayLike<number>): string;
  /** `[<|startoftext|>, ...encode, <|endoftext|>]` rows zero-padded to `contextLength`. */
  tokenizeIds(texts: string | string[], opts?: TokenizeOptions): Int32Array[];
  /** Token string → id (49,408 entries). */
  readonly encoder: ReadonlyMap<string, number>;
  /** Vocabulary size (49,408). */
  readonly vocabSize: number;
}

/** GPT-2's `bytes_to_unicode`: byte → printable character, in the reference's order. */
export function bytesToUnicode(): { bytes: number[]; chars: string[] } {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n);
      n++;
    }
  }
  return { bytes: bs, chars: cs.map((c) => String.fromCharCode(c)) };
}

/** Python's `str.isspace` characters (used by `str.strip`). */
const PY_SPACE =
  "\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f" +
  "\\u205f\\u3000";
/** The `regex` module's `\s` (Unicode White_Space). */
const RX_SPACE = "\\t\\n\\v\\f\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f" +
  "\\u3000";
const STRIP_RE = new RegExp(`^[${PY_SPACE}]+|[${PY_SPACE}]+$`, "g");
const WS_RE = new RegExp(`[${RX_SPACE}]+`, "g");
/** The reference regex (`regex` module, `re.IGNORECASE`). */
const PAT_SOURCE = `<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|` +
  `[\\p{N}]|[^${RX_SPACE}\\p{L}\\p{N}]+`;

/** `basic_clean` + `whitespace_clean` + `lower()` of the reference. */
export function cleanText(text: string): string {
  let t = htmlUnescape(htmlUnescape(fixText(text))).replace(STRIP_RE, "");
  t = t.replace(WS_RE, " ").replace(STRIP_RE, "");
  return t.toLowerCase();
}

class BpeTokenizer implements Tokenizer {
  readonly encoder: Map<string, number>;
  readonly vocabSize: number;
  #decoder: string[];
  #ranks: Map<string, number>;
  #byteChar: string[];
  #charByte: Map<string, number>;
  #cache = new Map<string, string[]>();
  #pat = new RegExp(PAT_SOURCE, "giu");
  #utf8 = new TextEncoder();

  constructor(merges: [string, string][]) {
    const { bytes, chars } = bytesToUnicode();
    this.#byteChar = new Array(256);
    this.#charByte = new Map();
    bytes.forEach((b, i) => {
      this.#byteChar[b] = chars[i];
      this.#charByte.set(chars[i], b);
    });
    const vocab = [...chars, ...chars.map((c) => c + "</w>")];
    for (const [a, b] of merges) vocab.push(a + b);
    vocab.push("<|startoftext|>", "<|endoftext|>");
    this.encoder = new Map(vocab.map((v, i) => [v, i]));
    this.#decoder = vocab;
    this.vocabSize = vocab.length;
    this.#ranks = new Map(merges.map(([a, b], i) => [a + " " + b, i]));
    this.#cache.set("<|startoftext|>", ["<|startoftext|>"]);
    this.#cache.set("<|endoftext|>", ["<|endoftext|>"]);
  }

  #bpe(token: string): string[] {
    const hit = this.#cache.get(token);
    if (hit) return hit;
    const word = bpeMerge(token, this.#ranks);
    if (token.length <= MAX_CACHED_WORD) {
      if (this.#cache.size >= MAX_CACHE_ENTRIES) this.#cache.clear();
      this.#cache.set(token, word);
    }
    return word;
  }

  /** BPE ids of `text`, stopping once more than `limit` ids are known (words are independent). */
  #encodeUpTo(text: string, limit: number): number[] {
    const out: number[] = [];
    const cleaned = cleanText(text);
    for (const m of cleaned.matchAll(this.#pat)) {
      let t = "";
      for (const b of this.#utf8.encode(m[0])) t += this.#byteChar[b];
      for (const piece of this.#bpe(t)) {
        const id = this.encoder.get(piece);
        if (id === undefined) throw new Error(`BPE piece ${JSON.stringify(piece)} not in vocab`);
        out.push(id);
      }
      if (out.length > limit) break;
    }
    return out;
  }

  encode(text: string): number[] {
    return this.#encodeUpTo(text, Infinity);
  }

  decode(ids: ArrayLike<number>): string {
    let s = "";
    for (let i = 0; i < ids.length; i++) {
      const piece = this.#decoder[ids[i]];
      if (piece === undefined) {
        throw new Error(`token id ${ids[i]} out of range [0, ${this.vocabSize})`);
      }
      s += piece;
    }
    const bytes = new Uint8Array(s.length);
    let n = 0;
    for (const ch of s) {
      const b = this.#charByte.get(ch);
      if (b !== undefined) bytes[n++] = b;
    }
    return new TextDecoder("utf-8").decode(bytes.subarray(0, n)).replaceAll("</w>", " ");
  }

  tokenizeIds(texts: string | string[], opts: TokenizeOptions = {}): Int32Array[] {
    const list = typeof texts === "string" ? [texts] : texts;
    const ctx = opts.contextLength ?? CONTEXT_LENGTH;
    const truncate = opts.truncate ?? false;
    if (!Number.isInteger(ctx) || ctx < 2) throw new Error(`contextLength must be ≥ 2, got ${ctx}`);
    return list.map((text) => {
      // The BPE of a word never depends on the words after it, so encoding can stop as soon as
      // the row is known to overflow: the first `ctx` tokens are then already final.
      const ids = this.#encodeUpTo(text, ctx - 2);
      const overflow = ids.length > ctx - 2;
      let tokens = [SOT_TOKEN, ...ids, EOT_TOKEN];
      if (tokens.length > ctx) {
        if (truncate === true) {
          tokens = tokens.slice(0, ctx);
          tokens[ctx - 1] = EOT_TOKEN;
        } else if (truncate === "cut") {
          tokens = tokens.slice(0, ctx);
        } else {
          throw new Error(
            `Input ${preview(text)} is too long for context length ${ctx} ` +
              `(${overflow ? "more than " + ctx : tokens.length} tokens); ` +
              `pass truncate: true (end token kept) or "cut" (first ${ctx} tokens)`,
          );
        }
      }
      const row = new Int32Array(ctx);
      row.set(tokens);
      return row;
    });
  }
}

/** Words longer than this (in bytes) are not kept in the BPE cache. */
const MAX_CACHED_WORD = 256;
/** The BPE cache is cleared when it reaches this many words (bounded memory on long inputs). */
const MAX_CACHE_ENTRIES = 1 << 16;

/** `text` quoted for an error message, cut to its first 60 characters. */
function preview(text: string): string {
  const cut = [...text.slice(0, 64)].slice(0, 60).join("");
  return JSON.stringify(cut.length < text.length ? cut + "…" : cut) +
    (cut.length < text.length ? ` (${text.length} characters)` : "");
}

/** A binary min-heap of merge candidates keyed by (rank, left position). */
class PairHeap {
  #rank: number[] = [];
  #pos: number[] = [];
  get size(): number {
    return this.#rank.length;
  }
  #less(i: number, j: number): boolean {
    const a = this.#rank[i], b = this.#rank[j];
    return a < b || (a === b && this.#pos[i] < this.#pos[j]);
  }
  #swap(i: number, j: number): void {
    [this.#rank[i], this.#rank[j]] = [this.#rank[j], this.#rank[i]];
    [this.#pos[i], this.#pos[j]] = [this.#pos[j], this.#pos[i]];
  }
  push(rank: number, pos: number): void {
    this.#rank.push(rank);
    this.#pos.push(pos);
    for (let i = this.#rank.length - 1; i > 0;) {
      const p = (i - 1) >> 1;
      if (!this.#less(i, p)) break;
      this.#swap(i, p);
      i = p;
    }
  }
  /** Remove the smallest entry; returns `[rank, pos]`. */
  pop(): [number, number] {
    const top: [number, number] = [this.#rank[0], this.#pos[0]];
    const r = this.#rank.pop()!, p = this.#pos.pop()!;
    const n = this.#rank.length;
    if (n) {
      this.#rank[0] = r;
      this.#pos[0] = p;
      for (let i = 0;;) {
        const l = 2 * i + 1, rr = l + 1;
        let m = i;
        if (l < n && this.#less(l, m)) m = l;
        if (rr < n && this.#less(rr, m)) m = rr;
        if (m === i) break;
        this.#swap(i, m);
        i = m;
      }
    }
    return top;
  }
}

/**
 * The reference's `bpe(token)` in O(n log n): its loop merges, at each round, every occurrence
 * (left to right) of the lowest-ranked adjacent pair, which is O(n²) for an n-character word.
 * Here the symbols form a linked list and candidate pairs sit in a heap ordered by (rank, left
 * position); a popped pair is used only if both symbols are still as they were. Popping equal
 * ranks left to right reproduces the reference's left-to-right, non-overlapping merges, and a
 * merged symbol can never recreate the pair just merged, so the rounds agree.
 */
export function bpeMerge(token: string, ranks: ReadonlyMap<string, number>): string[] {
  // Every byte character is one UTF-16 unit (U+0021..U+0143).
  const sym = token.split("");
  if (sym.length === 0) return [];
  sym[sym.length - 1] += "</w>";
  const n = sym.length;
  if (n === 1) return sym;
  const next = Int32Array.from({ length: n }, (_, i) => i + 1);
  const prev = Int32Array.from({ length: n }, (_, i) => i - 1);
  next[n - 1] = -1;
  const alive = new Uint8Array(n).fill(1);
  const heap = new PairHeap();
  const consider = (i: number): void => {
    const j = next[i];
    if (i < 0 || j < 0) return;
    const r = ranks.get(sym[i] + " " + sym[j]);
    if (r !== undefined) heap.push(r, i);
  };
  for (let i = 0; i < n - 1; i++) consider(i);
  while (heap.size) {
    const [r, i] = heap.pop();
    if (!alive[i]) continue;
    const j = next[i];
    if (j < 0 || ranks.get(sym[i] + " " + sym[j]) !== r) continue; // stale entry
    sym[i] += sym[j];
    alive[j] = 0;
    next[i] = next[j];
    if (next[j] >= 0) prev[next[j]] = i;
    if (prev[i] >= 0) consider(prev[i]);
    consider(i);
  }
  const out: string[] = [];
  for (let i = 0; i >= 0; i = next[i]) out.push(sym[i]);
  return out;
}

/** Parse the gzipped merges file into the reference's merge list. `name` is used in errors. */
export function parseMerges(gz: Uint8Array, name: string): [string, string][] {
  if (gz.length > MAX_GZ_BYTES) throw new Error(`${name}: ${gz.length} bytes, too large`);
  let raw: Uint8Array;
  try {
    raw = gunzipSync(gz);
  } catch (e) {
    throw new Error(
      `${name}: not a valid gzip file (${(e as Error).message}); delete it to refetch`,
    );
  }
  if (raw.length > MAX_TEXT_BYTES) throw new Error(`${name}: decompressed size too large`);
  const lines = new TextDecoder("utf-8").decode(raw).split("\n");
  if (lines.length < N_MERGES + 1) {
    throw new Error(
      `${name}: ${lines.length} lines, expected ≥ ${N_MERGES + 1}; delete it to refetch`,
    );
  }
  return lines.slice(1, N_MERGES + 1).map((line, i) => {
    const parts = line.trim().split(/\s+/);
    if (parts.length !== 2) throw new Error(`${name}: line ${i + 2} is not a merge: ${line}`);
    return [parts[0], parts[1]];
  });
}

/** Build a tokenizer from the raw (gzipped) merges file. */
export function tokenizerFromBytes(gz: Uint8Array, name = BPE_VOCAB_FILE): Tokenizer {
  return new BpeTokenizer(parseMerges(gz, name));
}

/** Where the merges file is: explicit path, `MTIL_BPE_PATH`, or the cache (downloading once). */
export async function resolveVocabPath(opts: LoadTokenizerOptions = {}): Promise<string> {
  if (opts.vocabPath) return opts.vocabPath;
  const env = Deno.env.get("MTIL_BPE_PATH");
  if (env) return env;
  try {
    return await resolveBpeVocab({ cacheDir: opts.cacheDir, progress: opts.progress });
  } catch (e) {
    throw new Error(
      `could not get the CLIP BPE merges: ${(e as Error).message} ` +
        `(or set MTIL_BPE_PATH to a local copy of ${BPE_VOCAB.url}, sha256 ${BPE_VOCAB.sha256})`,
    );
  }
}

/** Load CLIP's BPE tokenizer (see {@link LoadTokenizerOptions} for where the merges come from). */
export async function loadTokenizer(opts: LoadTokenizerOptions = {}): Promise<Tokenizer> {
  const path = await resolveVocabPath(opts);
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    throw new Error(`cannot read BPE merges ${path}: ${(e as Error).message}`);
  }
  return tokenizerFromBytes(bytes, path);
}

let defaultTokenizer: Promise<Tokenizer> | undefined;

/** The default tokenizer, loaded once per process (a failed load is retried on the next call). */
export function getTokenizer(): Promise<Tokenizer> {
  if (!defaultTokenizer) {
    defaultTokenizer = loadTokenizer();
    defaultTokenizer.catch(() => (defaultTokenizer = undefined));
  }
  return defaultTokenizer;
}

/**
 * `clip.tokenize`: texts → int32 `[n, contextLength]` tensor of token ids (start, BPE, end, zero
 * padding). Uses `opts.tokenizer` or the default tokenizer (loaded once).
 */
export async function tokenize(
  texts: string | string[],
  opts: TokenizeOptions & { tokenizer?: Tokenizer } = {},
): Promise<tf.Tensor2D> {
  const tok = opts.tokenizer ?? await getTokenizer();
  const rows = tok.tokenizeIds(texts, opts);
  const ctx = opts.contextLength ?? CONTEXT_LENGTH;
  const flat = new Int32Array(rows.length * ctx);
  rows.forEach((r, i) => flat.set(r, i * ctx));
  return tf.tensor2d(flat, [rows.length, ctx], "int32");
}
