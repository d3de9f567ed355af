import { deepStrictEqual as assertEquals, ok as assert, throws } from "node:assert/strict";
import { sharedPath, skipWithoutShared } from "../_testing.ts";
import {
  bytesToUnicode,
  cleanText,
  EOT_TOKEN,
  loadTokenizer,
  SOT_TOKEN,
  tokenize,
  type Tokenizer,
} from "./tokenizer.ts";
import { tf } from "../backends/tf.ts";

interface Case {
  text: string;
  encode: number[];
  tokenize77: number[];
  fits: boolean;
}

let tok: Tokenizer | undefined;
async function tokenizer(): Promise<Tokenizer> {
  tok ??= await loadTokenizer({ vocabPath: sharedPath("clip/bpe_simple_vocab_16e6.txt.gz") });
  return tok;
}
function cases(): Case[] {
  return JSON.parse(Deno.readTextFileSync(sharedPath("fixtures/clip/tokenizer.json"))).cases;
}

Deno.test("bytesToUnicode: 256 distinct printable chars, ASCII printable maps to itself", () => {
  const { bytes, chars } = bytesToUnicode();
  assertEquals(new Set(bytes).size, 256);
  assertEquals(new Set(chars).size, 256);
  assertEquals(chars[bytes.indexOf(65)], "A");
  assertEquals(chars[bytes.indexOf(32)], "\u0120"); // GPT-2's "Ġ"
});

Deno.test("cleanText: ftfy + html + whitespace + lowercase", () => {
  assertEquals(cleanText("  “Curly”\t‘quotes’\r\n"), `"curly" 'quotes'`);
  assertEquals(cleanText("ﬁne ＦＵＬＬ"), "fine full");
  assertEquals(cleanText("&amp;amp; &lt;b&gt;"), "& <b>");
  assertEquals(cleanText("e\u0301"), "\u00e9");
});

Deno.test({
  name: "tokenizer: every fixture case identical (encode and tokenize77)",
  ignore: skipWithoutShared(),
  fn: async () => {
    const t = await tokenizer();
    assertEquals(t.vocabSize, 49408);
    assertEquals(t.encoder.get("<|startoftext|>"), SOT_TOKEN);
    assertEquals(t.encoder.get("<|endoftext|>"), EOT_TOKEN);
    const all = cases();
    assert(all.length >= 20);
    let ok = 0;
    for (const c of all) {
      assertEquals(t.encode(c.text), c.encode, `encode ${JSON.stringify(c.text)}`);
      const [row] = t.tokenizeIds(c.text, { truncate: true });
      assertEquals(Array.from(row), c.tokenize77, `tokenize77 ${JSON.stringify(c.text)}`);
      assertEquals(c.encode.length + 2 <= 77, c.fits);
      ok++;
    }
    console.log(`tokenizer fixture: ${ok}/${all.length} cases identical`);
  },
});

Deno.test({
  name: "tokenizer: too long throws by default; 'cut' keeps the first 77 without forcing the end",
  ignore: skipWithoutShared(),
  fn: async () => {
    const t = await tokenizer();
    const long = cases().find((c) => !c.fits)!;
    throws(() => t.tokenizeIds(long.text), /is too long for context length 77/);
    const [cut] = t.tokenizeIds(long.text, { truncate: "cut" });
    assertEquals(Array.from(cut), [SOT_TOKEN, ...long.encode.slice(0, 76)]);
    assert(cut[76] !== EOT_TOKEN);
    const [forced] = t.tokenizeIds(long.text, { truncate: true });
    assertEquals(forced[76], EOT_TOKEN);
    // "cut" on a text of exactly 76 BPE tokens keeps the start token and 76 tokens, no end.
    const words = Array(76).fill("a").join(" ");
    assertEquals(t.encode(words).length, 76);
    const [c76] = t.tokenizeIds(words, { truncate: "cut" });
    assertEquals(c76[76], t.encode("a")[0]);
    // A text that fits is the same in every mode.
    const [a] = t.tokenizeIds("a photo", { truncate: "cut" });
    const [b] = t.tokenizeIds("a photo");
    assertEquals(a, b);
  },
});

Deno.test({
  name: "tokenizer: decode round trip on simple ASCII, context length option",
  ignore: skipWithoutShared(),
  fn: async () => {
    const t = await tokenizer();
    const pairs: [string, string][] = [
      ["a photo of a cat.", "a photo of a cat . "],
      ["Hello, world! It's 3:45pm", "hello , world ! it 's 3 : 4 5 pm "],
      ["itap of a {}.", "itap of a {}. "],
    ];
    for (const [s, want] of pairs) assertEquals(t.decode(t.encode(s)), want);
    assertEquals(t.decode(t.encode("naïve café")), "naïve café ");
    const [row] = t.tokenizeIds("a cat", { contextLength: 5 });
    assertEquals(Array.from(row), [SOT_TOKEN, 320, 2368, EOT_TOKEN, 0]);
    throws(() => t.tokenizeIds("a b c d", { contextLength: 5 }), /too long/);
  },
});

Deno.test({
  name: "tokenize: int32 [n, 77] tensor with the default tokenizer, no tensor leak",
  ignore: skipWithoutShared(),
  fn: async () => {
    const t = await tokenizer();
    const before = tf.memory().numTensors;
    const x = await tokenize(["a photo of a cat.", "A photo of a DOG!"], { tokenizer: t });
    assertEquals(x.shape, [2, 77]);
    assertEquals(x.dtype, "int32");
    const data = await x.data();
    const c = cases();
    assertEquals(Array.from(data.slice(0, 77)), c[0].tokenize77);
    assertEquals(Array.from(data.slice(77)), c[1].tokenize77);
    x.dispose();
    assertEquals(tf.memory().numTensors, before);
  },
});

Deno.test({
  name: "tokenize: default tokenizer from MTIL_BPE_PATH",
  ignore: skipWithoutShared(),
  fn: async () => {
    Deno.env.set("MTIL_BPE_PATH", sharedPath("clip/bpe_simple_vocab_16e6.txt.gz"));
    try {
      const x = await tokenize("a photo of a cat.");
      assertEquals(Array.from(await x.data()), cases()[0].tokenize77);
      x.dispose();
    } finally {
      Deno.env.delete("MTIL_BPE_PATH");
    }
  },
});

Deno.test("loadTokenizer: corrupt merges file is an error naming the file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const p = `${dir}/bad.txt.gz`;
    await Deno.writeFile(p, new Uint8Array([1, 2, 3, 4]));
    let msg = "";
    try {
      await loadTokenizer({ vocabPath: p });
    } catch (e) {
      msg = (e as Error).message;
    }
    assert(msg.includes(p), msg);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "loadTokenizer: finds the merges in a cache directory (no download)",
  ignore: skipWithoutShared(),
  fn: async () => {
    const t = await loadTokenizer({ cacheDir: sharedPath("clip"), progress: false });
    assertEquals(t.encode("a photo of a cat."), cases()[0].encode);
  },
});
