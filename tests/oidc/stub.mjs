// A local OpenID Connect provider for tests/app/test_oidc.py, on oauth2-mock-server (maintained,
// axa-group): authorization code flow with PKCE and nonce, RS256 keys made at start.
// Usage: node stub.mjs CLAIMS_FILE  -> prints {"issuer": ...} once listening on 127.0.0.1.
// Before each token is signed, the claims in CLAIMS_FILE (JSON, written by the test) are merged
// into it, so each test chooses the account, tenant and audience the provider asserts.
import { readFileSync } from 'node:fs';
import { OAuth2Server } from 'oauth2-mock-server';

const claimsFile = process.argv[2];
const server = new OAuth2Server();
await server.issuer.keys.generate('RS256');
server.service.on('beforeTokenSigning', (token) => {
  Object.assign(token.payload, JSON.parse(readFileSync(claimsFile, 'utf8')));
});
await server.start(0, '127.0.0.1');
console.log(JSON.stringify({ issuer: server.issuer.url }));
process.on('SIGTERM', async () => { await server.stop(); process.exit(0); });
