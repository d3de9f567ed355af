import { tf } from "../../clip/backends/tf.ts";
import { initBackend } from "../../clip/backends/backend.ts";
import { buildClip, randomStateDict } from "../../clip/model.ts";
import type { Dataset } from "../../datasets/types.ts";
import { assert, assertEquals, TINY } from "../_testing.ts";
import { runSequence, type SequenceTask } from "../run_sequence.ts";
import { DIKI_STATE_FILE, dikiMethod } from "./method.ts";
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
    split: "train",
    classnames: ["p_q", "r", "s"],
    templates: ["{}"],
    length: n,
    get: (i) => Promise.resolve({ image: { data: pix[i], width: 16, height: 16 }, label: i % 3 }),
  };
}

Deno.test({
  name: "DIKI through runSequence: stop and rerun, matrix, scores, task votes, saved state",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const model = buildClip(randomStateDict(TINY, 4));
    model.tokenizer = {
      tokenize: (texts) =>
        tf.tensor2d(texts.map((_, i) => [1, 2 + i, 3 + i, 31, 0, 0, 0, 0]), undefined, "int32"),
    };
    const dir = await Deno.makeTempDir();
    const tasks: SequenceTask[] = ["A", "B"].map((name, k) => ({
      name,
      train: dataset(name, k, 40, 1),
      test: dataset(name, k, 24, 7),
    }));
    const small = { depthVision: 1, depthText: 1, prefixLenVision: 2, prefixLenText: 2 };
    let steps = 0, stopAt = 2;
    const common = {
      dir,
      iterations: 4,
      batchSize: 20,
      batchSizeEval: 12,
      saveInterval: 1,
      plots: false,
      log: "silent" as const,
      onStep: () => void steps++,
      shouldStop: () => steps >= stopAt,
    };
    const first = await runSequence(model, tasks, {
      ...common,
      method: dikiMethod({ tasks: 2, ...small }),
    });
    assert(!first.finished);
    assertEquals(steps, 2);
    // a rerun (a new method instance, as a new process) resumes A at step 2 and finishes
    stopAt = Infinity;
    const method = dikiMethod({ tasks: 2, ...small });
    const r = await runSequence(model, tasks, { ...common, method });
    assert(r.finished && r.scores, "finished with scores");
    assertEquals(steps, 2 + 2 + 4);
    assertEquals(r.matrix.completed, 2);
    assertEquals(method.learnt(), ["A", "B"]);
    // the vote picks each dataset's own task once both are learnt
    const votes = r.matrix.details![1];
    for (const [i, v] of votes.entries()) {
      assert(v && v.voteAccuracy === 100, `task ${i}: vote accuracy ${JSON.stringify(v)}`);
    }
    const ck = await readCheckpoint(`${dir}/${DIKI_STATE_FILE}`);
    assertEquals(ck.meta.learned, ["A", "B"]);
    method.state()!.dispose();
    model.dispose();
    await Deno.remove(dir, { recursive: true });
  },
});
