import { tf } from "../../clip/backends/tf.ts";
import { initBackend } from "../../clip/backends/backend.ts";
import { buildClip, randomStateDict } from "../../clip/model.ts";
import type { Dataset } from "../../datasets/types.ts";
import { assert, assertEquals, TINY } from "../_testing.ts";
import type { TrainTask } from "../train.ts";
import { runDikiSequence } from "./sequence.ts";
import { DIKI_STATE_KIND } from "./io.ts";
import { readCheckpoint } from "../../clip/formats/checkpoint.ts";

await initBackend({ prefer: "wasm", quiet: true });

/** Images of task `k` are drawn around a different grey level: the Gaussians tell them apart. */
function dataset(name: string, k: number, n: number, seed: number): Dataset {
  const pix = Array.from(
    { length: n },
    (_, i) =>
      Uint8Array.from({ length: 16 * 16 * 3 }, (_, j) => {
        const x = Math.sin((i + 1) * (j + 3) * 12.9898 + seed) * 43758.5453;
        return Math.max(0, Math.min(255, Math.round(40 + 150 * k + 60 * (x - Math.floor(x)))));
      }),
  );
  return {
    name,
    split: "test",
    classnames: ["p_q", "r", "s"],
    templates: ["{}"],
    length: n,
    get: (i) => Promise.resolve({ image: { data: pix[i], width: 16, height: 16 }, label: i % 3 }),
  };
}

Deno.test("runDikiSequence: two tasks, stop and rerun, matrix, scores and task votes", async () => {
  const model = buildClip(randomStateDict(TINY, 4));
  model.tokenizer = {
    tokenize: (texts) =>
      tf.tensor2d(texts.map((_, i) => [1, 2 + i, 3 + i, 31, 0, 0, 0, 0]), undefined, "int32"),
  };
  const dir = await Deno.makeTempDir();
  const order = ["A", "B"];
  const test = (name: string) => Promise.resolve(dataset(name, order.indexOf(name), 24, 7));
  const made: tf.Tensor[] = [];
  const trainTask = (i: number, name: string): Promise<TrainTask> => {
    const textTokens = model.tokenizer!.tokenize(["p q", "r", "s"]);
    made.push(textTokens);
    return Promise.resolve({
      name,
      classnames: ["p_q", "r", "s"],
      textTokens,
      batchesPerEpoch: 2,
      batch: (s: number) =>
        Promise.resolve({
          images: tf.tidy(() =>
            tf.randomNormal([20, 16, 16, 3], i === 0 ? -1.2 : 1.2, 0.3, "float32", 10 * i + s)
          ) as tf.Tensor4D,
          labels: Array.from({ length: 20 }, (_, j) => (j + s) % 3),
        }),
    });
  };
  const common = {
    model,
    order,
    saveDir: dir,
    config: { test: true },
    diki: { depthVision: 1, depthText: 1, prefixLenVision: 2, prefixLenText: 2 },
    trainTask,
    testDataset: test,
    evaluate: { batchSize: 12 },
  };
  const start = tf.memory().numTensors;
  // first run: interrupted after 2 of task A's 4 steps
  let stopAt = 2, steps = 0;
  const first = await runDikiSequence({
    ...common,
    trainOptions: { iterations: 4, onStep: () => void steps++, shouldStop: () => steps >= stopAt },
    checkpointEvery: 1,
  });
  assert(!first.finished);
  assertEquals(steps, 2);
  await Deno.stat(`${dir}/A.safetensors.state`);
  // the rerun resumes task A at step 2 and finishes the sequence
  stopAt = Infinity;
  const r = await runDikiSequence({
    ...common,
    trainOptions: { iterations: 4, onStep: () => void steps++, shouldStop: () => steps >= stopAt },
  });
  assert(r.finished && r.scores);
  assertEquals(steps, 2 + 2 + 4);
  assertEquals(r.matrix.completed, 2);
  const ck = await readCheckpoint(`${dir}/B.safetensors`);
  assertEquals((ck.meta.mtilDiki as { kind: string; learnt: number }).kind, DIKI_STATE_KIND);
  assertEquals((ck.meta.mtilDiki as { learnt: number }).learnt, 2);
  const votes = JSON.parse(await Deno.readTextFile(`${dir}/diki_votes.json`));
  assertEquals(votes.rows[0][1], null); // B not learnt after A
  assertEquals(votes.rows[1], [100, 100]); // each test set votes for its own task
  await Deno.stat(`${dir}/summary.json`);
  assertEquals(model.attentionHooks.size, 0);
  tf.dispose(made);
  assertEquals(tf.memory().numTensors, start);
  await Deno.remove(dir, { recursive: true });
  model.dispose();
});
