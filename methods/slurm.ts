/**
 * SLURM job arrays for sweeps: one array job per task position, array element `i` = run `i` of the
 * grid ({@linkcode expandGrid}: method × order × learning rate × seed). Task position k+1 of run i
 * starts after task position k of run i succeeded (`--dependency=aftercorr:<previous array job>`,
 * with `--kill-on-invalid-dep=yes`, so a failed element's later tasks are cancelled and the other
 * runs go on); `--array=0-N%K` caps how many elements run at once.
 *
 * Each element runs the sequence command restricted to the tasks up to its position
 * (`--stop-after TASK`): finished tasks are skipped, so job k trains exactly task k (or resumes
 * it). Time limits: SLURM sends `USR1` to the batch shell `signalSeconds` before the limit
 * (`--signal=B:USR1@…`); the script asks the run to checkpoint (USR1), then requeues itself with
 * `scontrol requeue`, and the rerun resumes from the checkpoint.
 *
 * `submit.sh` submits the chain of arrays and restarts part of a sweep:
 * `bash submit.sh [--from TASK] [--only I,J-K] [--limit K] [--dry-run]`.
 *
 * @example
 * ```ts
 * import { planSlurm } from "jsr:@mtil/mtil/methods";
 * const plan = planSlurm({
 *   grid: { methods: ["finetune", "ZSCL"], orders: ["I"], seeds: [1, 2, 3] },
 *   partition: "gpu", time: "12:00:00", gpus: 1,
 *   workDir: "/repo", outDir: "/repo/runs/sweep/scripts", saveRoot: "/repo/runs/sweep",
 * });
 * plan.arrays.length; // 11 array jobs (one per task of order I), each --array=0-5
 * ```
 *
 * @module
 */
import {
  DEFAULT_SEQUENCE_COMMAND,
  expandGrid,
  type GeneratedFile,
  renderRunCase,
  runArgv,
  safeName,
  shellQuote,
  type SweepGrid,
  sweepManifest,
  type SweepRun,
  writeGenerated,
} from "./sweep.ts";

export { DEFAULT_SEQUENCE_COMMAND, safeName, shellQuote } from "./sweep.ts";

/** Options of {@linkcode planSlurm}. */
export interface SlurmOptions {
  /** The sweep grid (methods × orders × lrs × seeds, extra flags). */
  grid: SweepGrid;
  /** SLURM partition (`--partition`). */
  partition: string;
  /** Time limit per job (`--time`, e.g. `12:00:00`). */
  time: string;
  /** GPUs per job (`--gres=gpu:N`; 0 or absent = no `--gres` line). */
  gpus?: number;
  /** CPUs per task (default 4). */
  cpus?: number;
  /** Memory per job (default `32G`; empty string = no `--mem` line). */
  mem?: string;
  /** Optional `--account`. */
  account?: string;
  /** Optional `--qos`. */
  qos?: string;
  /** At most this many elements of one array run at once (`--array=0-N%K`; default: no cap). */
  arrayLimit?: number;
  /** Sweep name (job names `mtil-<name>-tNN`; default `sweep`). */
  name?: string;
  /** Absolute directory the jobs run in (the repository). */
  workDir: string;
  /** Directory the scripts are written to (absolute). */
  outDir: string;
  /** Root of the run folders (absolute; see {@linkcode expandGrid}). */
  saveRoot: string;
  /**
   * The command to run, as argv words with placeholders (see {@linkcode DEFAULT_SEQUENCE_COMMAND});
   * the run's lr / grid / method flags are appended.
   */
  command?: readonly string[];
  /** Shell lines run before the command (e.g. `module load …`). */
  setup?: string[];
  /** Seconds before the time limit at which SLURM signals (default 60). */
  signalSeconds?: number;
  /** Give up after this many requeues of one element (default 20). */
  maxRequeues?: number;
}

/** One array job (one task position). */
export interface SlurmArrayJob {
  /** 1-based task position. */
  position: number;
  /** Script path relative to `outDir` (`task-NN.sbatch`). */
  path: string;
  /** Script content. */
  content: string;
  /** Task trained at this position, per run (distinct orders may differ). */
  tasks: string[];
}

/** A planned sweep (pure: nothing written). */
export interface SlurmPlan {
  /** The grid's runs (array index = run index). */
  runs: SweepRun[];
  /** One array job per task position, in chain order. */
  arrays: SlurmArrayJob[];
  /** `--array` value of a full submission (`0-N` or `0-N%K`). */
  array: string;
  /** `submit.sh`. */
  submit: string;
  /** `sweep.json` (see {@linkcode sweepManifest}). */
  manifest: string;
}

const TIME_RE = /^((\d+-)?\d+(:\d+){0,2}|\d+-\d+)$/;

function validate(o: SlurmOptions): void {
  const bad = (m: string): never => {
    throw new Error(`slurm: ${m}`);
  };
  if (!o.partition) bad("--partition is required");
  if (!/^[A-Za-z0-9_.,-]+$/.test(o.partition)) bad(`--partition "${o.partition}"`);
  if (!TIME_RE.test(o.time)) {
    bad(`--time "${o.time}" is not a SLURM time (MM, HH:MM:SS or D-HH:MM:SS)`);
  }
  if (o.gpus !== undefined && !(Number.isInteger(o.gpus) && o.gpus >= 0 && o.gpus <= 64)) {
    bad(`--gpus ${o.gpus}: expected an integer 0–64 (0: a CPU cluster, no --gres)`);
  }
  if (o.cpus !== undefined && !(Number.isInteger(o.cpus) && o.cpus >= 1 && o.cpus <= 1024)) {
    bad(`--cpus ${o.cpus}: expected an integer 1–1024`);
  }
  if (o.mem !== undefined && o.mem !== "" && !/^\d+[KMGT]?$/i.test(o.mem)) {
    bad(`--mem "${o.mem}": expected e.g. 32G, 500M or 0`);
  }
  if (
    o.arrayLimit !== undefined && !(Number.isInteger(o.arrayLimit) && o.arrayLimit >= 1)
  ) bad(`--array-limit ${o.arrayLimit}: expected a positive integer`);
  for (const [k, v] of [["account", o.account], ["qos", o.qos]] as const) {
    if (v !== undefined && !/^[A-Za-z0-9_.-]+$/.test(v)) bad(`--${k} "${v}"`);
  }
  if (o.name !== undefined && !/^[A-Za-z0-9_.-]{1,64}$/.test(o.name)) bad(`--name "${o.name}"`);
  const sig = o.signalSeconds ?? 60;
  if (!(Number.isInteger(sig) && sig >= 20 && sig <= 3600)) {
    bad(`signalSeconds ${sig}: expected 20–3600 (the run needs time to checkpoint)`);
  }
  for (const p of [o.workDir, o.outDir, o.saveRoot]) {
    if (!p.startsWith("/")) bad(`path "${p}" must be absolute`);
  }
  // the scripts' folder appears unquoted in #SBATCH --output (SLURM does not unquote)
  if (/[\s%"'\\]/.test(o.outDir)) bad(`--out "${o.outDir}": no spaces, quotes, % or \\ in it`);
}

/** The `--array` value: `0-(N-1)` capped with `%K`. */
export function arraySpec(n: number, limit?: number): string {
  const range = n === 1 ? "0" : `0-${n - 1}`;
  return limit ? `${range}%${limit}` : range;
}

/** Plan a sweep: the runs, one array job script per task position, `submit.sh`, `sweep.json`. */
export function planSlurm(o: SlurmOptions): SlurmPlan {
  validate(o);
  const runs = expandGrid(o.grid, o.saveRoot);
  const positions = runs[0].tasks.length;
  const array = arraySpec(runs.length, o.arrayLimit);
  const arrays: SlurmArrayJob[] = [];
  for (let p = 0; p < positions; p++) {
    arrays.push({
      position: p + 1,
      path: `task-${String(p + 1).padStart(2, "0")}.sbatch`,
      content: renderArrayScript(o, runs, p, array),
      tasks: runs.map((r) => r.tasks[p]),
    });
  }
  return {
    runs,
    arrays,
    array,
    submit: renderSubmitScript(o, runs, arrays),
    manifest: JSON.stringify(sweepManifest(o.grid, runs, o.saveRoot), null, 2) + "\n",
  };
}

/** The sbatch script of task position `p` (0-based): one array job over every run of the grid. */
export function renderArrayScript(
  o: SlurmOptions,
  runs: SweepRun[],
  p: number,
  array: string,
): string {
  const sig = o.signalSeconds ?? 60;
  const positions = runs[0].tasks.length;
  const name = o.name ?? "sweep";
  const pos = String(p + 1).padStart(2, "0");
  const gpus = o.gpus ?? 1;
  const mem = o.mem ?? "32G";
  const submit = shellQuote(`${o.outDir}/submit.sh`);
  const sb = [
    `--job-name=${safeName(`mtil-${name}-t${pos}`)}`,
    `--array=${array}`,
    `--partition=${o.partition}`,
    `--time=${o.time}`,
    ...(gpus > 0 ? [`--gres=gpu:${gpus}`] : []),
    `--cpus-per-task=${o.cpus ?? 4}`,
    ...(mem !== "" ? [`--mem=${mem}`] : []),
    ...(o.account ? [`--account=${o.account}`] : []),
    ...(o.qos ? [`--qos=${o.qos}`] : []),
    `--output=${o.outDir}/logs/%x-%A_%a.out`,
    `--open-mode=append`,
    `--requeue`,
    `--signal=B:USR1@${sig}`,
  ];
  const tasksHere = [...new Set(runs.map((r) => r.tasks[p]))].join(", ");
  return `#!/bin/bash
# Generated by \`deno task slurm\` (mtil). Sweep "${name}": task position ${
    p + 1
  }/${positions} (${tasksHere})
# of ${runs.length} run(s); array element i = run i of the grid (see sweep.json). ${
    p === 0
      ? "First of the chain."
      : `submit.sh starts element i after element i of task-${
        String(p).padStart(2, "0")
      }.sbatch succeeded (aftercorr).`
  }
# Resume path: SLURM sends USR1 to this shell ${sig} s before the time limit (--signal=B:USR1@${sig});
# the run is asked to checkpoint (USR1), then this job requeues itself and the rerun resumes.
# Submit the whole sweep with submit.sh (it passes --array and the dependencies).
${sb.map((l) => `#SBATCH ${l}`).join("\n")}
set -uo pipefail

MAX_REQUEUES=${o.maxRequeues ?? 20}
POSITION=${p + 1}
I=\${SLURM_ARRAY_TASK_ID:?"not an array job: submit with ${submit}"}
${renderRunCase(runs, p, o.command ?? DEFAULT_SEQUENCE_COMMAND)}
cd ${shellQuote(o.workDir)} || { echo "[mtil] cannot cd to ${o.workDir}" >&2; exit 1; }
echo "[mtil] $(date -Is) job \${SLURM_JOB_ID:-?} (array \${SLURM_ARRAY_JOB_ID:-?}_$I) restart \${SLURM_RESTART_COUNT:-0} on $(hostname): run $I $RUN, task $POSITION/${positions} $TASK"
${(o.setup ?? []).map((l) => `${l}\n`).join("")}
signal_tree() {
  local pid=$1 sig=$2 c
  for c in $(pgrep -P "$pid" 2>/dev/null); do signal_tree "$c" "$sig"; done
  kill -s "$sig" "$pid" 2>/dev/null || true
}

child=""
on_usr1() {
  trap '' USR1
  echo "[mtil] $(date -Is) time limit near: asking the run to checkpoint, then requeueing"
  if [[ -n "$child" ]]; then
    signal_tree "$child" USR1
    for _ in $(seq 1 ${
    Math.max(1, sig - 15)
  }); do kill -0 "$child" 2>/dev/null || break; sleep 1; done
    signal_tree "$child" TERM
    wait "$child" 2>/dev/null
  fi
  if (( \${SLURM_RESTART_COUNT:-0} >= MAX_REQUEUES )); then
    echo "[mtil] already requeued $MAX_REQUEUES times; giving up (resubmit: bash ${submit} --from $POSITION --only $I)" >&2
    exit 1
  fi
  if scontrol requeue "\${SLURM_JOB_ID}"; then
    echo "[mtil] requeued \${SLURM_JOB_ID}: the rerun resumes from the last checkpoint"
    exit 0
  fi
  echo "[mtil] scontrol requeue failed; resume by hand: bash ${submit} --from $POSITION --only $I" >&2
  exit 1
}
trap on_usr1 USR1

"\${ARGV[@]}" &
child=$!
wait "$child"
rc=$?
echo "[mtil] $(date -Is) run $I $RUN task $POSITION ($TASK) exited with $rc"
exit $rc
`;
}

/**
 * `submit.sh`: submits the array jobs in chain order, each after the previous with
 * `--dependency=aftercorr:<job>`; `--from TASK` restarts from a task position, `--only` limits the
 * elements (restart failed runs), `--limit K` overrides the concurrency cap, `--dry-run` prints the
 * sbatch commands. Writes each submission to `submitted.tsv` (position, array job id, array).
 */
export function renderSubmitScript(
  o: SlurmOptions,
  runs: SweepRun[],
  arrays: SlurmArrayJob[],
): string {
  const n = runs.length;
  return `#!/bin/bash
# Generated by \`deno task slurm\` (mtil): sweep "${
    o.name ?? "sweep"
  }", ${n} run(s) × ${arrays.length} task position(s),
# one array job per position; element i of position k+1 starts after element i of position k
# succeeded (aftercorr); a failed element's later positions are cancelled, other runs go on.
#
# usage: bash submit.sh [--from TASK] [--only I[,J-K…]] [--limit K] [--dry-run]
#   --from TASK   start at task position TASK (1-${arrays.length}); earlier positions are not resubmitted
#   --only LIST   only these grid elements (0-${
    n - 1
  }; see sweep.json), e.g. to restart a failed run
#   --limit K     at most K elements of an array at once (default: ${o.arrayLimit ?? "no cap"})
#   --dry-run     print the sbatch commands instead of running them
# Runs are crash-safe: resubmitting a finished task position just skips it.
set -euo pipefail
cd "$(dirname "$0")"
N=${n}
POSITIONS=${arrays.length}
SCRIPTS=(${arrays.map((a) => shellQuote(a.path)).join(" ")})
FROM=1
ONLY=""
LIMIT=${o.arrayLimit ?? ""}
DRY=0
usage() { grep -E '^#( usage|   --)' "$0" | cut -c3-; }
while (( $# )); do
  case "$1" in
    --from) FROM=\${2:?--from needs a task position}; shift 2 ;;
    --only) ONLY=\${2:?--only needs grid elements}; shift 2 ;;
    --limit) LIMIT=\${2:?--limit needs a number}; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) usage; exit 0 ;;
    [0-9]*) FROM=$1; shift ;;
    *) echo "submit.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
if ! [[ "$FROM" =~ ^[0-9]+$ ]] || (( FROM < 1 || FROM > POSITIONS )); then
  echo "submit.sh: --from $FROM is not a task position 1-$POSITIONS" >&2; exit 2
fi
if [[ -n "$LIMIT" ]] && ! [[ "$LIMIT" =~ ^[1-9][0-9]*$ ]]; then
  echo "submit.sh: --limit $LIMIT is not a positive number" >&2; exit 2
fi
if [[ -n "$ONLY" ]]; then
  if ! [[ "$ONLY" =~ ^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$ ]]; then
    echo "submit.sh: --only $ONLY: expected e.g. 3 or 0,2,5-7" >&2; exit 2
  fi
  for part in \${ONLY//,/ }; do
    for x in \${part//-/ }; do
      if (( x >= N )); then echo "submit.sh: grid element $x does not exist (0-$((N - 1)))" >&2; exit 2; fi
    done
  done
  ARRAY=$ONLY
else
  if (( N == 1 )); then ARRAY=0; else ARRAY="0-$((N - 1))"; fi
fi
[[ -n "$LIMIT" ]] && ARRAY="$ARRAY%$LIMIT"
mkdir -p logs

prev=""
for (( k = FROM; k <= POSITIONS; k++ )); do
  f=\${SCRIPTS[k - 1]}
  args=(--parsable --array="$ARRAY")
  [[ -n "$prev" ]] && args+=(--dependency="aftercorr:$prev" --kill-on-invalid-dep=yes)
  if (( DRY )); then
    echo "sbatch \${args[*]} $f"
    jid="<job of task $k>"
  else
    jid=$(sbatch "\${args[@]}" "$f")
    jid=\${jid%%;*}
    printf '%s\\t%s\\t%s\\n' "$k" "$jid" "$ARRAY" >> submitted.tsv
    echo "task $k/$POSITIONS: $f -> array job $jid (--array=$ARRAY)\${prev:+ after $prev (aftercorr)}"
  fi
  prev=$jid
done
`;
}

/** Text of `deno task slurm --dry-run`: the grid and the sbatch commands, nothing written. */
export function describeSlurmPlan(o: SlurmOptions, plan: SlurmPlan): string {
  const lines: string[] = [];
  lines.push(
    `sweep "${
      o.name ?? "sweep"
    }": ${plan.runs.length} run(s) × ${plan.arrays.length} task position(s) = ${
      plan.runs.length * plan.arrays.length
    } jobs in ${plan.arrays.length} array job(s) (--array=${plan.array})`,
  );
  lines.push(`scripts: ${o.outDir}   runs: ${o.saveRoot}`);
  lines.push("", "grid (array index → run):");
  for (const r of plan.runs) {
    lines.push(
      `  ${String(r.index).padStart(3)}  ${r.method}  order ${r.orderLabel}  seed ${r.seed}${
        r.lr === undefined ? "" : `  lr ${r.lr}`
      }  → ${r.saveDir}`,
    );
  }
  lines.push("", "submit.sh would run:");
  plan.arrays.forEach((a, k) => {
    const dep = k === 0 ? "" : ` --dependency=aftercorr:$JOB${k} --kill-on-invalid-dep=yes`;
    lines.push(`  JOB${k + 1}=$(sbatch --parsable --array=${plan.array}${dep} ${a.path})`);
  });
  const gpus = o.gpus ?? 1;
  lines.push(
    "",
    `each job: --partition=${o.partition} --time=${o.time} ${
      gpus > 0 ? `--gres=gpu:${gpus}` : "(no --gres)"
    } --cpus-per-task=${o.cpus ?? 4}${(o.mem ?? "32G") !== "" ? ` --mem=${o.mem ?? "32G"}` : ""}`,
    `element 0, task 1: ${
      runArgv(plan.runs[0], 0, o.command ?? DEFAULT_SEQUENCE_COMMAND).map(shellQuote).join(" ")
    }`,
  );
  return lines.join("\n");
}

/**
 * Write the array scripts, `submit.sh` and `sweep.json` under `outDir` (and `sweep.json` into
 * `saveRoot`, so `deno task summarize` finds the grid); returns the plan and the written paths.
 */
export async function writeSlurm(o: SlurmOptions): Promise<{ plan: SlurmPlan; files: string[] }> {
  const plan = planSlurm(o);
  const files: GeneratedFile[] = [
    ...plan.arrays.map((a) => ({ path: a.path, content: a.content, executable: true })),
    { path: "submit.sh", content: plan.submit, executable: true },
    { path: "sweep.json", content: plan.manifest },
  ];
  const written = await writeGenerated(o.outDir, files);
  if (o.saveRoot !== o.outDir) {
    written.push(
      ...await writeGenerated(o.saveRoot, [{ path: "sweep.json", content: plan.manifest }]),
    );
  }
  await Deno.mkdir(`${o.outDir}/logs`, { recursive: true });
  return { plan, files: written };
}
