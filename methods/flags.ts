/**
 * Validated numeric command-line flags, shared by every entry point, and a top-level runner
 * that turns user errors into a one-line message and a non-zero exit code (never a stack trace).
 *
 * Every numeric flag is checked before any work starts: `--iterations=-5`, `0`, `1.5`, `abc`,
 * `--lr=-1`, `--workers=-1` or `--alpha abc` fail at once with a {@link FlagError} that names the
 * flag and says what it expects.
 *
 * @example
 * ```ts
 * import { parseIntFlag, parseNumberFlag } from "jsr:@mtil/mtil/methods";
 * parseIntFlag("iterations", "500", { min: 1 }); // 500
 * parseNumberFlag("alpha", "0.5", { min: 0, max: 1 }); // 0.5
 * // parseIntFlag("iterations", "1.5", { min: 1 }) throws:
 * //   --iterations expects an integer ≥ 1, got "1.5"
 * ```
 *
 * @module
 */

/** A user error in a command-line flag: the message names the flag and what it expects. */
export class FlagError extends Error {
  /** The flag (without dashes). */
  readonly flag: string;
  /** Build `--<flag> expects <what>, got "<value>"` (or a custom message). */
  constructor(flag: string, message: string) {
    super(message);
    this.name = "FlagError";
    this.flag = flag;
  }
}

/** Constraints of a numeric flag. */
export interface NumberFlagOptions {
  /** Only integers (no fraction, no exponent beyond an integer value). */
  integer?: boolean;
  /** Strictly greater than zero. */
  positive?: boolean;
  /** Smallest allowed value (inclusive). */
  min?: number;
  /** Largest allowed value (inclusive). */
  max?: number;
  /** Smallest allowed value, exclusive. */
  above?: number;
  /** Largest allowed value, exclusive. */
  below?: number;
}

/** What a flag expects, in words: `an integer ≥ 1`, `a number in [0, 1]`, … */
export function describeFlag(opts: NumberFlagOptions): string {
  const kind = opts.integer ? "an integer" : "a number";
  const lo = opts.positive && (opts.min === undefined || opts.min <= 0) && opts.above === undefined
    ? { v: 0, incl: false }
    : opts.above !== undefined
    ? { v: opts.above, incl: false }
    : opts.min !== undefined
    ? { v: opts.min, incl: true }
    : undefined;
  const hi = opts.below !== undefined
    ? { v: opts.below, incl: false }
    : opts.max !== undefined
    ? { v: opts.max, incl: true }
    : undefined;
  if (lo && hi) {
    return `${kind} in ${lo.incl ? "[" : "("}${lo.v}, ${hi.v}${hi.incl ? "]" : ")"}`;
  }
  if (lo) return `${kind} ${lo.incl ? "≥" : ">"} ${lo.v}`;
  if (hi) return `${kind} ${hi.incl ? "≤" : "<"} ${hi.v}`;
  return kind;
}

/** How a flag value is shown in an error: quoted and cut to 40 characters. */
function shown(value: unknown): string {
  const s = String(value);
  return JSON.stringify(s.length > 40 ? s.slice(0, 40) + "…" : s);
}

/**
 * Parse and check one numeric flag. `undefined` (flag absent, no default) stays `undefined`; a
 * boolean (a flag given without value where one is needed) and anything that is not a plain
 * decimal number (`abc`, `""`, `0x10`, `Infinity`, `NaN`, `1e400`) are errors.
 */
export function parseNumberFlag(
  name: string,
  value: string | number | boolean | undefined,
  opts: NumberFlagOptions = {},
): number | undefined {
  if (value === undefined) return undefined;
  const fail = (): never => {
    throw new FlagError(name, `--${name} expects ${describeFlag(opts)}, got ${shown(value)}`);
  };
  let n: number;
  if (typeof value === "number") n = value;
  else if (typeof value === "string") {
    const t = value.trim();
    if (!/^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i.test(t)) fail();
    n = Number(t);
  } else return fail();
  if (!Number.isFinite(n)) fail();
  if (opts.integer && !Number.isSafeInteger(n)) fail();
  if (opts.positive && !(n > 0)) fail();
  if (opts.min !== undefined && n < opts.min) fail();
  if (opts.max !== undefined && n > opts.max) fail();
  if (opts.above !== undefined && !(n > opts.above)) fail();
  if (opts.below !== undefined && !(n < opts.below)) fail();
  return n;
}

/** {@link parseNumberFlag} for integers. */
export function parseIntFlag(
  name: string,
  value: string | number | boolean | undefined,
  opts: Omit<NumberFlagOptions, "integer"> = {},
): number | undefined {
  return parseNumberFlag(name, value, { ...opts, integer: true });
}

/** Like {@link parseNumberFlag} but the flag must be given (or have a default). */
export function requireNumberFlag(
  name: string,
  value: string | number | boolean | undefined,
  opts: NumberFlagOptions = {},
): number {
  const n = parseNumberFlag(name, value, opts);
  if (n === undefined) throw new FlagError(name, `--${name} is required (${describeFlag(opts)})`);
  return n;
}

/** Specs of numeric flags, by flag name. */
export type FlagSpecs = Readonly<Record<string, NumberFlagOptions>>;

const INT1: NumberFlagOptions = { integer: true, min: 1 };
const INT0: NumberFlagOptions = { integer: true, min: 0 };
const UNIT: NumberFlagOptions = { min: 0, max: 1 };

/**
 * The numeric flags of `train`, `eval` and `sequence` (the train flag set) and what each accepts.
 * Flags not listed here are not numeric.
 */
export const TRAIN_FLAG_SPECS: FlagSpecs = {
  "batch-size": { integer: true, min: 1, max: 1 << 16 },
  "batch-size-eval": { integer: true, min: 1, max: 1 << 16 },
  "lr": { positive: true },
  "wd": { min: 0 },
  "ls": { min: 0, below: 1 },
  "warmup-length": INT0,
  "beta2": { min: 0, below: 1 },
  "seed": { integer: true, min: 0, max: 2 ** 32 - 1 },
  "epochs": INT1,
  "iterations": INT1,
  "eval-interval": INT1,
  "loss-interval": INT1,
  "eval-limit": INT1,
  "save-interval": INT0,
  "we-wise-alpha": UNIT,
  "avg-freq": INT1,
  "mv-avg-decay": UNIT,
  "l2": { min: 0 },
  "ref-wise-alpha": UNIT,
  "ref-sentences-limit": INT1,
  "T": { positive: true },
  "num": INT1,
  "memory-size": INT0,
  "icarl-candidates": INT1,
  "wise-ft-alpha": UNIT,
  "alpha": UNIT,
  "lora-r": INT1,
  "lora-alpha": { positive: true },
  "lora-dropout": { min: 0, below: 1 },
  "orthogonal-gradients": INT0,
  "ogd-energy": { above: 0, max: 1 },
  "workers": { integer: true, min: 0, max: 256 },
  "start-iteration": INT0,
  "accum-steps": INT1,
  "threads": { integer: true, min: 1, max: 1024 },
  "max-evaluation-size": INT1,
  "n-class": INT1,
};

/**
 * Check every numeric flag of `values` (as `parseArgs` returns them) against `specs`; throws a
 * {@link FlagError} for the first bad one. Flags absent from `values` are skipped.
 */
export function validateFlags(
  values: Readonly<Record<string, unknown>>,
  specs: FlagSpecs,
): void {
  for (const [name, spec] of Object.entries(specs)) {
    if (!Object.hasOwn(values, name)) continue;
    parseNumberFlag(name, values[name] as string | boolean | undefined, spec);
  }
}

/**
 * Check the numeric flags of the train flag set ({@link TRAIN_FLAG_SPECS}); call it right after
 * parsing, before any model or data is loaded.
 */
export function validateTrainFlags(values: Readonly<Record<string, unknown>>): void {
  validateFlags(values, TRAIN_FLAG_SPECS);
  if (values.iterations !== undefined && values.epochs !== undefined) {
    throw new FlagError("iterations", "give either --iterations or --epochs, not both");
  }
}

/** Whether an error is the user's (a bad flag, a bad argument) rather than the program's. */
export function isUserError(e: unknown): boolean {
  if (e instanceof FlagError) return true;
  // node:util parseArgs errors: unknown option, missing value, unexpected positional.
  const code = (e as { code?: unknown })?.code;
  return typeof code === "string" && code.startsWith("ERR_PARSE_ARGS");
}

/** Exit code of {@link runMain} for user errors (bad flags), as `getopt` tools use. */
export const EXIT_USAGE = 2;

/**
 * Run an entry point's `main`: an error prints `error: <message>` on one line (the stack only
 * with `MTIL_DEBUG=1`) and exits {@link EXIT_USAGE} for user errors, 1 otherwise. A numeric
 * result is used as the exit code.
 *
 * @example
 * ```ts ignore
 * if (import.meta.main) await runMain(() => main(Deno.args));
 * ```
 */
export async function runMain(fn: () => unknown | Promise<unknown>): Promise<void> {
  let code = 0;
  try {
    const r = await fn();
    if (typeof r === "number") code = r;
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    console.error(`error: ${msg}`);
    if (Deno.env.get("MTIL_DEBUG") && e instanceof Error && e.stack) console.error(e.stack);
    code = isUserError(e) ? EXIT_USAGE : 1;
  }
  Deno.exit(code);
}
