/**
 * Conceptual Captions as a source of reference sentences (ZSCL's `--ref-sentences
 * conceptual_captions`): the reference reads `<root>/Validation_GCC-1.1.0-Validation_output.csv`,
 * a tab-separated file with a header holding `filepath` and `title` columns (the output of
 * img2dataset / open_clip's CC3M recipe), and uses the `title` column. The raw Google file
 * `Validation_GCC-1.1.0-Validation.tsv` (caption TAB url, no header) is accepted too, as is a
 * `conceptual_captions/` sub-folder holding either file.
 *
 * @module
 */
import { parseCsvRecords } from "../csv.ts";
import type { TextDataset } from "../types.ts";
import { checkIndex } from "../types.ts";
import { DatasetNotFoundError, exists, howToGet } from "./common.ts";

/** File name of the reference's caption list. */
export const CC_OUTPUT_CSV = "Validation_GCC-1.1.0-Validation_output.csv";
/** File name of Google's raw validation list. */
export const CC_RAW_TSV = "Validation_GCC-1.1.0-Validation.tsv";

/** An in-memory list of sentences. */
export class SentenceDataset implements TextDataset {
  /** Registry name. */
  readonly name: string;
  /** The sentences. */
  readonly sentences: readonly string[];
  /** Source file. */
  readonly source: string;

  /** Wrap a list of sentences. */
  constructor(name: string, sentences: string[], source: string) {
    this.name = name;
    this.sentences = sentences;
    this.source = source;
  }

  /** Number of sentences. */
  get length(): number {
    return this.sentences.length;
  }

  /** Sentence `i`. */
  get(i: number): Promise<string> {
    try {
      checkIndex(this, i);
    } catch (e) {
      return Promise.reject(e);
    }
    return Promise.resolve(this.sentences[i]);
  }
}

/**
 * Parse caption text. With a header naming a `title` (or `caption`) column, that column is used
 * (tab- or comma-separated, detected from the header line); otherwise every line's first
 * tab-separated field is a caption (Google's raw TSV). Empty captions are errors naming the line.
 */
export function parseCaptions(text: string, file: string): string[] {
  const firstLine = text.slice(0, text.indexOf("\n") < 0 ? text.length : text.indexOf("\n"));
  const headerCols = firstLine.split(firstLine.includes("\t") ? "\t" : ",").map((s) =>
    s.trim().toLowerCase()
  );
  const key = headerCols.includes("title")
    ? "title"
    : headerCols.includes("caption")
    ? "caption"
    : null;
  const out: string[] = [];
  if (key && firstLine.includes("\t")) {
    const cols = firstLine.split("\t").map((s) => s.trim().toLowerCase());
    const k = cols.indexOf(key);
    const lines = text.split(/\r?\n/);
    for (let i = 1; i < lines.length; i++) {
      if (!lines[i]) continue;
      const f = lines[i].split("\t");
      const c = f[k]?.trim();
      if (!c) throw new Error(`${file}: line ${i + 1} has no "${key}" field`);
      out.push(c);
    }
    return out;
  }
  if (key) {
    let recs: Record<string, string>[];
    try {
      recs = parseCsvRecords(text);
    } catch (e) {
      throw new Error(`${file}: ${(e as Error).message}`);
    }
    const real = Object.keys(recs[0] ?? {}).find((h) => h.trim().toLowerCase() === key)!;
    recs.forEach((r, i) => {
      const c = r[real]?.trim();
      if (!c) throw new Error(`${file}: record ${i + 1} has no "${key}" field`);
      out.push(c);
    });
    return out;
  }
  for (const [i, line] of text.split(/\r?\n/).entries()) {
    if (!line) continue;
    const c = line.split("\t")[0].trim();
    if (!c) throw new Error(`${file}: line ${i + 1} has an empty caption`);
    out.push(c);
  }
  return out;
}

/** Load the Conceptual Captions sentences from `root` (see the module docs for the files tried). */
export async function loadConceptualCaptions(opts: { root: string }): Promise<SentenceDataset> {
  const candidates = [
    `${opts.root}/${CC_OUTPUT_CSV}`,
    `${opts.root}/conceptual_captions/${CC_OUTPUT_CSV}`,
    `${opts.root}/${CC_RAW_TSV}`,
    `${opts.root}/conceptual_captions/${CC_RAW_TSV}`,
  ];
  for (const file of candidates) {
    if (await exists(file)) {
      const sentences = parseCaptions(await Deno.readTextFile(file), file);
      if (!sentences.length) throw new Error(`${file}: no captions found`);
      return new SentenceDataset("conceptual_captions", sentences, file);
    }
  }
  throw new DatasetNotFoundError(
    "conceptual_captions",
    candidates[0],
    howToGet("conceptual_captions", opts.root, true),
  );
}
