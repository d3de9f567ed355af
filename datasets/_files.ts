/**
 * Reading dataset files safely: only regular files (a FIFO would block the reader forever, a
 * device could be endless), with an optional size bound.
 *
 * @module
 */

/**
 * Read a whole regular file. A FIFO, socket, device or directory at `path` is an error naming it
 * (checked with `stat` first: opening a FIFO for reading blocks until a writer appears), and so
 * is a file larger than `maxBytes`.
 */
export async function readRegularFile(path: string, maxBytes = Infinity): Promise<Uint8Array> {
  const st = await Deno.stat(path);
  if (!st.isFile) {
    const what = st.isDirectory ? "a directory" : "not a regular file (a FIFO, socket or device)";
    throw new Error(`${path} is ${what}; remove it from the dataset folder`);
  }
  if (st.size > maxBytes) {
    throw new Error(`${path}: ${st.size} bytes, more than the limit of ${maxBytes}`);
  }
  return await Deno.readFile(path);
}
