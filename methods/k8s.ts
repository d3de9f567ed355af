/**
 * Kubernetes, for clouds without SLURM: one Indexed Job per task position of a sweep
 * (`completionMode: Indexed`; the pod's `JOB_COMPLETION_INDEX` is the grid index, see
 * {@linkcode expandGrid}), the run folders on a PersistentVolumeClaim so that a pod that is
 * evicted, preempted or rescheduled resumes from its checkpoint: the sequence command saves its
 * state on SIGTERM (sent `terminationGracePeriodSeconds` before the kill) and a replacement pod of
 * the same index reruns the same crash-safe command (a run stopped before its task finished makes
 * the pod fail, so the index is not counted as done). Disruptions do not count as failures
 * (`podFailurePolicy` ignores `DisruptionTarget`); a run whose previous task position did not
 * finish fails its index at once (exit 42, `FailIndex`), the other runs go on
 * (`backoffLimitPerIndex`, Kubernetes ≥ 1.29).
 *
 * Kubernetes has no dependencies between Jobs, so `apply.sh` applies the positions in order,
 * waiting for each Job to finish (`bash apply.sh [--from TASK] [--dry-run]`).
 *
 * @example
 * ```ts
 * import { planK8s } from "./k8s.ts";
 * const plan = planK8s({
 *   grid: { methods: ["finetune", "ZSCL"], orders: ["I"], seeds: [1, 2, 3] },
 *   image: "registry.example/mtil:0.1", volumeClaim: "mtil-runs",
 * });
 * plan.jobs.length; // 11 Indexed Jobs with 6 completions each
 * ```
 *
 * @module
 */
import { stringify } from "yaml";
import {
  expandGrid,
  type GeneratedFile,
  renderRunCase,
  shellQuote,
  type SweepGrid,
  sweepManifest,
  type SweepRun,
  writeGenerated,
} from "./sweep.ts";
import { taskCheckpointPath } from "./sequence.ts";

/** The default per-task command in a pod: `deno run` directly, so the run itself gets SIGTERM. */
export const DEFAULT_K8S_COMMAND: readonly string[] = Object.freeze([
  "deno",
  "run",
  "-A",
  "tasks/sequence.ts",
  "--order",
  "{order}",
  "--method",
  "{method}",
  "--seed",
  "{seed}",
  "--save",
  "{save}",
  "--stop-after",
  "{task}",
]);

/** Exit code of a pod whose run's previous task position has not finished. */
export const PREVIOUS_NOT_DONE = 42;

/** Options of {@linkcode planK8s}. */
export interface K8sOptions {
  /** The sweep grid. */
  grid: SweepGrid;
  /** Container image holding deno and the repository (at `workDir`). */
  image: string;
  /** PersistentVolumeClaim holding the run folders. */
  volumeClaim: string;
  /** Where the claim is mounted (default `/runs`). */
  mountPath?: string;
  /** Root of the run folders, under `mountPath` (default `<mountPath>/<name>`). */
  saveRoot?: string;
  /** Repository folder in the image (default `/app`). */
  workDir?: string;
  /** Sweep name: Job names `mtil-<name>-tNN` (lowercase DNS label; default `sweep`). */
  name?: string;
  /** Namespace of the Jobs (default: kubectl's current). */
  namespace?: string;
  /** Pods of one Job at once (default: all). */
  parallelism?: number;
  /** GPUs per pod (`nvidia.com/gpu`; 0 = none; default 1). */
  gpus?: number;
  /** CPUs requested per pod (default 4). */
  cpus?: number;
  /** Memory per pod (Kubernetes quantity, default `32Gi`). */
  mem?: string;
  /** Retries per index (`backoffLimitPerIndex`, default 3). */
  retriesPerIndex?: number;
  /** Seconds between SIGTERM and SIGKILL (default 120: time to checkpoint). */
  gracePeriodSeconds?: number;
  /** The command (placeholders as in `DEFAULT_SEQUENCE_COMMAND`; default {@linkcode DEFAULT_K8S_COMMAND}). */
  command?: readonly string[];
  /** Shell lines run before the command. */
  setup?: string[];
  /** Where `apply.sh` and the manifests are written (absolute; for {@linkcode writeK8s}). */
  outDir?: string;
}

/** One Indexed Job (one task position). */
export interface K8sJob {
  /** 1-based task position. */
  position: number;
  /** Job name. */
  name: string;
  /** File name (`task-NN.yaml`). */
  path: string;
  /** The manifest as an object. */
  manifest: Record<string, unknown>;
  /** The manifest as YAML. */
  yaml: string;
}

/** A planned Kubernetes sweep. */
export interface K8sPlan {
  /** The grid's runs (completion index = run index). */
  runs: SweepRun[];
  /** One Indexed Job per task position, in order. */
  jobs: K8sJob[];
  /** `apply.sh`. */
  apply: string;
  /** `sweep.json`. */
  manifest: string;
}

const DNS = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

function validate(o: K8sOptions): void {
  const bad = (m: string): never => {
    throw new Error(`k8s: ${m}`);
  };
  if (!o.image || /\s/.test(o.image)) bad("--image is required (an image with deno and the repo)");
  if (!o.volumeClaim || !DNS.test(o.volumeClaim)) {
    bad(`--pvc "${o.volumeClaim ?? ""}": a PersistentVolumeClaim name (lowercase DNS label)`);
  }
  const name = o.name ?? "sweep";
  if (!DNS.test(name) || name.length > 40) {
    bad(`--name "${name}": lowercase letters, digits, -; ≤ 40`);
  }
  if (o.namespace !== undefined && !DNS.test(o.namespace)) bad(`--namespace "${o.namespace}"`);
  const mount = o.mountPath ?? "/runs";
  if (!mount.startsWith("/")) bad(`--mount "${mount}" must be absolute`);
  if (o.saveRoot !== undefined && !o.saveRoot.startsWith(`${mount.replace(/\/+$/, "")}/`)) {
    bad(`--save-root "${o.saveRoot}" must lie on the volume (under ${mount}) so pods can resume`);
  }
  if (o.workDir !== undefined && !o.workDir.startsWith("/")) bad(`--workdir must be absolute`);
  const int = (v: number | undefined, what: string, min: number) => {
    if (v !== undefined && !(Number.isInteger(v) && v >= min && v <= 100000)) {
      bad(`${what} ${v}: expected an integer ≥ ${min}`);
    }
  };
  int(o.parallelism, "--parallelism", 1);
  int(o.gpus, "--gpus", 0);
  int(o.cpus, "--cpus", 1);
  int(o.retriesPerIndex, "retriesPerIndex", 0);
  int(o.gracePeriodSeconds, "gracePeriodSeconds", 10);
  if (o.mem !== undefined && !/^\d+(\.\d+)?([KMGTPE]i?)?$/.test(o.mem)) {
    bad(`--mem "${o.mem}": a Kubernetes quantity such as 32Gi or 500Mi`);
  }
}

/**
 * The pod's shell script at task position `p` (0-based). The run is a child of the script (bash,
 * PID 1), which forwards SIGTERM/SIGINT to it; with the default command, a run that exits 0 without
 * its task's checkpoint (stopped by a signal, state saved) makes the pod fail (143), so the
 * `DisruptionTarget` rule lets a replacement pod resume it instead of the index counting as done.
 */
export function podScript(o: K8sOptions, runs: SweepRun[], p: number): string {
  const cmd = o.command ?? DEFAULT_K8S_COMMAND;
  const ckpt = (r: SweepRun, k: number) => shellQuote(taskCheckpointPath(r.saveDir, r.tasks[k]));
  const files = (k: number, v: string) =>
    `case "$I" in\n${runs.map((r) => `  ${r.index}) ${v}=${ckpt(r, k)} ;;`).join("\n")}\nesac\n`;
  const prevCheck = p === 0 ? "" : `${files(p - 1, "PREV")}if [ ! -e "$PREV" ]; then
  echo "[mtil] run $I: task position ${p} did not finish ($PREV missing); failing this index" >&2
  exit ${PREVIOUS_NOT_DONE}
fi
`;
  const doneCheck = o.command
    ? ""
    : `${files(p, "DONE")}if [ "$rc" -eq 0 ] && [ ! -e "$DONE" ]; then
  echo "[mtil] run $I stopped before $TASK finished (state saved); a new pod resumes it" >&2
  exit 143
fi
`;
  return `set -uo pipefail
I=\${JOB_COMPLETION_INDEX:?"not an Indexed Job pod"}
${renderRunCase(runs, p, cmd)}
${prevCheck}${
    (o.setup ?? []).map((l) => `${l}\n`).join("")
  }echo "[mtil] $(date -Is) pod $(hostname): run $I $RUN, task ${p + 1}/${
    runs[0].tasks.length
  } $TASK"
"\${ARGV[@]}" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM INT
wait "$child"
rc=$?
while kill -0 "$child" 2>/dev/null; do wait "$child"; rc=$?; done
${doneCheck}exit $rc
`;
}

/** Plan the Indexed Jobs (pure). */
export function planK8s(o: K8sOptions): K8sPlan {
  validate(o);
  const name = o.name ?? "sweep";
  const mount = (o.mountPath ?? "/runs").replace(/\/+$/, "");
  const saveRoot = o.saveRoot ?? `${mount}/${name}`;
  const runs = expandGrid(o.grid, saveRoot);
  const n = runs.length;
  const positions = runs[0].tasks.length;
  const gpus = o.gpus ?? 1;
  const mem = o.mem ?? "32Gi";
  const jobs: K8sJob[] = [];
  for (let p = 0; p < positions; p++) {
    const pos = String(p + 1).padStart(2, "0");
    const jobName = `mtil-${name}-t${pos}`;
    const labels = {
      "app.kubernetes.io/name": "mtil",
      "mtil/sweep": name,
      "mtil/position": String(p + 1),
    };
    const manifest: Record<string, unknown> = {
      apiVersion: "batch/v1",
      kind: "Job",
      metadata: {
        name: jobName,
        ...(o.namespace ? { namespace: o.namespace } : {}),
        labels,
        annotations: {
          "mtil/description": `sweep ${name}: task position ${
            p + 1
          }/${positions}; completion index i = run i of sweep.json`,
        },
      },
      spec: {
        completionMode: "Indexed",
        completions: n,
        parallelism: Math.min(n, o.parallelism ?? n),
        backoffLimitPerIndex: o.retriesPerIndex ?? 3,
        podFailurePolicy: {
          rules: [
            // evicted, preempted, node drained: not the run's fault; the replacement resumes
            { action: "Ignore", onPodConditions: [{ type: "DisruptionTarget" }] },
            // the run's previous task position failed: no point retrying
            {
              action: "FailIndex",
              onExitCodes: { containerName: "run", operator: "In", values: [PREVIOUS_NOT_DONE] },
            },
          ],
        },
        template: {
          metadata: { labels },
          spec: {
            restartPolicy: "Never",
            terminationGracePeriodSeconds: o.gracePeriodSeconds ?? 120,
            containers: [{
              name: "run",
              image: o.image,
              workingDir: o.workDir ?? "/app",
              command: ["bash", "-c", podScript(o, runs, p)],
              env: [
                { name: "MTIL_SWEEP", value: name },
                { name: "MTIL_TASK_POSITION", value: String(p + 1) },
              ],
              resources: {
                requests: { cpu: String(o.cpus ?? 4), memory: mem },
                limits: { memory: mem, ...(gpus > 0 ? { "nvidia.com/gpu": gpus } : {}) },
              },
              volumeMounts: [{ name: "runs", mountPath: mount }],
            }],
            volumes: [{ name: "runs", persistentVolumeClaim: { claimName: o.volumeClaim } }],
          },
        },
      },
    };
    jobs.push({
      position: p + 1,
      name: jobName,
      path: `task-${pos}.yaml`,
      manifest,
      yaml: `# Generated by \`deno task k8s\` (mtil). Apply in order with apply.sh.\n${
        stringify(manifest, { lineWidth: 0 })
      }`,
    });
  }
  return {
    runs,
    jobs,
    apply: renderApplyScript(o, jobs),
    manifest: JSON.stringify(sweepManifest(o.grid, runs, saveRoot), null, 2) + "\n",
  };
}

/** `apply.sh`: apply the Jobs position by position, each after the previous one finished. */
export function renderApplyScript(o: K8sOptions, jobs: K8sJob[]): string {
  const ns = o.namespace ? ` -n ${o.namespace}` : "";
  return `#!/bin/bash
# Generated by \`deno task k8s\` (mtil): sweep "${
    o.name ?? "sweep"
  }", ${jobs.length} Indexed Job(s), one per
# task position, applied in order (Kubernetes has no dependencies between Jobs): each waits until
# the previous Job is Complete or Failed; a run whose earlier position failed fails its own index.
# usage: bash apply.sh [--from TASK] [--dry-run]
#   --from TASK  (re)start at task position TASK: its Job and later ones are deleted and re-applied
#                (runs resume from their checkpoints on the volume)
set -euo pipefail
cd "$(dirname "$0")"
JOBS=(${jobs.map((j) => j.name).join(" ")})
FILES=(${jobs.map((j) => j.path).join(" ")})
FROM=1
DRY=0
while (( $# )); do
  case "$1" in
    --from) FROM=\${2:?--from needs a task position}; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    *) echo "apply.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
if ! [[ "$FROM" =~ ^[0-9]+$ ]] || (( FROM < 1 || FROM > \${#JOBS[@]} )); then
  echo "apply.sh: --from $FROM is not a task position 1-\${#JOBS[@]}" >&2; exit 2
fi
run() { if (( DRY )); then echo "$*"; else "$@"; fi; }
for (( k = FROM; k <= \${#JOBS[@]}; k++ )); do
  job=\${JOBS[k - 1]}
  run kubectl${ns} delete job "$job" --ignore-not-found
  run kubectl${ns} apply -f "\${FILES[k - 1]}"
  (( DRY )) && continue
  while true; do
    c=$(kubectl${ns} get job "$job" -o jsonpath='{.status.conditions[?(@.status=="True")].type}')
    case " $c " in *" Complete "* | *" Failed "*) break ;; esac
    sleep 30
  done
  failed=$(kubectl${ns} get job "$job" -o jsonpath='{.status.failedIndexes}')
  echo "task $k/\${#JOBS[@]}: $job finished ($c)\${failed:+; failed indexes: $failed}"
done
`;
}

/** Write the manifests, `apply.sh` and `sweep.json` under `o.outDir`; returns plan and paths. */
export async function writeK8s(o: K8sOptions): Promise<{ plan: K8sPlan; files: string[] }> {
  if (!o.outDir?.startsWith("/")) throw new Error("k8s: outDir must be an absolute path");
  const plan = planK8s(o);
  const files: GeneratedFile[] = [
    ...plan.jobs.map((j) => ({ path: j.path, content: j.yaml })),
    { path: "apply.sh", content: plan.apply, executable: true },
    { path: "sweep.json", content: plan.manifest },
  ];
  return { plan, files: await writeGenerated(o.outDir, files) };
}
