import { assert, assertEquals, assertThrows } from "./_testing.ts";
import { planSlurm, shellQuote, type SlurmOptions, writeSlurm } from "./slurm.ts";

const BASE: SlurmOptions = {
  order: "I",
  methods: ["ZSCL"],
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

Deno.test("one chain for order I: 11 scripts with the right SBATCH lines and commands", () => {
  const chains = planSlurm({ ...BASE, extraArgs: ["--iterations", "1000", "--we"] });
  assertEquals(chains.length, 1);
  const c = chains[0];
  assertEquals(c.name, "ZSCL-orderI-seed1");
  assertEquals(c.saveDir, "/runs/order-I/ZSCL/seed1");
  assertEquals(c.scripts.map((s) => s.path.split("/")[1]), [
    "01-Aircraft.sbatch",
    "02-Caltech101.sbatch",
    "03-CIFAR100.sbatch",
    "04-DTD.sbatch",
    "05-EuroSAT.sbatch",
    "06-Flowers.sbatch",
    "07-Food.sbatch",
    "08-MNIST.sbatch",
    "09-OxfordPet.sbatch",
    "10-StanfordCars.sbatch",
    "11-SUN397.sbatch",
  ]);
  const s = c.scripts[3].content;
  assert(s.startsWith("#!/bin/bash\n"));
  for (
    const line of [
      "#SBATCH --job-name=mtil-ZSCL-orderI-seed1-04-DTD",
      "#SBATCH --partition=gpu",
      "#SBATCH --time=12:00:00",
      "#SBATCH --gres=gpu:1",
      "#SBATCH --signal=B:USR1@60",
      "#SBATCH --requeue",
      "#SBATCH --open-mode=append",
      "#SBATCH --output=/tmp/x/logs/%x-%j.out",
      "trap on_usr1 USR1",
      'scontrol requeue "${SLURM_JOB_ID}"',
      "cd /repo ||",
      "deno task sequence --order I --method ZSCL --seed 1 --save /runs/order-I/ZSCL/seed1 " +
      "--stop-after DTD --iterations 1000 --we &",
    ]
  ) assert(s.includes(line), `missing: ${line}`);
  // every #SBATCH line comes before the first command
  const lines = s.split("\n");
  const lastSbatch = lines.findLastIndex((l) => l.startsWith("#SBATCH"));
  const firstCmd = lines.findIndex((l) => l !== "" && !l.startsWith("#"));
  assert(lastSbatch < firstCmd, "SBATCH directives must precede the first command");
});

Deno.test("sweeps are independent chains; gpus 0 drops --gres; bad options fail", () => {
  const chains = planSlurm({
    ...BASE,
    order: "II",
    methods: ["finetune", "ZSCL"],
    seeds: [1, 2],
    gpus: 0,
  });
  assertEquals(chains.map((c) => c.name), [
    "finetune-orderII-seed1",
    "finetune-orderII-seed2",
    "ZSCL-orderII-seed1",
    "ZSCL-orderII-seed2",
  ]);
  assertEquals(chains[0].scripts[0].path, "finetune-orderII-seed1/01-StanfordCars.sbatch");
  assert(!chains[0].scripts[0].content.includes("--gres"));
  const custom = planSlurm({ ...BASE, order: "MNIST,EuroSAT" });
  assertEquals(custom[0].scripts.length, 2);
  assert(custom[0].scripts[0].content.includes("--order MNIST,EuroSAT"));
  assertThrows(() => planSlurm({ ...BASE, time: "tomorrow" }), "not a SLURM time");
  assertThrows(() => planSlurm({ ...BASE, partition: "" }), "--partition");
  assertThrows(() => planSlurm({ ...BASE, methods: [] }), "no method");
  assertThrows(() => planSlurm({ ...BASE, order: "A,A" }), "twice");
  assertThrows(() => planSlurm({ ...BASE, workDir: "repo" }), "absolute");
});

Deno.test("written scripts pass bash -n; submit.sh chains jobs with afterok (fake sbatch)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "slurm_" });
  try {
    const { chains, files } = await writeSlurm({
      ...BASE,
      order: "MNIST,EuroSAT,DTD",
      methods: ["finetune", "ZSCL"],
      outDir: `${dir}/out`,
      setup: ["module load cuda # site setup"],
    });
    assertEquals(files.length, 6 + 2);
    for (const f of files.filter((f) => !f.endsWith(".json"))) {
      const r = await bash(["-n", f]);
      assertEquals(r.code, 0, `bash -n ${f}: ${r.stderr}`);
    }
    const manifest = JSON.parse(await Deno.readTextFile(`${dir}/out/chains.json`));
    assertEquals(manifest.tasks, ["MNIST", "EuroSAT", "DTD"]);
    // fake sbatch: prints increasing job ids and logs its arguments
    await Deno.mkdir(`${dir}/bin`);
    await Deno.writeTextFile(
      `${dir}/bin/sbatch`,
      `#!/bin/bash\nn=$(( $(cat ${dir}/n 2>/dev/null || echo 100) + 1 ))\necho $n > ${dir}/n\n` +
        `echo "$*" >> ${dir}/sbatch.log\necho "$n;cluster"\n`,
      { mode: 0o755 },
    );
    const env = { PATH: `${dir}/bin:${Deno.env.get("PATH")}` };
    const r = await bash([`${dir}/out/submit.sh`], env);
    assertEquals(r.code, 0, r.stderr);
    const log = (await Deno.readTextFile(`${dir}/sbatch.log`)).trim().split("\n");
    assertEquals(log, [
      `--parsable ${chains[0].scripts[0].path}`,
      `--parsable --dependency=afterok:101 --kill-on-invalid-dep=yes ${chains[0].scripts[1].path}`,
      `--parsable --dependency=afterok:102 --kill-on-invalid-dep=yes ${chains[0].scripts[2].path}`,
      `--parsable ${chains[1].scripts[0].path}`,
      `--parsable --dependency=afterok:104 --kill-on-invalid-dep=yes ${chains[1].scripts[1].path}`,
      `--parsable --dependency=afterok:105 --kill-on-invalid-dep=yes ${chains[1].scripts[2].path}`,
    ]);
    // restart one chain from task 2
    await Deno.remove(`${dir}/sbatch.log`);
    const r2 = await bash([`${dir}/out/submit.sh`, "2", "ZSCL-ordercustom-seed1"], env);
    assertEquals(r2.code, 0, r2.stderr);
    const log2 = (await Deno.readTextFile(`${dir}/sbatch.log`)).trim().split("\n");
    assertEquals(log2.length, 2);
    assert(log2[0] === `--parsable ${chains[1].scripts[1].path}`, log2[0]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("USR1 before the time limit: the run is signalled, then the job requeues itself", async () => {
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
    const { chains } = await writeSlurm({
      ...BASE,
      order: "MNIST",
      workDir: dir,
      outDir: `${dir}/out`,
      command: ["fakerun", "{task}", "{save}"],
      signalSeconds: 20,
    });
    const script = `${dir}/out/${chains[0].scripts[0].path}`;
    const child = new Deno.Command("bash", {
      args: [script],
      env: {
        PATH: `${dir}/bin:${Deno.env.get("PATH")}`,
        SLURM_JOB_ID: "4242",
        SLURM_RESTART_COUNT: "0",
      },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    // wait until the run started, then signal the batch shell like SLURM does (B:USR1)
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
    assert(text.includes("requeued 4242"), text);
    assertEquals((await Deno.readTextFile(`${dir}/run.log`)).trim().split("\n"), [
      `started MNIST /runs/order-I/ZSCL/seed1`.replace("order-I", "order-custom"),
      "checkpointed",
    ]);
    assertEquals((await Deno.readTextFile(`${dir}/scontrol.log`)).trim(), "requeue 4242");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
