/**
 * Fuzz suite of the command-line surface and of the inputs a careless user gives: numeric flags
 * of every entry point, the entry points' exit codes and messages (no stack traces), checkpoint
 * key mismatches (strict loading), and tokenizer text.
 */
import { expectClear, fuzzStats, Rng } from "../clip/_fuzz.ts";
import { sharedPath, skipWithoutShared } from "../clip/_testing.ts";
import { initBackend } from "../clip/backends/backend.ts";
import { readCheckpoint, saveCheckpoint } from "../clip/formats/checkpoint.ts";
import { checkWeights, loadClip, loadWeights } from "../clip/load.ts";
import { buildClip, randomStateDict } from "../clip/model.ts";
import { loadTokenizer } from "../clip/tokenizers/tokenizer.ts";
import { TINY } from "../methods/_testing.ts";
import {
  describeFlag,
  FlagError,
  type NumberFlagOptions,
  parseNumberFlag,
  TRAIN_FLAG_SPECS,
  validateTrainFlags,
} from "../methods/flags.ts";
import { parseTrainArgs } from "./train.ts";
import { parseEvalArgs } from "./eval.ts";
import { parseSequenceArgs } from "./sequence.ts";

const ROOT = new URL("../", import.meta.url).pathname;

const HOSTILE_VALUES = [
  "",
  " ",
  "abc",
  "-1",
  "-5",
  "0",
  "1.5",
  "-0",
  "1e30",
  "1e400",
  "-1e400",
  "NaN",
  "nan",
  "Infinity",
  "-Infinity",
  "0x10",
  "0b11",
  "1_000",
  "1,5",
  "5abc",
  "٣",
  "1e-400",
  "99999999999999999999",
  "9007199254740993",
  "0.5",
  "1",
  "2",
  "100",
  "1e3",
  ".5",
  "5.",
  "+3",
  "--",
  "true",
];

function satisfies(n: number, o: NumberFlagOptions): boolean {
  return Number.isFinite(n) && (!o.integer || Number.isSafeInteger(n)) &&
    (!o.positive || n > 0) && (o.min === undefined || n >= o.min) &&
    (o.max === undefined || n <= o.max) && (o.above === undefined || n > o.above) &&
    (o.below === undefined || n < o.below);
}

Deno.test("fuzz: every numeric flag: a valid number or a FlagError naming the flag", async () => {
  const rng = new Rng(31);
  const chars = "0123456789.-+eE xabNI_";
  for (const [name, spec] of Object.entries(TRAIN_FLAG_SPECS)) {
    const values = [...HOSTILE_VALUES];
    for (let i = 0; i < 40; i++) {
      values.push(Array.from({ length: 1 + rng.int(8) }, () => rng.pick([...chars])).join(""));
      values.push(String((rng.next() - 0.3) * 10 ** rng.int(12)));
    }
    for (const v of values) {
      const err = await expectClear(
        () => {
          const n = parseNumberFlag(name, v, spec)!;
          if (!satisfies(n, spec)) {
            throw new Error(`--${name} ${v}: accepted ${n} outside its range`);
          }
        },
        `--${name}`,
        `--${name} ${JSON.stringify(v)}`,
      );
      if (err && !(err instanceof FlagError)) throw err;
      if (err && !err.message.includes(describeFlag(spec))) {
        throw new Error(`--${name}: the error does not say what is expected: ${err.message}`);
      }
    }
  }
});

Deno.test("fuzz: the issue's flag cases fail at parse time with a clear message", async () => {
  const cases: [string[], RegExp][] = [
    [["--iterations=-5"], /--iterations expects an integer ≥ 1, got "-5"/],
    [["--iterations=0"], /--iterations/],
    [["--iterations=1.5"], /--iterations/],
    [["--iterations", "abc"], /--iterations/],
    [["--lr=-1"], /--lr expects a number > 0/],
    [["--lr", "abc"], /--lr/],
    [["--workers=-1"], /--workers/],
    [["--eval-limit=-5"], /--eval-limit/],
    [["--batch-size", "0"], /--batch-size/],
    [["--alpha", "abc", "--wise-ft"], /--alpha expects a number in \[0, 1\]/],
    [["--ls", "1"], /--ls/],
    [["--seed", "-3"], /--seed/],
    [["--seed=-3"], /--seed expects an integer in \[0, 4294967295\]/],
    [["--iterations", "5", "--epochs", "2"], /not both/],
  ];
  for (const [argv, re] of cases) {
    for (const parse of [parseTrainArgs, parseEvalArgs, parseSequenceArgs]) {
      const err = await expectClear(() => parse(argv), undefined, argv.join(" "));
      if (!err || !re.test(err.message)) throw new Error(`${argv.join(" ")}: ${err?.message}`);
    }
  }
  validateTrainFlags({ iterations: "10", lr: "1e-5", alpha: "0.5", workers: "0" });
});

/** Run an entry point; returns exit code, stderr and seconds. */
async function runTask(
  args: string[],
): Promise<{ code: number; stderr: string; stdout: string; s: number }> {
  const t0 = performance.now();
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...args],
    cwd: ROOT,
    env: { MTIL_BACKEND: "cpu" },
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(90_000),
  }).output();
  const dec = new TextDecoder();
  return {
    code: out.code,
    stderr: dec.decode(out.stderr),
    stdout: dec.decode(out.stdout),
    s: (performance.now() - t0) / 1000,
  };
}

Deno.test("fuzz: entry points exit non-zero with one line and no stack trace for bad input", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(`${dir}/junk.pt`, "not a checkpoint at all");
  const cases: [string[], number, RegExp][] = [
    [["tasks/demo.ts", "--iterations", "abc"], 2, /^error: --iterations expects an integer/],
    [["tasks/demo.ts", "--eval-limit=-5"], 2, /^error: --eval-limit/],
    [["tasks/demo.ts", "--bogus"], 2, /^error: Unknown option '--bogus'/],
    [["tasks/list_layers.ts", "--bogus"], 2, /^error: Unknown option/],
    [["tasks/list_layers.ts", "--model", `${dir}/junk.pt`], 1, /^error: .*junk\.pt/],
    [["tasks/list_layers.ts", "--model", `${dir}/missing.pt`], 1, /^error: /],
    [["tasks/pretrain_synth.ts", "--steps", "0"], 2, /^error: --steps expects an integer ≥ 1/],
    [["tasks/pretrain_synth.ts", "--lr=-1"], 2, /^error: --lr/],
    [["tasks/train.ts", "--iterations=-5", "--train-dataset", "X"], 2, /--iterations expects/],
    [["tasks/train.ts", "--lr", "1e400"], 2, /--lr expects/],
    [["tasks/sequence.ts", "--order", "I", "--workers=-1"], 2, /--workers expects/],
    [
      ["tasks/convert_grad_to_basis.ts", "--input", "a", "--output", "b", "--energy", "2"],
      2,
      /--energy/,
    ],
  ];
  try {
    // two at a time: each child imports the library
    for (let i = 0; i < cases.length; i += 2) {
      await Promise.all(
        cases.slice(i, i + 2).map(async ([args, code, re]) => {
          fuzzStats.tried++;
          const r = await runTask(args);
          const what = args.join(" ");
          if (r.code !== code) {
            throw new Error(`${what}: exit ${r.code}, expected ${code}\n${r.stderr}\n${r.stdout}`);
          }
          if (!re.test(r.stderr)) throw new Error(`${what}: stderr ${JSON.stringify(r.stderr)}`);
          if (/^\s+at /m.test(r.stderr)) throw new Error(`${what}: a stack trace:\n${r.stderr}`);
          if (r.s > 60) throw new Error(`${what}: took ${r.s.toFixed(0)} s`);
        }),
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fuzz: train --lr 1e30 stops with an error and writes no NaN checkpoint", async () => {
  const dir = await Deno.makeTempDir();
  try {
    fuzzStats.tried++;
    const r = await runTask([
      "tasks/train.ts",
      "--model",
      "synth-tiny",
      "--train-dataset",
      "Synth-shape",
      "--iterations",
      "6",
      "--warmup-length",
      "1",
      "--lr",
      "1e30",
      "--batch-size",
      "8",
      "--save",
      dir,
      "--save-interval",
      "1",
      "--backend",
      "wasm",
      "--quiet",
    ]);
    if (r.code === 0) throw new Error(`exit 0 for a diverging run\n${r.stdout}`);
    if (!/error: step \d+: .*(NaN|not finite).*--lr/.test(r.stderr)) {
      throw new Error(`stderr: ${r.stderr}`);
    }
    if (/^\s+at /m.test(r.stderr)) throw new Error(`a stack trace:\n${r.stderr}`);
    for await (const e of Deno.readDir(dir)) {
      const { stateDict } = await readCheckpoint(`${dir}/${e.name}`);
      for (const [k, t] of stateDict) {
        if (!t.data.every(Number.isFinite)) throw new Error(`${e.name}: ${k} is not finite`);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fuzz: checkpoints that do not fit the model: strict errors name the file", async () => {
  await initBackend({ prefer: "cpu", quiet: true });
  const model = buildClip(randomStateDict(TINY, 1));
  const dir = await Deno.makeTempDir();
  try {
    const full = model.stateDict();
    const keys = [...full.keys()];
    // shares no key
    const alien = new Map([...full].map(([k, t]) => [`other.${k}`, t]));
    await saveCheckpoint(`${dir}/alien.safetensors`, alien);
    for (const strict of [true, false]) {
      const err = await expectClear(
        () => loadWeights(model, `${dir}/alien.safetensors`, { strict, warn: () => {} }),
        "alien.safetensors",
        `alien strict=${strict}`,
      );
      if (!err || !/shares no weight/.test(err.message)) throw new Error(`alien: ${err?.message}`);
    }
    // missing some keys, one mis-shaped, one unexpected
    const rng = new Rng(5);
    for (let i = 0; i < 30; i++) {
      const sd = new Map(full);
      const drop = keys[rng.int(keys.length)];
      sd.delete(drop);
      const reshape = keys[rng.int(keys.length)];
      if (reshape !== drop) {
        const t = sd.get(reshape)!;
        sd.set(reshape, { ...t, shape: [t.data.length], dtype: t.dtype });
      }
      if (rng.int(2)) {
        sd.set("extra.weight", { shape: [1], dtype: "float32", data: new Float32Array(1) });
      }
      const err = await expectClear(
        () => checkWeights(model, sd, "part.pt"),
        "part.pt",
        `part ${i}`,
      );
      if (!err || !/missing 1 \[/.test(err.message) || !/--non-strict/.test(err.message)) {
        throw new Error(`part ${i}: ${err?.message}`);
      }
      const warned: string[] = [];
      const kept = checkWeights(model, sd, "part.pt", {
        strict: false,
        warn: (m) => warned.push(m),
      });
      if (
        warned.length !== 1 || !/part\.pt/.test(warned[0]) || kept.has(drop) ||
        kept.has("extra.weight")
      ) {
        throw new Error(`non-strict ${i}: ${warned} ${[...kept.keys()].length}`);
      }
      model.loadStateDict(kept, { strict: false });
    }
    // loadClip: a checkpoint that is not a CLIP model names the file
    await saveCheckpoint(`${dir}/odd.safetensors`, new Map([["x", full.get(keys[0])!]]));
    const err = await expectClear(
      () => loadClip(`${dir}/odd.safetensors`),
      "odd.safetensors",
      "odd",
    );
    if (!err) throw new Error("odd.safetensors loaded");
  } finally {
    model.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "fuzz: tokenizer text: long words are fast, errors are short, rows are well formed",
  ignore: skipWithoutShared(),
  fn: async () => {
    const tok = await loadTokenizer({ vocabPath: sharedPath("clip/bpe_simple_vocab_16e6.txt.gz") });
    const rng = new Rng(41);
    for (const n of [20_000, 100_000]) {
      for (const truncate of [true, "cut"] as const) {
        const text = "ab".repeat(n / 2);
        fuzzStats.tried++;
        const t0 = performance.now();
        const row = tok.tokenizeIds(text, { truncate })[0];
        const ms = performance.now() - t0;
        if (ms > 3000) throw new Error(`${n}-character word: ${ms.toFixed(0)} ms`);
        if (row.length !== 77 || row[0] !== 49406) throw new Error(`${n}: bad row`);
      }
      const err = await expectClear(
        () => tok.tokenizeIds("word ".repeat(n / 5)),
        undefined,
        `${n} long`,
      );
      if (!err || err.message.length > 400 || !/too long/.test(err.message)) {
        throw new Error(`long text error: ${err?.message.slice(0, 500)}`);
      }
    }
    const alphabet = [..."abcxyz AZ09.,!?'\"<>|&;#éüßæœ中文字日本語😀🎉\u0301\u200b\t\n\u00a0ﬁ"];
    for (let i = 0; i < 400; i++) {
      const text = Array.from({ length: rng.int(300) }, () => rng.pick(alphabet)).join("");
      await expectClear(
        () => {
          const row = tok.tokenizeIds(text, { truncate: true })[0];
          if (row.length !== 77 || row[0] !== 49406 || !row.includes(49407)) {
            throw new Error(`bad row for ${JSON.stringify(text)}`);
          }
          const ids = tok.encode(text);
          const full = [49406, ...ids, 49407];
          if (full.length <= 77 && !full.every((t, k) => row[k] === t)) {
            throw new Error(`truncation changed a short text: ${JSON.stringify(text)}`);
          }
          if (full.length > 77 && !full.slice(0, 76).every((t, k) => row[k] === t)) {
            throw new Error(`early stop changed the kept tokens: ${JSON.stringify(text)}`);
          }
        },
        undefined,
        `text ${i}`,
        2000,
      );
    }
  },
});

Deno.test("fuzz: the number of inputs tried (tasks)", () => {
  console.log(`fuzz tasks: ${fuzzStats.tried} inputs tried`);
});
