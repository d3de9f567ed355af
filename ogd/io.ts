/**
 * Saving and loading OGD bases and raw gradient snapshots as safetensors (the project's tensor
 * format), and reading the reference's PyTorch basis files (`grad_<Dataset>.pth`, a dict of
 * parameter name → [k × d] tensor).
 *
 * File layout (ours): one float32 tensor per parameter, shape [rows × numel]; `__metadata__.mtil`
 * holds `{"format": "mtil-ogd", "kind": "basis" | "snapshots", "shapes": {name: shape},
 * "blocks": {name: [rows of task 1, rows of task 2, …]}, "energy", …}`. A basis file stacks the
 * tasks' bases without re-orthonormalising (so both projection modes stay possible).
 *
 * @module
 */
import { readCheckpoint } from "../clip/formats/checkpoint.ts";
import { readSafetensors, writeFileAtomic, writeSafetensors } from "../clip/formats/safetensors.ts";
import type { StateDict } from "../clip/formats/state_dict.ts";
import { type Basis, stackBases } from "./basis.ts";
import { type Snapshots, snapshotsToBases } from "./track.ts";

/** The `format` tag of our OGD files. */
export const OGD_FORMAT = "mtil-ogd";

/** What {@linkcode loadBases} returns. */
export interface BasisFile {
  /** What the file held: bases, or raw snapshots (then converted at the given energy). */
  kind: "basis" | "snapshots" | "torch-basis";
  /** Per parameter, the per-task bases, oldest first (one block when the file has no block info). */
  bases: Map<string, Basis[]>;
  /** Parameter shapes where known. */
  shapes: Map<string, number[]>;
  /** The file's metadata. */
  meta: Record<string, unknown>;
}

function toF32(b: Basis): Float32Array {
  return Float32Array.from(b.data.subarray(0, b.rows * b.dim));
}

/**
 * Save per-parameter bases (one basis, or the per-task list, oldest first) to `path` atomically.
 * `shapes` records each parameter's shape; `meta` is stored beside.
 */
export async function saveBases(
  path: string,
  bases: Map<string, Basis | Basis[]>,
  opts: { shapes?: Map<string, number[]>; meta?: Record<string, unknown> } = {},
): Promise<void> {
  const sd: StateDict = new Map();
  const blocks: Record<string, number[]> = {};
  const shapes: Record<string, number[]> = {};
  for (const [name, value] of bases) {
    const list = Array.isArray(value) ? value : [value];
    const stacked = stackBases(list);
    sd.set(name, { shape: [stacked.rows, stacked.dim], dtype: "float32", data: toF32(stacked) });
    blocks[name] = list.map((b) => b.rows);
    shapes[name] = opts.shapes?.get(name) ?? [stacked.dim];
  }
  const meta = { ...opts.meta, format: OGD_FORMAT, kind: "basis", blocks, shapes };
  await writeFileAtomic(path, writeSafetensors(sd, meta));
}

/** Save raw gradient snapshots (to resume a task, or to convert later) to `path` atomically. */
export async function saveSnapshots(
  path: string,
  snaps: Map<string, Snapshots>,
  meta: Record<string, unknown> = {},
): Promise<void> {
  const sd: StateDict = new Map();
  const shapes: Record<string, number[]> = {};
  for (const [name, s] of snaps) {
    sd.set(name, { shape: [s.k, s.dim], dtype: "float32", data: s.data });
    shapes[name] = s.shape;
  }
  await writeFileAtomic(
    path,
    writeSafetensors(sd, { ...meta, format: OGD_FORMAT, kind: "snapshots", shapes }),
  );
}

function isTorchFile(head: Uint8Array): boolean {
  // zip ("PK\x03\x04", torch ≥ 1.6) or a raw pickle (protocol 2+: 0x80)
  return (head[0] === 0x50 && head[1] === 0x4b) || head[0] === 0x80;
}

function parseMeta(metadata: Record<string, string>, path: string): Record<string, unknown> {
  if (!metadata.mtil) return {};
  try {
    const m = JSON.parse(metadata.mtil);
    return typeof m === "object" && m !== null ? m : {};
  } catch (e) {
    throw new Error(`${path}: bad OGD metadata JSON (${(e as Error).message})`);
  }
}

function tensor2d(name: string, shape: number[], path: string): [number, number] {
  if (shape.length !== 2) {
    throw new Error(
      `${path}: "${name}" has shape [${shape}], expected [rows, numel] (a basis or snapshot matrix)`,
    );
  }
  return [shape[0], shape[1]];
}

/** Read raw snapshots saved by {@linkcode saveSnapshots}. */
export async function loadSnapshots(path: string): Promise<Map<string, Snapshots>> {
  const { stateDict, metadata } = readSafetensors(await Deno.readFile(path), path);
  const meta = parseMeta(metadata, path);
  if (meta.kind !== "snapshots") {
    throw new Error(`${path}: not an OGD snapshot file (kind ${JSON.stringify(meta.kind)})`);
  }
  const shapes = (meta.shapes ?? {}) as Record<string, number[]>;
  const out = new Map<string, Snapshots>();
  for (const [name, t] of stateDict) {
    const [k, dim] = tensor2d(name, t.shape, path);
    out.set(name, { k, dim, shape: shapes[name] ?? [dim], data: Float32Array.from(t.data) });
  }
  return out;
}

/**
 * Load a basis file: ours (bases, or raw snapshots converted at `energy`, default 0.97) or the
 * reference's PyTorch `grad_<Dataset>.pth` (dict name → [k × d] basis). Errors name the file.
 */
export async function loadBases(path: string, opts: { energy?: number } = {}): Promise<BasisFile> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    throw new Error(`${path}: cannot read OGD basis file (${(e as Error).message})`);
  }
  if (isTorchFile(bytes.subarray(0, 4))) return await loadTorchBases(path);
  const { stateDict, metadata } = readSafetensors(bytes, path);
  const meta = parseMeta(metadata, path);
  const shapes = new Map(Object.entries((meta.shapes ?? {}) as Record<string, number[]>));
  if (meta.kind === "snapshots") {
    const snaps = new Map<string, Snapshots>();
    for (const [name, t] of stateDict) {
      const [k, dim] = tensor2d(name, t.shape, path);
      snaps.set(name, { k, dim, shape: shapes.get(name) ?? [dim], data: t.data as Float32Array });
    }
    const bases = new Map<string, Basis[]>();
    for (const [name, b] of snapshotsToBases(snaps, opts.energy ?? 0.97)) bases.set(name, [b]);
    return { kind: "snapshots", bases, shapes, meta };
  }
  const blocks = (meta.blocks ?? {}) as Record<string, number[]>;
  const bases = new Map<string, Basis[]>();
  for (const [name, t] of stateDict) {
    const [rows, dim] = tensor2d(name, t.shape, path);
    const data = Float64Array.from(t.data);
    const sizes = blocks[name] ?? [rows];
    if (sizes.reduce((s, x) => s + x, 0) !== rows) {
      throw new Error(
        `${path}: "${name}" has ${rows} rows but its blocks say ${JSON.stringify(sizes)}`,
      );
    }
    let o = 0;
    bases.set(
      name,
      sizes.map((r) => {
        const b = { rows: r, dim, data: data.slice(o * dim, (o + r) * dim) };
        o += r;
        return b;
      }),
    );
  }
  return { kind: "basis", bases, shapes, meta };
}

async function loadTorchBases(path: string): Promise<BasisFile> {
  let sd: StateDict;
  try {
    sd = (await readCheckpoint(path)).stateDict;
  } catch (e) {
    throw new Error(
      `${path}: cannot read it as a PyTorch basis file (a dict of parameter name → [k, d] tensor; ` +
        `raw snapshot lists from an interrupted Python run are not supported: finish the task or ` +
        `convert with the Python code first): ${(e as Error).message}`,
    );
  }
  const bases = new Map<string, Basis[]>();
  for (const [name, t] of sd) {
    const [rows, dim] = tensor2d(name, t.shape, path);
    bases.set(name, [{ rows, dim, data: Float64Array.from(t.data) }]);
  }
  return { kind: "torch-basis", bases, shapes: new Map(), meta: { source: "torch" } };
}

/**
 * Merge several basis files (e.g. the `--orthogonal-gradients-path` list of previous tasks) into
 * one per-parameter list of blocks, oldest first.
 */
export function mergeBasisFiles(files: readonly BasisFile[]): Map<string, Basis[]> {
  const out = new Map<string, Basis[]>();
  for (const f of files) {
    for (const [name, list] of f.bases) out.set(name, [...(out.get(name) ?? []), ...list]);
  }
  return out;
}
