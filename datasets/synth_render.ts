/**
 * A tiny anti-aliased rasteriser for SynthMTIL: textured neutral-grey backgrounds and filled
 * shapes given by signed distance functions, drawn straight into an RGB `Uint8Array`.
 * Anti-aliasing uses the signed distance at the pixel centre: coverage = clamp(0.5 − d, 0, 1),
 * which is exact for straight edges and close for curves at these sizes.
 *
 * @module
 */
import { hashSeed } from "./rng.ts";

/** Shapes the rasteriser can draw. */
export type ShapeKind =
  | "circle"
  | "square"
  | "triangle"
  | "cross"
  | "star"
  | "ring"
  | "heart"
  | "moon"
  | "arrow"
  | "diamond";

/** Background patterns the rasteriser can draw. */
export type TextureKind =
  | "plain"
  | "striped"
  | "dotted"
  | "checkered"
  | "speckled"
  | "gradient";

/** A background: pattern plus its two grey tones and geometry (pixels). */
export interface BackgroundSpec {
  /** Pattern kind. */
  kind: TextureKind;
  /** Grey level of the base tone, 0–1. */
  tone1: number;
  /** Grey level of the pattern tone, 0–1 (unused for `"plain"`). */
  tone2: number;
  /** Stripe period, dot spacing or checker cell size in pixels. */
  period: number;
  /** Stripe orientation in radians (striped only). */
  angle: number;
  /** Dot radius in pixels (dotted only). */
  dotRadius: number;
  /** Pattern offset in pixels along x. */
  offsetX: number;
  /** Pattern offset in pixels along y. */
  offsetY: number;
  /** Base colour, RGB 0–1; defaults to the grey `tone1`. */
  colour1?: [number, number, number];
  /** Pattern colour, RGB 0–1; defaults to the grey `tone2`. */
  colour2?: [number, number, number];
  /** Seed of the speckle pattern (speckled only). */
  speckleSeed?: number;
}

/** One filled shape. */
export interface ShapeSpec {
  /** Shape kind. */
  kind: ShapeKind;
  /** Centre x in pixels (continuous coordinates: pixel `i` spans `[i, i+1)`). */
  cx: number;
  /** Centre y in pixels. */
  cy: number;
  /**
   * Size in pixels: every shape, rotated by up to 15°, fits (within ~1%) in the square of
   * half-side `radius` around its centre.
   */
  radius: number;
  /** Rotation in radians. */
  angle: number;
  /** Fill colour, RGB 0–255. */
  rgb: [number, number, number];
}

const SQRT3 = Math.sqrt(3);

function sdBox(px: number, py: number, hx: number, hy: number): number {
  const qx = Math.abs(px) - hx;
  const qy = Math.abs(py) - hy;
  const ox = Math.max(qx, 0);
  const oy = Math.max(qy, 0);
  return Math.sqrt(ox * ox + oy * oy) + Math.min(Math.max(qx, qy), 0);
}

/** Equilateral triangle, half side `r`, centroid at origin, apex towards +y (IQ's sdf). */
function sdTriangle(px: number, py: number, r: number): number {
  px = Math.abs(px) - r;
  py = py + r / SQRT3;
  if (px + SQRT3 * py > 0) {
    const nx = (px - SQRT3 * py) / 2;
    const ny = (-SQRT3 * px - py) / 2;
    px = nx;
    py = ny;
  }
  px -= Math.min(Math.max(px, -2 * r), 0);
  return -Math.sqrt(px * px + py * py) * Math.sign(py);
}

const K1X = 0.809016994375, K1Y = -0.587785252292;
const K2X = -K1X, K2Y = K1Y;

/** Five-pointed star, outer radius `r`, inner radius `rf·r`, a point towards +y (IQ's sdf). */
function sdStar5(px: number, py: number, r: number, rf: number): number {
  px = Math.abs(px);
  let d = Math.max(K1X * px + K1Y * py, 0);
  px -= 2 * d * K1X;
  py -= 2 * d * K1Y;
  d = Math.max(K2X * px + K2Y * py, 0);
  px -= 2 * d * K2X;
  py -= 2 * d * K2Y;
  px = Math.abs(px);
  py -= r;
  const bax = rf * -K1Y, bay = rf * K1X - 1;
  const h = Math.min(Math.max((px * bax + py * bay) / (bax * bax + bay * bay), 0), r);
  const dx = px - bax * h, dy = py - bay * h;
  return Math.sqrt(dx * dx + dy * dy) * Math.sign(py * bax - px * bay);
}

/** Heart of unit scale: tip at the origin, lobes up to y ≈ 1.10, |x| ≤ 0.60 (IQ's sdf). */
function sdHeart(px: number, py: number): number {
  px = Math.abs(px);
  if (py + px > 1) {
    const dx = px - 0.25, dy = py - 0.75;
    return Math.sqrt(dx * dx + dy * dy) - Math.SQRT2 / 4;
  }
  const ax = px, ay = py - 1;
  const t = 0.5 * Math.max(px + py, 0);
  const bx = px - t, by = py - t;
  return Math.sqrt(Math.min(ax * ax + ay * ay, bx * bx + by * by)) * Math.sign(px - py);
}

/** Rhombus with half-diagonals `bx`, `by` (IQ's sdf). */
function sdRhombus(px: number, py: number, bx: number, by: number): number {
  px = Math.abs(px);
  py = Math.abs(py);
  const ndot = (bx - 2 * px) * bx - (by - 2 * py) * by;
  const h = Math.min(Math.max(ndot / (bx * bx + by * by), -1), 1);
  const dx = px - 0.5 * bx * (1 - h), dy = py - 0.5 * by * (1 + h);
  return Math.sqrt(dx * dx + dy * dy) * Math.sign(px * by + py * bx - bx * by);
}

/**
 * Signed distance (pixels, negative inside) from local point `(x, y)` (y pointing up) to a
 * shape of the given kind and radius centred at the origin.
 */
export function shapeDistance(kind: ShapeKind, x: number, y: number, radius: number): number {
  switch (kind) {
    case "circle":
      return Math.sqrt(x * x + y * y) - radius;
    case "square": {
      const h = radius * 0.8; // x/y extent ≤ 0.98 r after a rotation of up to 15°
      return sdBox(x, y, h, h);
    }
    case "triangle":
      return sdTriangle(x, y + radius * 0.245, radius * 0.85); // bbox centred, height 1.47 r
    case "cross": {
      const a = radius * 0.95, b = radius * 0.33;
      return Math.min(sdBox(x, y, a, b), sdBox(x, y, b, a));
    }
    case "star":
      return sdStar5(x, y + radius * 0.09, radius, 0.47);
    case "ring":
      return Math.abs(Math.sqrt(x * x + y * y) - radius * 0.7) - radius * 0.28;
    case "heart": {
      const k = radius * 1.6; // 1.76 r tall, 1.92 r wide
      return sdHeart(x / k, (y + radius * 0.88) / k) * k;
    }
    case "moon": {
      // A disc minus a shifted disc (a bound, exact near the outer rim).
      const outer = Math.sqrt(x * x + y * y) - radius * 0.95;
      const cx = x - radius * 0.5, cy = y - radius * 0.25;
      const inner = Math.sqrt(cx * cx + cy * cy) - radius * 0.75;
      return Math.max(outer, -inner);
    }
    case "arrow": {
      // Pointing right: a shaft and an equilateral head (apex towards +x).
      const shaft = sdBox(x + radius * 0.45, y, radius * 0.5, radius * 0.2);
      const head = sdTriangle(y, x - radius * 0.25, radius * 0.62);
      return Math.min(shaft, head);
    }
    case "diamond":
      return sdRhombus(x, y, radius * 0.62, radius * 0.97);
  }
}

function clamp01(v: number): number {
  return v < 0 ? 0 : v > 1 ? 1 : v;
}

/** Fraction (0–1) of the pattern tone at pixel centre `(x, y)` (continuous coordinates). */
function patternCoverage(bg: BackgroundSpec, x: number, y: number): number {
  switch (bg.kind) {
    case "plain":
      return 0;
    case "striped": {
      const c = Math.cos(bg.angle), s = Math.sin(bg.angle);
      const u = (x + bg.offsetX) * c + (y + bg.offsetY) * s;
      const p = bg.period;
      let t = u % p;
      if (t < 0) t += p;
      // Inside stripe for t in [0, p/2); signed distance to the nearest edge (positive inside).
      const half = p / 2;
      const d = t < half ? Math.min(t, half - t) : -Math.min(t - half, p - t);
      return clamp01(0.5 + d);
    }
    case "dotted": {
      const p = bg.period;
      let u = (x + bg.offsetX) % p, v = (y + bg.offsetY) % p;
      if (u < 0) u += p;
      if (v < 0) v += p;
      const dx = u - p / 2, dy = v - p / 2;
      return clamp01(0.5 + bg.dotRadius - Math.sqrt(dx * dx + dy * dy));
    }
    case "checkered": {
      const p = bg.period;
      const u = (x + bg.offsetX) / p, v = (y + bg.offsetY) / p;
      const fu = Math.floor(u), fv = Math.floor(v);
      const parity = ((fu + fv) & 1) === 0 ? 1 : -1;
      const du = Math.min(u - fu, fu + 1 - u) * p;
      const dv = Math.min(v - fv, fv + 1 - v) * p;
      return clamp01(0.5 + parity * Math.min(du, dv));
    }
    case "speckled": {
      // Random 2×2-pixel cells (at 32 px) of the pattern tone, a third of them on.
      const cell = Math.max(1, bg.period / 2.5);
      const cx = Math.floor((x + bg.offsetX) / cell), cy = Math.floor((y + bg.offsetY) / cell);
      return hashSeed(bg.speckleSeed ?? 0, cx, cy) / 4294967296 < 0.35 ? 1 : 0;
    }
    case "gradient": {
      // A linear ramp from the base to the pattern tone across the image along `angle`.
      const c = Math.cos(bg.angle), s = Math.sin(bg.angle);
      const u = (x - bg.offsetX) * c + (y - bg.offsetY) * s;
      return clamp01(0.5 + u / (bg.period * 6));
    }
  }
}

/** Fill `out` (RGB, `size × size`) with the background. */
export function drawBackground(out: Uint8Array, size: number, bg: BackgroundSpec): void {
  const c1 = (bg.colour1 ?? [bg.tone1, bg.tone1, bg.tone1]).map((v) => v * 255);
  const c2 = (bg.colour2 ?? [bg.tone2, bg.tone2, bg.tone2]).map((v) => v * 255);
  let o = 0;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const a = bg.kind === "plain" ? 0 : patternCoverage(bg, x + 0.5, y + 0.5);
      out[o] = Math.round(c1[0] + (c2[0] - c1[0]) * a);
      out[o + 1] = Math.round(c1[1] + (c2[1] - c1[1]) * a);
      out[o + 2] = Math.round(c1[2] + (c2[2] - c1[2]) * a);
      o += 3;
    }
  }
}

/**
 * Add zero-mean Gaussian pixel noise of standard deviation `sigma` (0–1 scale), the same on
 * all three channels or (`colour`) independent per channel; `normal` draws N(0, 1).
 */
export function addNoise(
  out: Uint8Array,
  sigma: number,
  normal: () => number,
  colour = false,
): void {
  const s = sigma * 255;
  for (let o = 0; o < out.length; o += 3) {
    const n = normal() * s;
    for (let c = 0; c < 3; c++) {
      const v = out[o + c] + (colour && c > 0 ? normal() * s : n);
      out[o + c] = v < 0 ? 0 : v > 255 ? 255 : Math.round(v);
    }
  }
}

/** Blend one anti-aliased shape into `out` (RGB, `size × size`). */
export function drawShape(out: Uint8Array, size: number, s: ShapeSpec): void {
  const reach = s.radius + 1.5;
  const x0 = Math.max(0, Math.floor(s.cx - reach));
  const x1 = Math.min(size - 1, Math.ceil(s.cx + reach));
  const y0 = Math.max(0, Math.floor(s.cy - reach));
  const y1 = Math.min(size - 1, Math.ceil(s.cy + reach));
  const c = Math.cos(s.angle), sn = Math.sin(s.angle);
  const [r, g, b] = s.rgb;
  for (let y = y0; y <= y1; y++) {
    const dy = s.cy - (y + 0.5); // y up
    for (let x = x0; x <= x1; x++) {
      const dx = x + 0.5 - s.cx;
      const lx = c * dx + sn * dy;
      const ly = -sn * dx + c * dy;
      const a = clamp01(0.5 - shapeDistance(s.kind, lx, ly, s.radius));
      if (a === 0) continue;
      const o = (y * size + x) * 3;
      out[o] = Math.round(out[o] + (r - out[o]) * a);
      out[o + 1] = Math.round(out[o + 1] + (g - out[o + 1]) * a);
      out[o + 2] = Math.round(out[o + 2] + (b - out[o + 2]) * a);
    }
  }
}

/** HSV (h in degrees, s and v in 0–1) to RGB bytes. */
export function hsvToRgb(h: number, s: number, v: number): [number, number, number] {
  h = ((h % 360) + 360) % 360;
  const c = v * s;
  const hp = h / 60;
  const x = c * (1 - Math.abs((hp % 2) - 1));
  let r = 0, g = 0, b = 0;
  if (hp < 1) [r, g, b] = [c, x, 0];
  else if (hp < 2) [r, g, b] = [x, c, 0];
  else if (hp < 3) [r, g, b] = [0, c, x];
  else if (hp < 4) [r, g, b] = [0, x, c];
  else if (hp < 5) [r, g, b] = [x, 0, c];
  else [r, g, b] = [c, 0, x];
  const m = v - c;
  return [Math.round((r + m) * 255), Math.round((g + m) * 255), Math.round((b + m) * 255)];
}

/** RGB bytes to HSV (h in degrees 0–360, s and v in 0–1). */
export function rgbToHsv(r: number, g: number, b: number): [number, number, number] {
  const max = Math.max(r, g, b), min = Math.min(r, g, b);
  const d = max - min;
  let h = 0;
  if (d > 0) {
    if (max === r) h = 60 * (((g - b) / d) % 6);
    else if (max === g) h = 60 * ((b - r) / d + 2);
    else h = 60 * ((r - g) / d + 4);
  }
  if (h < 0) h += 360;
  return [h, max === 0 ? 0 : d / max, max / 255];
}

/** Render a background and shapes into a fresh RGB buffer of `size × size`. */
export function renderScene(size: number, bg: BackgroundSpec, shapes: ShapeSpec[]): Uint8Array {
  const out = new Uint8Array(size * size * 3);
  drawBackground(out, size, bg);
  for (const s of shapes) drawShape(out, size, s);
  return out;
}
