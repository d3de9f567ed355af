/**
 * `deno task slurm --order I [--order II] --methods finetune,ZSCL --seeds 1,2,3 [--lrs a,b]
 *   --partition P --time 12:00:00 [--gpus 1] [--array-limit K] [--dry-run] [-- sequence flags…]`
 * or `deno task slurm --grid sweep.json --partition P --time T …`
 *
 * Writes one SLURM array job per task position (array element i = run i of the grid), chained
 * element by element with `aftercorr`, with a resume path on time-out (`USR1` before the limit →
 * checkpoint → `scontrol requeue`), plus `submit.sh` and `sweep.json`. The logic is
 * {@linkcode writeSlurm} in `methods/slurm.ts`.
 *
 * @module
 */
import { parseArgs } from "./cli.ts";
import {
  DEFAULT_SEQUENCE_COMMAND,
  describeSlurmPlan,
  planSlurm,
  type SlurmOptions,
  writeSlurm,
} from "../methods/slurm.ts";
import { gridFromFlags, type SweepGrid } from "../methods/sweep.ts";

const USAGE = `usage: deno task slurm (--order I|II|A,B,… [--order …] --method M [--methods a,b]
                        [--seeds 1,2] [--lrs 1e-5,5e-6] | --grid FILE.json)
                       --partition P --time T [--gpus 1] [--cpus 4] [--mem 32G]
                       [--account A] [--qos Q] [--array-limit K] [--name NAME]
                       [--out DIR] [--save-root DIR] [--setup LINE]... [--signal-seconds 60]
                       [--command "ARGV with {order} {method} {seed} {save} {task}"]
                       [--dry-run] [-- extra flags for every sequence command]

A sweep is methods × orders × lrs × seeds; run i of the grid is array element i of each of the
per-task-position array jobs DIR/task-NN.sbatch, chained element by element (aftercorr).
  --grid FILE     {"methods": [...], "orders": [...], "seeds": [...], "lrs": [...],
                   "args": [...], "methodArgs": {"ZSCL": [...]}} instead of the grid flags
  --lrs           values for --lr-per-task (default: the sequence's own rates)
  --gpus 0|none   a CPU cluster: no --gres line (default 1: --gres=gpu:1)
  --array-limit K at most K runs of one array at once (--array=0-N%K)
  --dry-run       print the grid and the sbatch commands; write nothing
Default DIR: runs/slurm/<name>; runs save to <save-root>/order-<o>/<method>[/lr-<lr>]/seed<s>
(default save-root runs/<name>; name default "sweep"). Then: bash DIR/submit.sh
(restart: bash DIR/submit.sh --from TASK [--only I,J]).
Default command: ${DEFAULT_SEQUENCE_COMMAND.join(" ")}`;

function abs(p: string): string {
  return p.startsWith("/") ? p : `${Deno.cwd()}/${p}`.replace(/\/\.\//g, "/").replace(/\/+$/, "");
}

function int(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v.trim())) throw new Error(`--${flag} "${v}": expected a whole number`);
  return Number(v);
}

/** Entry point (exported for tests); returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const dd = argv.indexOf("--");
  const own = dd >= 0 ? argv.slice(0, dd) : argv;
  const extraArgs = dd >= 0 ? argv.slice(dd + 1) : [];
  let values;
  try {
    ({ values } = parseArgs({
      args: own,
      options: {
        order: { type: "string", multiple: true },
        method: { type: "string" },
        methods: { type: "string" },
        seeds: { type: "string" },
        lrs: { type: "string" },
        grid: { type: "string" },
        partition: { type: "string" },
        time: { type: "string" },
        gpus: { type: "string", default: "1" },
        cpus: { type: "string", default: "4" },
        mem: { type: "string", default: "32G" },
        account: { type: "string" },
        qos: { type: "string" },
        "array-limit": { type: "string" },
        name: { type: "string", default: "sweep" },
        out: { type: "string" },
        "save-root": { type: "string" },
        setup: { type: "string", multiple: true },
        "signal-seconds": { type: "string" },
        command: { type: "string" },
        "dry-run": { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
    }));
  } catch (e) {
    console.error(`${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  let grid: SweepGrid;
  try {
    grid = await gridFromFlags(values, extraArgs);
    const missing = [!values.partition && "--partition", !values.time && "--time"].filter(
      Boolean,
    );
    if (missing.length) throw new Error(`missing ${missing.join(", ")}`);
  } catch (e) {
    console.error(`${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  try {
    const name = values.name!;
    const opts: SlurmOptions = {
      grid,
      name,
      partition: values.partition!,
      time: values.time!,
      gpus: values.gpus === "none" ? 0 : int("gpus", values.gpus),
      cpus: int("cpus", values.cpus),
      mem: values.mem,
      account: values.account,
      qos: values.qos,
      arrayLimit: int("array-limit", values["array-limit"]),
      signalSeconds: int("signal-seconds", values["signal-seconds"]),
      workDir: Deno.cwd(),
      outDir: abs(values.out ?? `runs/slurm/${name}`),
      saveRoot: abs(values["save-root"] ?? `runs/${name}`),
      command: values.command ? values.command.trim().split(/\s+/) : undefined,
      setup: values.setup,
    };
    if (values["dry-run"]) {
      console.log(describeSlurmPlan(opts, planSlurm(opts)));
      console.log("\n(dry run: nothing written)");
      return 0;
    }
    const { plan, files } = await writeSlurm(opts);
    const submit = files.find((f) => f.endsWith("/submit.sh"));
    console.log(
      `wrote ${plan.arrays.length} array job(s) × ${plan.runs.length} run(s) (--array=${plan.array}) ` +
        `to ${opts.outDir}\nsubmit with: bash ${submit}`,
    );
    return 0;
  } catch (e) {
    console.error((e as Error).message);
    return 2;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
