import { assert, assertEquals } from "../methods/_testing.ts";
import { main } from "./slurm.ts";

async function capture(fn: () => Promise<number>): Promise<{ code: number; out: string }> {
  const log = console.log, err = console.error;
  const lines: string[] = [];
  console.log = (...a: unknown[]) => lines.push(a.join(" "));
  console.error = (...a: unknown[]) => lines.push(a.join(" "));
  try {
    return { code: await fn(), out: lines.join("\n") };
  } finally {
    console.log = log;
    console.error = err;
  }
}

Deno.test("deno task slurm: a methods × orders × seeds sweep as array jobs, with pass-through flags", async () => {
  const dir = await Deno.makeTempDir({ prefix: "slurm_cli_" });
  try {
    const { code, out } = await capture(() =>
      main([
        ..."--order I --order II --method ZSCL --methods finetune,ZSCL --seeds 1,2".split(" "),
        ..."--partition gpu --time 1-00:00:00 --gpus 2 --array-limit 4 --name s".split(" "),
        "--out",
        `${dir}/s`,
        "--save-root",
        `${dir}/runs`,
        "--",
        ..."--iterations 500 --lr 1e-5".split(" "),
      ])
    );
    assertEquals(code, 0, out);
    const manifest = JSON.parse(await Deno.readTextFile(`${dir}/s/sweep.json`));
    assertEquals(manifest.runs.map((r: { name: string }) => r.name), [
      "ZSCL-orderI-seed1",
      "ZSCL-orderI-seed2",
      "ZSCL-orderII-seed1",
      "ZSCL-orderII-seed2",
      "finetune-orderI-seed1",
      "finetune-orderI-seed2",
      "finetune-orderII-seed1",
      "finetune-orderII-seed2",
    ]);
    const s = await Deno.readTextFile(`${dir}/s/task-11.sbatch`);
    for (
      const l of ["#SBATCH --gres=gpu:2", "#SBATCH --time=1-00:00:00", "#SBATCH --array=0-7%4"]
    ) assert(s.includes(l), l);
    assert(
      s.includes(
        `7) RUN=finetune-orderII-seed2; TASK=CIFAR100; ARGV=(deno task sequence --order II --method ` +
          `finetune --seed 2 --save ${dir}/runs/order-II/finetune/seed2 --stop-after CIFAR100 ` +
          `--iterations 500 --lr 1e-5) ;;`,
      ),
      s,
    );
    assert(out.includes(`bash ${dir}/s/submit.sh`), out);
    // --gpus none: no --gres
    assertEquals(
      (await capture(() =>
        main([
          ..."--order I --method x --partition p --time 10 --gpus none".split(" "),
          "--out",
          `${dir}/cpu`,
          "--save-root",
          `${dir}/r2`,
        ])
      )).code,
      0,
    );
    assert(!(await Deno.readTextFile(`${dir}/cpu/task-01.sbatch`)).includes("--gres"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno task slurm --dry-run prints the grid and the sbatch commands and writes nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "slurm_dry_" });
  try {
    await Deno.writeTextFile(
      `${dir}/grid.json`,
      JSON.stringify({
        methods: ["finetune", "ZSCL"],
        orders: ["Synth-shape,Synth-colour"],
        seeds: [1, 2],
        lrs: ["5e-4"],
        methodArgs: { ZSCL: ["--image-loss"] },
      }),
    );
    const { code, out } = await capture(() =>
      main([
        ..."--partition debug --time 0:10:00 --gpus 0 --dry-run --grid".split(" "),
        `${dir}/grid.json`,
        "--out",
        `${dir}/out`,
        "--",
        "--iterations",
        "6",
      ])
    );
    assertEquals(code, 0, out);
    for (
      const l of [
        "4 run(s) × 2 task position(s) = 8 jobs in 2 array job(s) (--array=0-3)",
        "3  ZSCL  order custom  seed 2  lr 5e-4",
        "JOB1=$(sbatch --parsable --array=0-3 task-01.sbatch)",
        "JOB2=$(sbatch --parsable --array=0-3 --dependency=aftercorr:$JOB1 --kill-on-invalid-dep=yes task-02.sbatch)",
        "(no --gres)",
        "--stop-after Synth-shape --lr-per-task 5e-4 --iterations 6",
        "dry run: nothing written",
      ]
    ) assert(out.includes(l), `missing "${l}" in\n${out}`);
    assert(!(await Deno.stat(`${dir}/out`).then(() => true, () => false)), "nothing written");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno task slurm: missing or bad flags exit 2 with a message", async () => {
  const cases: [string[], string][] = [
    [["--order", "I", "--method", "x", "--partition", "p"], "--time"],
    [["--order", "I", "--method", "x", "--partition", "p", "--time", "soon"], "not a SLURM time"],
    [["--nope"], "nope"],
    [["--method", "x", "--partition", "p", "--time", "10"], "--order"],
    [["--grid", "/nonexistent.json", "--partition", "p", "--time", "10"], "/nonexistent.json"],
    [["--grid", "g.json", "--seeds", "1", "--partition", "p", "--time", "10"], "drop --seeds"],
    [["--order", "I", "--method", "x", "--seeds", "1,b", "--partition", "p", "--time", "1"], "b"],
    [["--order", "I", "--method", "x", "--partition", "p", "--time", "1", "--gpus", "1.5"], "gpus"],
  ];
  for (const [argv, msg] of cases) {
    const { code, out } = await capture(() => main([...argv, "--dry-run"]));
    assertEquals(code, 2, `${argv.join(" ")}: ${out}`);
    assert(out.includes(msg), `${argv.join(" ")}: expected "${msg}" in ${out}`);
  }
});
