import { assert, assertEquals } from "../datasets/_testing.ts";
import { main, MTIL_DATASETS } from "./download.ts";

async function capture(
  fn: () => Promise<number>,
): Promise<{ rc: number; out: string; err: string }> {
  const log = console.log, error = console.error;
  let out = "", err = "";
  console.log = (...a: unknown[]) => (out += a.join(" ") + "\n");
  console.error = (...a: unknown[]) => (err += a.join(" ") + "\n");
  try {
    return { rc: await fn(), out, err };
  } finally {
    console.log = log;
    console.error = error;
  }
}

Deno.test("download CLI: --list, unknown names, manual steps", async () => {
  const list = await capture(() => main(["--list"]));
  assertEquals(list.rc, 0);
  assert(/^CIFAR10\s+auto/m.test(list.out) && /^ImageNet\s+manual/m.test(list.out), list.out);
  const bad = await capture(() => main(["cifar10"]));
  assertEquals(bad.rc, 1);
  assert(bad.err.includes("unknown dataset(s): cifar10"), bad.err);
  const none = await capture(() => main([]));
  assertEquals(none.rc, 1);
  const root = await Deno.makeTempDir();
  const man = await capture(() => main(["ObjectNet", "StanfordCars", "--root", root]));
  assertEquals(man.rc, 0);
  assert(
    man.out.includes("## ObjectNet") && man.out.includes(`${root}/objectnet-1.0/images`),
    man.out,
  );
  assert(man.out.includes(`${root}/stanford_cars/devkit/cars_meta.mat`), man.out);
  await Deno.remove(root, { recursive: true });
  assertEquals(MTIL_DATASETS.length, 11);
});
