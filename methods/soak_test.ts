import { tf } from "../clip/backends/tf.ts";
import { availableBackends } from "../clip/backends/backend.ts";
import { buildClip, randomStateDict } from "../clip/model.ts";
import { assert, TINY } from "./_testing.ts";
import { baseParts } from "./presets.ts";
import { createRun, disposeRun, runSteps, type TrainTask } from "./train.ts";

/** 500 training steps (finetune + L2 + weight ensembling) on each backend that loads here. */
for (const backend of await availableBackends()) {
  // the plain cpu backend passes too but takes 25 s here; the native backends are not in CI
  if (backend === "tensorflow" || backend === "cpu") continue;
  Deno.test(`soak: tensor count flat over 500 training steps (${backend})`, async () => {
    const prev = tf.getBackend();
    await tf.setBackend(backend);
    const model = buildClip(randomStateDict(TINY, 11));
    const textTokens = tf.tensor2d(
      [[30, 1, 2, 31, 0, 0, 0, 0], [30, 3, 31, 0, 0, 0, 0, 0]],
      undefined,
      "int32",
    );
    const task: TrainTask = {
      name: "soak",
      classnames: ["a", "b"],
      textTokens,
      batch: (s) =>
        Promise.resolve({
          images: tf.randomNormal([2, 16, 16, 3], 0, 1, "float32", s) as tf.Tensor4D,
          labels: [s % 2, (s + 1) % 2],
        }),
    };
    const counts: number[] = [];
    const rss: number[] = [];
    const run = await createRun(model, task, {
      iterations: 500,
      lr: 1e-4,
      warmupLength: 10,
      parts: baseParts({ labelSmoothing: 0.1, l2: 1, we: true, avgFreq: 5 }),
      onStep: (rec) => {
        if (rec.step === 9 || rec.step === 499) counts.push(tf.memory().numTensors);
        if (rec.step % 100 === 99) rss.push(Deno.memoryUsage().rss / 2 ** 20);
      },
    });
    await runSteps(run);
    console.log(
      `${backend}: tensors after step 10: ${counts[0]}, after step 500: ${counts[1]}; ` +
        `RSS (MiB) every 100 steps: ${rss.map((r) => r.toFixed(0)).join(", ")}`,
    );
    assert(counts[0] === counts[1], `tensor count grew: ${counts[0]} → ${counts[1]}`);
    disposeRun(run);
    textTokens.dispose();
    model.dispose();
    if (prev) await tf.setBackend(prev);
  });
}
