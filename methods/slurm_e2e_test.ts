/**
 * End-to-end tests against a real SLURM (start one with `eval "$(.ci/slurm-up)"`; `.ci/run` does):
 * a tiny SynthMTIL sweep as job arrays, the time-limit → USR1 → checkpoint → requeue → resume
 * path, and a failed element's dependants cancelled then restarted with `submit.sh --from/--only`.
 * Where `sbatch`/`squeue` do not work these tests are ignored with a loud warning.
 */
import { assert, assertEquals } from "./_testing.ts";
import { runArgv, shellQuote, type SweepGrid } from "./sweep.ts";
import { type SlurmOptions, writeSlurm } from "./slurm.ts";
import { summarizeSweep } from "./summary.ts";

const REPO = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const dec = new TextDecoder();

if (!Deno.env.get("SLURM_CONF")) {
  const fallback = "/tmp/mtil-slurm/slurm.conf";
  if (await Deno.stat(fallback).then(() => true, () => false)) Deno.env.set("SLURM_CONF", fallback);
}

async function sh(
  cmd: string,
  args: string[],
  opts: { cwd?: string; timeoutMs?: number } = {},
): Promise<{ code: number; out: string; err: string }> {
  try {
    const o = await new Deno.Command(cmd, {
      args,
      cwd: opts.cwd,
      stdout: "piped",
      stderr: "piped",
      signal: opts.timeoutMs ? AbortSignal.timeout(opts.timeoutMs) : undefined,
    }).output();
    return { code: o.code, out: dec.decode(o.stdout), err: dec.decode(o.stderr) };
  } catch (e) {
    return { code: 127, out: "", err: (e as Error).message };
  }
}

/** Why SLURM cannot be used here, or "" when it can; and the default partition. */
async function probe(): Promise<{ why: string; partition: string }> {
  // without a config file the SLURM commands retry for 60 s: look first
  const conf = Deno.env.get("SLURM_CONF") ?? "/etc/slurm/slurm.conf";
  if (!(await Deno.stat(conf).then((i) => i.isFile, () => false))) {
    return { why: `no SLURM configuration at ${conf}`, partition: "" };
  }
  const s = await sh("sinfo", ["-h", "-o", "%P %T"], { timeoutMs: 20_000 });
  if (s.code !== 0) {
    return { why: `sinfo failed: ${(s.err || s.out).trim().split("\n")[0]}`, partition: "" };
  }
  const lines = s.out.trim().split("\n").filter(Boolean);
  const usable = lines.find((l) => /\s(idle|mixed|allocated)/.test(l));
  if (!usable) {
    return { why: `no usable node (sinfo: ${lines.join("; ") || "empty"})`, partition: "" };
  }
  const q = await sh("squeue", ["-h"], { timeoutMs: 20_000 });
  if (q.code !== 0) return { why: `squeue failed: ${q.err.trim()}`, partition: "" };
  const def = lines.find((l) => l.split(" ")[0].endsWith("*")) ?? usable;
  return { why: "", partition: def.split(" ")[0].replace(/\*$/, "") };
}

const { why, partition } = await probe();
if (why) {
  console.warn(
    `\n!!! SLURM END-TO-END TESTS SKIPPED: ${why}\n!!! start a single-node cluster with ` +
      `eval "$(.ci/slurm-up)" (root; installs slurm-wlm and munge), then rerun.\n`,
  );
}

const SYNTH = "Synth-shape,Synth-colour";
const COMMON = [
  "--model",
  "synth-tiny",
  "--batch-size",
  "16",
  "--lr",
  "5e-4",
  "--warmup-length",
  "2",
  "--eval-limit",
  "40",
  "--quiet",
  "--backend",
  "wasm",
];
const ZSCL_ARGS = [
  "--ref-dataset",
  "Synth-captions",
  "--ref-sentences",
  "Synth-captions",
  "--ref-sentences-limit",
  "64",
  "--image-loss",
  "--text-loss",
];

function options(dir: string, grid: SweepGrid, extra: Partial<SlurmOptions> = {}): SlurmOptions {
  return {
    grid,
    partition,
    time: "0:10:00",
    gpus: 0,
    cpus: 1,
    mem: "1G",
    arrayLimit: 2,
    workDir: REPO,
    outDir: `${dir}/scripts`,
    saveRoot: `${dir}/runs`,
    ...extra,
  };
}

/** Run submit.sh; returns the array job ids in chain order. */
async function submit(scripts: string, args: string[] = []): Promise<string[]> {
  const r = await sh("bash", [`${scripts}/submit.sh`, ...args]);
  assertEquals(r.code, 0, `submit.sh failed:\n${r.out}\n${r.err}`);
  const ids = [...r.out.matchAll(/-> array job (\d+)/g)].map((m) => m[1]);
  assert(ids.length > 0, `no job ids in:\n${r.out}`);
  return ids;
}

interface ElementState {
  array: string;
  element: string;
  state: string;
  reason: string;
  restarts: number;
}

async function states(ids: string[]): Promise<ElementState[]> {
  const out: ElementState[] = [];
  for (const id of ids) {
    const r = await sh("scontrol", ["show", "job", "-o", id]);
    for (const line of r.out.trim().split("\n").filter(Boolean)) {
      const f = (k: string) => new RegExp(`\\b${k}=(\\S*)`).exec(line)?.[1] ?? "";
      out.push({
        array: f("ArrayJobId") || id,
        element: f("ArrayTaskId"),
        state: f("JobState"),
        reason: f("Reason"),
        restarts: Number(f("Restarts") || 0),
      });
    }
  }
  return out;
}

/** Wait (bounded) until none of the array jobs is pending or running; returns the final states. */
async function waitFor(ids: string[], limitMs: number, logs: string): Promise<ElementState[]> {
  const t0 = Date.now();
  while (true) {
    const q = await sh("squeue", ["-h", "-r", "-o", "%F %i %T"]);
    const mine = q.out.trim().split("\n").filter((l) => ids.includes(l.split(" ")[0]));
    if (q.code === 0 && mine.length === 0) break;
    if (Date.now() - t0 > limitMs) {
      await sh("scancel", ids);
      throw new Error(
        `SLURM jobs still queued after ${limitMs / 1000} s:\n${mine.join("\n")}\n${await tailLogs(
          logs,
        )}`,
      );
    }
    await new Promise((r) => setTimeout(r, 2000));
  }
  return await states(ids);
}

async function tailLogs(dir: string): Promise<string> {
  const parts: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      const t = await Deno.readTextFile(`${dir}/${e.name}`);
      parts.push(`--- ${e.name}\n${t.split("\n").slice(-15).join("\n")}`);
    }
  } catch { /* no logs */ }
  return parts.join("\n");
}

async function readMatrix(dir: string) {
  return JSON.parse(await Deno.readTextFile(`${dir}/accuracy_matrix.json`)) as {
    tasks: string[];
    values: (number | null)[][];
    zeroShot?: (number | null)[];
    completed: number;
  };
}

Deno.test({
  name: "slurm e2e: a 2 methods × 2 seeds × 2 tasks SynthMTIL sweep as chained job arrays",
  ignore: why !== "",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const t0 = performance.now();
    const dir = await Deno.makeTempDir({ prefix: "mtil-slurm-e2e-" });
    const grid: SweepGrid = {
      methods: ["finetune", "ZSCL"],
      orders: [SYNTH],
      seeds: [1, 2],
      args: [...COMMON, "--iterations", "6"],
      methodArgs: { ZSCL: ZSCL_ARGS },
    };
    const { plan } = await writeSlurm(options(dir, grid, { name: "e2e" }));
    assertEquals(plan.runs.length, 4);
    assertEquals(plan.arrays.length, 2);
    const ids = await submit(`${dir}/scripts`);
    assertEquals(ids.length, 2);
    const final = await waitFor(ids, 6 * 60_000, `${dir}/scripts/logs`);
    assertEquals(final.length, 8, JSON.stringify(final));
    const bad = final.filter((s) => s.state !== "COMPLETED");
    assertEquals(bad, [], `${JSON.stringify(bad)}\n${await tailLogs(`${dir}/scripts/logs`)}`);
    for (const r of plan.runs) {
      const m = await readMatrix(r.saveDir);
      assertEquals(m.tasks, ["Synth-shape", "Synth-colour"]);
      assertEquals(m.completed, 2, `${r.name}: ${JSON.stringify(m)}`);
      for (const row of [...m.values, m.zeroShot ?? []]) {
        assertEquals(row.length, 2);
        for (const v of row) assert(typeof v === "number" && v >= 0 && v <= 100, `${r.name}: ${v}`);
      }
    }
    // the seeds really differ, and the summary averages both seeds of both methods
    const s = await summarizeSweep(`${dir}/runs`);
    assertEquals(s.incomplete, []);
    assertEquals(s.groups.map((g) => [g.method, g.seeds]), [["finetune", [1, 2]], ["ZSCL", [
      1,
      2,
    ]]]);
    for (const g of s.groups) assert(Number.isFinite(g.avg.mean) && Number.isFinite(g.avg.std));
    console.log(`sweep e2e: ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    await Deno.remove(dir, { recursive: true });
  },
});

Deno.test({
  name: "slurm e2e: the time limit sends USR1, the run checkpoints, requeues, resumes, same result",
  ignore: why !== "",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const t0 = performance.now();
    const dir = await Deno.makeTempDir({ prefix: "mtil-slurm-tl-" });
    // --time 1 with the signal 20 s before the limit: slurmctld checks limits every 30 s and
    // signals once fewer than 20 + 30 s are left, i.e. 10–40 s into the job. Where the machine is
    // fast enough to pass half the steps before that, the test sends the same signal itself
    // (scancel --signal=USR1 --batch: what SLURM does at the limit), so the path is always taken.
    const steps = 200;
    const grid: SweepGrid = {
      methods: ["finetune"],
      orders: ["Synth-shape"],
      seeds: [3],
      args: [
        ...COMMON.filter((a) => a !== "--quiet"),
        "--iterations",
        String(steps),
        "--loss-interval",
        "10",
      ],
    };
    const { plan } = await writeSlurm(
      options(dir, grid, { name: "e2e-tl", time: "1", signalSeconds: 20, arrayLimit: undefined }),
    );
    const logs = `${dir}/scripts/logs`;
    const readLog = async () => {
      let t = "";
      for await (const e of Deno.readDir(logs)) t += await Deno.readTextFile(`${logs}/${e.name}`);
      return t;
    };
    const ids = await submit(`${dir}/scripts`);
    const job = `${ids[0]}_0`;
    // the same run, uninterrupted, beside it
    const ref = `${dir}/ref`;
    const argv = runArgv({ ...plan.runs[0], saveDir: ref }, 0);
    const refRun = sh("bash", ["-c", argv.map(shellQuote).join(" ")], { cwd: REPO });
    let trigger = "";
    const tWait = Date.now();
    while (!trigger && Date.now() - tWait < 5 * 60_000) {
      const log = await readLog();
      if (log.includes("time limit near")) trigger = "SLURM time limit (--signal=B:USR1@20)";
      else {
        const step = Math.max(0, ...[...log.matchAll(/^step (\d+):/gm)].map((m) => Number(m[1])));
        if (step >= steps / 2) {
          const r = await sh("scancel", ["--signal=USR1", "--batch", job]);
          assertEquals(r.code, 0, r.err);
          trigger =
            `scancel --signal=USR1 --batch at step ${step} (the machine outran the 30 s tick)`;
        }
      }
      await new Promise((r) => setTimeout(r, 300));
    }
    assert(trigger, `no USR1 within 5 min:\n${await readLog()}`);
    // once requeued, lift the limit so the rerun finishes in one go
    while (Date.now() - tWait < 6 * 60_000) {
      if (/requeued \d+/.test(await readLog())) break;
      await new Promise((r) => setTimeout(r, 300));
    }
    const up = await sh("scontrol", ["update", `JobId=${job}`, "TimeLimit=10"]);
    assertEquals(up.code, 0, up.err);
    const final = await waitFor(ids, 6 * 60_000, logs);
    const r = await refRun;
    assertEquals(r.code, 0, `reference run failed:\n${r.out}\n${r.err}`);
    const log = await readLog();
    assertEquals(final.map((s) => s.state), ["COMPLETED"], log);
    assert(final[0].restarts >= 1, `never requeued:\n${log}`);
    assert(/requeued \d+: the rerun resumes/.test(log), log);
    const resumed = [...log.matchAll(/resumed \S+ at step (\d+)\//g)].map((m) => Number(m[1]));
    assert(resumed.length >= 1 && resumed[0] > 0, `no resume from a USR1 checkpoint:\n${log}`);
    const got = await readMatrix(plan.runs[0].saveDir);
    const want = await readMatrix(ref);
    assertEquals(got.completed, 1);
    assertEquals(got.values, want.values, "requeued run vs uninterrupted run");
    assertEquals(got.zeroShot, want.zeroShot);
    console.log(
      `time-limit e2e: ${((performance.now() - t0) / 1000).toFixed(0)} s; USR1 from ${trigger}; ${
        final[0].restarts
      } requeue(s); resumed at step ${resumed.join(", ")} of ${steps}`,
    );
    await Deno.remove(dir, { recursive: true });
  },
});

Deno.test({
  name:
    "slurm e2e: a failed element cancels its later tasks only; submit.sh --from/--only restarts it",
  ignore: why !== "",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "mtil-slurm-fail-" });
    // a stand-in run: element 0 fails until {save}.ok exists; each success logs its task
    const grid: SweepGrid = { methods: ["a"], orders: ["T1,T2"], seeds: [1, 2] };
    const command = [
      "bash",
      "-c",
      "mkdir -p {save} && { [ {seed} != 1 ] || [ -e {save}/ok ]; } && echo {task} >> {save}/done",
    ];
    const { plan } = await writeSlurm(options(dir, grid, { name: "e2e-fail", command }));
    const ids = await submit(`${dir}/scripts`);
    const first = await waitFor(ids, 3 * 60_000, `${dir}/scripts/logs`);
    const st = (arr: string, el: string) => first.find((s) => s.array === arr && s.element === el)!;
    assertEquals(st(ids[0], "0").state, "FAILED");
    assertEquals(st(ids[1], "0").state, "CANCELLED");
    assertEquals(st(ids[1], "0").reason, "DependencyNeverSatisfied");
    assertEquals([st(ids[0], "1").state, st(ids[1], "1").state], ["COMPLETED", "COMPLETED"]);
    const [r0, r1] = plan.runs.map((r) => r.saveDir);
    assertEquals((await Deno.readTextFile(`${r1}/done`)).trim().split("\n"), ["T1", "T2"]);
    // fix the cause, restart element 0 from task 1
    await Deno.writeTextFile(`${r0}/ok`, "");
    const again = await submit(`${dir}/scripts`, ["--from", "1", "--only", "0"]);
    const second = await waitFor(again, 3 * 60_000, `${dir}/scripts/logs`);
    assertEquals(second.map((s) => [s.element, s.state]), [["0", "COMPLETED"], ["0", "COMPLETED"]]);
    assertEquals((await Deno.readTextFile(`${r0}/done`)).trim().split("\n"), ["T1", "T2"]);
    await Deno.remove(dir, { recursive: true });
  },
});
