/**
 * `deno task slurm --order I --method ZSCL --partition P --time 12:00:00 --gpus 1
 *   [--methods a,b] [--seeds 1,2] [--out DIR] [--save-root DIR] [--cpus 4] [--mem 32G]
 *   [--account A] [--qos Q] [--setup "module load cuda"] [--command "deno task sequence …"]
 *   [-- extra sequence flags…]`
 *
 * Writes one sbatch script per task, chained with `afterok`, with a resume path on time-out
 * (`USR1` 60 s before the limit → checkpoint → `scontrol requeue`), plus `submit.sh`. Several
 * methods or seeds become independent chains.
 *
 * @module
 */
import { requireNumberFlag } from "../methods/flags.ts";
import { parseArgs } from "./cli.ts";
import { DEFAULT_SEQUENCE_COMMAND, writeSlurm } from "../methods/slurm.ts";

const USAGE = `usage: deno task slurm --order I|II|A,B,… --method M [--methods a,b] [--seeds 1,2]
                       --partition P --time T [--gpus 1] [--cpus 4] [--mem 32G]
                       [--account A] [--qos Q] [--out DIR] [--save-root DIR]
                       [--setup LINE]... [--command "ARGV with {order} {method} {seed} {save} {task}"]
                       [-- extra flags for every sequence command]

Writes DIR/<chain>/NN-<Task>.sbatch (chained with afterok), DIR/submit.sh and DIR/chains.json.
Default DIR: runs/slurm/order-<order>; runs save to <save-root>/order-<order>/<method>/seed<seed>.
Then: bash DIR/submit.sh   (or: bash DIR/submit.sh FROM_TASK [CHAIN] to restart a chain)
Default command: ${DEFAULT_SEQUENCE_COMMAND.join(" ")}`;

function list(s: string | undefined): string[] {
  return (s ?? "").split(",").map((x) => x.trim()).filter((x) => x !== "");
}

function abs(p: string): string {
  return p.startsWith("/") ? p : `${Deno.cwd()}/${p}`.replace(/\/\.\//g, "/").replace(/\/$/, "");
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
        order: { type: "string" },
        method: { type: "string" },
        methods: { type: "string" },
        seeds: { type: "string", default: "1" },
        partition: { type: "string" },
        time: { type: "string" },
        gpus: { type: "string", default: "1" },
        cpus: { type: "string", default: "4" },
        mem: { type: "string", default: "32G" },
        account: { type: "string" },
        qos: { type: "string" },
        out: { type: "string" },
        "save-root": { type: "string", default: "runs" },
        setup: { type: "string", multiple: true },
        command: { type: "string" },
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
  const methods = [...list(values.method), ...list(values.methods)];
  const missing = [
    !values.order && "--order",
    methods.length === 0 && "--method/--methods",
    !values.partition && "--partition",
    !values.time && "--time",
  ].filter(Boolean);
  if (missing.length) {
    console.error(`missing ${missing.join(", ")}\n\n${USAGE}`);
    return 2;
  }
  let seeds: number[], gpus: number, cpus: number;
  try {
    seeds = list(values.seeds).map((s) => requireNumberFlag("seeds", s, { integer: true, min: 0 }));
    gpus = requireNumberFlag("gpus", values.gpus, { integer: true, min: 0 });
    cpus = requireNumberFlag("cpus", values.cpus, { integer: true, min: 1 });
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    return 2;
  }
  const label = /^(i|ii)$/i.test(values.order!) ? values.order!.toUpperCase() : "custom";
  try {
    const { chains, files } = await writeSlurm({
      order: values.order!,
      methods: [...new Set(methods)],
      seeds,
      partition: values.partition!,
      time: values.time!,
      gpus,
      cpus,
      mem: values.mem,
      account: values.account,
      qos: values.qos,
      workDir: Deno.cwd(),
      outDir: abs(values.out ?? `runs/slurm/order-${label}`),
      saveRoot: abs(values["save-root"]!),
      extraArgs,
      command: values.command ? values.command.trim().split(/\s+/) : undefined,
      setup: values.setup,
    });
    const submit = files.find((f) => f.endsWith("/submit.sh"));
    console.log(
      `wrote ${chains.length} chain(s) × ${chains[0].scripts.length} task(s): ${
        chains.map((c) => c.name).join(", ")
      }\nsubmit with: bash ${submit}`,
    );
    return 0;
  } catch (e) {
    console.error((e as Error).message);
    return 2;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
