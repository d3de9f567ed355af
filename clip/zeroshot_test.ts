import { deepStrictEqual as assertEquals, ok as assert, rejects } from "node:assert/strict";
import { maxAbsDiff, readF32, sharedPath, skipWithoutShared, tinyClipConfig } from "./_testing.ts";
import { tf } from "./backends/tf.ts";
import { readCheckpoint } from "./formats/checkpoint.ts";
import { buildClip, l2Normalize, randomStateDict } from "./model.ts";
import { loadTokenizer } from "./tokenizers/tokenizer.ts";
import {
  classEmbedding,
  classify,
  fillTemplate,
  zeroShotHead,
  zeroShotHeadFromTokens,
} from "./zeroshot.ts";
import type { ClipConfig } from "./types.ts";

const TINY: ClipConfig = tinyClipConfig();

Deno.test("fillTemplate: `{}` strings and functions", () => {
  assertEquals(fillTemplate("a photo of a {}.", "cat"), "a photo of a cat.");
  assertEquals(fillTemplate((c) => `itap of a ${c}`, "dog"), "itap of a dog");
});

Deno.test("zeroShotHeadFromTokens: normalised mean of normalised prompt embeddings", () => {
  const m = buildClip(randomStateDict(TINY, 1));
  const t1 = tf.tensor2d(
    [[1, 4, 49, 0, 0, 0, 0, 0], [1, 5, 6, 49, 0, 0, 0, 0]],
    undefined,
    "int32",
  );
  const t2 = tf.tensor2d([[1, 9, 49, 0, 0, 0, 0, 0]], undefined, "int32");
  const head = zeroShotHeadFromTokens(m, [t1, t2]);
  assertEquals(head.shape, [16, 2]);
  const f1 = l2Normalize(m.encodeText(t1)).arraySync() as number[][];
  const mean = f1[0].map((x, i) => (x + f1[1][i]) / 2);
  const n = Math.hypot(...mean);
  const col0 = tf.tidy(() => tf.slice(head, [0, 0], [16, 1])).dataSync();
  assert(maxAbsDiff(col0, mean.map((x) => x / n)) < 1e-6);
  const col1 = tf.tidy(() => tf.slice(head, [0, 1], [16, 1])).dataSync();
  assert(maxAbsDiff(col1, l2Normalize(m.encodeText(t2)).dataSync()) < 1e-6);
  // classify: logits = 100·norm(img)·head, probabilities sum to 1, no leaks
  const images = tf.randomNormal([3, 16, 16, 3], 0, 1, "float32", 2) as tf.Tensor4D;
  const before = tf.memory().numTensors;
  const r = classify(m, head, images, { topk: 5 });
  assertEquals(r.topk.indices.shape, [3, 2]); // k clipped to the number of classes
  const ref = tf.tidy(() =>
    tf.mul(tf.matMul(l2Normalize(m.encodeImage(images)) as tf.Tensor2D, head), 100)
  );
  assert(maxAbsDiff(r.logits.dataSync(), ref.dataSync()) < 1e-4);
  const p = r.probs.arraySync();
  for (const row of p) assert(Math.abs(row[0] + row[1] - 1) < 1e-5);
  const idx = r.topk.indices.arraySync();
  p.forEach((row, i) => assertEquals(idx[i][0], row[0] >= row[1] ? 0 : 1));
  tf.dispose([r.logits, r.probs, r.topk.indices, r.topk.values, ref]);
  assertEquals(tf.memory().numTensors, before);
  m.dispose();
});

Deno.test({
  name: "zero-shot on the vit-tiny fixture equals the reference text features and argmax",
  ignore: skipWithoutShared(),
  fn: async () => {
    const exp = JSON.parse(
      Deno.readTextFileSync(sharedPath("fixtures/clip/vit-tiny.expected.json")),
    );
    const { stateDict } = await readCheckpoint(sharedPath(`fixtures/clip/${exp.checkpoint}`));
    const model = buildClip(stateDict);
    const tokenizer = await loadTokenizer({
      vocabPath: sharedPath("clip/bpe_simple_vocab_16e6.txt.gz"),
    });
    const prompts: string[] = exp.prompts;
    // one template "{}": each class embedding is the normalised reference text feature
    const head = await zeroShotHead(model, prompts, ["{}"], { tokenizer });
    assertEquals(head.shape, [32, prompts.length]);
    const refText = tf.tidy(() =>
      l2Normalize(tf.tensor2d(readF32(`fixtures/clip/${exp.text_features.file}`), [4, 32]))
    );
    const headT = tf.tidy(() => tf.transpose(head));
    const err = maxAbsDiff(headT.dataSync(), refText.dataSync());
    assert(err < 1e-4, `head vs reference text features: ${err}`);
    const images = tf.tidy(() =>
      tf.transpose(
        tf.tensor4d(readF32(`fixtures/clip/${exp.images.file}`), exp.images.shape),
        [0, 2, 3, 1],
      )
    ) as tf.Tensor4D;
    const r = classify(model, head, images, { topk: 3 });
    const refLogits = readF32(`fixtures/clip/${exp.logits_per_image.file}`);
    const refArgmax = [0, 1, 2].map((i) => {
      const row = Array.from(refLogits.slice(i * 4, i * 4 + 4));
      return row.indexOf(Math.max(...row));
    });
    assertEquals(r.topk.indices.arraySync().map((row) => row[0]), refArgmax);
    // two templates (string and function): the mean of the two normalised embeddings
    const two = await zeroShotHead(model, ["cat"], ["a photo of a {}.", (c) => `x ${c}`], {
      tokenizer,
    });
    const toks = tf.tensor2d(
      tokenizer.tokenizeIds(["a photo of a cat.", "x cat"]).map((r) => Array.from(r)),
      undefined,
      "int32",
    );
    const byHand = classEmbedding(model, toks);
    assert(maxAbsDiff(two.dataSync(), byHand.dataSync()) < 1e-6);
    await rejects(zeroShotHead(model, ["cat"], []), /at least one template/);
    tf.dispose([head, headT, refText, images, r.logits, r.probs, r.topk.indices, r.topk.values]);
    tf.dispose([two, toks, byHand]);
    model.dispose();
  },
});
