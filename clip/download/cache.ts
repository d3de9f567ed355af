/**
 * Where downloaded weights and vocabularies live: `MTIL_CACHE`, else
 * `$XDG_CACHE_HOME/mtil`, else `~/.cache/mtil`.
 *
 * @module
 */

/** Environment variable that overrides the cache directory. */
export const CACHE_ENV = "MTIL_CACHE";

function env(name: string): string | undefined {
  try {
    const v = Deno.env.get(name);
    return v === "" ? undefined : v;
  } catch {
    return undefined; // no --allow-env: fall through to the default
  }
}

/**
 * The cache directory: `override` if given, else `MTIL_CACHE`, else `$XDG_CACHE_HOME/mtil`, else
 * `~/.cache/mtil`. The directory is not created here.
 */
export function cacheDir(override?: string): string {
  if (override) return override.replace(/\/+$/, "") || "/";
  const fromEnv = env(CACHE_ENV);
  if (fromEnv) return fromEnv.replace(/\/+$/, "") || "/";
  const xdg = env("XDG_CACHE_HOME");
  if (xdg) return `${xdg.replace(/\/+$/, "")}/mtil`;
  const home = env("HOME") ?? env("USERPROFILE");
  if (!home) {
    throw new Error(
      `cannot find the cache directory: set ${CACHE_ENV} (or HOME) to a writable folder`,
    );
  }
  return `${home.replace(/\/+$/, "")}/.cache/mtil`;
}

/** Path of `fileName` inside the cache directory (see {@link cacheDir}). */
export function cachePath(fileName: string, override?: string): string {
  if (fileName.includes("/") || fileName === ".." || fileName === "." || fileName === "") {
    throw new Error(`cachePath: bad file name ${JSON.stringify(fileName)}`);
  }
  return `${cacheDir(override)}/${fileName}`;
}
