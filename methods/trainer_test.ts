import { assert, assertEquals } from "./_testing.ts";
import { initBackend } from "../clip/backends/backend.ts";
import { tf } from "../clip/backends/tf.ts";
import { loadClip } from "../clip/load.ts";
import { readCheckpoint } from "../clip/formats/checkpoint.ts";
import { finetune, zscl } from "./builtin.ts";
import { type Method, methodNames, methodsHelp, registerMethod } from "./method.ts";
import { l2Loss } from "./train.ts";
import { trainTask } from "./trainer.ts";
import { runSequence } from "./run_sequence.ts";

const REPO = new URL("../", import.meta.url).pathname;
const TRAIN = `${REPO}tasks/train.ts`;
const SEQUENCE = `${REPO}tasks/sequence.ts`;

/** A third-party method: finetuning plus a pull to the start weights, with its own flag. */
function anchored(options: { weight: number }): Method {
  return { name: "anchored", options, setup: () => ({ parts: [l2Loss(options.weight)] }) };
}

const RECIPE = ["--model", "synth-tiny", "--batch-size", "8", "--lr", "5e-4", "--warmup-length"];

async function run(script: string, args: string[]): Promise<{ code: number; out: string }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout) + dec.decode(r.stderr) };
}

async function sameWeights(a: string, b: string): Promise<void> {
  const x = await readCheckpoint(a), y = await readCheckpoint(b);
  assertEquals([...x.stateDict.keys()].sort(), [...y.stateDict.keys()].sort());
  for (const [k, t] of x.stateDict) {
    const u = y.stateDict.get(k)!.data;
    assert(t.data.every((v, i) => v === u[i]), `${k} differs between ${a} and ${b}`);
  }
}

Deno.test({
  name:
    "a third-party method registers with its flag and runs through trainTask and deno task train",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await initBackend({ prefer: "wasm", quiet: true });
    registerMethod({
      name: "anchored",
      summary: "finetune plus L2 to the start-of-task weights",
      flags: { "anchor-weight": { type: "string", default: "1", description: "L2 weight" } },
      fromFlags: (f) => ({ weight: Number(f["anchor-weight"]) }),
      create: anchored,
    });
    assert(methodNames().includes("anchored"));
    assert(/anchored[\s\S]*--anchor-weight/.test(methodsHelp()), "help lists the method and flag");
    const dir = await Deno.makeTempDir({ prefix: "mtil-plugin-" });
    try {
      // through the API
      const { model } = await loadClip("synth-tiny");
      const api = await trainTask(model, "Synth-shape", {
        method: anchored({ weight: 0.5 }),
        iterations: 3,
        batchSize: 8,
        lr: 5e-4,
        warmupLength: 1,
        log: "silent",
        save: { dir: `${dir}/api` },
      });
      model.dispose();
      assertEquals(api.steps, 4); // 3 scheduled + the reference's final lr(total) step
      assert(api.losses.every((l) => "l2" in l.losses), "the method's loss term ran");
      // through `deno task train`, the method coming from a module given with --import
      const plugin = `${dir}/anchored.ts`;
      await Deno.writeTextFile(
        plugin,
        `import { registerMethod } from "${REPO}methods/method.ts";\n` +
          `import { l2Loss } from "${REPO}methods/train.ts";\n` +
          `registerMethod({ name: "anchored", summary: "finetune plus L2", ` +
          `flags: { "anchor-weight": { type: "string", default: "1", description: "L2 weight" } }, ` +
          `fromFlags: (f) => ({ weight: Number(f["anchor-weight"]) }), ` +
          `create: (o) => ({ name: "anchored", options: o, setup: () => ({ parts: [l2Loss(o.weight)] }) }) });\n`,
      );
      const help = await run(TRAIN, ["--import", plugin, "--help"]);
      assertEquals(help.code, 0, help.out);
      assert(/anchored[\s\S]*--anchor-weight/.test(help.out), "train --help lists the plugin");
      const cli = await run(TRAIN, [
        "--import",
        plugin,
        "--method",
        "anchored",
        "--anchor-weight",
        "0.5",
        ...RECIPE,
        "1",
        "--train-dataset",
        "Synth-shape",
        "--iterations",
        "3",
        "--save",
        `${dir}/cli`,
        "--backend",
        "wasm",
        "--quiet",
      ]);
      assertEquals(cli.code, 0, cli.out);
      await sameWeights(`${dir}/api/Synth-shape.safetensors`, `${dir}/cli/Synth-shape.safetensors`);
      const seq = await run(SEQUENCE, [
        "--import",
        plugin,
        "--method",
        "anchored",
        ...RECIPE,
        "1",
        "--order",
        "Synth-shape",
        "--iterations",
        "2",
        "--eval-limit",
        "16",
        "--save",
        `${dir}/seq`,
        "--backend",
        "wasm",
        "--quiet",
      ]);
      assertEquals(seq.code, 0, seq.out);
      // an unknown method is refused before any work, naming the registered ones
      const bad = await run(TRAIN, ["--method", "anchored", "--train-dataset", "Synth-shape"]);
      assert(bad.code !== 0 && /anchored/.test(bad.out), bad.out);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "trainTask gives the CLI's weights; runSequence gives the CLI's accuracy matrix (ZSCL, WE)",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await initBackend({ prefer: "wasm", quiet: true });
    const dir = await Deno.makeTempDir({ prefix: "mtil-api-cli-" });
    const zsclFlags = [
      "--method",
      "ZSCL",
      "--ref-dataset",
      "Synth-captions",
      "--ref-sentences",
      "Synth-captions",
      "--ref-sentences-limit",
      "32",
      "--we",
      "--avg-freq",
      "2",
      "--ls",
      "0.2",
      "--seed",
      "3",
    ];
    const method = zscl({
      refDataset: "Synth-captions",
      refSentences: { dataset: "Synth-captions" },
      refSentencesLimit: 32,
    });
    const recipe = {
      batchSize: 8,
      lr: 5e-4,
      warmupLength: 2,
      labelSmoothing: 0.2,
      seed: 3,
      averaging: { kind: "we" as const, avgFreq: 2 },
      log: "silent" as const,
    };
    try {
      const cli = await run(TRAIN, [
        ...zsclFlags,
        ...RECIPE,
        "2",
        "--train-dataset",
        "Synth-colour",
        "--iterations",
        "4",
        "--save",
        `${dir}/cli`,
        "--backend",
        "wasm",
        "--quiet",
      ]);
      assertEquals(cli.code, 0, cli.out);
      const { model } = await loadClip("synth-tiny");
      const r = await trainTask(model, "Synth-colour", {
        ...recipe,
        method,
        iterations: 4,
        save: { dir: `${dir}/api` },
      });
      assert(r.finished && r.trainableParameters > 0 && r.totalParameters >= r.trainableParameters);
      assert(r.losses.every((l) => "image_distill" in l.losses && "text_distill" in l.losses));
      await sameWeights(`${dir}/cli/Synth-colour.safetensors`, r.saved.checkpoint!);
      model.dispose();

      const tasks = ["Synth-shape", "Synth-colour"];
      const seqCli = await run(SEQUENCE, [
        ...zsclFlags,
        ...RECIPE,
        "2",
        "--order",
        tasks.join(","),
        "--iterations",
        "3",
        "--eval-limit",
        "40",
        "--save",
        `${dir}/seq-cli`,
        "--backend",
        "wasm",
        "--quiet",
      ]);
      assertEquals(seqCli.code, 0, seqCli.out);
      const { model: m2 } = await loadClip("synth-tiny");
      const rows: (number | string)[] = [];
      const seq = await runSequence(m2, tasks, {
        ...recipe,
        method,
        iterations: 3,
        evalLimit: 40,
        dir: `${dir}/seq-api`,
        plots: false,
        onRow: (_m, row) => void rows.push(row),
      });
      m2.dispose();
      const want = JSON.parse(await Deno.readTextFile(`${dir}/seq-cli/accuracy_matrix.json`));
      assertEquals(seq.matrix.values, want.values);
      assertEquals(seq.matrix.zeroShot, want.zeroShot);
      assertEquals(rows, ["zero-shot", 0, 1]);
      assertEquals(seq.checkpoints.length, 2);
      assert(seq.finished && seq.scores !== undefined);
      for (let i = 0; i < tasks.length; i++) {
        await sameWeights(`${dir}/seq-cli/${tasks[i]}.safetensors`, seq.checkpoints[i]);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "trainTask: typed options, finetune by default, a silent run prints nothing",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await initBackend({ prefer: "wasm", quiet: true });
    const { model } = await loadClip("synth-tiny");
    const lines: string[] = [];
    const log = console.log, err = console.error;
    console.log = (...a: unknown[]) => void lines.push(a.join(" "));
    console.error = (...a: unknown[]) => void lines.push(a.join(" "));
    const before = tf.memory().numTensors;
    try {
      const r = await trainTask(model, "Synth-shape", {
        method: finetune(),
        iterations: 2,
        batchSize: 4,
        finalStep: false,
        log: "silent",
        eval: { datasets: ["Synth-shape"], limit: 8 },
      });
      assertEquals(r.steps, 2);
      assertEquals(r.evaluations.length, 1);
      assertEquals(r.evaluations[0].iteration, 2);
    } finally {
      console.log = log;
      console.error = err;
    }
    assertEquals(lines, []);
    assertEquals(tf.memory().numTensors, before, "no tensor left behind");
    model.dispose();
  },
});
