/**
 * A word-level tokenizer for small CLIP models trained inside this project (the embedded
 * SynthMTIL model): texts are lowercased and split into words; ids are `0` = padding,
 * `1..V-3` = words, `V-2` = start of text, `V-1` = end of text (the largest id, so the reference
 * rule "features at argmax of the token ids" finds it). Unknown words map to `<unk>`.
 *
 * It needs no download, which is what lets the README's main command run offline.
 *
 * @module
 */
import { tf } from "../backends/tf.ts";
import type { TextTokenizer } from "../types.ts";

const UNK = "<unk>";

/** Split text into lowercase word tokens (letters/digits runs; other symbols dropped). */
export function words(text: string): string[] {
  return text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
}

/** A word-level {@link TextTokenizer} over a fixed vocabulary. */
export class WordTokenizer implements TextTokenizer {
  /** Vocabulary in id order (`vocab[0]` is padding, the last two are start/end). */
  readonly vocab: string[];
  readonly #ids: Map<string, number>;

  /** Build from the word list (without padding/unk/start/end; duplicates removed, order kept). */
  constructor(wordList: readonly string[]) {
    const uniq = [...new Set(wordList.map((w) => w.toLowerCase()))].filter((w) => w !== UNK);
    this.vocab = ["<pad>", UNK, ...uniq, "<|startoftext|>", "<|endoftext|>"];
    this.#ids = new Map(this.vocab.map((w, i) => [w, i]));
  }

  /** Vocabulary size (the model's `vocab_size`). */
  get size(): number {
    return this.vocab.length;
  }

  /** Start-of-text id. */
  get sot(): number {
    return this.vocab.length - 2;
  }

  /** End-of-text id (the largest). */
  get eot(): number {
    return this.vocab.length - 1;
  }

  /** Word ids of a text, without start/end tokens. */
  encode(text: string): number[] {
    return words(text).map((w) => this.#ids.get(w) ?? 1);
  }

  /** Rows of `[sot, ...ids, eot, 0...]`; too long: error, or `truncate` as the BPE tokenizer. */
  tokenizeIds(
    texts: string[],
    options: { contextLength?: number; truncate?: boolean | "cut" } = {},
  ): Int32Array[] {
    const n = options.contextLength ?? 77;
    return texts.map((t) => {
      let ids = [this.sot, ...this.encode(t), this.eot];
      if (ids.length > n) {
        if (options.truncate === "cut") ids = ids.slice(0, n);
        else if (options.truncate) ids = [...ids.slice(0, n - 1), this.eot];
        else throw new Error(`Input "${t}" is too long for context length ${n}`);
      }
      const row = new Int32Array(n);
      row.set(ids);
      return row;
    });
  }

  /** Token tensor `[n, contextLength]` int32. */
  tokenize(
    texts: string[],
    options: { contextLength?: number; truncate?: boolean | "cut" } = {},
  ): tf.Tensor2D {
    const rows = this.tokenizeIds(texts, options);
    const n = options.contextLength ?? 77;
    const flat = new Int32Array(rows.length * n);
    rows.forEach((r, i) => flat.set(r, i * n));
    return tf.tensor2d(flat, [rows.length, n], "int32");
  }

  /** Texts back from ids (padding, start and end dropped). */
  decode(ids: ArrayLike<number>): string {
    const out: string[] = [];
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (id === 0 || id === this.sot || id === this.eot) continue;
      out.push(this.vocab[id] ?? UNK);
    }
    return out.join(" ");
  }

  /** The word list to persist (e.g. in checkpoint metadata); `new WordTokenizer(list)` rebuilds it. */
  toJSON(): string[] {
    return this.vocab.slice(2, -2);
  }
}
