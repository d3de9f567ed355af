/**
 * Small helpers for the Deno Jupyter notebooks in this folder: inline images and SVG plots.
 * The notebooks themselves (`*.ipynb`) run on the Deno kernel (`deno jupyter --install`).
 *
 * @module
 */

/** A Jupyter MIME bundle for `Deno.jupyter.display(bundle, { raw: true })`. */
export type MimeBundle = Record<string, string>;

/** The MIME bundle of an SVG document. */
export function svgBundle(svg: string): MimeBundle {
  return { "image/svg+xml": svg };
}

/** Base64 of bytes (for `data:` URLs). */
export function base64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

/** An `<img>` tag showing PNG bytes inline, optionally scaled for small images. */
export function pngImgTag(png: Uint8Array, opts: { scale?: number; title?: string } = {}): string {
  const style = opts.scale ? ` style="image-rendering: pixelated; zoom: ${opts.scale}"` : "";
  const title = opts.title ? ` title="${opts.title.replaceAll('"', "&quot;")}"` : "";
  return `<img src="data:image/png;base64,${base64(png)}"${style}${title}/>`;
}
