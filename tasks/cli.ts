/**
 * Command-line parsing for the `deno task` entry points. Uses `parseArgs` from `node:util` until
 * JSR's `@std/cli` is reachable; swapping is this one import.
 *
 * @module
 */
export { parseArgs } from "node:util";
