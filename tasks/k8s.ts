/**
 * `deno task k8s (--order I --methods a,b --seeds 1,2 [--lrs …] | --grid FILE) --image IMG --pvc CLAIM
 *   [--mount /runs] [--namespace NS] [--parallelism K] [--gpus 1] [--out DIR] [--dry-run] [-- flags…]`
 *
 * Writes one Kubernetes Indexed Job per task position (`JOB_COMPLETION_INDEX` = grid index), the
 * run folders on a volume so replaced pods resume, plus `apply.sh` and `sweep.json`. The logic is
 * {@linkcode writeK8s} in `methods/k8s.ts`.
 *
 * @module
 */
import { parseArgs } from "./cli.ts";
import { DEFAULT_K8S_COMMAND, type K8sOptions, planK8s, writeK8s } from "../methods/k8s.ts";
import { gridFromFlags } from "../methods/sweep.ts";

const USAGE = `usage: deno task k8s (--order I|II|A,B,… [--order …] --method M [--methods a,b]
                      [--seeds 1,2] [--lrs 1e-5,5e-6] | --grid FILE.json)
                      --image IMAGE --pvc CLAIM [--mount /runs] [--save-root DIR]
                      [--workdir /app] [--namespace NS] [--name NAME] [--parallelism K]
                      [--gpus 1] [--cpus 4] [--mem 32Gi] [--retries 3] [--setup LINE]...
                      [--command "ARGV with {order} {method} {seed} {save} {task}"]
                      [--out DIR] [--dry-run] [-- extra flags for every sequence command]

One Indexed Job per task position (completion index i = run i of the grid, see sweep.json);
runs save to <save-root> (default <mount>/<name>) on the claim, so a replaced pod resumes.
Default DIR: runs/k8s/<name>. Then: bash DIR/apply.sh  (restart: bash DIR/apply.sh --from TASK)
Default command: ${DEFAULT_K8S_COMMAND.join(" ")}`;

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
        image: { type: "string" },
        pvc: { type: "string" },
        mount: { type: "string" },
        "save-root": { type: "string" },
        workdir: { type: "string" },
        namespace: { type: "string" },
        name: { type: "string", default: "sweep" },
        parallelism: { type: "string" },
        gpus: { type: "string", default: "1" },
        cpus: { type: "string", default: "4" },
        mem: { type: "string", default: "32Gi" },
        retries: { type: "string" },
        setup: { type: "string", multiple: true },
        command: { type: "string" },
        out: { type: "string" },
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
  let opts: K8sOptions;
  try {
    const grid = await gridFromFlags(values, extraArgs);
    const missing = [!values.image && "--image", !values.pvc && "--pvc"].filter(Boolean);
    if (missing.length) throw new Error(`missing ${missing.join(", ")}`);
    const name = values.name!;
    const out = values.out ?? `runs/k8s/${name}`;
    opts = {
      grid,
      name,
      image: values.image!,
      volumeClaim: values.pvc!,
      mountPath: values.mount,
      saveRoot: values["save-root"],
      workDir: values.workdir,
      namespace: values.namespace,
      parallelism: int("parallelism", values.parallelism),
      gpus: values.gpus === "none" ? 0 : int("gpus", values.gpus),
      cpus: int("cpus", values.cpus),
      mem: values.mem,
      retriesPerIndex: int("retries", values.retries),
      setup: values.setup,
      command: values.command ? values.command.trim().split(/\s+/) : undefined,
      outDir: out.startsWith("/") ? out : `${Deno.cwd()}/${out}`,
    };
  } catch (e) {
    console.error(`${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  try {
    if (values["dry-run"]) {
      const plan = planK8s(opts);
      for (const j of plan.jobs) console.log(`--- ${j.path}\n${j.yaml}`);
      console.log(
        `(dry run: nothing written; ${plan.jobs.length} Indexed Job(s) × ${plan.runs.length} index(es))`,
      );
      return 0;
    }
    const { plan, files } = await writeK8s(opts);
    console.log(
      `wrote ${plan.jobs.length} Indexed Job(s) × ${plan.runs.length} index(es) to ${opts.outDir}\n` +
        `apply with: bash ${files.find((f) => f.endsWith("/apply.sh"))}`,
    );
    return 0;
  } catch (e) {
    console.error((e as Error).message);
    return 2;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
