/**
 * SLURM job chains for task sequences: one sbatch script per task, chained with `afterok`
 * dependencies, each able to survive its time limit (SLURM sends `USR1` 60 s before the limit to the
 * batch shell; the script asks the run to checkpoint, then requeues itself with `scontrol requeue`
 * and the rerun resumes from the checkpoint, since the sequence command is crash-safe), plus a
 * `submit.sh` that submits every chain. Sweeps (several methods and/or seeds) become independent
 * chains.
 *
 * Each job runs the sequence command restricted to the tasks up to its own (`--stop-after TASK`):
 * finished tasks are skipped, so job k trains exactly task k (or resumes it).
 *
 * @module
 */
import { resolveOrder } from "./protocol.ts";

/** Options of {@linkcode planSlurm}. */
export interface SlurmOptions {
  /** `I`, `II` or a comma-separated list of datasets. */
  order: string;
  /** Methods; one chain per method and seed. */
  methods: string[];
  /** Seeds (default `[1]`). */
  seeds?: number[];
  /** SLURM partition (`--partition`). */
  partition: string;
  /** Time limit per job (`--time`, e.g. `12:00:00`). */
  time: string;
  /** GPUs per job (`--gres=gpu:N`; 0 = none). */
  gpus?: number;
  /** CPUs per task (default 4). */
  cpus?: number;
  /** Memory per job (default `32G`). */
  mem?: string;
  /** Optional `--account`. */
  account?: string;
  /** Optional `--qos`. */
  qos?: string;
  /** Absolute directory the jobs run in (the repository). */
  workDir: string;
  /** Directory the scripts are written to (absolute). */
  outDir: string;
  /** Root of the run directories; chain `m`/seed `s` saves to `<saveRoot>/order-<o>/<m>/seed<s>`. */
  saveRoot: string;
  /** Extra arguments for every sequence command (training flags). */
  extraArgs?: string[];
  /**
   * The command to run, as argv words; placeholders `{order} {method} {seed} {save} {task}
   * {index}` are substituted in each word. Default: `deno task sequence --order {order} --method
   * {method} --seed {seed} --save {save} --stop-after {task}`.
   */
  command?: string[];
  /** Shell lines run before the command (e.g. `module load …`). */
  setup?: string[];
  /** Seconds before the time limit at which SLURM signals (default 60). */
  signalSeconds?: number;
  /** Give up after this many requeues of one job (default 20). */
  maxRequeues?: number;
}

/** One generated file. */
export interface SlurmFile {
  /** Path relative to `outDir`. */
  path: string;
  /** File content. */
  content: string;
}

/** One independent chain (one method and seed). */
export interface SlurmChain {
  /** Chain name, also its folder under `outDir`. */
  name: string;
  /** Method. */
  method: string;
  /** Seed. */
  seed: number;
  /** Run directory of the chain. */
  saveDir: string;
  /** Per-task scripts in training order. */
  scripts: SlurmFile[];
}

/** The default per-task command (see {@linkcode SlurmOptions.command}). */
export const DEFAULT_SEQUENCE_COMMAND: readonly string[] = Object.freeze([
  "deno",
  "task",
  "sequence",
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

/** Quote a word for bash (single quotes unless it is plainly safe). */
export function shellQuote(s: string): string {
  if (s !== "" && /^[A-Za-z0-9_\/.,=:+@%-]+$/.test(s)) return s;
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/** A file-name-safe version of a label. */
export function safeName(s: string): string {
  return s.replace(/[^A-Za-z0-9._-]+/g, "_").replace(/^_+|_+$/g, "") || "x";
}

function orderLabel(order: string): string {
  return /^(i|ii)$/i.test(order.trim()) ? order.trim().toUpperCase() : "custom";
}

function validate(o: SlurmOptions): void {
  const bad = (m: string): never => {
    throw new Error(`slurm: ${m}`);
  };
  if (!o.partition) bad("--partition is required");
  if (!/^(\d+-)?\d+(:\d+){0,2}$/.test(o.time)) {
    bad(`--time "${o.time}" is not a SLURM time (MM, HH:MM:SS or D-HH:MM:SS)`);
  }
  if (o.methods.length === 0) bad("no method given (--method or --methods)");
  for (const m of o.methods) if (!m.trim()) bad("empty method name");
  for (const s of o.seeds ?? [1]) if (!Number.isInteger(s)) bad(`seed ${s} is not an integer`);
  if (o.gpus !== undefined && !(Number.isInteger(o.gpus) && o.gpus >= 0)) bad(`--gpus ${o.gpus}`);
  for (const p of [o.workDir, o.outDir]) {
    if (!p.startsWith("/")) bad(`path "${p}" must be absolute`);
  }
}

/** Plan the chains (pure: no files written). */
export function planSlurm(o: SlurmOptions): SlurmChain[] {
  validate(o);
  const tasks = resolveOrder(o.order);
  const label = orderLabel(o.order);
  const chains: SlurmChain[] = [];
  for (const method of o.methods) {
    for (const seed of o.seeds ?? [1]) {
      const name = safeName(`${method}-order${label}-seed${seed}`);
      const saveDir = `${o.saveRoot.replace(/\/+$/, "")}/order-${label}/${
        safeName(method)
      }/seed${seed}`;
      const chain: SlurmChain = { name, method, seed, saveDir, scripts: [] };
      tasks.forEach((task, i) => {
        const file = `${name}/${String(i + 1).padStart(2, "0")}-${safeName(task)}.sbatch`;
        chain.scripts.push({ path: file, content: renderTaskScript(o, chain, tasks, i) });
      });
      chains.push(chain);
    }
  }
  return chains;
}

function substitute(word: string, vars: Record<string, string>): string {
  return word.replace(/\{(order|method|seed|save|task|index)\}/g, (_, k: string) => vars[k]);
}

/** The sbatch script of task `i` of a chain. */
export function renderTaskScript(
  o: SlurmOptions,
  chain: SlurmChain,
  tasks: string[],
  i: number,
): string {
  const task = tasks[i];
  const sig = o.signalSeconds ?? 60;
  const vars = {
    order: o.order,
    method: chain.method,
    seed: String(chain.seed),
    save: chain.saveDir,
    task,
    index: String(i + 1),
  };
  const argv = [...(o.command ?? DEFAULT_SEQUENCE_COMMAND)].map((w) => substitute(w, vars));
  const cmd = [...argv, ...(o.extraArgs ?? [])].map(shellQuote).join(" ");
  const jobName = safeName(`mtil-${chain.name}-${String(i + 1).padStart(2, "0")}-${task}`);
  const sb = [
    `--job-name=${jobName}`,
    `--partition=${o.partition}`,
    `--time=${o.time}`,
    ...((o.gpus ?? 1) > 0 ? [`--gres=gpu:${o.gpus ?? 1}`] : []),
    `--cpus-per-task=${o.cpus ?? 4}`,
    `--mem=${o.mem ?? "32G"}`,
    ...(o.account ? [`--account=${o.account}`] : []),
    ...(o.qos ? [`--qos=${o.qos}`] : []),
    `--output=${o.outDir}/logs/%x-%j.out`,
    `--open-mode=append`,
    `--requeue`,
    `--signal=B:USR1@${sig}`,
  ];
  const prev = i > 0
    ? `after ${String(i).padStart(2, "0")}-${safeName(tasks[i - 1])} succeeds (afterok)`
    : "first of its chain";
  return `#!/bin/bash
# Generated by \`deno task slurm\` (mtil). Task ${
    i + 1
  }/${tasks.length} (${task}) of order ${o.order},
# method ${chain.method}, seed ${chain.seed}; runs ${prev}. Submit the chains with submit.sh.
# Resume path: SLURM sends USR1 to this shell ${sig} s before the time limit (--signal=B:USR1@${sig});
# the run is asked to checkpoint (USR1), then this job requeues itself and the rerun resumes.
${sb.map((l) => `#SBATCH ${l}`).join("\n")}
set -uo pipefail

MAX_REQUEUES=${o.maxRequeues ?? 20}
TASK_INDEX=${i + 1}
cd ${shellQuote(o.workDir)} || { echo "[mtil] cannot cd to ${o.workDir}" >&2; exit 1; }
echo "[mtil] $(date -Is) job \${SLURM_JOB_ID:-?} restart \${SLURM_RESTART_COUNT:-0} on $(hostname): task $TASK_INDEX/${tasks.length} ${task}"
${(o.setup ?? []).map((l) => `${l}\n`).join("")}
signal_tree() {
  local pid=$1 sig=$2 c
  for c in $(pgrep -P "$pid" 2>/dev/null); do signal_tree "$c" "$sig"; done
  kill -s "$sig" "$pid" 2>/dev/null || true
}

child=""
on_usr1() {
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
    echo "[mtil] already requeued $MAX_REQUEUES times; giving up (resubmit: bash ${
    shellQuote(`${o.outDir}/submit.sh`)
  } $TASK_INDEX ${chain.name})" >&2
    exit 1
  fi
  if scontrol requeue "\${SLURM_JOB_ID}"; then
    echo "[mtil] requeued \${SLURM_JOB_ID}: the rerun resumes from the last checkpoint"
    exit 0
  fi
  echo "[mtil] scontrol requeue failed; resume by hand: bash ${
    shellQuote(`${o.outDir}/submit.sh`)
  } $TASK_INDEX ${chain.name}" >&2
  exit 1
}
trap on_usr1 USR1

${cmd} &
child=$!
wait "$child"
rc=$?
echo "[mtil] $(date -Is) task $TASK_INDEX (${task}) exited with $rc"
exit $rc
`;
}

/** The `submit.sh` script submitting every chain (`bash submit.sh [FROM_TASK] [CHAIN]`). */
export function renderSubmitScript(o: SlurmOptions, chains: SlurmChain[]): string {
  const lines = chains.map((c) =>
    `submit_chain ${shellQuote(c.name)} ${c.scripts.map((s) => shellQuote(s.path)).join(" ")}`
  );
  return `#!/bin/bash
# Generated by \`deno task slurm\` (mtil): ${chains.length} independent chain(s) of ${
    chains[0]?.scripts.length ?? 0
  } task(s),
# order ${o.order}. Within a chain each job starts after the previous one succeeded (afterok).
# usage: bash submit.sh [FROM_TASK] [CHAIN]   (FROM_TASK: 1-based index to restart a chain from)
set -euo pipefail
cd "$(dirname "$0")"
FROM=\${1:-1}
ONLY=\${2:-}
mkdir -p logs

submit_chain() {
  local name=$1; shift
  if [[ -n "$ONLY" && "$ONLY" != "$name" ]]; then return 0; fi
  local prev="" i=0 jid f
  for f in "$@"; do
    i=$((i + 1))
    if (( i < FROM )); then continue; fi
    if [[ -z "$prev" ]]; then
      jid=$(sbatch --parsable "$f")
    else
      jid=$(sbatch --parsable --dependency="afterok:$prev" --kill-on-invalid-dep=yes "$f")
    fi
    jid=\${jid%%;*}
    echo "$name: $f -> job $jid\${prev:+ (after $prev)}"
    prev=$jid
  done
}

${lines.join("\n")}
`;
}

/** Write every script, `submit.sh` and a `chains.json` manifest under `outDir`; returns the paths. */
export async function writeSlurm(
  o: SlurmOptions,
): Promise<{ chains: SlurmChain[]; files: string[] }> {
  const chains = planSlurm(o);
  const files: SlurmFile[] = chains.flatMap((c) => c.scripts);
  files.push({ path: "submit.sh", content: renderSubmitScript(o, chains) });
  files.push({
    path: "chains.json",
    content: JSON.stringify(
      {
        order: o.order,
        tasks: resolveOrder(o.order),
        chains: chains.map((c) => ({
          name: c.name,
          method: c.method,
          seed: c.seed,
          saveDir: c.saveDir,
          scripts: c.scripts.map((s) => s.path),
        })),
      },
      null,
      2,
    ) + "\n",
  });
  const written: string[] = [];
  for (const f of files) {
    const path = `${o.outDir}/${f.path}`;
    await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    const tmp = `${path}.tmp-${Deno.pid}`;
    await Deno.writeTextFile(tmp, f.content, { mode: f.path.endsWith(".json") ? 0o644 : 0o755 });
    await Deno.rename(tmp, path);
    written.push(path);
  }
  await Deno.mkdir(`${o.outDir}/logs`, { recursive: true });
  return { chains, files: written };
}
