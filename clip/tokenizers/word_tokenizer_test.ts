import { deepStrictEqual, strictEqual, throws } from "node:assert/strict";
import { words, WordTokenizer } from "./word_tokenizer.ts";
import { tf } from "../backends/tf.ts";

Deno.test("words: lowercases and drops punctuation", () => {
  deepStrictEqual(words("A photo of a Red circle."), ["a", "photo", "of", "a", "red", "circle"]);
});

Deno.test("WordTokenizer: ids, start/end, padding, decode", () => {
  const t = new WordTokenizer(["a", "photo", "of", "red", "circle", "a"]);
  strictEqual(t.size, 2 + 5 + 2);
  strictEqual(t.eot, 8);
  strictEqual(t.sot, 7);
  deepStrictEqual(t.encode("A red square"), [2, 5, 1]);
  const [row] = t.tokenizeIds(["a red circle"], { contextLength: 6 });
  deepStrictEqual([...row], [7, 2, 5, 6, 8, 0]);
  strictEqual(t.decode(row), "a red circle");
  deepStrictEqual(new WordTokenizer(t.toJSON()).vocab, t.vocab);
});

Deno.test("WordTokenizer: too long is an error unless truncated", () => {
  const t = new WordTokenizer(["a"]);
  throws(() => t.tokenizeIds(["a a a a"], { contextLength: 4 }), /too long/);
  deepStrictEqual([...t.tokenizeIds(["a a a a"], { contextLength: 4, truncate: true })[0]], [
    3,
    2,
    2,
    4,
  ]);
  deepStrictEqual([...t.tokenizeIds(["a a a a"], { contextLength: 4, truncate: "cut" })[0]], [
    3,
    2,
    2,
    2,
  ]);
});

Deno.test("WordTokenizer: tensor output, argmax finds the end token", () => {
  const t = new WordTokenizer(["x", "y"]);
  const tok = t.tokenize(["x y", "y"], { contextLength: 5 });
  deepStrictEqual(tok.shape, [2, 5]);
  strictEqual(tok.dtype, "int32");
  const am = tf.argMax(tok, 1);
  deepStrictEqual([...am.dataSync()], [3, 2]);
  tok.dispose();
  am.dispose();
});
