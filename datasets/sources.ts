/**
 * Where each dataset comes from: the public files torchvision (or the dataset's authors) still
 * serve, with their checksums and how each unpacks into the layout the readers expect; or, where
 * no automatic download is possible, the manual steps (also in `datasets.md`).
 *
 * @module
 */
import type { ArchiveKind } from "./archive.ts";

/** One file of a dataset download. */
export interface SourceFile {
  /** URL. */
  url: string;
  /** Local file name of the download. */
  fileName: string;
  /** Expected md5 (hex), as torchvision pins it. */
  md5?: string;
  /** Expected sha256 (hex). */
  sha256?: string;
  /**
   * How the file lands in the dataset folder: `kind` `"none"` copies it as is; otherwise it is
   * extracted, the archive's top folder `strip` (if given) removed, and the result placed under
   * `into` (relative to the dataset folder). `inner` names an archive inside the extracted tree
   * to extract instead (Caltech101's zip holds a tar.gz).
   */
  extract: {
    kind: ArchiveKind | "none";
    strip?: string;
    into?: string;
    inner?: { path: string; kind: ArchiveKind; strip?: string };
  };
}

/** How to obtain one dataset. */
export interface DatasetSource {
  /** Dataset folder under the data root (what the readers open). */
  home: string;
  /** Files to download (absent for manual-only datasets). */
  files?: SourceFile[];
  /** Markdown steps for a manual download (`{root}` stands for the data root). */
  manual?: string;
  /** Approximate download size, for messages. */
  size?: string;
}

const TV_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist";
const TV_FMNIST = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com";
const idx = (base: string, md5s: Record<string, string>): SourceFile[] =>
  Object.entries(md5s).map(([f, md5]) => ({
    url: `${base}/${f}`,
    fileName: f,
    md5,
    extract: { kind: "none", into: "raw" },
  }));

const IMAGENET_MANUAL = `ImageNet (ILSVRC-2012) needs an account at https://image-net.org (download
"Training images (Task 1 & 2)" and "Validation images (all tasks)"). Lay it out as ImageFolders:

\`\`\`
{root}/ImageNet/train/<wnid>/*.JPEG      # 1000 folders, from ILSVRC2012_img_train.tar (one tar per class inside)
{root}/ImageNet/val/<wnid>/*.JPEG        # 1000 folders (or val_in_folder/), 50 images each
\`\`\`

The validation tar is flat: sort its images into class folders, e.g. with the widely used
\`valprep.sh\` script, or torchvision's \`ImageNet(root, split="val")\` once. ImageNetSM and
ImageNetSUB read \`{root}/ImageNet/train\`.`;

/** Download sources and manual steps of every registry dataset. */
export const SOURCES: Record<string, DatasetSource> = {
  MNIST: {
    home: "MNIST",
    size: "12 MB",
    files: idx(TV_MNIST, {
      "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
      "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
      "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
      "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    }),
  },
  FashionMNIST: {
    home: "FashionMNIST",
    size: "30 MB",
    files: idx(TV_FMNIST, {
      "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
      "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
      "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
      "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    }),
  },
  CIFAR10: {
    home: "cifar-10-batches-py",
    size: "163 MB",
    files: [{
      url: "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
      fileName: "cifar-10-python.tar.gz",
      md5: "c58f30108f718f92721af3b95e74349a",
      extract: { kind: "tar.gz", strip: "cifar-10-batches-py" },
    }],
  },
  CIFAR100: {
    home: "cifar-100-python",
    size: "161 MB",
    files: [{
      url: "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
      fileName: "cifar-100-python.tar.gz",
      md5: "eb9058c3a382ffc7106e4002c42a8d85",
      extract: { kind: "tar.gz", strip: "cifar-100-python" },
    }],
  },
  DTD: {
    home: "dtd",
    size: "597 MB",
    files: [{
      url: "https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz",
      fileName: "dtd-r1.0.1.tar.gz",
      md5: "fff73e5086ae6bdbea199a49dfb8a4c1",
      extract: { kind: "tar.gz" }, // top folder dtd/ -> {root}/dtd/dtd (torchvision's layout)
    }],
  },
  Flowers: {
    home: "flowers-102",
    size: "329 MB",
    files: [
      {
        url: "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/102flowers.tgz",
        fileName: "102flowers.tgz",
        md5: "52808999861908f626f3c1f4e79d11fa",
        extract: { kind: "tar.gz" }, // jpg/
      },
      {
        url: "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/imagelabels.mat",
        fileName: "imagelabels.mat",
        md5: "e0620be6f572b9609742df49c70aed4d",
        extract: { kind: "none" },
      },
      {
        url: "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/setid.mat",
        fileName: "setid.mat",
        md5: "a5357ecc9cb78c4bef273ce3793fc85c",
        extract: { kind: "none" },
      },
    ],
  },
  Food: {
    home: "food-101",
    size: "5.0 GB",
    files: [{
      url: "http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz",
      fileName: "food-101.tar.gz",
      md5: "85eeb15f3717b99a5da872d97d918f87",
      extract: { kind: "tar.gz", strip: "food-101" },
    }],
  },
  OxfordPet: {
    home: "oxford-iiit-pet",
    size: "792 MB",
    files: [
      {
        url: "https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz",
        fileName: "images.tar.gz",
        md5: "5c4f3ee8e5d25df40f4fd59a7f44e54c",
        extract: { kind: "tar.gz" }, // images/
      },
      {
        url: "https://www.robots.ox.ac.uk/~vgg/data/pets/data/annotations.tar.gz",
        fileName: "annotations.tar.gz",
        md5: "95a8c909bbe2e81eed6a22bccdf3f68f",
        extract: { kind: "tar.gz" }, // annotations/
      },
    ],
  },
  Aircraft: {
    home: "fgvc-aircraft-2013b",
    size: "2.6 GB",
    files: [{
      // torchvision pins no checksum for this archive.
      url:
        "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz",
      fileName: "fgvc-aircraft-2013b.tar.gz",
      extract: { kind: "tar.gz", strip: "fgvc-aircraft-2013b" },
    }],
  },
  EuroSAT: {
    home: "eurosat",
    size: "94 MB",
    files: [{
      url:
        "https://huggingface.co/datasets/torchgeo/eurosat/resolve/c877bcd43f099cd0196738f714544e355477f3fd/EuroSAT.zip",
      fileName: "EuroSAT.zip",
      md5: "c8fa014336c82ac7804f0398fcb19387",
      extract: { kind: "zip" }, // 2750/
    }],
  },
  Caltech101: {
    home: "caltech101",
    size: "137 MB",
    files: [{
      url: "https://data.caltech.edu/records/mzrjq-6wc02/files/caltech-101.zip",
      fileName: "caltech-101.zip",
      md5: "3138e1922a9193bfa496528edbbc45d0",
      extract: {
        kind: "zip",
        inner: { path: "caltech-101/101_ObjectCategories.tar.gz", kind: "tar.gz" }, // 101_ObjectCategories/
      },
    }],
  },
  SUN397: {
    home: "SUN397",
    size: "37 GB",
    files: [{
      url: "http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz",
      fileName: "SUN397.tar.gz",
      md5: "8ca2778205c41d23104230ba66911c7a",
      extract: { kind: "tar.gz", strip: "SUN397" },
    }],
    manual: `If the Princeton server is unreachable, get \`SUN397.tar.gz\` (md5
8ca2778205c41d23104230ba66911c7a) from a mirror and extract it so that
\`{root}/SUN397/ClassName.txt\` and \`{root}/SUN397/a/abbey/sun_*.jpg\` exist.`,
  },
  StanfordCars: {
    home: "stanford_cars",
    size: "1.9 GB",
    manual: `The original Stanford URLs are gone (torchvision no longer downloads it). Get the
three archives of the original release (e.g. from the Kaggle mirror "jessicali9530/stanford-cars-dataset"
plus the devkit \`car_devkit.tgz\` and \`cars_test_annos_withlabels.mat\`) and arrange:

\`\`\`
{root}/stanford_cars/cars_train/*.jpg                      # cars_train.tgz
{root}/stanford_cars/cars_test/*.jpg                       # cars_test.tgz
{root}/stanford_cars/devkit/cars_meta.mat                  # car_devkit.tgz
{root}/stanford_cars/devkit/cars_train_annos.mat
{root}/stanford_cars/cars_test_annos_withlabels.mat
\`\`\``,
  },
  ImageNet: { home: "ImageNet", size: "150 GB", manual: IMAGENET_MANUAL },
  ImageNetSM: { home: "ImageNet", manual: IMAGENET_MANUAL },
  ImageNetSUB: { home: "ImageNet", manual: IMAGENET_MANUAL },
  ImageNetA: {
    home: "imagenet-a",
    size: "687 MB",
    files: [{
      url: "https://people.eecs.berkeley.edu/~hendrycks/imagenet-a.tar",
      fileName: "imagenet-a.tar",
      extract: { kind: "tar", strip: "imagenet-a" },
    }],
  },
  ImageNetR: {
    home: "imagenet-r",
    size: "2.1 GB",
    files: [{
      url: "https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar",
      fileName: "imagenet-r.tar",
      extract: { kind: "tar", strip: "imagenet-r" },
    }],
  },
  ImageNetV2: {
    home: "ImageNetV2-matched-frequency",
    size: "1.2 GB",
    files: [{
      url:
        "https://huggingface.co/datasets/vaishaal/ImageNetV2/resolve/main/imagenetv2-matched-frequency.tar.gz",
      fileName: "imagenetv2-matched-frequency.tar.gz",
      extract: { kind: "tar.gz", strip: "imagenetv2-matched-frequency-format-val" },
    }],
  },
  ImageNetSketch: {
    home: "sketch",
    size: "8.4 GB",
    manual: `ImageNet-Sketch is shared through Google Drive / Kaggle only
(https://github.com/HaohanWang/ImageNet-Sketch: \`ImageNet-Sketch.zip\`, or Kaggle
"wanghaohan/imagenetsketch"). Unzip it so that the 1000 class folders are at
\`{root}/sketch/<wnid>/*.JPEG\` (the zip's top folder is \`sketch/\`).`,
  },
  ObjectNet: {
    home: "objectnet-1.0",
    size: "184 GB",
    manual: `ObjectNet requires accepting its license at https://objectnet.dev (the zip is
password-protected; the password is on the download page). Download \`objectnet-1.0.zip\` and unzip it
so that \`{root}/objectnet-1.0/images/<class_folder>/*.png\` exist. Only the 113 classes that overlap
ImageNet are used; the reference crops a 2-pixel border from every image before preprocessing.`,
  },
  conceptual_captions: {
    home: ".",
    manual: `Download \`Validation_GCC-1.1.0-Validation.tsv\` from
https://ai.google.com/research/ConceptualCaptions/download (free Google sign-in). ZSCL only needs
the captions: either place that file at \`{root}/Validation_GCC-1.1.0-Validation.tsv\`, or build the
reference's \`{root}/Validation_GCC-1.1.0-Validation_output.csv\` (tab-separated, columns
\`filepath\` and \`title\`) with img2dataset as in open_clip's CC3M recipe.`,
  },
};

/** Whether a dataset can be downloaded automatically. */
export function isAutoDownload(name: string): boolean {
  return (SOURCES[name]?.files?.length ?? 0) > 0;
}

/** The manual steps for a dataset with `{root}` filled in, or null when it has none. */
export function manualSteps(name: string, root = "./data"): string | null {
  const m = SOURCES[name]?.manual;
  return m ? m.replaceAll("{root}", root) : null;
}
