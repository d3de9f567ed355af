/**
 * The one TensorFlow.js entry point of the library: tfjs-core with every gradient registered and
 * the pure-JS cpu backend available. Every module imports `tf` from here, so that a single tfjs
 * engine (and its backend choice) is shared.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";

tf.env().set("PROD", true);

export { tf };
