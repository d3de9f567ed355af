import { assert, assertEquals, assertThrows } from "./_testing.ts";
import { arraySpec, planSlurm, type SlurmOptions, writeSlurm } from "./slurm.ts";
import { expandGrid, parseGrid, runArgv, shellQuote } from "./sweep.ts";

const BASE: SlurmOptions = {
  grid: { methods: ["ZSCL"], orders: ["I"] },
  partition: "gpu",
  time: "12:00:00",
  gpus: 1,
  workDir: "/repo",
  outDir: "/tmp/x",
  saveRoot: "/runs",
};

async function bash(args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command("bash", { args, env, stdout: "piped", stderr: "piped" })
    .output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("shellQuote", () => {
  assertEquals(shellQuote("abc/d-e_f.g,h=1:2"), "abc/d-e_f.g,h=1:2");
  assertEquals(shellQuote("a b"), "'a b'");
  assertEquals(shellQuote("it's"), `'it'\\''s'`);
  assertEquals(shellQuote(""), "''");
  assertEquals(shellQuote("ZSCL*"), "'ZSCL*'");
});

Deno.test("expandGrid: method × order × lr × seed, seeds innermost; folders and flags", () => {
  const runs = expandGrid({
    methods: ["finetune", "ZSCL"],
    orders: ["I", "II"],
    seeds: [1, 2],
    lrs: ["1e-5", "5e-6"],
    args: ["--iterations", "10"],
    methodArgs: { ZSCL: ["--image-loss"] },
  }, "/runs/");
  assertEquals(runs.length, 16);
  assertEquals(runs.map((r) => r.index), [...Array(16).keys()]);
  assertEquals(
    runs.slice(0, 4).map((r) => [r.method, r.orderLabel, r.lr, r.seed]),
    [["finetune", "I", "1e-5", 1], ["finetune", "I", "1e-5", 2], ["finetune", "I", "5e-6", 1], [
      "finetune",
      "I",
      "5e-6",
      2,
    ]],
  );
  assertEquals(runs[4].orderLabel, "II");
  assertEquals(runs[4].tasks[0], "StanfordCars");
  assertEquals(runs[15].saveDir, "/runs/order-II/ZSCL/lr-5e-6/seed2");
  assertEquals(runs[15].name, "ZSCL-orderII-lr5e-6-seed2");
  assertEquals(runs[15].extraArgs, ["--lr-per-task", "5e-6", "--iterations", "10", "--image-loss"]);
  assertEquals(runArgv(runs[0], 3), [
    ..."deno task sequence --order I --method finetune --seed 1".split(" "),
    ..."--save /runs/order-I/finetune/lr-1e-5/seed1 --stop-after DTD".split(" "),
    ..."--lr-per-task 1e-5 --iterations 10".split(" "),
  ]);
  // two custom orders get distinct labels; one keeps "custom"
  const c = expandGrid({ methods: ["a"], orders: ["A,B", "B,A"] }, "/r");
  assertEquals(c.map((r) => r.saveDir), ["/r/order-custom1/a/seed1", "/r/order-custom2/a/seed1"]);
  assertEquals(expandGrid({ methods: ["a"], orders: ["A,B"] }, "/r")[0].orderLabel, "custom");
});

Deno.test("grid validation and grid files fail with messages naming the problem", () => {
  const g = { methods: ["a"], orders: ["I"] };
  assertThrows(() => expandGrid({ ...g, methods: [] }, "/r"), "no method");
  assertThrows(() => expandGrid({ ...g, methods: ["a b"] }, "/r"), "method name");
  assertThrows(() => expandGrid({ ...g, methods: ["a", "a"] }, "/r"), "twice");
  assertThrows(() => expandGrid({ ...g, orders: ["I", "A,B"] }, "/r"), "same number");
  assertThrows(() => expandGrid({ ...g, orders: ["A,A"] }, "/r"), "twice");
  assertThrows(() => expandGrid({ ...g, seeds: [1.5] }, "/r"), "seed 1.5");
  assertThrows(() => expandGrid({ ...g, lrs: ["1e-5; rm -rf /"] }, "/r"), "learning rate");
  assertThrows(
    () => expandGrid({ ...g, methodArgs: { b: ["--x"] } }, "/r"),
    "not a method of the grid",
  );
  assertThrows(
    () => expandGrid({ ...g, seeds: [...Array(1002).keys()] }, "/r"),
    "MaxArraySize",
  );
  assertEquals(parseGrid(JSON.stringify({ ...g, seeds: [1, 2] }), "g.json").seeds, [1, 2]);
  assertThrows(() => parseGrid("{", "g.json"), "g.json: not JSON");
  assertThrows(() => parseGrid("[]", "g.json"), "expected an object");
  assertThrows(() => parseGrid(JSON.stringify({ ...g, metods: [] }), "g.json"), "metods");
  assertThrows(() => parseGrid(JSON.stringify({ ...g, args: [1] }), "g.json"), "args");
});

Deno.test("one array job per task position; SBATCH lines; case maps the array index to a run", () => {
  const plan = planSlurm({
    ...BASE,
    grid: { methods: ["finetune", "ZSCL"], orders: ["I"], seeds: [1, 2], args: ["--we"] },
    arrayLimit: 3,
    name: "s1",
  });
  assertEquals(plan.runs.length, 4);
  assertEquals(plan.arrays.length, 11);
  assertEquals(plan.array, "0-3%3");
  assertEquals(plan.arrays.map((a) => a.path).slice(0, 2), ["task-01.sbatch", "task-02.sbatch"]);
  const s = plan.arrays[3].content;
  assert(s.startsWith("#!/bin/bash\n"));
  for (
    const line of [
      "#SBATCH --job-name=mtil-s1-t04",
      "#SBATCH --array=0-3%3",
      "#SBATCH --partition=gpu",
      "#SBATCH --time=12:00:00",
      "#SBATCH --gres=gpu:1",
      "#SBATCH --signal=B:USR1@60",
      "#SBATCH --requeue",
      "#SBATCH --open-mode=append",
      "#SBATCH --output=/tmp/x/logs/%x-%A_%a.out",
      "trap on_usr1 USR1",
      'scontrol requeue "${SLURM_JOB_ID}"',
      "cd /repo ||",
      "I=${SLURM_ARRAY_TASK_ID:?",
      "  2) RUN=ZSCL-orderI-seed1; TASK=DTD; ARGV=(deno task sequence --order I --method ZSCL " +
      "--seed 1 --save /runs/order-I/ZSCL/seed1 --stop-after DTD --we) ;;",
    ]
  ) assert(s.includes(line), `missing: ${line}`);
  const lines = s.split("\n");
  const lastSbatch = lines.findLastIndex((l) => l.startsWith("#SBATCH"));
  const firstCmd = lines.findIndex((l) => l !== "" && !l.startsWith("#"));
  assert(lastSbatch < firstCmd, "SBATCH directives must precede the first command");
  const manifest = JSON.parse(plan.manifest);
  assertEquals(manifest.kind, "mtil-sweep");
  assertEquals(manifest.runs[3].saveDir, "/runs/order-I/ZSCL/seed2");
  assertEquals(arraySpec(1), "0");
  assertEquals(arraySpec(5, 2), "0-4%2");
});

Deno.test("--gpus 0 or absent-but-zero writes no --gres; empty mem writes no --mem; bad options fail", () => {
  const cpu = planSlurm({ ...BASE, gpus: 0, mem: "" }).arrays[0].content;
  assert(!cpu.includes("--gres") && !cpu.includes("--mem"), cpu);
  assert(planSlurm({ ...BASE, gpus: 2 }).arrays[0].content.includes("#SBATCH --gres=gpu:2"));
  assertThrows(() => planSlurm({ ...BASE, time: "tomorrow" }), "not a SLURM time");
  assertThrows(() => planSlurm({ ...BASE, partition: "" }), "--partition");
  assertThrows(() => planSlurm({ ...BASE, partition: "a;b" }), "--partition");
  assertThrows(() => planSlurm({ ...BASE, gpus: -1 }), "--gpus");
  assertThrows(() => planSlurm({ ...BASE, mem: "lots" }), "--mem");
  assertThrows(() => planSlurm({ ...BASE, arrayLimit: 0 }), "--array-limit");
  assertThrows(() => planSlurm({ ...BASE, signalSeconds: 5 }), "signalSeconds");
  assertThrows(() => planSlurm({ ...BASE, workDir: "repo" }), "absolute");
  assertThrows(() => planSlurm({ ...BASE, outDir: "/tmp/my dir" }), "no spaces");
});

async function fakeSbatch(dir: string): Promise<Record<string, string>> {
  await Deno.mkdir(`${dir}/bin`, { recursive: true });
  await Deno.writeTextFile(
    `${dir}/bin/sbatch`,
    `#!/bin/bash\nn=$(( $(cat ${dir}/n 2>/dev/null || echo 100) + 1 ))\necho $n > ${dir}/n\n` +
      `echo "$*" >> ${dir}/sbatch.log\necho "$n;cluster"\n`,
    { mode: 0o755 },
  );
  return { PATH: `${dir}/bin:${Deno.env.get("PATH")}` };
}

Deno.test("written scripts pass bash -n; submit.sh chains arrays with aftercorr; --from/--only/--dry-run", async () => {
  const dir = await Deno.makeTempDir({ prefix: "slurm_" });
  try {
    const { plan, files } = await writeSlurm({
      ...BASE,
      grid: { methods: ["finetune", "ZSCL"], orders: ["MNIST,EuroSAT,DTD"], seeds: [1, 2] },
      outDir: `${dir}/out`,
      saveRoot: `${dir}/runs`,
      arrayLimit: 2,
      setup: ["module load cuda # site setup"],
    });
    assertEquals(files.length, 3 + 2 + 1);
    for (const f of files.filter((f) => !f.endsWith(".json"))) {
      const r = await bash(["-n", f]);
      assertEquals(r.code, 0, `bash -n ${f}: ${r.stderr}`);
    }
    assertEquals(JSON.parse(await Deno.readTextFile(`${dir}/runs/sweep.json`)).runs.length, 4);
    const env = await fakeSbatch(dir);
    const r = await bash([`${dir}/out/submit.sh`], env);
    assertEquals(r.code, 0, r.stderr);
    const log = async () => (await Deno.readTextFile(`${dir}/sbatch.log`)).trim().split("\n");
    assertEquals(await log(), [
      `--parsable --array=0-3%2 ${plan.arrays[0].path}`,
      `--parsable --array=0-3%2 --dependency=aftercorr:101 --kill-on-invalid-dep=yes ${
        plan.arrays[1].path
      }`,
      `--parsable --array=0-3%2 --dependency=aftercorr:102 --kill-on-invalid-dep=yes ${
        plan.arrays[2].path
      }`,
    ]);
    assert(r.stdout.includes("task 2/3: task-02.sbatch -> array job 102"), r.stdout);
    assertEquals(
      (await Deno.readTextFile(`${dir}/out/submitted.tsv`)).trim().split("\n")[2],
      "3\t103\t0-3%2",
    );
    // restart elements 1 and 3 from task 2, uncapped
    await Deno.remove(`${dir}/sbatch.log`);
    const r2 = await bash(
      [`${dir}/out/submit.sh`, "--from", "2", "--only", "1,3", "--limit", "1"],
      env,
    );
    assertEquals(r2.code, 0, r2.stderr);
    assertEquals(await log(), [
      `--parsable --array=1,3%1 task-02.sbatch`,
      `--parsable --array=1,3%1 --dependency=aftercorr:104 --kill-on-invalid-dep=yes task-03.sbatch`,
    ]);
    // dry run submits nothing; bad arguments are refused
    await Deno.remove(`${dir}/sbatch.log`);
    const dry = await bash([`${dir}/out/submit.sh`, "--dry-run", "--from", "3"], env);
    assertEquals(dry.code, 0, dry.stderr);
    assertEquals(dry.stdout.trim(), "sbatch --parsable --array=0-3%2 task-03.sbatch");
    for (
      const bad of [["--from", "4"], ["--from", "0"], ["--only", "4"], ["--only", "1;x"], ["--zz"]]
    ) {
      const b = await bash([`${dir}/out/submit.sh`, ...bad], env);
      assertEquals(b.code, 2, `${bad}: ${b.stdout}`);
    }
    assert(!(await Deno.stat(`${dir}/sbatch.log`).then(() => true, () => false)));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("USR1 before the time limit: the run is signalled, then the element requeues itself", async () => {
  const dir = await Deno.makeTempDir({ prefix: "slurm_usr1_" });
  try {
    // fake run: records USR1 ("checkpoint") and exits; fake scontrol logs its arguments
    await Deno.mkdir(`${dir}/bin`);
    await Deno.writeTextFile(
      `${dir}/bin/fakerun`,
      `#!/bin/bash\ntrap 'echo checkpointed >> ${dir}/run.log; exit 0' USR1\necho "started $*" >> ${dir}/run.log\n` +
        `for i in $(seq 1 300); do sleep 0.1; done\n`,
      { mode: 0o755 },
    );
    await Deno.writeTextFile(
      `${dir}/bin/scontrol`,
      `#!/bin/bash\necho "$*" >> ${dir}/scontrol.log\n`,
      {
        mode: 0o755,
      },
    );
    const { plan } = await writeSlurm({
      ...BASE,
      grid: { methods: ["a", "b"], orders: ["MNIST"] },
      workDir: dir,
      outDir: `${dir}/out`,
      saveRoot: `${dir}/runs`,
      command: ["fakerun", "{method}", "{task}", "{save}", "{run}"],
      signalSeconds: 20,
    });
    const child = new Deno.Command("bash", {
      args: [`${dir}/out/${plan.arrays[0].path}`],
      env: {
        PATH: `${dir}/bin:${Deno.env.get("PATH")}`,
        SLURM_JOB_ID: "4242",
        SLURM_ARRAY_JOB_ID: "4240",
        SLURM_ARRAY_TASK_ID: "1",
        SLURM_RESTART_COUNT: "0",
      },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    for (let i = 0; i < 100; i++) {
      try {
        if ((await Deno.readTextFile(`${dir}/run.log`)).includes("started")) break;
      } catch { /* not yet */ }
      await new Promise((r) => setTimeout(r, 50));
    }
    child.kill("SIGUSR1");
    const out = await child.output();
    const text = new TextDecoder().decode(out.stdout);
    assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
    assert(text.includes("requeued 4242") && text.includes("run 1 b-ordercustom-seed1"), text);
    assertEquals((await Deno.readTextFile(`${dir}/run.log`)).trim().split("\n"), [
      `started b MNIST ${dir}/runs/order-custom/b/seed1 1`,
      "checkpointed",
    ]);
    assertEquals((await Deno.readTextFile(`${dir}/scontrol.log`)).trim(), "requeue 4242");
    // outside an array job the script refuses to guess
    const plain = await bash([`${dir}/out/${plan.arrays[0].path}`], {
      PATH: Deno.env.get("PATH")!,
    });
    assert(plain.code !== 0 && plain.stderr.includes("not an array job"), plain.stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
