/**
 * CIFAR-10 / CIFAR-100 from torchvision's python-pickle layout under the data root; class names
 * from the dataset's meta file with `_`→space, the 18 CIFAR templates.
 *
 * @module
 */
import { CIFAR_LAYOUT, type CifarDataset, type CifarVariant, readCifar } from "../cifar.ts";
import { type FamilyOptions, requirePaths, templatesFor, underlineToSpace } from "./common.ts";

/** Load CIFAR10 or CIFAR100. */
export async function loadCifarFamily(
  variant: CifarVariant,
  opts: FamilyOptions,
): Promise<CifarDataset> {
  const lay = CIFAR_LAYOUT[variant];
  const base = `${opts.root}/${lay.folder}`;
  await requirePaths(variant, opts.root, [
    `${base}/${lay.meta}`,
    ...(opts.split === "train" ? lay.train : lay.test).map((f) => `${base}/${f}`),
  ], false);
  return readCifar(opts.root, variant, opts.split, {
    name: variant,
    templates: templatesFor("CIFAR"),
    mapNames: underlineToSpace,
  });
}
