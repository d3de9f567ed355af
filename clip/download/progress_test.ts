import { equal, ok } from "node:assert/strict";
import { formatBytes, formatDuration, ProgressBar } from "./progress.ts";

function fakeClock() {
  let t = 0;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

Deno.test("formatBytes / formatDuration", () => {
  equal(formatBytes(512), "512 B");
  equal(formatBytes(1536), "1.50 KiB");
  equal(formatBytes(350 * 1024 * 1024), "350 MiB");
  equal(formatDuration(65), "1:05");
  equal(formatDuration(3725), "1:02:05");
  equal(formatDuration(Infinity), "?");
});

Deno.test("ProgressBar: bytes mode shows size, rate and ETA; TTY redraws are throttled", () => {
  const out: string[] = [];
  const clock = fakeClock();
  const bar = new ProgressBar({
    total: 4 * 1024 * 1024,
    label: "ViT-B-16.pt",
    unit: "B",
    write: (s) => out.push(s),
    isTTY: true,
    now: clock.now,
  });
  clock.advance(1000);
  bar.tick(1024 * 1024);
  equal(out.length, 1);
  equal(
    out[0],
    "\rViT-B-16.pt   25% [#####...............]  1.00 MiB/4.00 MiB  1.00 MiB/s  ETA 0:03",
  );
  for (let i = 0; i < 50; i++) {
    clock.advance(1);
    bar.tick(1);
  }
  equal(out.length, 1); // throttled: < 100 ms since the last draw
  clock.advance(200);
  bar.tick(0);
  equal(out.length, 2);
  bar.done();
  ok(out.at(-1)!.endsWith("\n"));
});

Deno.test("ProgressBar: count mode with fields; non-TTY prints occasional lines", () => {
  const out: string[] = [];
  const clock = fakeClock();
  const bar = new ProgressBar({
    total: 100,
    label: "epoch 1",
    write: (s) => out.push(s),
    isTTY: false,
    now: clock.now,
  });
  for (let i = 0; i < 100; i++) {
    clock.advance(500);
    bar.tick(1, { loss: 1 / (i + 1) });
  }
  equal(out.length, 5); // one line per 10 s of 50 s
  equal(out[0], "epoch 1   20% [####................]  20/100  2.00 it/s  ETA 0:40  loss=0.05\n");
  bar.done();
  equal(out.length, 6);
  ok(out[5].startsWith("epoch 1  100% [####################]  100/100  2.00 it/s  in 0:50"));
  const silent = new ProgressBar({ total: 1, silent: true, write: () => out.push("x") });
  silent.tick();
  silent.done();
  equal(out.length, 6);
});
