/**
 * Entry point of the consul-ipam operator CLI (bundled into dist/ by scripts/build.mjs): manages the pools the
 * ipam-da-consul plugin allocates from, in the same Consul KV layout, reached with the same settings.
 */
import { runCli } from './run-cli';

void runCli(process.argv.slice(2), {
  env: process.env,
  writeStdout: (text) => process.stdout.write(text),
  writeStderr: (text) => process.stderr.write(text),
}).then((code) => {
  process.exitCode = code;
});
