/**
 * MNIST and Fashion-MNIST in torchvision's layout: `<root>/MNIST/raw/` and
 * `<root>/FashionMNIST/raw/` holding the four IDX files, plain or `.gz`. Fashion-MNIST also falls
 * back to Debian's `dataset-fashion-mnist` (`/usr/share/datasets/fashion-mnist/`).
 *
 * @module
 */
import { IdxImageDataset, readIdx } from "../idx.ts";
import {
  classnamesFor,
  DatasetNotFoundError,
  exists,
  type FamilyOptions,
  howToGet,
  templatesFor,
  underlineToSpace,
} from "./common.ts";

/** Where Debian's `dataset-fashion-mnist` package installs the IDX files. */
export const DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist";

const FILES = {
  train: ["train-images-idx3-ubyte", "train-labels-idx1-ubyte"],
  test: ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"],
} as const;

async function findIdx(dirs: string[], base: string): Promise<string | null> {
  for (const d of dirs) {
    for (const p of [`${d}/${base}`, `${d}/${base}.gz`]) if (await exists(p)) return p;
  }
  return null;
}

/** Load an MNIST-layout dataset from the first of `dirs` that holds the split's files. */
export async function loadMnistLayout(
  name: string,
  dirs: string[],
  opts: FamilyOptions,
  classnames: string[],
  templates: string[],
): Promise<IdxImageDataset> {
  const [imBase, lbBase] = FILES[opts.split];
  const im = await findIdx(dirs, imBase);
  const lb = await findIdx(dirs, lbBase);
  if (!im || !lb) {
    throw new DatasetNotFoundError(
      name,
      `${dirs[0]}/${im ? lbBase : imBase}[.gz]`,
      howToGet(name, opts.root, false),
    );
  }
  const images = await readIdx(im);
  const labels = await readIdx(lb);
  return new IdxImageDataset(images, labels, {
    name,
    split: opts.split,
    classnames,
    templates,
    source: im,
  });
}

/** MNIST: names `"0 - zero"` … (torchvision's classes after `_`→space), template `a photo of the number: "{}".`. */
export function loadMNIST(opts: FamilyOptions): Promise<IdxImageDataset> {
  return loadMnistLayout(
    "MNIST",
    [`${opts.root}/MNIST/raw`],
    opts,
    classnamesFor("MNIST").map(underlineToSpace),
    templatesFor("MNIST"),
  );
}

/**
 * Fashion-MNIST (not in the reference benchmark): torchvision's class names, the simple template.
 * Looks in `<root>/FashionMNIST/raw`, then in {@linkcode DEBIAN_FASHION_MNIST}.
 */
export async function loadFashionMNIST(opts: FamilyOptions): Promise<IdxImageDataset> {
  const own = `${opts.root}/FashionMNIST/raw`;
  const dirs = (await exists(own)) ? [own] : [own, DEBIAN_FASHION_MNIST];
  return loadMnistLayout(
    "FashionMNIST",
    dirs,
    opts,
    classnamesFor("FashionMNIST").map(underlineToSpace),
    templatesFor("simple"),
  );
}
