import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { parseSequenceArgs, runSequenceFlags as runSequenceArgs } from "./sequence.ts";
import { formatMatrix } from "../methods/report.ts";
import type { SequenceMatrix } from "../methods/sequence.ts";
import { initBackend } from "../clip/backends/backend.ts";

const ORDER = "Synth-shape,Synth-colour,Synth-texture";

function args(dir: string): string[] {
  return [
    "--model",
    "synth-tiny",
    "--order",
    ORDER,
    "--method",
    "finetune",
    "--iterations",
    "12",
    "--batch-size",
    "16",
    "--lr",
    "5e-4",
    "--warmup-length",
    "2",
    "--save-interval",
    "3",
    "--eval-limit",
    "60",
    "--seed",
    "3",
    "--save",
    dir,
    "--quiet",
    "--backend",
    "wasm",
  ];
}

async function readMatrix(dir: string): Promise<SequenceMatrix> {
  return JSON.parse(await Deno.readTextFile(`${dir}/accuracy_matrix.json`));
}

async function exists(p: string): Promise<boolean> {
  return await Deno.stat(p).then(() => true, () => false);
}

Deno.test({
  name: "sequence: killed at several points and rerun, the matrix equals an uninterrupted run",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await initBackend({ prefer: "wasm", quiet: true });
    const ref = await Deno.makeTempDir({ prefix: "mtil-seq-ref-" });
    const r = await runSequenceArgs(parseSequenceArgs(args(ref)));
    ok(r.finished && r.scores, "uninterrupted run finishes with scores");
    const want = await readMatrix(ref);
    strictEqual(want.completed, 3);

    const dir = await Deno.makeTempDir({ prefix: "mtil-seq-kill-" });
    // Kill points: mid-first-task (after its first periodic state save), right after the first
    // checkpoint, and inside the second task.
    const killWhen = [
      `${dir}/Synth-shape.state.safetensors`,
      `${dir}/Synth-shape.safetensors`,
      `${dir}/Synth-colour.state.safetensors`,
    ];
    const main = new URL("./sequence.ts", import.meta.url).pathname;
    let kills = 0;
    for (const marker of killWhen) {
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", main, ...args(dir)],
        stdout: "null",
        stderr: "null",
      }).spawn();
      const t0 = Date.now();
      while (!(await exists(marker)) && Date.now() - t0 < 120_000) {
        await new Promise((res) => setTimeout(res, 20));
      }
      try {
        child.kill("SIGKILL");
        kills++;
      } catch { /* already exited */ }
      await child.status;
    }
    ok(kills >= 2, `the run was killed at least twice (${kills})`);
    const done = await runSequenceArgs(parseSequenceArgs(args(dir)));
    ok(done.finished);
    const got = await readMatrix(dir);
    deepStrictEqual(got.values, want.values, `\n${formatMatrix(got)}\nvs\n${formatMatrix(want)}`);
    deepStrictEqual(got.zeroShot, want.zeroShot);
    // Nothing half-written is left behind.
    for await (const e of Deno.readDir(dir)) ok(!e.name.includes(".tmp"), e.name);
    await Deno.remove(ref, { recursive: true });
    await Deno.remove(dir, { recursive: true });
  },
});

Deno.test({
  name: "sequence: a rerun with another configuration in the same folder is refused",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await initBackend({ prefer: "wasm", quiet: true });
    const dir = await Deno.makeTempDir({ prefix: "mtil-seq-cfg-" });
    const a = args(dir);
    a[a.indexOf("--iterations") + 1] = "2";
    a[a.indexOf("--order") + 1] = "Synth-shape";
    await runSequenceArgs(parseSequenceArgs(a));
    a[a.indexOf("--lr") + 1] = "1e-3";
    let err = "";
    try {
      await runSequenceArgs(parseSequenceArgs(a));
    } catch (e) {
      err = (e as Error).message;
    }
    ok(/another configuration/.test(err), err);
    await Deno.remove(dir, { recursive: true });
  },
});
