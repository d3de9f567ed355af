/**
 * `deno task convert-grad-to-basis --input F --output F [--energy 0.97] [--orthonormalize]`
 *
 * Turns an OGD file into a basis file in the project's format (safetensors): raw gradient
 * snapshots become per-parameter bases (top right singular vectors reaching `--energy`, exact);
 * a basis file (ours or the reference's PyTorch `grad_<Dataset>.pth`) is re-saved, optionally with
 * every parameter's stacked basis re-orthonormalised into one block.
 *
 * @module
 */
import { requireNumberFlag } from "../methods/flags.ts";
import { parseArgs } from "./cli.ts";
import { type Basis, orthonormalityError, orthonormalizeRows, stackBases } from "../ogd/basis.ts";
import { loadBases, saveBases } from "../ogd/io.ts";

const USAGE =
  `usage: deno task convert-grad-to-basis --input FILE --output FILE [--energy 0.97] [--orthonormalize]

  --input FILE       raw snapshots or a basis (ours, safetensors; or the reference's grad_<Dataset>.pth)
  --output FILE      basis file to write (safetensors)
  --energy E         energy threshold for snapshots, in (0, 1] (default 0.97)
  --orthonormalize   merge each parameter's per-task blocks into one orthonormal basis
`;

/** Entry point (exported for tests); returns the process exit code. */
export async function main(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        input: { type: "string" },
        output: { type: "string" },
        energy: { type: "string", default: "0.97" },
        orthonormalize: { type: "boolean", default: false },
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
  if (!values.input || !values.output) {
    console.error(`--input and --output are required\n\n${USAGE}`);
    return 2;
  }
  let energy: number;
  try {
    energy = requireNumberFlag("energy", values.energy, { above: 0, max: 1 });
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    return 2;
  }
  const file = await loadBases(values.input, { energy });
  const out = new Map<string, Basis[]>();
  let worst = 0;
  for (const [name, blocks] of file.bases) {
    const use = values.orthonormalize ? [orthonormalizeRows(stackBases(blocks))] : blocks;
    out.set(name, use);
    for (const b of use) worst = Math.max(worst, orthonormalityError(b));
    console.log(
      `${name}: ${use.map((b) => b.rows).join("+")} vector(s) of ${blocks[0]?.dim ?? 0} elements`,
    );
  }
  await saveBases(values.output, out, {
    shapes: file.shapes,
    meta: { ...file.meta, source: values.input, convertedFrom: file.kind, energy },
  });
  console.log(
    `wrote ${out.size} parameter basis/bases to ${values.output} (from ${file.kind}; ` +
      `max orthonormality error within a block ${worst.toExponential(2)})`,
  );
  return 0;
}

if (import.meta.main) {
  try {
    Deno.exit(await main(Deno.args));
  } catch (e) {
    console.error(`convert-grad-to-basis: ${(e as Error).message}`);
    Deno.exit(1);
  }
}
