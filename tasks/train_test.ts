import { assert, assertAllClose, assertEquals } from "../methods/_testing.ts";
import { normalizeFlags, parseFlags as parseTrainArgs } from "./train_flags.ts";
import { parseEvalArgs } from "./eval.ts";
import { randomStateDict } from "../clip/model.ts";
import { readCheckpoint, saveCheckpoint } from "../clip/formats/checkpoint.ts";
import { HAS_SHARED, sharedPath, tinyClipConfig } from "../clip/_testing.ts";

Deno.test("both flag spellings parse to the same arguments", () => {
  assertEquals(normalizeFlags(["--image_loss", "--warmup_length=5", "--T", "2", "a_b"]), [
    "--image-loss",
    "--warmup-length=5",
    "--T",
    "2",
    "a_b",
  ]);
  const a = parseTrainArgs(["--image_loss", "--we_wise_alpha", "0.9", "--train-dataset", "DTD"]);
  const b = parseTrainArgs(["--image-loss", "--we-wise-alpha=0.9", "--train_dataset", "DTD"]);
  assertEquals(a, b);
  assertEquals([a["image-loss"], a["we-wise-alpha"], a["text-loss"]], [true, "0.9", false]);
  let threw = false;
  try {
    parseTrainArgs(["--no-such-flag"]);
  } catch {
    threw = true;
  }
  assert(threw, "unknown flags are rejected");
  assertEquals(parseEvalArgs(["--eval_single", "x.png"])["eval-single"], "x.png");
  // the reference's final lr(total) iteration is on unless switched off
  assertEquals(parseTrainArgs([])["no-final-step"], false);
  assertEquals(parseTrainArgs(["--no_final_step"])["no-final-step"], true);
});

const FMNIST = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz";
const haveData = (() => {
  try {
    Deno.statSync(FMNIST);
    return HAS_SHARED;
  } catch {
    return false;
  }
})();
if (!haveData) {
  console.warn(
    "%cSKIPPING the CLI kill-and-resume test: needs ../shared and Debian's dataset-fashion-mnist",
    "color: red",
  );
}

async function tinyModel(path: string): Promise<void> {
  const sd = randomStateDict(tinyClipConfig({ contextLength: 77, vocabSize: 49408 }), 5);
  await saveCheckpoint(path, sd);
}

function trainCmd(dir: string, save: string, extra: string[] = []): Deno.Command {
  const script = new URL("./train.ts", import.meta.url).pathname;
  return new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      script,
      "--model",
      `${dir}/tiny.safetensors`,
      "--train_dataset",
      "FashionMNIST",
      "--data-location",
      dir,
      "--method",
      "finetune",
      "--iterations",
      "16",
      "--batch-size",
      "4",
      "--warmup_length",
      "3",
      "--ls",
      "0.2",
      "--l2",
      "1",
      "--we",
      "--avg_freq",
      "4",
      "--save",
      save,
      "--backend",
      "wasm",
      "--loss-interval",
      "1",
      ...extra,
    ],
    env: { MTIL_BPE_PATH: sharedPath("clip/bpe_simple_vocab_16e6.txt.gz") },
    stdout: "null",
    stderr: "piped",
  });
}

Deno.test({
  name: "deno task train: SIGINT saves the state, --resume ends with the uninterrupted weights",
  ignore: !haveData,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    await tinyModel(`${dir}/tiny.safetensors`);
    // uninterrupted
    const full = await trainCmd(dir, `${dir}/a`).output();
    assertEquals(full.code, 0, new TextDecoder().decode(full.stderr));
    // interrupted: SIGINT once step 5 is logged
    const child = trainCmd(dir, `${dir}/b`).spawn();
    const dec = new TextDecoder();
    let log = "";
    let sent = false;
    for await (const chunk of child.stderr) {
      log += dec.decode(chunk);
      if (!sent && /step 5:/.test(log)) {
        child.kill("SIGINT");
        sent = true;
      }
    }
    const st = await child.status;
    assertEquals(st.code, 3, log);
    await Deno.stat(`${dir}/b/FashionMNIST.state.safetensors`);
    const res = await trainCmd(dir, `${dir}/b`, ["--resume"]).output();
    const resLog = new TextDecoder().decode(res.stderr);
    assertEquals(res.code, 0, resLog);
    const a = await readCheckpoint(`${dir}/a/FashionMNIST.safetensors`);
    const b = await readCheckpoint(`${dir}/b/FashionMNIST.safetensors`);
    for (const [k, t] of a.stateDict) assertAllClose(b.stateDict.get(k)!.data, t.data, 1e-5, k);
    assertEquals(b.meta.iteration ?? (b.meta.mtil as Record<string, unknown>)?.iteration, 16);
    await Deno.remove(dir, { recursive: true });
  },
});

Deno.test({
  name: "deno task train: --untrained, --start-iteration, --max-evaluation-size and --results-db",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "mtil-ref-flags-" });
    try {
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          new URL("./train.ts", import.meta.url).pathname,
          "--model",
          "synth-tiny",
          "--train-dataset",
          "Synth-shape",
          "--untrained",
          "--iterations",
          "4",
          "--start-iteration",
          "2",
          "--batch-size",
          "8",
          "--eval-datasets",
          "Synth-shape,Synth-colour",
          "--eval-interval",
          "2",
          "--batch-size-eval",
          "8",
          "--max-evaluation-size",
          "2",
          "--results-db",
          `${dir}/results.jsonl`,
          "--save",
          dir,
          "--backend",
          "wasm",
          "--quiet",
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const log = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      assertEquals(out.code, 0, log);
      assert(/--untrained: \d+ parameters re-initialised/.test(log), log);
      // steps 2 and 3 run (and the final lr(total) one): evaluation at 4 only, 16 images each
      const rows = (await Deno.readTextFile(`${dir}/results.jsonl`)).trim().split("\n")
        .map((l) => JSON.parse(l));
      assertEquals(rows.length, 1, JSON.stringify(rows));
      assertEquals(rows[0].iteration, 4);
      assertEquals(rows[0].untrained, true);
      for (const d of ["Synth-shape", "Synth-colour"]) {
        const v = rows[0][`${d}:top1`];
        assert(v >= 0 && v <= 1, `${d}:top1 = ${v}`);
      }
      assert(/Synth-shape @4: .*\(16\)/.test(log), "at most 2 batches of 8 images");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
