// Tests start their own local cloud through the same module as the demo and benchmarks.
export * from '../../scripts/devcloud-process.mjs';
