/**
 * LoRA adapters on CLIP's dense layers: standard, shared-basis and split-QKVO modes; merge into
 * the base weights for saving, or save and load the adapters alone.
 *
 * @module
 */
export * from "./lora.ts";
