// Stands in, in the bundles only, for got's optional features this project never turns on: HTTP/2
// (http2-wrapper builds a TLS socket as soon as it is imported: ~20 ms of every start), the HTTP cache
// (cacheable-request) and the DNS cache (cacheable-lookup). Using one throws, naming this file.
'use strict';
function unused() {
  throw new Error("got's HTTP/2, cache and DNS-cache features are not bundled (scripts/build-stubs/got-unused-feature.cjs)");
}
unused.auto = unused;
class CacheError extends Error {}
module.exports = { __esModule: true, default: unused, CacheError };
