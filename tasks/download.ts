/**
 * `deno task download DATASET... [--root ./data] [--force] [--keep-archives]`
 *
 * Downloads, verifies and unpacks datasets into the layout `loadDataset` reads; prints the manual
 * steps for datasets without a public download (ImageNet, StanfordCars, ObjectNet,
 * ImageNetSketch, conceptual_captions). `mtil` stands for the eleven MTIL datasets; `--list`
 * shows every name and whether it downloads automatically. Exit status: 0 when every requested
 * dataset is ready or its manual steps were printed, 1 on errors.
 *
 * @module
 */
import { parseArgs } from "./cli.ts";
import { downloadDataset } from "../datasets/download.ts";
import { DATASET_NAMES } from "../datasets/registry.ts";
import { isAutoDownload, SOURCES } from "../datasets/sources.ts";

/** The MTIL benchmark's eleven datasets (order I). */
export const MTIL_DATASETS: readonly string[] = [
  "Aircraft",
  "Caltech101",
  "CIFAR100",
  "DTD",
  "EuroSAT",
  "Flowers",
  "Food",
  "MNIST",
  "OxfordPet",
  "StanfordCars",
  "SUN397",
];

const USAGE =
  `usage: deno task download DATASET... [--root DIR] [--force] [--keep-archives] [--list]
  DATASET        a registry name (case-sensitive), or "mtil" for the eleven MTIL datasets
  --root DIR     data root (default ./data, the reference's --data-location)
  --force        replace an existing dataset folder
  --keep-archives  keep the downloaded archives under DIR/.downloads
  --list         list the datasets and how each is obtained`;

/** Run the CLI with `args`; returns the exit status. */
export async function main(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        root: { type: "string", default: "./data" },
        force: { type: "boolean", default: false },
        "keep-archives": { type: "boolean", default: false },
        list: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (e) {
    console.error(`${(e as Error).message}\n${USAGE}`);
    return 1;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (values.list) {
    for (const n of DATASET_NAMES) {
      const s = SOURCES[n];
      console.log(`${n.padEnd(20)} ${isAutoDownload(n) ? "auto  " : "manual"} ${s?.size ?? ""}`);
    }
    return 0;
  }
  if (!positionals.length) {
    console.error(USAGE);
    return 1;
  }
  const names = positionals.flatMap((p) => (p === "mtil" ? [...MTIL_DATASETS] : [p]));
  const unknown = names.filter((n) => !DATASET_NAMES.includes(n));
  if (unknown.length) {
    console.error(`unknown dataset(s): ${unknown.join(", ")}\nknown: ${DATASET_NAMES.join(", ")}`);
    return 1;
  }
  let failed = 0;
  const manual: string[] = [];
  for (const name of [...new Set(names)]) {
    try {
      const r = await downloadDataset(name, {
        root: values.root,
        force: values.force,
        keepArchives: values["keep-archives"],
      });
      if (r.status === "manual") manual.push(`## ${name}\n\n${r.manual}\n`);
    } catch (e) {
      failed++;
      console.error(`${name}: FAILED: ${(e as Error).message}`);
      const steps = SOURCES[name]?.manual;
      if (steps) console.error(`manual alternative:\n${steps.replaceAll("{root}", values.root)}`);
    }
  }
  if (manual.length) {
    console.log(
      `These datasets must be downloaded by hand (see also datasets.md):\n\n${manual.join("\n")}`,
    );
  }
  return failed ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
